"""Landmarks -> aligned face chip in dlib's framing, for dlib's ResNet embedder.

dlib's embedder was trained on chips cut by ``dlib.get_face_chip(img, shape, size=150,
padding=0.25)`` from its own 5-point shape predictor. We do not have those 5 points (RetinaFace
gives eye centres, nose tip and mouth corners instead), so we fit, once, where RetinaFace's
points land on average in dlib's chip (:data:`CHIP_TEMPLATE`) and then cut each chip with the
similarity transform (rotation, uniform scale, translation) that sends our landmarks to that
template in the weighted least-squares sense (Umeyama's closed form).

Coordinates: landmarks come from :mod:`implementation.detect` in continuous image coordinates
(the top-left corner of the image is (0, 0), pixel ``i`` covers ``[i, i + 1)``). Chip
coordinates, the template and the matrices here use the pixel-index convention of dlib and
OpenCV (the centre of pixel ``i`` is at ``i``); :func:`chip_transform` converts.

Downscaling follows dlib's ``extract_image_chips``: while the chip would sample the image more
than 2x sparser than its pixels, the image is halved with a 5-tap Gaussian pyramid first
(``cv2.pyrDown``, the same [1 4 6 4 1] filter as dlib's ``pyramid_down<2>``; the sampling phase
differs by under one source pixel), then sampled bilinearly (:func:`implementation.resample.warp_bilinear`,
exact integer arithmetic shared with the C++ library). Pixels outside the image are black.
"""

from __future__ import annotations

import cv2
import numpy as np

from implementation import resample

CHIP_SIZE = 150
"""Side of dlib's face chip in pixels."""

# Where RetinaFace's 5 landmarks (subject's right eye, left eye, nose tip, right and left mouth
# corner; image-left first) fall in dlib's 150x150 chip
# (get_face_chip_details(shape_5, size=150, padding=0.25)), pixel-index convention: the
# coordinate-wise median over 407 faces (300 LFW deep-funneled images of a seeded sample and 114
# MEDS mugshots, minus 7 dlib missed) of our landmarks mapped by dlib's own chip transform.
# Produced by: python scripts/fit_chip_template.py --n-lfw 300 --seed 0
# Median distance of the mapped points to these: 1.8, 2.1, 5.9, 5.0, 4.7 px (eyes, nose, mouth).
CHIP_TEMPLATE = np.array(
    [
        [46.15, 44.50],
        [101.34, 45.04],
        [72.47, 76.47],
        [50.95, 103.82],
        [95.76, 104.01],
    ],
    dtype=np.float64,
)
CHIP_TEMPLATE.setflags(write=False)

# Eyes are RetinaFace's most repeatable points (see the spreads above; nose and mouth also move
# with head pitch relative to dlib's eye-corner/nose-base points), so they weigh 8x the nose and
# mouth corners. Mean dlib-descriptor distance of our chip to dlib's chip on 298 held-out LFW faces
# (python scripts/compare_alignment.py): equal weights 0.146, eyes x4 0.131, eyes x8 0.127,
# eyes x16 0.127, eyes+nose only 0.146, eyes+mouth only 0.149.
LANDMARK_WEIGHTS = np.array([8.0, 8.0, 1.0, 1.0, 1.0])
"""Relative weight of each landmark in the least-squares fit (same order as the template)."""
LANDMARK_WEIGHTS.setflags(write=False)


def similarity_transform(src: np.ndarray, dst: np.ndarray, weights: np.ndarray | None = None) -> np.ndarray:
    """Least-squares similarity transform (rotation, uniform scale, translation) from src to dst.

    Umeyama (1991) with per-point weights: minimises ``sum_i w_i |s R src_i + t - dst_i|^2``
    over rotations ``R`` (no reflection), scales ``s > 0`` and translations ``t``.

    Parameters
    ----------
    src, dst : np.ndarray, shape (n, 2)
        Corresponding points, n >= 2, not all ``src`` points equal.
    weights : np.ndarray, shape (n,), optional
        Non-negative weights, at least two positive; default all ones.

    Returns
    -------
    np.ndarray, shape (2, 3), float64
        ``M`` with ``dst ~ M[:, :2] @ src + M[:, 2]``.

    Examples
    --------
    >>> src = np.array([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    >>> similarity_transform(src, 2 * src + 3).round(6) + 0.0
    array([[2., 0., 3.],
           [0., 2., 3.]])
    """
    src = np.asarray(src, np.float64)
    dst = np.asarray(dst, np.float64)
    if src.shape != dst.shape or src.ndim != 2 or src.shape[1] != 2 or len(src) < 2:
        raise ValueError(f"src {src.shape} and dst {dst.shape} must both be (n >= 2, 2)")
    w = np.ones(len(src)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(src),) or np.any(w < 0) or np.count_nonzero(w) < 2:
        raise ValueError(f"weights {w} must be (n,) non-negative with at least two positive")
    w = w / w.sum()
    mu_src, mu_dst = w @ src, w @ dst
    a, b = src - mu_src, dst - mu_dst
    var_src = float(w @ (a * a).sum(axis=1))
    if var_src <= 0:
        raise ValueError("src points are all equal: no transform is defined")
    cov = (b * w[:, None]).T @ a  # 2x2, sum_i w_i b_i a_i^T
    u, sigma, vt = np.linalg.svd(cov)
    d = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ d @ vt
    scale = float(np.trace(np.diag(sigma) @ d)) / var_src
    translation = mu_dst - scale * rotation @ mu_src
    return np.hstack([scale * rotation, translation[:, None]])


