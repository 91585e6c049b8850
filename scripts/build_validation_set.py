"""Build the bundled validation set ``data/validation/`` from NIST MEDS mugshots plus edge cases.

Usage::

    python scripts/build_validation_set.py [--meds ../shared/data/meds] [--out data/validation]

What it writes (deterministic: the same inputs give the same files):

- ``images/meds/S<subject>/...jpg``: the MEDS-II mugshots (NIST SD-32 subset S001-S050, public
  NIST data), copied unchanged. Frontal ones are ``*-t10_01.jpg``; the few ``t10_02/03`` are
  profile views, kept as hard cases.
- ``images/edge/*``: generated edge cases in the spirit of NIST's validation images: all white,
  all black, 8-bit grey, very large, very small, rotated 90 and 180 degrees, two faces in one
  image, no face at all, and malformed files (a truncated JPEG, a zero-byte file, text named .jpg).
- ``enroll.txt`` / ``verif.txt`` (``<id> <image path> <label> [<identity>]``, NIST's lowercase
  labels) and ``match.txt`` (``<id>.template <id>.template``: every enrolment template against
  every verification template, genuine and impostor pairs).
- ``enroll_multiface.txt``, ``verif_multiperson.txt`` and ``images/multi/``: NIST's multi-image and
  multi-person lists, by ``scripts/make_multiperson_set.py`` from the images above.
  Enrolment: the first frontal image of each subject. Verification: every other frontal image.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _frontal(images: list[Path]) -> list[Path]:
    return [p for p in images if p.stem.endswith("t10_01")]


def _write_jpeg(path: Path, bgr: np.ndarray, quality: int = 90) -> None:
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    assert ok, path
    path.write_bytes(buf.tobytes())


def build(meds: Path, out: Path) -> dict:
    subjects = sorted(p for p in meds.iterdir() if p.is_dir() and p.name.startswith("S"))
    if not subjects:
        raise SystemExit(f"no MEDS subjects (S*/) under {meds}")
    if out.exists():
        shutil.rmtree(out)
    (out / "images" / "edge").mkdir(parents=True)
    by_subject: dict[str, list[Path]] = {}
    for subject in subjects:
        dest = out / "images" / "meds" / subject.name
        dest.mkdir(parents=True)
        copied = []
        for image in sorted(subject.glob("*.jpg")):
            shutil.copy2(image, dest / image.name)
            copied.append(dest / image.name)
        by_subject[subject.name] = copied

    enroll, verif = [], []  # (id, relative path, label, identity or None)
    rel = lambda p: str(p.relative_to(out))  # noqa: E731
    for name, images in by_subject.items():
        frontal = _frontal(images)
        if not frontal:
            continue
        enroll.append((f"e_{name}", rel(frontal[0]), "facemugshot", None))
        for i, image in enumerate(frontal[1:], start=1):
            verif.append((f"v_{name}_{i:02d}", rel(image), "facemugshot", None))
        for j, image in enumerate(sorted(set(images) - set(frontal)), start=1):
            verif.append((f"v_{name}_profile{j}", rel(image), "facemugshot", None))

    # Edge cases. Subjects with two or more frontal images give the derived cases a genuine mate.
    multi = [n for n, imgs in by_subject.items() if len(_frontal(imgs)) >= 2]
    src = lambda n, k=1: cv2.imread(str(_frontal(by_subject[n])[k]))  # noqa: E731
    edge = out / "images" / "edge"
    h, w = 600, 480
    cv2.imwrite(str(edge / "all_white.png"), np.full((h, w, 3), 255, np.uint8))
    cv2.imwrite(str(edge / "all_black.png"), np.zeros((h, w, 3), np.uint8))
    a, b, c, d, e, f = multi[:6]
    grey = cv2.cvtColor(src(a), cv2.COLOR_BGR2GRAY)
    cv2.imwrite(str(edge / f"grey8_{a}.png"), grey)  # a true 8-bit, one-channel file
    big = src(b)
    scale = 4000 / big.shape[0]
    _write_jpeg(edge / f"large_{b}.jpg", cv2.resize(big, None, fx=scale, fy=scale, interpolation=cv2.INTER_CUBIC), 80)
    small = src(c)
    _write_jpeg(
        edge / f"small_{c}.jpg",
        cv2.resize(small, (small.shape[1] * 64 // small.shape[0], 64), interpolation=cv2.INTER_AREA),
    )
    _write_jpeg(edge / f"rot90_{d}.jpg", cv2.rotate(src(d), cv2.ROTATE_90_CLOCKWISE))
    _write_jpeg(edge / f"rot180_{e}.jpg", cv2.rotate(src(e), cv2.ROTATE_180))
    # two faces: subject f large on the left, another subject smaller on the right; identity f
    left = src(f)
    other = cv2.imread(str(_frontal(by_subject[multi[6]])[0]))
    other = cv2.resize(other, (left.shape[1] * 3 // 5, left.shape[0] * 3 // 5))
    canvas = np.full((left.shape[0], left.shape[1] + other.shape[1] + 40, 3), 128, np.uint8)
    canvas[:, : left.shape[1]] = left
    y0 = (left.shape[0] - other.shape[0]) // 2
    canvas[y0 : y0 + other.shape[0], left.shape[1] + 40 :] = other
    _write_jpeg(edge / f"two_faces_{f}.jpg", canvas)
    # no face: a synthetic scene of shapes and noise
    rng = np.random.default_rng(0)
    scene = (rng.normal(128, 30, (h, w, 3))).clip(0, 255).astype(np.uint8)
    for _ in range(25):
        colour = tuple(int(x) for x in rng.integers(0, 255, 3))
        p1 = tuple(int(x) for x in rng.integers(0, [w, h]))
        p2 = tuple(int(x) for x in rng.integers(0, [w, h]))
        cv2.rectangle(scene, p1, p2, colour, -1)
    _write_jpeg(edge / "no_face.jpg", scene)
    # malformed files
    whole = (_frontal(by_subject[multi[7]])[1]).read_bytes()
    (edge / f"truncated_{multi[7]}.jpg").write_bytes(whole[: len(whole) // 3])
    (edge / "zero_bytes.jpg").write_bytes(b"")
    (edge / "text.jpg").write_text("This is not a JPEG file; a harness must not crash on it.\n")

    er = lambda name: f"images/edge/{name}"  # noqa: E731
    enroll += [
        ("e_edge_all_white", er("all_white.png"), "faceunknown", "none_white"),
        ("e_edge_grey8", er(f"grey8_{a}.png"), "facemugshot", a),
        ("e_edge_rot90", er(f"rot90_{d}.jpg"), "facemugshot", d),
        ("e_edge_large", er(f"large_{b}.jpg"), "facemugshot", b),
        ("e_edge_zero_bytes", er("zero_bytes.jpg"), "faceunknown", "none_zero"),
    ]
    verif += [
        ("v_edge_all_black", er("all_black.png"), "faceunknown", "none_black"),
        ("v_edge_small", er(f"small_{c}.jpg"), "facemugshot", c),
        ("v_edge_rot180", er(f"rot180_{e}.jpg"), "facemugshot", e),
        ("v_edge_two_faces", er(f"two_faces_{f}.jpg"), "facemugshot", f),
        ("v_edge_no_face", er("no_face.jpg"), "faceunknown", "none_scene"),
        ("v_edge_truncated", er(f"truncated_{multi[7]}.jpg"), "facemugshot", multi[7]),
        ("v_edge_text", er("text.jpg"), "faceunknown", "none_text"),
    ]

    def line(entry):
        tid, path, label, identity = entry
        return f"{tid} {path} {label}" + (f" {identity}" if identity else "") + "\n"

    (out / "enroll.txt").write_text("".join(map(line, enroll)))
    (out / "verif.txt").write_text("".join(map(line, verif)))
    (out / "match.txt").write_text("".join(f"{e[0]}.template {v[0]}.template\n" for e in enroll for v in verif))
    from make_multiperson_set import build as build_multiperson

    multi = build_multiperson(out)
    (out / "README.md").write_text(
        "# Bundled validation set\n\nBuilt by `python scripts/build_validation_set.py` from NIST MEDS-II (SD-32) mugshots "
        "S001-S050 (public NIST data, prepared by MITRE) plus generated edge cases; see that script's docstring.\n"
        f"\n{len(enroll)} enrolment images, {len(verif)} verification images, {len(enroll) * len(verif)} comparisons; "
        f"{multi['enroll_multiface']} multi-image enrolment lines and {multi['verif_multiperson']} multi-person images "
        "(`scripts/make_multiperson_set.py`).\n"
    )
    return {"enroll": len(enroll), "verif": len(verif), "match": len(enroll) * len(verif)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--meds", type=Path, default=ROOT.parent / "shared" / "data" / "meds")
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "validation")
    args = parser.parse_args()
    print(build(args.meds, args.out))


if __name__ == "__main__":
    main()
