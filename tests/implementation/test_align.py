"""Chip geometry: similarity fit, template placement, rotation, scale, and dlib's framing."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from implementation.align import (
    CHIP_SIZE,
    CHIP_TEMPLATE,
    LANDMARK_WEIGHTS,
    align,
    chip_transform,
    similarity_transform,
    warp_to_chip,
)
from implementation.detect import RetinaFaceDetector, select_face

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"
MODEL = REPO / "data" / "models" / "retinaface_mnet025.onnx"
MEDS_IMAGE = DATA / "meds" / "S001" / "S001-01-t10_01.jpg"
LFW_IMAGE = DATA / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="module")
def detector(retinaface_ort):
    return RetinaFaceDetector(retinaface_ort)


def read_rgb(path: Path) -> np.ndarray:
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def similarity(angle: float, scale: float, tx: float, ty: float) -> np.ndarray:
    c, s = scale * math.cos(angle), scale * math.sin(angle)
    return np.array([[c, -s, tx], [s, c, ty]])


def apply(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_similarity_transform_recovers_a_known_transform():
    rng = np.random.default_rng(1)
    src = rng.uniform(0, 200, size=(5, 2))
    for angle in (0.0, 0.3, -2.5, math.pi):
        truth = similarity(angle, 0.7, 12.0, -40.0)
        weights = rng.uniform(0.5, 3.0, size=5)
        np.testing.assert_allclose(similarity_transform(src, apply(truth, src), weights), truth, atol=1e-9)


def test_similarity_transform_is_a_least_squares_fit_and_never_a_reflection():
    rng = np.random.default_rng(2)
    src = rng.uniform(0, 100, size=(5, 2))
    mirrored = src * [-1, 1]
    m = similarity_transform(src, mirrored)
    assert np.linalg.det(m[:, :2]) > 0  # a rotation and scale, not a flip
    residual = np.sum((apply(m, src) - mirrored) ** 2)
    # any perturbed similarity fits worse (least squares optimum)
    for _ in range(20):
        other = m + rng.normal(scale=1e-3, size=(2, 3)) * [[1, 1, 10], [1, 1, 10]]
        other[1, :2] = [-other[0, 1], other[0, 0]]  # keep it a similarity
        assert np.sum((apply(other, src) - mirrored) ** 2) >= residual - 1e-9


def test_zero_weighted_points_are_ignored():
    src = np.array([[0.0, 0.0], [10.0, 0.0], [5.0, 5.0], [3.0, 9.0], [7.0, 9.0]])
    truth = similarity(0.2, 2.0, 5.0, 5.0)
    dst = apply(truth, src)
    dst[2:] += [[50.0, -20.0], [13.0, 4.0], [-8.0, 30.0]]  # garbage on unweighted points
    np.testing.assert_allclose(similarity_transform(src, dst, [1, 1, 0, 0, 0]), truth, atol=1e-9)


@pytest.mark.parametrize(
    "src, weights",
    [
        (np.zeros((5, 2)), None),
        (np.arange(10.0).reshape(5, 2), [1, 0, 0, 0, 0]),
        (np.arange(10.0).reshape(5, 2), [1, -1, 1, 1, 1]),
    ],
)
def test_similarity_transform_rejects_degenerate_input(src, weights):
    with pytest.raises(ValueError):
        similarity_transform(src, np.arange(10.0).reshape(5, 2), weights)


def test_landmarks_on_a_scaled_rotated_template_land_on_the_template():
    truth = similarity(0.4, 2.3, 310.0, 75.0)  # chip -> image
    landmarks = apply(truth, CHIP_TEMPLATE) + 0.5  # continuous image coordinates
    m = chip_transform(landmarks)
    np.testing.assert_allclose(apply(m, landmarks - 0.5), CHIP_TEMPLATE, atol=1e-9)
    np.testing.assert_allclose(
        apply(chip_transform(landmarks, size=300), landmarks - 0.5), CHIP_TEMPLATE * 2, atol=1e-9
    )


def test_template_is_an_upright_face_in_dlib_framing():
    (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = CHIP_TEMPLATE
    assert rex < nx < lex and rmx < lmx
    assert max(rey, ley) < ny < min(rmy, lmy)
    assert abs((rex + lex) / 2 - CHIP_SIZE / 2) < 5  # centred horizontally
    assert 45 < lex - rex < 65  # padding 0.25: the eyes span about a third of the chip
    assert LANDMARK_WEIGHTS.shape == (5,) and LANDMARK_WEIGHTS[0] == LANDMARK_WEIGHTS[1]


def test_detected_landmarks_land_near_the_template(detector):
    image = read_rgb(MEDS_IMAGE)
    face = detector.detect(image)[0]
    m = chip_transform(face.landmarks)
    error = np.linalg.norm(apply(m, face.landmarks - 0.5) - CHIP_TEMPLATE, axis=1)
    assert np.all(error[:2] < 3) and np.all(error < 10)  # eyes weigh most


def test_align_returns_an_rgb_chip_and_accepts_grey(detector):
    image = read_rgb(MEDS_IMAGE)
    face = detector.detect(image)[0]
    chip = align(image, face.landmarks)
    assert chip.shape == (150, 150, 3) and chip.dtype == np.uint8
    grey = align(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), face.landmarks)
    assert grey.shape == (150, 150, 3)
    np.testing.assert_array_equal(grey[..., 0], grey[..., 2])
    expected_grey = cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY).astype(int)
    assert np.mean(np.abs(grey[..., 0].astype(int) - expected_grey)) < 3
    with pytest.raises(ValueError, match="landmarks"):
        align(image, face.landmarks[:4])


def centre_correlation(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of the central 90x90 pixels (the face) of two chips."""
    a, b = a[30:120, 30:120].astype(float), b[30:120, 30:120].astype(float)
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize("angle", [30, 90])
def test_rotated_face_is_rotated_back(detector, angle):
    image = read_rgb(LFW_IMAGE)
    face = select_face(detector.detect(image), image.shape)
    chip = align(image, face.landmarks)
    if angle == 90:
        rotated = np.ascontiguousarray(np.rot90(image))  # counter-clockwise
    else:
        rotated = cv2.warpAffine(image, cv2.getRotationMatrix2D((125, 125), angle, 1.0), (250, 250))
    turned = select_face(detector.detect(rotated), rotated.shape)
    if turned is None:
        pytest.skip(f"detector does not find the {angle}-degree rotated face")
    back = align(rotated, turned.landmarks)
    # RetinaFace never saw sideways faces in training: its landmarks are looser at 90 degrees
    assert centre_correlation(back, chip) > (0.95 if angle == 30 else 0.75)
    # the same chip left at the rotated orientation is a much worse match: the check has teeth
    assert centre_correlation(np.rot90(chip), chip) < 0.6


