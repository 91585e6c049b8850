"""How the face-geometry rule (implementation.detect.FaceGeometry) treats real detections.

Runs the default implementation's compiled detector on every LFW (deep-funneled) and MEDS image,
in the first orientation (upright, 90 clockwise, 90 counter-clockwise, 180) with any detection,
and reports for the face the pipeline would use (select_face) the extremes of the three measured
quantities (landmarks outside the box as a fraction of its side, eye distance over box width,
template fit), and how many detections the rule rejects, by reason, for the used faces and the
others. It also runs the pipeline's own face finding (which passes implausible detections over)
and counts the images whose landmarks differ from those of the face used without the rule: the
templates of all other images are the same bytes. ``--darken`` multiplies every image by a factor first (near-black versions of real faces).

    python scripts/face_geometry_stats.py --data-dir ../shared/data [--step 1] [--darken 1.0] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from frvt.driver import decode_image
from implementation.config_dir import build_config_dir
from implementation.detect import FACE_GEOMETRY, implausibility, select_face, template_fit
from implementation.pipeline import _ROTATIONS, FaceVerifier


def measures(face) -> dict[str, float]:
    """Landmarks outside the box (largest, as a fraction of the box side; negative = inside),
    eye distance / box width, template fit."""
    box, points = face.box.astype(np.float64), face.landmarks.astype(np.float64)
    width, height = box[2] - box[0], box[3] - box[1]
    outside = max(
        np.max((box[0] - points[:, 0]) / width),
        np.max((points[:, 0] - box[2]) / width),
        np.max((box[1] - points[:, 1]) / height),
        np.max((points[:, 1] - box[3]) / height),
    )
    eyes = float(np.hypot(*(points[1] - points[0]))) / width
    return {"outside": float(outside), "eye_distance": eyes, "template_fit": template_fit(points)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=Path("../shared/data"))
    parser.add_argument("--step", type=int, default=1, help="every step-th LFW image (MEDS: all)")
    parser.add_argument("--darken", type=float, default=1.0, help="multiply pixels by this first")
    parser.add_argument("--json", type=Path, help="also write the report here")
    args = parser.parse_args()
    files = sorted((args.data_dir / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[:: args.step]
    files += sorted((args.data_dir / "meds").glob("*/*.jpg"))
    if not files:
        parser.error(f"no LFW or MEDS images under {args.data_dir}")
    verifier = FaceVerifier()
    status = verifier.initialize(str(build_config_dir()))
    if not status.ok:
        parser.error(f"initialize failed: {status}")
    detector = verifier._detector
    used, others = [], []
    rejected_used, rejected_others = Counter(), Counter()
    n_without = 0
    changed: list[str] = []
    for path in files:
        rgb = decode_image(path).to_array()
        rgb = cv2.cvtColor(rgb, cv2.COLOR_GRAY2RGB) if rgb.ndim == 2 else rgb
        if args.darken != 1.0:
            rgb = np.round(rgb * args.darken).astype(np.uint8)
        for turn, back in _ROTATIONS:
            view = rgb if turn is None else cv2.rotate(rgb, turn)
            faces = detector.detect(view)
            if faces:
                break
        else:
            n_without += 1
            if verifier._detect(rgb)[0] is not None:
                changed.append(path.name)
            continue
        chosen = select_face(faces, view.shape)
        h, w = rgb.shape[:2]
        old = np.array([back(float(x), float(y), w, h) for x, y in chosen.landmarks], dtype=np.float32)
        new, _ = verifier._detect(rgb)
        if new is None or not np.array_equal(new, old):
            changed.append(path.name)
        for face in faces:
            reason = implausibility(face.box, face.landmarks)
            row = {"image": path.name, **measures(face), "rejected": reason}
            (used if face is chosen else others).append(row)
            if reason:
                (rejected_used if face is chosen else rejected_others)[reason] += 1
    extremes = {
        "outside_max": max(r["outside"] for r in used),
        "eye_distance_min": min(r["eye_distance"] for r in used),
        "template_fit_min": min(r["template_fit"] for r in used),
    }
    report = {
        "limits": vars(FACE_GEOMETRY),
        "n_images": len(files),
        "darken": args.darken,
        "n_images_without_detection": n_without,
        "n_used_faces": len(used),
        "n_other_faces": len(others),
        "used_face_extremes": extremes,
        "rejected_used_faces": dict(rejected_used),
        "rejected_other_faces": dict(rejected_others),
        "rejected_used_images": [r["image"] for r in used if r["rejected"]],
        "n_images_with_other_landmarks": len(changed),
        "images_with_other_landmarks": changed,
    }
    print(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