def chip_transform(
    landmarks: np.ndarray,
    size: int = CHIP_SIZE,
    template: np.ndarray = CHIP_TEMPLATE,
    weights: np.ndarray = LANDMARK_WEIGHTS,
) -> np.ndarray:
    """Matrix that maps image pixels to chip pixels for a face with these landmarks.

    Parameters
    ----------
    landmarks : np.ndarray, shape (5, 2)
        RetinaFace landmarks in continuous image coordinates (see :class:`detect.Face`).
    size : int
        Chip side in pixels; the template (made for 150) is scaled by ``size / 150``.
    template, weights
        Target points in a 150x150 chip (pixel-index convention) and their fit weights.

    Returns
    -------
    np.ndarray, shape (2, 3), float64
        ``M`` mapping an image pixel index ``(x, y)`` to the chip pixel index
        ``M @ (x, y, 1)``; usable as-is by ``cv2.warpAffine``.
    """
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"landmarks must be finite (5, 2), got shape {landmarks.shape}")
    target = np.asarray(template, np.float64) * (size / CHIP_SIZE)
    return similarity_transform(landmarks - 0.5, target, weights)


def _pyramid_levels(matrix: np.ndarray) -> int:
    """How many times dlib would halve the image before sampling (chip px per image px < 1/2)."""
    scale = float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))
    levels = 0
    while scale > 0 and scale * 2**levels < 0.5:
        levels += 1
    return levels


def warp_to_chip(image: np.ndarray, matrix: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Sample a ``size`` x ``size`` chip from ``image`` with the image->chip ``matrix`` (2, 3).

    Grey images are replicated to 3 channels. Pixels outside the image are black (as dlib).
    Returns uint8 (size, size, 3) in the channel order of ``image``.
    """
    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise ValueError(f"image must be uint8 (h, w) or (h, w, 3), got {image.dtype} {image.shape}")
    image = np.ascontiguousarray(image)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    matrix = np.asarray(matrix, np.float64)
    levels = _pyramid_levels(matrix)
    if levels:
        # Crop first so that the pyramid only smooths the region the chip needs.
        inverse = cv2.invertAffineTransform(matrix)
        corners = np.array([[0, 0, 1], [size - 1, 0, 1], [0, size - 1, 1], [size - 1, size - 1, 1]], float)
        pts = corners @ inverse.T
        margin = 2 ** (levels + 2)
        x0 = int(max(0, np.floor(pts[:, 0].min()) - margin))
        y0 = int(max(0, np.floor(pts[:, 1].min()) - margin))
        x1 = int(min(image.shape[1], np.ceil(pts[:, 0].max()) + margin + 1))
        y1 = int(min(image.shape[0], np.ceil(pts[:, 1].max()) + margin + 1))
        if x1 > x0 and y1 > y0:
            image = image[y0:y1, x0:x1]
            matrix = matrix.copy()
            matrix[:, 2] += matrix[:, :2] @ np.array([x0, y0], float)
            for _ in range(levels):
                if min(image.shape[:2]) < 2:
                    break
                image = cv2.pyrDown(image)
                matrix = matrix.copy()
                matrix[:, :2] *= 2.0  # level pixel i sits at input pixel 2i
    return resample.warp_bilinear(image, matrix, size)


ARCFACE_SIZE = 112
ARCFACE_TEMPLATE = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)
"""The 5-point template of the ArcFace family's 112x112 crops (insightface; OpenCV's SFace aligns
to the same points): image-left eye, image-right eye, nose tip, image-left and image-right mouth
corner, in chip pixels."""
ARCFACE_TEMPLATE.setflags(write=False)


def framing_transform(landmarks: np.ndarray, size: int, chip: dict | None = None) -> np.ndarray:
    """Image -> chip matrix for a model config's ``chip`` framing.

    ``chip["kind"]``: ``"dlib"`` (default: :data:`CHIP_TEMPLATE`, eye-weighted fit),
    ``"arcface"`` (:data:`ARCFACE_TEMPLATE`, equal weights), or any kind with ``"points"``: five
    ``[x, y]`` targets in a chip of side ``chip["template_size"]`` (default ``size``), same order as
    the landmarks, fitted with equal weights. The template is scaled to ``size``.
    """
    chip = chip or {}
    kind = chip.get("kind", "dlib")
    if "points" in chip:
        points = np.asarray(chip["points"], np.float64)
        if points.shape != (5, 2):
            raise ValueError(f"chip points must be 5 [x, y] pairs, got shape {points.shape}")
        base = float(chip.get("template_size", size))
    elif kind == "arcface":
        points, base = ARCFACE_TEMPLATE, float(ARCFACE_SIZE)
    elif kind == "dlib":
        return chip_transform(landmarks, size)
    else:
        raise ValueError(f"unknown chip kind {kind!r} (dlib, arcface, or give 'points')")
    landmarks = np.asarray(landmarks, np.float64)
    if landmarks.shape != (5, 2) or not np.all(np.isfinite(landmarks)):
        raise ValueError(f"landmarks must be finite (5, 2), got shape {landmarks.shape}")
    return similarity_transform(landmarks - 0.5, points * (size / base), np.ones(5))


def align(image: np.ndarray, landmarks: np.ndarray, size: int = CHIP_SIZE, chip: dict | None = None) -> np.ndarray:
    """Cut the face chip the embedder expects.

    Parameters
    ----------
    image : np.ndarray, uint8
        (h, w) grey or (h, w, 3) RGB.
    landmarks : np.ndarray, shape (5, 2)
        RetinaFace landmarks of the face in ``image`` (continuous pixel coordinates).
    size : int
        Chip side; 150 for dlib's ResNet.
    chip : dict, optional
        The model config's framing (see :func:`framing_transform`); default dlib's.

    Returns
    -------
    np.ndarray, shape (size, size, 3), uint8, RGB
    """
    return warp_to_chip(image, framing_transform(landmarks, size, chip), size)
