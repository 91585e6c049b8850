"""A labels CSV (``image,sex``) for ``frvt score --demographics`` from LFW's published sex lists.

Usage::

    python scripts/lfw_sex_labels.py --lfw ../shared/data/lfw -o out/lfw_sex.csv

Reads ``sex/male_names.txt`` and ``sex/female_names.txt`` (one ``<Name>_NNNN.jpg`` a line) and
writes one row per listed image. The lists are noisy as published: an image in both lists gets
both rows, so that ``frvt score`` counts it as a conflicting label and leaves it out of the groups;
an image of ``lfw-deepfunneled/`` in neither list gets no row (``frvt score`` counts it as
unlabelled). Both kinds are printed here, with the identities whose images disagree.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_list(path: Path) -> list[str]:
    """Image names of a sex list, in file order (blank lines skipped)."""
    return [line.strip() for line in path.read_text().splitlines() if line.strip()]


def build_rows(male: list[str], female: list[str]) -> list[tuple[str, str]]:
    """``(image, sex)`` rows, male then female, each image once per list it is in."""
    seen = set()
    rows = []
    for sex, names in (("M", male), ("F", female)):
        for n in names:
            if (n, sex) not in seen:
                seen.add((n, sex))
                rows.append((n, sex))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--lfw", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data" / "lfw")
    ap.add_argument("-o", "--out", type=Path, default=Path("out/lfw_sex.csv"))
    args = ap.parse_args()
    male = read_list(args.lfw / "sex" / "male_names.txt")
    female = read_list(args.lfw / "sex" / "female_names.txt")
    rows = build_rows(male, female)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["image", "sex"])
        w.writerows(rows)
    both = sorted(set(male) & set(female))
    images_dir = args.lfw / "lfw-deepfunneled"
    on_disk = {p.name for p in images_dir.glob("*/*.jpg")} if images_dir.is_dir() else set()
    neither = sorted(on_disk - set(male) - set(female))
    unknown = sorted((set(male) | set(female)) - on_disk) if on_disk else []
    by_identity: dict[str, set[str]] = {}
    for n, s in rows:
        by_identity.setdefault(n.rsplit("_", 1)[0], set()).add(s)
    mixed = sorted(i for i, s in by_identity.items() if len(s) > 1)
    print(f"wrote {len(rows)} rows to {args.out}: {len(set(male))} male and {len(set(female))} female images")
    print(f"in both lists ({len(both)}, conflicting labels): {', '.join(both) or '-'}")
    print(f"in neither list ({len(neither)}, unlabelled): {', '.join(neither) or '-'}")
    if unknown:
        print(f"listed but not in {images_dir} ({len(unknown)}): {', '.join(unknown[:10])}")
    print(f"identities with images in both lists ({len(mixed)}): {', '.join(mixed) or '-'}")


if __name__ == "__main__":
    main()
