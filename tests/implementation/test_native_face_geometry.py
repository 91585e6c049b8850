"""The C++ face-geometry rule against the Python one: the same reason for every detection, the same fit."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from native_build import build_ops_library

from implementation.align import CHIP_TEMPLATE
from implementation.detect import FACE_GEOMETRY, IMPLAUSIBLE_REASONS, FaceGeometry, implausibility, template_fit

P = ctypes.c_void_p


@pytest.fixture(scope="module")
def ops(tmp_path_factory):
    library = ctypes.CDLL(str(build_ops_library(tmp_path_factory.mktemp("ops-build"))))
    library.frvt_ops_implausibility.restype = ctypes.c_int
    library.frvt_ops_template_fit.restype = ctypes.c_double
    return library


def _native(ops, box: np.ndarray, landmarks: np.ndarray, limits) -> tuple[int, float]:
    box = np.ascontiguousarray(box, np.float32)
    landmarks = np.ascontiguousarray(landmarks, np.float32)
    values = np.array([limits.box_margin, limits.min_eye_distance, limits.min_template_fit], np.float64)
    code = ops.frvt_ops_implausibility(box.ctypes.data_as(P), landmarks.ctypes.data_as(P), values.ctypes.data_as(P))
    return code, ops.frvt_ops_template_fit(landmarks.ctypes.data_as(P))


def _detections(n: int, seed: int):
    """Faces made from the template (turned, scaled, shifted, with landmark noise from none to
    wild), boxes of random proportions around them, and now and then a swapped pair of eyes, a
    box turned inside out or a non-finite value."""
    rng = np.random.default_rng(seed)
    for _ in range(n):
        turn = np.deg2rad(rng.uniform(-180, 180))
        rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
        scale = rng.uniform(0.05, 5)
        centre = rng.uniform(0, 1000, 2)
        points = (CHIP_TEMPLATE - CHIP_TEMPLATE.mean(axis=0)) @ rotation.T * scale + centre
        points += rng.normal(0, rng.choice([0, 2, 10, 40]) * scale, points.shape)
        half = np.array([rng.uniform(40, 110), rng.uniform(40, 120)]) * scale
        box = np.concatenate([centre - half, centre + half])
        kind = rng.integers(0, 10)
        if kind == 0:
            points[[0, 1]] = points[[1, 0]]
        elif kind == 1:
            box = box[[2, 1, 0, 3]]
        elif kind == 2:
            points.flat[rng.integers(0, 10)] = rng.choice([np.nan, np.inf, -np.inf])
        elif kind == 3:  # eyes pulled towards their midpoint
            middle = points[:2].mean(axis=0)
            points[:2] = middle + (points[:2] - middle) * rng.uniform(0, 0.1)
        yield box.astype(np.float32), points.astype(np.float32)


def test_cpp_gives_pythons_reason_and_fit_for_every_detection(ops):
    reasons = {None: 0, **{reason: k + 1 for k, reason in enumerate(IMPLAUSIBLE_REASONS)}}
    seen = set()
    for box, landmarks in _detections(5000, seed=0):
        code, fit = _native(ops, box, landmarks, FACE_GEOMETRY)
        assert code == reasons[implausibility(box, landmarks)], (box, landmarks)
        if np.all(np.isfinite(landmarks)):
            assert fit == template_fit(landmarks)  # bit for bit: the same operations in the same order
        seen.add(code)
    assert seen == set(range(len(IMPLAUSIBLE_REASONS) + 1))  # every branch taken on both sides


def test_cpp_takes_its_limits_from_the_caller_and_agrees_at_their_edges(ops):
    box = np.array([100.0, 100.0, 250.0, 250.0], np.float32)
    landmarks = (CHIP_TEMPLATE + 100.0).astype(np.float32)
    assert _native(ops, box, landmarks, FACE_GEOMETRY)[0] == 0
    assert _native(ops, box, landmarks, FaceGeometry(min_template_fit=1.5))[0] == 6
    assert _native(ops, box, landmarks, FaceGeometry(min_eye_distance=0.5))[0] == 5
    # a landmark exactly at the margin is inside; one float step further is outside, on both sides
    edge = landmarks.copy()
    edge[4, 0] = box[2] + np.float32(FACE_GEOMETRY.box_margin * 150.0)
    codes = []
    for x in (edge[4, 0], np.nextafter(edge[4, 0], np.float32(np.inf))):
        edge[4, 0] = x
        expected = implausibility(box, edge)
        codes.append(_native(ops, box, edge, FACE_GEOMETRY)[0])
        assert codes[-1] == (0 if expected is None else IMPLAUSIBLE_REASONS.index(expected) + 1)
    assert codes == [0, 4]
