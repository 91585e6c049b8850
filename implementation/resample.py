"""The chip warp in exact integer arithmetic, shared bit for bit with the C++ library.

The Python pipeline and the C++ library (``implementation/native/src/resample.cpp``) must cut the
same chip from the same image. OpenCV's ``warpAffine`` computes in float32 with fused
multiply-adds whose grouping depends on its SIMD path and version, so the warp is defined here
instead: each output pixel's source position comes from the inverse of the affine matrix in
float64 (the same expressions in both languages, no fused multiply-add), rounded to 1/1024 pixel;
the bilinear weights are integers in units of 2**-10 per axis; source pixels outside the image
are black; the sum is rounded half up. (The letterbox resize and the pyramid step stay OpenCV's
``resize`` and ``pyrDown``: the C++ library reproduces those exactly, see the tests.)
"""

from __future__ import annotations

import numpy as np

WARP_BITS = 10


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (zeros when it is singular), as the C++ code computes it."""
    (a, b, c), (d, e, f) = np.asarray(matrix, np.float64).tolist()
    det = a * e - b * d
    det = 1.0 / det if det != 0.0 else 0.0
    a11, a22, a12, a21 = e * det, a * det, -b * det, -d * det
    return np.array([[a11, a12, -a11 * c - a12 * f], [a21, a22, -a21 * c - a22 * f]], np.float64)


def warp_bilinear(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Sample a (size, size, 3) uint8 chip from a uint8 (h, w, 3) image; ``matrix`` maps image -> chip.

    Pixel-index convention (the centre of pixel ``i`` is at ``i``); outside the image is black.
    """
    src = np.ascontiguousarray(image)
    h, w = src.shape[:2]
    inv = invert_affine(matrix)
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    one = 1 << WARP_BITS
    sx = np.floor((inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) * one + 0.5).astype(np.int64)
    sy = np.floor((inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) * one + 0.5).astype(np.int64)
    x0, y0 = sx >> WARP_BITS, sy >> WARP_BITS
    fx, fy = sx & (one - 1), sy & (one - 1)
    acc = np.zeros((size, size, src.shape[2]), np.int64)
    for dy, dx, weight in (
        (0, 0, (one - fx) * (one - fy)),
        (0, 1, fx * (one - fy)),
        (1, 0, (one - fx) * fy),
        (1, 1, fx * fy),
    ):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h)
        pixels = src[np.where(inside, y, 0), np.where(inside, x, 0)].astype(np.int64)
        acc += np.where(inside, weight, 0)[:, :, None] * pixels
    return ((acc + (1 << (2 * WARP_BITS - 1))) >> (2 * WARP_BITS)).astype(np.uint8)
