"""Fit where RetinaFace's 5 landmarks fall in dlib's 150x150 face chip (``align.CHIP_TEMPLATE``).

For each image: dlib's HOG face detector + 5-point shape predictor give dlib's own chip
(``dlib.get_face_chip_details(shape, size=150, padding=0.25)``), from which we rebuild dlib's
image->chip matrix (``get_mapping_to_chip`` in dlib's ``interpolation.h``); our RetinaFace
detector (ONNX Runtime, the committed model) gives 5 landmarks; these are mapped into dlib's chip.
The template is the coordinate-wise median over faces (robust to the odd bad landmark).

Images: a seeded random sample of LFW deep-funneled (``--n-lfw``, taken from the front of a
permutation of all LFW files; ``scripts/compare_alignment.py`` measures on the files after it) and
all MEDS mugshots. dlib is a development dependency only; the product never imports this script.

Usage::

    python scripts/fit_chip_template.py --n-lfw 300 --seed 0
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / ".." / "shared" / "data"
MODEL = REPO / "data" / "models" / "retinaface_mnet025.onnx"
CHIP_SIZE = 150
CHIP_PADDING = 0.25


@dataclass
class FacePair:
    """One face seen by both pipelines."""

    path: str
    image: np.ndarray  # RGB uint8
    dlib_shape: object  # dlib.full_object_detection (5 parts)
    dlib_points: np.ndarray  # (5, 2) dlib's 5 points, pixel-index coordinates
    dlib_matrix: np.ndarray  # (2, 3) image pixel index -> dlib chip pixel index
    landmarks: np.ndarray  # (5, 2) RetinaFace landmarks, continuous coordinates


def lfw_files(seed: int) -> list[Path]:
    """All LFW images in a seeded random order (deterministic across machines)."""
    files = sorted((DATA / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))
    order = np.random.default_rng(seed).permutation(len(files))
    return [files[i] for i in order]


def meds_files() -> list[Path]:
    return sorted((DATA / "meds").glob("*/*.jpg"))


def read_rgb(path: Path) -> np.ndarray:
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"cannot read image {path}")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def onnxruntime_detector(model: Path | bytes = MODEL, **kwargs):
    """RetinaFaceDetector running an ONNX model (file or serialised bytes) with ONNX Runtime, 1 thread."""
    from frvt.perf.bench import onnxruntime_session
    from implementation.detect import RetinaFaceDetector

    session = onnxruntime_session(model)
    shape = session.get_inputs()[0].shape
    return RetinaFaceDetector(
        lambda x: session.run(None, {"input": x}), input_size=(int(shape[2]), int(shape[3])), **kwargs
    )


def rotate_point(centre: np.ndarray, point: np.ndarray, angle: float) -> np.ndarray:
    """dlib's ``rotate_point``: ``point`` rotated by ``angle`` radians about ``centre``."""
    c, s = math.cos(angle), math.sin(angle)
    d = point - centre
    return centre + np.array([c * d[0] - s * d[1], s * d[0] + c * d[1]])


def dlib_chip_matrix(details) -> np.ndarray:
    """dlib's ``get_mapping_to_chip``: image pixel index -> chip pixel index, as a (2, 3) matrix."""
    rect = details.rect
    left, top, right, bottom = rect.left(), rect.top(), rect.right(), rect.bottom()
    centre = np.array([(left + right) / 2, (top + bottom) / 2])
    src = np.array(
        [rotate_point(centre, np.array(p, float), details.angle) for p in ((left, top), (right, top), (right, bottom))],
        np.float32,
    )
    dst = np.array([[0, 0], [details.cols - 1, 0], [details.cols - 1, details.rows - 1]], np.float32)
    return cv2.getAffineTransform(src, dst).astype(np.float64)


