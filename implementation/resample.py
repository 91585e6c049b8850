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
from numba import njit

WARP_BITS = 10


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a (2, 3) affine matrix (zeros when it is singular), as the C++ code computes it."""
    (a, b, c), (d, e, f) = np.asarray(matrix, np.float64).tolist()
    det = a * e - b * d
    det = 1.0 / det if det != 0.0 else 0.0
    a11, a22, a12, a21 = e * det, a * det, -b * det, -d * det
    return np.array([[a11, a12, -a11 * c - a12 * f], [a21, a22, -a21 * c - a22 * f]], np.float64)


def warp_bilinear(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """Sample a (size, size, channels) uint8 chip from a uint8 (h, w, channels) image; ``matrix``
    maps image -> chip.

    Pixel-index convention (the centre of pixel ``i`` is at ``i``); outside the image is black.
    """
    src = np.ascontiguousarray(image)
    if src.dtype != np.uint8 or src.ndim != 3:
        raise ValueError(f"image must be uint8 (h, w, channels), got {src.dtype} {src.shape}")
    out = np.empty((size, size, src.shape[2]), np.uint8)
    _warp(src, invert_affine(matrix), out)
    return out


@njit(cache=True, nogil=True)
def _warp(src: np.ndarray, inv: np.ndarray, out: np.ndarray) -> None:
    """The definition above, one output pixel at a time (compiled; no fused multiply-add)."""
    h, w, channels = src.shape
    size = out.shape[0]
    one = 1 << WARP_BITS
    for y in range(size):
        for x in range(size):
            # the same float64 operations, in the same order, as the C++ library
            px = np.floor((inv[0, 0] * x + inv[0, 1] * y + inv[0, 2]) * one + 0.5)
            py = np.floor((inv[1, 0] * x + inv[1, 1] * y + inv[1, 2]) * one + 0.5)
            far = not (abs(px) < 2.0**62 and abs(py) < 2.0**62)  # also NaN: black
            sx, sy = (np.int64(0), np.int64(0)) if far else (np.int64(px), np.int64(py))
            x0, y0 = sx >> WARP_BITS, sy >> WARP_BITS
            if far or x0 < -1 or x0 >= w or y0 < -1 or y0 >= h:
                for c in range(channels):
                    out[y, x, c] = 0
                continue
            fx, fy = sx & (one - 1), sy & (one - 1)
            gx, gy = one - fx, one - fy
            # a neighbour outside the image is black
            in_x0, in_x1 = x0 >= 0, x0 + 1 < w
            in_y0, in_y1 = y0 >= 0, y0 + 1 < h
            for c in range(channels):
                acc = 1 << (2 * WARP_BITS - 1)
                if in_y0:
                    if in_x0:
                        acc += gx * gy * np.int64(src[y0, x0, c])
                    if in_x1:
                        acc += fx * gy * np.int64(src[y0, x0 + 1, c])
                if in_y1:
                    if in_x0:
                        acc += gx * fy * np.int64(src[y0 + 1, x0, c])
                    if in_x1:
                        acc += fx * fy * np.int64(src[y0 + 1, x0 + 1, c])
                out[y, x, c] = acc >> (2 * WARP_BITS)
