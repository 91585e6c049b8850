"""Add NIST's multi-image and multi-person lists to the bundled validation set, from its own images.

Usage::

    python scripts/make_multiperson_set.py [--set data/validation]

What it writes (deterministic: the same bundled images give the same files):

- ``images/multi/*.jpg``: two or three bundled mugshots of different subjects side by side on a
  grey canvas (same height, 40 px apart), the way NIST's validation set has photographs with
  several people in them.
- ``enroll_multiface.txt``: NIST's multi-image enrolment lines, ``<id> <image> <label> <image>
  <label> ...``: several frontal mugshots of one subject per line, and one line whose second image
  holds no face (one EyePair per image is still due).
- ``verif_multiperson.txt``: one image per line for the multi-person call; each id is an
  enrolment id of ``enroll.txt`` (NIST compares every template found, ``<id>_<i>``, with the
  enrolment template ``<id>``): single mugshots of enrolled subjects, the composed images (the
  enrolled subject on the left), and edge cases (no face, all white, the bundled two-face image).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
GAP = 40


def _frontal(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.jpg") if p.stem.endswith("t10_01"))


def compose(images: list[np.ndarray]) -> np.ndarray:
    """Images scaled to the first one's height, side by side with a grey gap."""
    height = images[0].shape[0]
    scaled = [
        cv2.resize(im, (round(im.shape[1] * height / im.shape[0]), height), interpolation=cv2.INTER_AREA)
        for im in images
    ]
    width = sum(im.shape[1] for im in scaled) + GAP * (len(scaled) - 1)
    canvas = np.full((height, width, 3), 128, np.uint8)
    x = 0
    for im in scaled:
        canvas[:, x : x + im.shape[1]] = im
        x += im.shape[1] + GAP
    return canvas


def build(root: Path) -> dict:
    meds = root / "images" / "meds"
    subjects = {p.name: _frontal(p) for p in sorted(meds.iterdir()) if p.is_dir()}
    rel = lambda p: str(p.relative_to(root))  # noqa: E731
    many = [s for s, imgs in subjects.items() if len(imgs) >= 3]
    multiface = []
    for s in many[:6]:
        imgs = subjects[s][::2][:4] if len(subjects[s]) >= 6 else subjects[s][:3]
        multiface.append(f"mf_{s} " + " ".join(f"{rel(p)} faceunknown" for p in imgs))
    multiface.append(f"mf_{many[0]}_noface {rel(subjects[many[0]][1])} facemugshot images/edge/no_face.jpg faceunknown")

    out = root / "images" / "multi"
    out.mkdir(parents=True, exist_ok=True)
    singles = [s for s, imgs in subjects.items() if len(imgs) == 1]
    groups = [(singles[0], singles[1]), (singles[2], singles[3], singles[4]), (singles[5], many[1])]
    verif = []
    for i, group in enumerate(groups, start=1):
        name = f"multi{i}_{'_'.join(group)}.jpg"
        canvas = compose([cv2.imread(str(subjects[s][0])) for s in group])
        ok, buf = cv2.imencode(".jpg", canvas, [cv2.IMWRITE_JPEG_QUALITY, 90])
        assert ok, name
        (out / name).write_bytes(buf.tobytes())
        verif.append(f"e_{group[0]} images/multi/{name} {'facephotojournalism' if len(group) == 2 else 'facewild'}")
    for s in many[2:6]:
        verif.append(f"e_{s} {rel(subjects[s][1])} facemugshot")
    two_faces = sorted((root / "images" / "edge").glob("two_faces_*.jpg"))
    if two_faces:
        verif.append(f"e_{two_faces[0].stem.split('_')[-1]} images/edge/{two_faces[0].name} facewild")
    verif.append("e_edge_all_white images/edge/all_white.png faceunknown")
    verif.append(f"e_{many[6]} images/edge/no_face.jpg faceunknown")
    (root / "enroll_multiface.txt").write_text("".join(line + "\n" for line in multiface))
    (root / "verif_multiperson.txt").write_text("".join(line + "\n" for line in verif))
    return {"enroll_multiface": len(multiface), "verif_multiperson": len(verif), "composed": len(groups)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--set", type=Path, default=ROOT / "data" / "validation")
    print(build(parser.parse_args().set))


if __name__ == "__main__":
    main()
