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

import cv2
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
    h, w, channels = src.shape
    inv = invert_affine(matrix)
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    one = 1 << WARP_BITS
    sx = np.floor((inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) * one + 0.5).astype(np.int64).ravel()
    sy = np.floor((inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) * one + 0.5).astype(np.int64).ravel()
    x0, y0 = sx >> WARP_BITS, sy >> WARP_BITS
    fx, fy = (sx & (one - 1)).astype(np.int32), (sy & (one - 1)).astype(np.int32)
    # Sample from the image with a one-pixel black border: a position whose top-left neighbour is
    # in the border or the image reads its four neighbours there (black outside); one further out
    # has all four outside and gets zero weight.
    reach = (x0 >= -1) & (x0 < w) & (y0 >= -1) & (y0 < h)
    # Each pixel as one uint32 (RGBA), bordered by one black pixel: a neighbour is one 1-D gather.
    rgba = cv2.cvtColor(src, cv2.COLOR_GRAY2RGBA if channels == 1 else cv2.COLOR_RGB2RGBA)
    packed = cv2.copyMakeBorder(rgba, 1, 1, 1, 1, cv2.BORDER_CONSTANT, value=0).view(np.uint32).ravel()
    top_left = np.where(reach, (np.clip(y0, -1, h - 1) + 1) * (w + 2) + np.clip(x0, -1, w - 1) + 1, 0)
    gx, gy = one - fx, one - fy
    reach = reach.astype(np.int32)
    # Every product and sum fits in int32: four weights sum to 2**20, times 255, plus 2**19.
    acc = np.full((size * size, 4), 1 << (2 * WARP_BITS - 1), np.int32)
    for offset, weight in ((0, gx * gy), (1, fx * gy), (w + 2, gx * fy), (w + 3, fx * fy)):
        pixels = packed.take(top_left + offset).view(np.uint8).reshape(-1, 4).astype(np.int32)
        pixels *= (weight * reach)[:, None]
        acc += pixels
    acc >>= 2 * WARP_BITS
    return acc[:, :channels].astype(np.uint8).reshape(size, size, channels)
