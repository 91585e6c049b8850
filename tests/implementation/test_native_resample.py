"""The C++ resampling against its oracles: OpenCV's resize and pyrDown, and our Python chip warp."""

from __future__ import annotations

import ctypes

import cv2
import numpy as np
import pytest
from native_build import ROOT, build_ops_library

from frvt.driver import decode_image
from implementation.resample import warp_bilinear

P = ctypes.c_void_p


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    return ctypes.CDLL(str(build_ops_library(tmp_path_factory.mktemp("ops-build"))))


def _resize(ops, name: str, image: np.ndarray, width: int, height: int) -> np.ndarray:
    image = np.ascontiguousarray(image)
    out = np.zeros((height, width, image.shape[2]), np.uint8)
    getattr(ops, name)(
        image.ctypes.data_as(P), image.shape[1], image.shape[0], image.shape[2], width, height, out.ctypes.data_as(P)
    )
    return out


def _meds_images(n: int) -> list[np.ndarray]:
    files = sorted((ROOT / "data" / "validation" / "images" / "meds").rglob("*.jpg"))[:n]
    return [decode_image(f).to_array() for f in files]


def _letterbox_size(h: int, w: int, side: int = 320) -> tuple[int, int]:
    scale = min(side / h, side / w)
    return min(side, max(1, round(w * scale))), min(side, max(1, round(h * scale)))


def test_resize_area_is_opencvs_bit_for_bit(ops):
    rng = np.random.default_rng(0)
    cases = 0
    for image in _meds_images(12):
        # the letterbox size (fractional factor), a whole-number factor and a random one
        sizes = [
            _letterbox_size(*image.shape[:2]),
            (image.shape[1] // 3, image.shape[0] // 3),
            (int(rng.integers(20, image.shape[1])), int(rng.integers(20, image.shape[0]))),
        ]
        for width, height in sizes:
            expected = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            np.testing.assert_array_equal(_resize(ops, "frvt_ops_resize_area", image, width, height), expected)
            cases += 1
    assert cases == 36


def test_resize_linear_is_opencvs_bit_for_bit(ops):
    rng = np.random.default_rng(1)
    for image in _meds_images(6):
        for _ in range(4):  # crops of random size enlarged to the letterbox, odd widths included
            h, w = int(rng.integers(16, 300)), int(rng.integers(16, 300))
            crop = np.ascontiguousarray(image[:h, :w])
            width, height = _letterbox_size(h, w)
            expected = cv2.resize(crop, (width, height), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(_resize(ops, "frvt_ops_resize_linear", crop, width, height), expected)


def test_pyr_down_is_opencvs_bit_for_bit(ops):
    rng = np.random.default_rng(2)
    for h, w in [(31, 47), (64, 64), (2, 3), (101, 80)]:
        image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        expected = cv2.pyrDown(image)
        out = np.zeros_like(expected)
        ops.frvt_ops_pyr_down(image.ctypes.data_as(P), w, h, 3, out.ctypes.data_as(P))
        np.testing.assert_array_equal(out, expected)


def test_warp_is_the_python_warp_bit_for_bit(ops):
    rng = np.random.default_rng(3)
    image = _meds_images(1)[0]
    for _ in range(20):
        angle, scale = rng.uniform(-0.6, 0.6), rng.uniform(0.2, 1.5)
        matrix = np.array(
            [
                [scale * np.cos(angle), -scale * np.sin(angle), rng.uniform(-200, 50)],
                [scale * np.sin(angle), scale * np.cos(angle), rng.uniform(-200, 50)],
            ]
        )
        expected = warp_bilinear(image, matrix, 150)
        out = np.zeros_like(expected)
        m = np.ascontiguousarray(matrix, np.float64)
        ops.frvt_ops_warp(
            image.ctypes.data_as(P), image.shape[1], image.shape[0], m.ctypes.data_as(P), 150, out.ctypes.data_as(P)
        )
        np.testing.assert_array_equal(out, expected)
    # and it is close to OpenCV's float warp it replaces (1/1024-pixel positions, rounded)
    reference = cv2.warpAffine(image, matrix, (150, 150), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    assert np.abs(reference.astype(int) - expected).max() <= 2
