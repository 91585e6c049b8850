"""The compiled chip warp against the warp's definition written with numpy array operations."""

from __future__ import annotations

import numpy as np
import pytest

from implementation.resample import WARP_BITS, invert_affine, warp_bilinear


def reference_warp(image: np.ndarray, matrix: np.ndarray, size: int) -> np.ndarray:
    """The definition in ``implementation.resample``'s docstring, one array operation at a time."""
    h, w, channels = image.shape
    inv = invert_affine(matrix)
    ys, xs = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    one = 1 << WARP_BITS
    with np.errstate(invalid="ignore", over="ignore"):
        px = np.floor((inv[0, 0] * xs + inv[0, 1] * ys + inv[0, 2]) * one + 0.5).ravel()
        py = np.floor((inv[1, 0] * xs + inv[1, 1] * ys + inv[1, 2]) * one + 0.5).ravel()
    far = ~((np.abs(px) < 2.0**62) & (np.abs(py) < 2.0**62))
    sx = np.where(far, 0, px).astype(np.int64)
    sy = np.where(far, 0, py).astype(np.int64)
    x0, y0 = sx >> WARP_BITS, sy >> WARP_BITS
    fx, fy = sx & (one - 1), sy & (one - 1)
    acc = np.full((size * size, channels), 1 << (2 * WARP_BITS - 1), np.int64)
    for dx, dy, weight in (
        (0, 0, (one - fx) * (one - fy)),
        (1, 0, fx * (one - fy)),
        (0, 1, (one - fx) * fy),
        (1, 1, fx * fy),
    ):
        x, y = x0 + dx, y0 + dy
        inside = (x >= 0) & (x < w) & (y >= 0) & (y < h) & ~far
        pixels = image[np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)].astype(np.int64)
        acc += pixels * (weight * inside)[:, None]
    return (acc >> (2 * WARP_BITS)).astype(np.uint8).reshape(size, size, channels)


def _random_matrix(rng: np.random.Generator, h: int, w: int, size: int) -> np.ndarray:
    """A rotation and scale mapping a random point near the image to the chip's centre."""
    angle, scale = rng.uniform(-np.pi, np.pi), np.exp(rng.uniform(-3, 1.5))
    linear = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    centre = rng.uniform(-0.3, 1.3, 2) * np.array([w, h])
    return np.hstack([linear, (size / 2 - linear @ centre)[:, None]])


def test_compiled_warp_is_the_definition_bit_for_bit():
    rng = np.random.default_rng(7)
    black = 0
    for case in range(600):
        h, w = (int(v) for v in rng.integers(1, 90, 2))
        channels = (1, 3)[case % 2]
        image = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        size = int(rng.integers(1, 40))
        matrix = _random_matrix(rng, h, w, size)
        got = warp_bilinear(image, matrix, size)
        np.testing.assert_array_equal(got, reference_warp(image, matrix, size), err_msg=f"case {case}")
        black += not got.any()
    assert 0 < black < 300  # the cases reach inside and outside the image


@pytest.mark.parametrize(
    "matrix",
    [
        np.zeros((2, 3)),  # singular: the inverse is zero, every sample is at pixel (0, 0)
        np.array([[np.nan, 0, 0], [0, 1, 0]]),
        np.array([[1e-300, 0, 0], [0, 1e-300, 0]]),  # positions beyond int64
        np.array([[1.0, 0, -0.5], [0, 1.0, -0.5]]),  # half-pixel shift: the rounding of the sum
    ],
)
def test_degenerate_transforms_match_the_definition(matrix):
    image = np.random.default_rng(1).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_bilinear(image, matrix, 16), reference_warp(image, matrix, 16))


def test_identity_warp_copies_the_image():
    image = np.random.default_rng(2).integers(0, 256, (12, 12, 3), dtype=np.uint8)
    np.testing.assert_array_equal(warp_bilinear(image, np.eye(2, 3), 12), image)


def test_warp_rejects_other_than_uint8_planes():
    with pytest.raises(ValueError, match="uint8"):
        warp_bilinear(np.zeros((4, 4, 3), np.float32), np.eye(2, 3), 4)