class DlibReference:
    """dlib's HOG detector, 5-point shape predictor and ResNet descriptor (dev-only reference)."""

    def __init__(self) -> None:
        import dlib
        import face_recognition_models as frm

        self.dlib = dlib
        self.detector = dlib.get_frontal_face_detector()
        self.predictor = dlib.shape_predictor(frm.pose_predictor_five_point_model_location())
        self.embedder = dlib.face_recognition_model_v1(frm.face_recognition_model_location())

    def shape(self, image: np.ndarray, near: np.ndarray | None = None):
        """5-point shape of the largest HOG face (or the one containing ``near``), or None."""
        upsample = 1 if max(image.shape[:2]) <= 400 else 0
        rects = list(self.detector(image, upsample))
        if not rects:
            return None
        if near is not None:
            inside = [r for r in rects if r.left() <= near[0] <= r.right() and r.top() <= near[1] <= r.bottom()]
            rects = inside or rects
        rect = max(rects, key=lambda r: r.width() * r.height())
        return self.predictor(image, rect)

    def chip(self, image: np.ndarray, shape) -> np.ndarray:
        return np.asarray(self.dlib.get_face_chip(image, shape, size=CHIP_SIZE, padding=CHIP_PADDING))

    def descriptor(self, chip: np.ndarray) -> np.ndarray:
        return np.asarray(self.embedder.compute_face_descriptor(np.ascontiguousarray(chip)))


def collect(paths: list[Path], detector, reference: DlibReference) -> tuple[list[FacePair], dict]:
    """Faces found by both pipelines, and failure counts per pipeline."""
    from implementation.detect import select_face

    pairs, counts = [], {"images": 0, "dlib_missed": 0, "ours_missed": 0, "both_missed": 0}
    for path in paths:
        image = read_rgb(path)
        counts["images"] += 1
        face = select_face(detector.detect(image), image.shape)
        near = None if face is None else np.array([(face.box[0] + face.box[2]) / 2, (face.box[1] + face.box[3]) / 2])
        shape = reference.shape(image, near)
        counts["ours_missed"] += face is None
        counts["dlib_missed"] += shape is None
        counts["both_missed"] += face is None and shape is None
        if face is None or shape is None:
            continue
        details = reference.dlib.get_face_chip_details(shape, CHIP_SIZE, CHIP_PADDING)
        points = np.array([[shape.part(i).x, shape.part(i).y] for i in range(5)], np.float64)
        pairs.append(
            FacePair(
                str(path.relative_to(DATA.resolve()) if path.is_relative_to(DATA.resolve()) else path),
                image,
                shape,
                points,
                dlib_chip_matrix(details),
                face.landmarks.astype(np.float64),
            )
        )
    return pairs, counts


def landmarks_in_dlib_chip(pairs: list[FacePair]) -> np.ndarray:
    """Our landmarks mapped by dlib's chip matrix, shape (n_faces, 5, 2), chip pixel index."""
    out = []
    for p in pairs:
        idx = p.landmarks - 0.5  # continuous -> pixel-index convention
        out.append(idx @ p.dlib_matrix[:, :2].T + p.dlib_matrix[:, 2])
    return np.array(out)


def fit_template(points: np.ndarray) -> np.ndarray:
    """Coordinate-wise median over faces, shape (5, 2)."""
    return np.median(points, axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-lfw", type=int, default=300, help="LFW images (front of the permutation)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the LFW permutation")
    parser.add_argument("--no-meds", action="store_true", help="LFW only")
    args = parser.parse_args()

    detector = onnxruntime_detector()
    reference = DlibReference()
    paths = lfw_files(args.seed)[: args.n_lfw] + ([] if args.no_meds else meds_files())
    pairs, counts = collect(paths, detector, reference)
    points = landmarks_in_dlib_chip(pairs)
    template = fit_template(points)
    spread = np.median(np.linalg.norm(points - template, axis=2), axis=0)
    is_meds = np.array(["meds" in p.path for p in pairs])
    by_set = {
        name: fit_template(points[mask]).round(2).tolist()
        for name, mask in (("lfw", ~is_meds), ("meds", is_meds))
        if mask.any()
    }
    report = {
        "command": f"python scripts/fit_chip_template.py --n-lfw {args.n_lfw} --seed {args.seed}"
        + (" --no-meds" if args.no_meds else ""),
        "counts": counts,
        "n_faces": len(pairs),
        "template": template.round(2).tolist(),
        "median_distance_to_template_px": spread.round(2).tolist(),
        "template_by_set": by_set,
    }
    for key, value in report.items():
        print(f"{key}: {json.dumps(value)}")


if __name__ == "__main__":
    main()