def test_pyramid_keeps_geometry_when_downscaling():
    image = read_rgb(MEDS_IMAGE)
    m = similarity(0.1, 0.8, -100.0, -120.0)  # scale 0.8: sampled directly
    chip = warp_to_chip(image, m).astype(float)
    big = cv2.resize(image, None, fx=4, fy=4, interpolation=cv2.INTER_CUBIC)
    m_big = m.copy()
    m_big[:, :2] /= 4  # big pixel j sits at original (j + 0.5) / 4 - 0.5 = j / 4 - 0.375
    m_big[:, 2] -= m[:, :2] @ np.array([0.375, 0.375])
    big_chip = warp_to_chip(big, m_big).astype(float)  # scale 0.2: two pyramid levels
    assert np.mean(np.abs(big_chip - chip)) < 3


def test_pyramid_removes_aliasing_of_fine_detail():
    noise = np.random.default_rng(3).integers(0, 256, size=(1600, 1600, 3), dtype=np.uint8)
    m = similarity(0.2, 0.1, 0.0, 0.0)  # 10x downscale, chip centre on the image centre
    m[:, 2] = [74.5, 74.5] - m[:, :2] @ [799.5, 799.5]
    smooth = warp_to_chip(noise, m).astype(float)
    aliased = cv2.warpAffine(noise, m, (150, 150), flags=cv2.INTER_LINEAR).astype(float)
    assert smooth.std() < 0.5 * aliased.std()  # averaging many pixels, not picking a few
    assert abs(smooth.mean() - 127.5) < 5


def test_chip_matches_dlib_framing_on_a_mugshot(detector):
    dlib = pytest.importorskip("dlib")
    models = pytest.importorskip("face_recognition_models")
    image = read_rgb(MEDS_IMAGE)
    rects = dlib.get_frontal_face_detector()(image, 0)
    assert len(rects) == 1
    shape = dlib.shape_predictor(models.pose_predictor_five_point_model_location())(image, rects[0])
    theirs = np.asarray(dlib.get_face_chip(image, shape, size=150, padding=0.25)).astype(float)
    ours = align(image, detector.detect(image)[0].landmarks).astype(float)
    assert np.corrcoef(theirs.ravel(), ours.ravel())[0, 1] > 0.9
    # dlib's eye-corner centres land in our chip near where dlib's own chip puts them: the mean
    # of dlib's 5-point template eye corners (dlib's get_face_chip_details, padding 0.25)
    template_x = np.array([0.8595674595992, 0.6460604764104, 0.1205750620789, 0.3340850613712])
    template_y = np.array([0.2134981538014, 0.2289674387677, 0.2137274526848, 0.2290642403242])
    dlib_corners = np.column_stack([template_x, template_y]) * 150 / 1.5 + 0.25 * 150 / 1.5
    dlib_eyes = np.array([dlib_corners[2:4].mean(axis=0), dlib_corners[0:2].mean(axis=0)])
    corners = np.array([[shape.part(i).x, shape.part(i).y] for i in range(4)], float)
    eyes = np.array([corners[2:4].mean(axis=0), corners[0:2].mean(axis=0)])
    mapped = apply(chip_transform(detector.detect(image)[0].landmarks), eyes)
    assert np.max(np.linalg.norm(mapped - dlib_eyes, axis=1)) < 5
