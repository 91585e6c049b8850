"""The default implementation on real images: failure modes, eyes, matching properties."""

from __future__ import annotations

from pathlib import Path

import implausible_images
import numpy as np
import pytest

from frvt.contract import Image, ReturnCode, TemplateRole
from frvt.driver import decode_image
from implementation import FaceVerifier
from implementation import template as tpl
from implementation.detect import FaceGeometry, implausibility

ROOT = Path(__file__).resolve().parents[2]
VAL = ROOT / "data" / "validation" / "images"
MEDS = VAL / "meds"
EDGE = VAL / "edge"
E = TemplateRole.Enrollment_11


def make(fv, *paths):
    return fv.create_face_template([decode_image(p) for p in paths], E)


@pytest.fixture(scope="module")
def templates(face_verifier):
    names = {
        "S001_01": "S001/S001-01-t10_01.jpg",
        "S001_02": "S001/S001-02-t10_01.jpg",
        "S002_01": "S002/S002-01-t10_01.jpg",
        "S003_01": "S003/S003-01-t10_01.jpg",
    }
    return {key: make(face_verifier, MEDS / name) for key, name in names.items()}


def test_mugshot_gives_success_eyes_in_nist_convention(face_verifier, templates):
    r = templates["S001_01"]
    assert r.status.code == ReturnCode.Success, r.status
    assert len(r.template) == 532
    eyes = r.eyes[0]
    img = decode_image(MEDS / "S001/S001-01-t10_01.jpg")
    assert eyes.is_left_assigned and eyes.is_right_assigned
    # NIST: the left eye is the subject's left, on the image's right
    assert eyes.xleft > eyes.xright
    assert 0 <= eyes.xright < eyes.xleft < img.width and abs(eyes.yleft - eyes.yright) < 40
    # eyes lie above 60% of the mugshot's height, about 50-150 px apart at this resolution
    assert eyes.yleft < 0.6 * img.height and 50 < eyes.xleft - eyes.xright < 160


def test_genuine_scores_above_impostor_scores(face_verifier, templates):
    m = lambda a, b: face_verifier.match_templates(templates[a].template, templates[b].template)  # noqa: E731
    genuine = m("S001_01", "S001_02")
    impostors = [m("S001_01", "S002_01"), m("S001_01", "S003_01"), m("S002_01", "S003_01")]
    assert genuine.status.ok and all(i.status.ok for i in impostors)
    assert genuine.similarity > max(i.similarity for i in impostors)


def test_matching_is_symmetric_bounded_and_self_is_one(face_verifier, templates):
    ts = [t.template for t in templates.values()]
    for a in ts:
        for b in ts:
            s1 = face_verifier.match_templates(a, b)
            s2 = face_verifier.match_templates(b, a)
            assert s1.similarity == s2.similarity and 0.0 <= s1.similarity <= 1.0
    assert face_verifier.match_templates(ts[0], ts[0]).similarity == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("name", ["all_black.png", "all_white.png", "no_face.jpg"])
def test_no_face_gives_detection_error_and_a_matchable_failed_template(face_verifier, templates, name):
    r = make(face_verifier, EDGE / name)
    assert r.status.code == ReturnCode.FaceDetectionError
    assert len(r.template) > 0 and not tpl.decode(r.template).has_face
    assert not r.eyes[0].is_left_assigned
    m = face_verifier.match_templates(r.template, templates["S001_01"].template)
    assert m.similarity == -1.0 and m.status.code == ReturnCode.VerifTemplateError
    m = face_verifier.match_templates(templates["S001_01"].template, r.template)
    assert m.similarity == -1.0 and not m.status.ok


@pytest.mark.parametrize(
    "name, subject",
    [
        ("grey8_S001.png", "S001"),
        ("small_S008.jpg", "S008"),
        ("large_S006.jpg", "S006"),
        ("rot90_S013.jpg", "S013"),
        ("rot180_S015.jpg", "S015"),
    ],
)
def test_hard_images_still_make_a_template_of_the_right_person(face_verifier, name, subject):
    hard = make(face_verifier, EDGE / name)
    assert hard.status.code == ReturnCode.Success, hard.status
    if name.startswith("grey8"):
        assert decode_image(EDGE / name).depth == 8
    mate = make(face_verifier, sorted((MEDS / subject).glob("*t10_01.jpg"))[0])
    other = make(face_verifier, sorted((MEDS / ("S002" if subject != "S002" else "S003")).glob("*t10_01.jpg"))[0])
    g = face_verifier.match_templates(hard.template, mate.template).similarity
    i = face_verifier.match_templates(hard.template, other.template).similarity
    assert g > i


def test_eyes_of_rotated_image_are_mapped_back_to_original_pixels(face_verifier):
    img = decode_image(EDGE / "rot180_S015.jpg")
    r = face_verifier.create_face_template([img], E)
    e = r.eyes[0]
    assert 0 <= e.xleft < img.width and 0 <= e.yleft < img.height
    # upside down: the subject's left eye is on the image's left, and the eyes are in the lower half
    assert e.xleft < e.xright and e.yleft > img.height / 2


