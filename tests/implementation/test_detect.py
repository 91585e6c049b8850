"""RetinaFace detection on real images, run through ONNX Runtime (TVM is checked once)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from implementation.align import CHIP_TEMPLATE, LANDMARK_WEIGHTS, similarity_transform
from implementation.detect import (
    FACE_GEOMETRY,
    IMPLAUSIBLE_REASONS,
    RETINAFACE_MNET025,
    Face,
    FaceGeometry,
    RetinaFaceDetector,
    decode,
    implausibility,
    priors,
    select_face,
    template_fit,
)

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / ".." / "shared" / "data"
MODEL = REPO / "data" / "models" / "retinaface_mnet025.onnx"
MEDS_IMAGE = DATA / "meds" / "S001" / "S001-01-t10_01.jpg"
LFW_IMAGE = DATA / "lfw" / "lfw-deepfunneled" / "Aaron_Eckhart" / "Aaron_Eckhart_0001.jpg"


@pytest.fixture(scope="module")
def forward(retinaface_ort):
    return retinaface_ort


@pytest.fixture(scope="module")
def detector(forward):
    return RetinaFaceDetector(forward)


def read_rgb(path: Path) -> np.ndarray:
    if not path.exists():
        pytest.skip(f"shared data not found: {path}")
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def assert_plausible_face(face: Face, image_shape: tuple[int, ...]) -> None:
    """Landmark order and geometry of an upright frontal face."""
    (rex, rey), (lex, ley), (nx, ny), (rmx, rmy), (lmx, lmy) = face.landmarks
    x1, y1, x2, y2 = face.box
    assert face.score > 0.9
    assert 0 <= x1 < x2 <= image_shape[1] and 0 <= y1 < y2 <= image_shape[0]
    assert rex < nx < lex and rmx < lmx  # subject's right eye is on the image left
    assert max(rey, ley) < ny < min(rmy, lmy)  # eyes above the nose tip above the mouth
    eye_distance = np.hypot(lex - rex, ley - rey)
    assert 0.25 * face.width < eye_distance < 0.7 * face.width
    assert np.all((face.landmarks >= face.box[:2]) & (face.landmarks <= face.box[2:]))


def test_priors_match_the_model_output_count():
    p = priors(RETINAFACE_MNET025)
    assert p.shape == (40 * 40 * 2 + 20 * 20 * 2 + 10 * 10 * 2, 4)
    # first prior: centre of the top-left stride-8 cell, min size 16 of a 320 input
    np.testing.assert_allclose(p[0], [4 / 320, 4 / 320, 16 / 320, 16 / 320])
    np.testing.assert_allclose(p[1], [4 / 320, 4 / 320, 32 / 320, 32 / 320])
    np.testing.assert_allclose(p[2, :2], [12 / 320, 4 / 320])  # next column, same row


def test_decode_of_zero_offsets_is_the_prior():
    p = priors(RETINAFACE_MNET025)[:3]
    boxes, points = decode(np.zeros((3, 4), np.float32), np.zeros((3, 10), np.float32), p, (0.1, 0.2))
    np.testing.assert_allclose(boxes, np.hstack([p[:, :2] - p[:, 2:] / 2, p[:, :2] + p[:, 2:] / 2]))
    np.testing.assert_allclose(points, np.repeat(p[:, None, :2], 5, axis=1))


def test_one_face_with_eyes_in_place_on_a_mugshot(detector):
    image = read_rgb(MEDS_IMAGE)
    faces = detector.detect(image)
    assert len(faces) == 1
    assert_plausible_face(faces[0], image.shape)


def test_one_face_near_the_centre_of_an_lfw_image(detector):
    image = read_rgb(LFW_IMAGE)
    face = select_face(detector.detect(image), image.shape)
    assert face is not None
    assert_plausible_face(face, image.shape)
    centre = (face.landmarks[0] + face.landmarks[1]) / 2
    assert abs(centre[0] - 125) < 20 and 90 < centre[1] < 130  # deep-funneled: eyes near the middle


@pytest.mark.parametrize("name", ["black", "white", "noise"])
def test_no_face_in_blank_or_noise_images(detector, name):
    if name == "noise":
        image = np.random.default_rng(0).integers(0, 256, size=(480, 640, 3), dtype=np.uint8)
    else:
        image = np.full((480, 640, 3), 0 if name == "black" else 255, np.uint8)
    assert detector.detect(image) == []


def test_grey_input_finds_the_same_face(detector):
    image = read_rgb(MEDS_IMAGE)
    colour = detector.detect(image)[0]
    grey = detector.detect(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY))
    assert len(grey) == 1
    assert_plausible_face(grey[0], image.shape)
    eye_distance = np.linalg.norm(colour.landmarks[1] - colour.landmarks[0])
    assert np.max(np.linalg.norm(grey[0].landmarks - colour.landmarks, axis=1)) < 0.1 * eye_distance


def test_tiny_image_is_upscaled_and_mapped_back(detector):
    image = read_rgb(LFW_IMAGE)
    face = detector.detect(image)[0]
    tiny = cv2.resize(image[60:190, 60:190], (40, 30), interpolation=cv2.INTER_AREA)
    faces = detector.detect(tiny)
    assert len(faces) >= 1
    best = faces[0]
    assert np.all(best.landmarks >= 0) and np.all(best.landmarks <= [40, 30])
    expected = (face.landmarks - [60, 60]) * [40 / 130, 30 / 130]
    assert np.max(np.linalg.norm(best.landmarks - expected, axis=1)) < 3.0


def test_huge_image_maps_back_to_original_pixels(detector):
    image = read_rgb(MEDS_IMAGE)  # 600 x 480
    face = detector.detect(image)[0]
    big = np.zeros((3000, 4000, 3), np.uint8)
    big[:, :2400] = cv2.resize(image, (2400, 3000), interpolation=cv2.INTER_LINEAR)  # x5
    faces = detector.detect(big)
    assert len(faces) == 1
    eye_distance = np.linalg.norm(face.landmarks[1] - face.landmarks[0]) * 5
    error = np.linalg.norm(faces[0].landmarks - face.landmarks * 5, axis=1)
    assert np.max(error) < 0.1 * eye_distance


def test_landmarks_follow_a_shift_of_the_face(detector):
    image = read_rgb(MEDS_IMAGE)
    face = detector.detect(image)[0]
    shifted = cv2.copyMakeBorder(image, 70, 0, 110, 0, cv2.BORDER_REPLICATE)
    moved = detector.detect(shifted)
    assert len(moved) == 1
    eye_distance = np.linalg.norm(face.landmarks[1] - face.landmarks[0])
    error = np.linalg.norm(moved[0].landmarks - (face.landmarks + [110, 70]), axis=1)
    assert np.max(error) < 0.06 * eye_distance
    np.testing.assert_allclose(moved[0].box, face.box + [110, 70, 110, 70], atol=0.05 * face.height)


def test_mirrored_image_swaps_left_and_right(detector):
    image = read_rgb(MEDS_IMAGE)
    face = detector.detect(image)[0]
    mirrored = detector.detect(np.ascontiguousarray(image[:, ::-1]))[0]
    width = image.shape[1]
    expected = np.column_stack([width - face.landmarks[:, 0], face.landmarks[:, 1]])[[1, 0, 2, 4, 3]]
    eye_distance = np.linalg.norm(face.landmarks[1] - face.landmarks[0])
    assert np.max(np.linalg.norm(mirrored.landmarks - expected, axis=1)) < 0.1 * eye_distance


def test_two_faces_side_by_side_are_both_found_and_select_face_takes_the_bigger(detector):
    image = read_rgb(LFW_IMAGE)
    small = cv2.resize(image, (125, 125), interpolation=cv2.INTER_AREA)
    canvas = np.zeros((250, 375, 3), np.uint8)
    canvas[:, :250] = image
    canvas[60:185, 250:] = small
    faces = detector.detect(canvas)
    assert len(faces) == 2
    chosen = select_face(faces, canvas.shape)
    assert chosen.box[2] < 250  # the full-size face on the left


def test_select_face_rule():
    def face(x1, y1, x2, y2, score=0.99):
        return Face(np.array([x1, y1, x2, y2], np.float32), score, np.zeros((5, 2), np.float32))

    central = face(40, 40, 60, 60, score=0.7)
    corner = face(0, 0, 22, 22)  # slightly larger area, far from the centre
    big = face(20, 20, 80, 80)
    assert select_face([], (100, 100)) is None
    assert select_face([corner, central], (100, 100)) is central
    assert select_face([central, big, corner], (100, 100, 3)) is big


@pytest.mark.parametrize(
    "bad", [np.zeros((10, 10, 3), np.float32), np.zeros((10, 10, 4), np.uint8), np.zeros((0, 10), np.uint8)]
)
def test_bad_images_are_rejected_with_their_shape(detector, bad):
    with pytest.raises(ValueError, match="image"):
        detector.detect(bad)


def test_model_of_another_input_size_is_reported(forward):
    detector = RetinaFaceDetector(forward, input_size=(256, 256))  # the file is static 320x320
    with pytest.raises(Exception, match="(?i)dimension|shape|input"):
        detector.detect(np.zeros((100, 100, 3), np.uint8))
    # a network of another size whose outputs do not match the priors is named in the error
    short = RetinaFaceDetector(lambda x: forward(np.zeros((1, 3, 320, 320), np.float32)), input_size=(256, 256))
    with pytest.raises(ValueError, match="priors"):
        short.detect(np.zeros((100, 100, 3), np.uint8))


def test_tvm_compiled_model_gives_the_same_faces(detector):
    tvm = pytest.importorskip("tvm")
    import onnx
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load(str(MODEL)), keep_params_in_input=False)
    target = tvm.target.Target({"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    vm = relax.VirtualMachine(tvm.compile(mod, target=target), tvm.cpu())

    def tvm_forward(x):
        return [o.numpy() for o in vm["main"](tvm.runtime.tensor(x))]

    image = read_rgb(MEDS_IMAGE)
    expected = detector.detect(image)
    got = RetinaFaceDetector(tvm_forward).detect(image)
    assert len(got) == len(expected) == 1
    np.testing.assert_allclose(got[0].landmarks, expected[0].landmarks, atol=1e-2)
    np.testing.assert_allclose(got[0].score, expected[0].score, atol=1e-4)


@pytest.mark.parametrize(
    "name", ["meds/S001/S001-01-t10_01.jpg", "edge/grey8_S001.png", "edge/small_S008.jpg", "edge/large_S006.jpg"]
)
def test_preprocess_equals_the_plain_recipe(name):
    """The fast path (resize before the colour conversion, per-plane mean subtraction) changes no bit."""
    from frvt.driver import decode_image

    image = decode_image(REPO / "data" / "validation" / "images" / name).to_array()
    x, factors = RetinaFaceDetector(lambda x: ()).preprocess(image)
    # the plain recipe: to BGR, letterbox with the mean as fill, subtract the mean, to NCHW
    bgr = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR if image.ndim == 2 else cv2.COLOR_RGB2BGR)
    h, w = bgr.shape[:2]
    scale = min(320 / h, 320 / w)
    nw, nh = min(320, max(1, round(w * scale))), min(320, max(1, round(h * scale)))
    canvas = np.empty((320, 320, 3), np.uint8)
    canvas[:] = (104, 117, 123)
    canvas[:nh, :nw] = cv2.resize(bgr, (nw, nh), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    expected = (canvas.astype(np.float32) - np.float32([104, 117, 123])).transpose(2, 0, 1)[None]
    assert x.shape == (1, 3, 320, 320) and x.dtype == np.float32 and x.flags.c_contiguous
    assert np.array_equal(x, expected) and factors == (nw / w, nh / h)


# --- the face-geometry rule ----------------------------------------------------------------------


def synthetic_face(angle_deg: float = 0.0, scale: float = 1.0, shift=(300.0, 200.0)) -> tuple[np.ndarray, np.ndarray]:
    """A detection made from the chip template: landmarks turned by ``angle_deg`` about their
    centre, scaled and shifted, and a box around them as RetinaFace draws one (eyes at 45% of
    its width apart)."""
    points = (CHIP_TEMPLATE - CHIP_TEMPLATE.mean(axis=0)) * scale
    turn = np.deg2rad(angle_deg)
    rotation = np.array([[np.cos(turn), -np.sin(turn)], [np.sin(turn), np.cos(turn)]])
    landmarks = points @ rotation.T + shift
    side = 150 * scale
    box = np.array([shift[0] - side / 2, shift[1] - side / 2, shift[0] + side / 2, shift[1] + side / 2])
    return box.astype(np.float32), landmarks.astype(np.float32)


@pytest.mark.parametrize("angle", [-60, -30, 0, 15, 45, 60])
@pytest.mark.parametrize("scale", [0.2, 1.0, 7.0])
def test_a_template_face_turned_and_scaled_is_plausible(angle, scale):
    box, landmarks = synthetic_face(angle, scale)
    assert implausibility(box, landmarks) is None
    assert template_fit(landmarks) == pytest.approx(1.0, abs=1e-9)


def test_each_defect_gives_its_reason():
    box, landmarks = synthetic_face()
    reasons = {}

    def check(name, b, lm):
        reasons[name] = implausibility(b, lm)

    nan = landmarks.copy()
    nan[2, 1] = np.nan
    check("nan landmark", box, nan)
    check("infinite box", np.array([box[0], box[1], np.inf, box[3]], np.float32), landmarks)
    check("empty box", box[[2, 1, 0, 3]], landmarks)
    check("swapped eyes", box, landmarks[[1, 0, 2, 3, 4]])
    low = landmarks.copy()
    low[3:, 1] = box[3] + 0.3 * (box[3] - box[1])  # mouth far below the box
    check("mouth outside", box, low)
    close = landmarks.copy()
    middle = landmarks[:2].mean(axis=0)
    close[:2] = middle + np.array([[-0.5, 0.0], [0.5, 0.0]])  # eyes 1 px apart in a 150 px box
    check("eyes close", box, close)
    upside = landmarks.copy()
    upside[2:, 1] = 2 * middle[1] - upside[2:, 1]  # nose and mouth above the eyes
    check("mouth above eyes", box, upside)
    assert reasons == {
        "nan landmark": "a non-finite coordinate",
        "infinite box": "a non-finite coordinate",
        "empty box": "an empty box",
        "swapped eyes": "eyes swapped",
        "mouth outside": "a landmark outside the box",
        "eyes close": "eyes too close for the box",
        "mouth above eyes": "no similarity transform to a face",
    }
    assert set(reasons.values()) == set(IMPLAUSIBLE_REASONS)


def test_limits_are_inclusive_at_their_values():
    box, landmarks = synthetic_face()
    width = float(box[2] - box[0])
    edge = landmarks.copy()
    edge[4, 0] = box[2] + FACE_GEOMETRY.box_margin * width  # exactly at the margin: inside
    assert implausibility(box, edge) is None
    edge[4, 0] = np.nextafter(edge[4, 0], np.float32(np.inf))
    assert implausibility(box, edge) == "a landmark outside the box"
    stricter = FaceGeometry(min_template_fit=template_fit(landmarks) + 1e-6)
    assert implausibility(box, landmarks, stricter) == "no similarity transform to a face"


def test_template_fit_is_one_minus_the_residual_of_the_aligners_transform():
    """Oracle: the SVD-based similarity transform of the aligner, its weighted residual."""
    rng = np.random.default_rng(3)
    weights = LANDMARK_WEIGHTS / LANDMARK_WEIGHTS.sum()
    spread = float(weights @ ((CHIP_TEMPLATE - weights @ CHIP_TEMPLATE) ** 2).sum(axis=1))
    fits = []
    for _ in range(200):
        box, landmarks = synthetic_face(rng.uniform(-180, 180), rng.uniform(0.3, 3))
        landmarks = landmarks + rng.normal(0, rng.uniform(0, 40), landmarks.shape).astype(np.float32)
        m = similarity_transform(landmarks, CHIP_TEMPLATE, LANDMARK_WEIGHTS)
        mapped = landmarks.astype(np.float64) @ m[:, :2].T + m[:, 2]
        residual = float(weights @ ((mapped - CHIP_TEMPLATE) ** 2).sum(axis=1))
        fit = template_fit(landmarks)
        assert fit == pytest.approx(1 - residual / spread, abs=1e-9)
        fits.append(fit)
    assert min(fits) < 0.25 < 0.9 < max(fits)  # the noise spans plausible and implausible fits
    assert template_fit(np.zeros((5, 2))) == 0.0  # all landmarks in one point: no transform
    assert template_fit(np.full((5, 2), 7.0)) < 1e-12  # the same, up to rounding of their mean


def test_a_real_face_is_plausible_and_its_mirrored_landmarks_are_not(detector):
    image = read_rgb(MEDS_IMAGE)
    face = detector.detect(image)[0]
    assert implausibility(face.box, face.landmarks) is None
    width = image.shape[1]
    box = np.array([width - face.box[2], face.box[1], width - face.box[0], face.box[3]], np.float32)
    mirrored = np.column_stack([width - face.landmarks[:, 0], face.landmarks[:, 1]])
    # the mirror image's points under the original labels: the subject's right eye now on the right
    assert implausibility(box, mirrored) == "eyes swapped"
    # relabelled as the detector labels the mirror image (image-left eye first): a face again
    assert implausibility(box, mirrored[[1, 0, 2, 4, 3]]) is None