def test_several_images_make_one_template(face_verifier, templates):
    paths = [MEDS / "S001/S001-01-t10_01.jpg", MEDS / "S001/S001-02-t10_01.jpg", EDGE / "all_black.png"]
    r = make(face_verifier, *paths)
    assert r.status.ok and len(r.eyes) == 3 and not r.eyes[2].is_left_assigned
    t = tpl.decode(r.template)
    assert t.n_faces == 2 and np.linalg.norm(t.embedding) == pytest.approx(1.0, abs=1e-5)
    s = face_verifier.match_templates(r.template, templates["S001_01"].template).similarity
    assert s > face_verifier.match_templates(templates["S002_01"].template, templates["S001_01"].template).similarity


def test_bad_inputs_are_values_not_exceptions(face_verifier, templates):
    assert face_verifier.create_face_template([], E).status.code == ReturnCode.NumDataError
    broken = Image(100, 100, 24, b"\x00" * 10)
    r = face_verifier.create_face_template([broken], E)
    assert r.status.code == ReturnCode.ParseError and len(r.template) > 0
    good = templates["S001_01"].template
    for bad in (b"", b"garbage" * 10, good[:-1], bytes([good[0] ^ 1]) + good[1:]):
        m = face_verifier.match_templates(bad, good)
        assert m.similarity == -1.0 and m.status.code == ReturnCode.TemplateFormatError


def test_uninitialised_and_misconfigured(tmp_path):
    fv = FaceVerifier()
    r = fv.create_face_template([decode_image(MEDS / "S001/S001-01-t10_01.jpg")], E)
    assert r.status.code == ReturnCode.ConfigError and len(r.template) > 0
    assert fv.initialize(str(tmp_path)).code == ReturnCode.ConfigError


def test_stage_times_add_up(face_verifier):
    r = make(face_verifier, MEDS / "S002/S002-01-t10_01.jpg")
    assert r.status.ok
    st = face_verifier.last_stage_times
    assert set(st) == {"decode", "detect", "align", "embed", "encode"}
    assert all(v >= 0 for v in st.values()) and st["embed"] > 0 and st["detect"] > 0


def test_network_calls_are_counted_inside_their_stages(face_verifier):
    r = make(face_verifier, EDGE / "rot90_S013.jpg")  # found after turning: more than one detector call
    assert r.status.ok
    calls = face_verifier.last_model_times
    # the chip and its mirror: two calls, or one with the embedder compiled for a batch of two
    assert len(calls["detector"]) >= 2 and len(calls["embedder"]) == 3 - int(face_verifier._embedder.input_shape[0])
    st = face_verifier.last_stage_times
    assert sum(calls["detector"]) <= st["detect"] and sum(calls["embedder"]) <= st["embed"]
    dirs = face_verifier.model_dirs()
    assert set(dirs) == set(calls) and all((d / "metadata.json").is_file() for d in dirs.values())
    make(face_verifier, EDGE / "all_black.png")  # the next call starts afresh
    assert len(face_verifier.last_model_times["detector"]) == 4 and "embedder" not in face_verifier.last_model_times


def test_chip_and_mirror_in_one_call_give_the_templates_of_two_calls(face_verifier, templates, tmp_path):
    """The embedder compiled for a batch of two (the chip and its mirror image in one call) and
    for one image: the same templates to float rounding, one embedder call against two."""
    from implementation.config_dir import build_config_dir

    default_batch = int(face_verifier._embedder.input_shape[0])
    other = FaceVerifier()
    config = build_config_dir(tmp_path / "cfg", flip_in_one_call=default_batch == 1)
    assert other.initialize(str(config)).ok
    assert {default_batch, int(other._embedder.input_shape[0])} == {1, 2}
    for key, name in (("S001_01", "S001/S001-01-t10_01.jpg"), ("S002_01", "S002/S002-01-t10_01.jpg")):
        mine = make(other, MEDS / name)
        assert mine.status.ok and len(other.last_model_times["embedder"]) == 3 - int(other._embedder.input_shape[0])
        a = tpl.decode(mine.template, other._fingerprint).embedding
        b = tpl.decode(templates[key].template, face_verifier._fingerprint).embedding
        assert np.abs(a - b).max() < 1e-5, key
        assert mine.eyes == templates[key].eyes


def test_single_view_config_embeds_once_and_says_so(face_verifier, templates, tmp_path):
    from implementation.config_dir import build_config_dir

    single = FaceVerifier()
    assert single.initialize(str(build_config_dir(tmp_path / "cfg", flip_average=False))).ok
    assert "single view" in single.version and "flip-averaged" in face_verifier.version
    one = make(single, MEDS / "S001/S001-01-t10_01.jpg")
    both = templates["S001_01"]
    assert one.status.ok and one.template != both.template  # the mirror view changes the embedding ...
    a, b = tpl.decode(one.template, single._fingerprint), tpl.decode(both.template, face_verifier._fingerprint)
    assert float(a.embedding @ b.embedding) > 0.9  # ... but not the person
    assert face_verifier.match_templates(one.template, both.template).status.ok  # and they still match


# --- detections that cannot be a face -------------------------------------------------------------


def _template(fv, rgb):
    return fv.create_face_template([Image.from_array(np.ascontiguousarray(rgb))], E)


@pytest.mark.parametrize("name", sorted(implausible_images.near_black()))
def test_near_black_images_are_refused_with_a_matchable_failed_template(face_verifier, templates, name):
    r = _template(face_verifier, implausible_images.near_black()[name])
    assert r.status.code == ReturnCode.FaceDetectionError, r.status
    assert not tpl.decode(r.template).has_face and not r.eyes[0].is_left_assigned
    m = face_verifier.match_templates(r.template, templates["S001_01"].template)
    assert (m.status.code, m.similarity) == (ReturnCode.VerifTemplateError, -1.0)


@pytest.mark.parametrize("name", implausible_images.UPSIDE_DOWN)
def test_upside_down_face_is_not_templated_from_its_implausible_upright_detection(face_verifier, name):
    upright = implausible_images.mugshot(name)
    turned = implausible_images.upside_down()[f"upside_down_{name}"]
    # the situation: the detector's upright view of the turned image has only implausible faces
    detected = face_verifier._detector.detect(turned)
    assert detected and all(implausibility(f.box, f.landmarks) is not None for f in detected)
    a, b = _template(face_verifier, upright), _template(face_verifier, turned)
    assert a.status.code == b.status.code == ReturnCode.Success, b.status
    h, w = upright.shape[:2]
    ea, eb = a.eyes[0], b.eyes[0]
    eyes_upright = np.array([[ea.xleft, ea.yleft], [ea.xright, ea.yright]], float)
    eyes_back = np.array([[w - eb.xleft, h - eb.yleft], [w - eb.xright, h - eb.yright]], float)  # turned back
    eye_distance = np.linalg.norm(eyes_upright[0] - eyes_upright[1])
    # the subject's eyes on the right sides, near where the upright image has them (the
    # implausible detections put them 0.4-0.6 eye distances off, or the wrong way round)
    assert np.max(np.linalg.norm(eyes_back - eyes_upright, axis=1)) < 0.3 * eye_distance
    assert face_verifier.match_templates(a.template, b.template).similarity > 0.97


def test_implausible_bigger_face_is_passed_over_for_a_plausible_smaller_one(face_verifier, templates):
    canvas = implausible_images.upside_down_beside_upright()
    big_width = canvas.shape[1] - implausible_images.mugshot("S002-01").shape[1] // 2
    r = _template(face_verifier, canvas)
    assert r.status.code == ReturnCode.Success, r.status
    assert r.eyes[0].xleft > big_width and r.eyes[0].xright > big_width  # the small face's eyes
    s002 = face_verifier.match_templates(r.template, templates["S002_01"].template).similarity
    s003 = face_verifier.match_templates(r.template, templates["S003_01"].template).similarity
    assert s002 > 0.97 > s003


def test_when_no_detection_is_plausible_the_call_fails_with_face_detection_error(default_config_dir, templates):
    fv = FaceVerifier()
    assert fv.initialize(str(default_config_dir)).ok
    fv.geometry = FaceGeometry(min_template_fit=1.5)  # no landmarks fit better than perfectly
    r = make(fv, MEDS / "S001" / "S001-01-t10_01.jpg")
    assert r.status.code == ReturnCode.FaceDetectionError
    assert "no plausible face found" in r.status.info and "passed over" in r.status.info
    assert not tpl.decode(r.template).has_face
    multi = fv.create_face_templates(decode_image(MEDS / "S001" / "S001-01-t10_01.jpg"), E)
    assert multi.status.code == ReturnCode.FaceDetectionError and not tpl.decode(multi.templates[0]).has_face


_THREADS_SCRIPT = r"""
import os, sys
import cv2, numpy  # what a harness has loaded before the implementation (their BLAS pools included)
from frvt.contract import TemplateRole
from frvt.driver import decode_image
from implementation import FaceVerifier

threads = lambda: set(os.listdir("/proc/self/task"))
before = threads()
fv = FaceVerifier()
assert fv.initialize(sys.argv[1]).ok
fv.create_face_template([decode_image(sys.argv[2])], TemplateRole.Enrollment_11)
print(len(threads() - before))
"""


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="counts threads through /proc")
def test_the_implementation_starts_no_thread_even_when_blas_pools_are_not_capped(default_config_dir, tmp_path):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if not k.endswith("_NUM_THREADS")}  # as NIST runs it
    image = ROOT / "data" / "validation" / "images" / "meds" / "S001" / "S001-01-t10_01.jpg"
    out = subprocess.run(
        [sys.executable, "-c", _THREADS_SCRIPT, str(default_config_dir), str(image)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split()[-1] == "0"
