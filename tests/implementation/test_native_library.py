"""The default implementation as a C++ NIST library: the folder, the same templates as Python, one thread."""

from __future__ import annotations

import itertools
import shutil
from pathlib import Path

import implausible_images
import numpy as np
import pytest
from native_build import ROOT, run_native

from frvt.contract import ReturnCode, TemplateRole
from frvt.driver import DecodeError, decode_image
from implementation import template as tpl

IMAGES = ROOT / "data" / "validation" / "images"


def _validation_images() -> list:
    files = sorted(IMAGES.glob("meds/*/*.jpg")) + sorted(IMAGES.glob("edge/*"))
    usable = []
    for f in files:
        try:
            decode_image(f)
        except DecodeError:  # the corrupt edge cases: the driver reports them before any call
            continue
        usable.append(f)
    return usable


@pytest.fixture(scope="module")
def relocated(native_submission, tmp_path_factory):
    """The submission folder copied elsewhere, as a submitter uploads it."""
    target = tmp_path_factory.mktemp("relocated") / "submission"
    shutil.copytree(native_submission.root, target)
    return target


@pytest.fixture(scope="module")
def native_run(relocated, tmp_path_factory):
    library = next((relocated / "lib").glob("libfrvt_11_*.so"))
    return run_native(
        library, relocated / "config", _validation_images(), tmp_path_factory.mktemp("native") / "run.pkl"
    )


def test_submission_folder_has_what_nist_asks_for(native_submission):
    root = native_submission.root
    assert sorted(p.name for p in (root / "lib").iterdir()) == [
        "libfrvt_11_frvt_001.so",
        "libtvm_ffi.so",
        "libtvm_runtime.so",
    ]
    assert (root / "doc" / "version.txt").read_text().strip()
    assert (root / "config" / "native.cfg").is_file()
    assert (root / "config" / "detector" / "model.so").is_file() and (
        root / "config" / "embedder" / "model.so"
    ).is_file()
    assert not list((root / "config").rglob("*.onnx"))


def test_relocated_library_loads_only_its_own_runtime(native_run, relocated):
    code, info, _ = native_run["init"]
    assert code == ReturnCode.Success, info
    loaded = {line.split()[-1] for line in native_run["maps"].splitlines() if ".so" in line.split()[-1]}
    tvm = sorted(p for p in loaded if "libtvm" in p)
    assert tvm == sorted(str(relocated / "lib" / name) for name in ("libtvm_ffi.so", "libtvm_runtime.so"))
    assert not any("site-packages/tvm" in p for p in loaded)


def test_same_templates_as_python(native_run, face_verifier):
    native = native_run["templates"]
    embeddings = {}
    for f, runs in native.items():
        python = face_verifier.create_face_template([decode_image(f)], TemplateRole.Enrollment_11)
        code, template, eyes = runs[0]
        assert code == int(python.status.code), f
        assert eyes == [tuple(vars(e).values()) for e in python.eyes], f
        assert runs[1][1] == template, f"{f}: two calls gave different templates"
        mine, theirs = tpl.decode(template), tpl.decode(python.template)
        assert mine.has_face == theirs.has_face
        if mine.has_face:
            embeddings[f] = (mine.embedding.astype(np.float64), theirs.embedding.astype(np.float64))
    assert len(embeddings) >= 110
    worst = 0.0
    for (a, b), (c, d) in itertools.combinations(embeddings.values(), 2):
        worst = max(worst, abs(tpl.similarity(a, c) - tpl.similarity(b, d)))
    assert worst < 1e-4
    failures = {Path(f).name for f, runs in native.items() if runs[0][0] != ReturnCode.Success}
    assert failures == {"all_black.png", "all_white.png", "no_face.jpg"}


def test_matching_as_python(native_run, face_verifier):
    first = next(iter(native_run["templates"].values()))[0][1]
    for f, (code, score) in native_run["matches"].items():
        template = native_run["templates"][f][0][1]
        expected = face_verifier.match_templates(template, first)
        assert code == int(expected.status.code), f
        assert score == expected.similarity  # the same float32 value
        if not tpl.decode(template).has_face:
            assert (code, score) == (ReturnCode.VerifTemplateError, -1.0)


def test_multi_person_form(native_run):
    multi = {Path(f).name: value for f, value in native_run["multi"].items()}
    code, templates, eyes = multi["two_faces_S022.jpg"]
    assert code == ReturnCode.Success and len(templates) >= 2 and len(eyes) == len(templates)
    assert all(tpl.decode(t).has_face for t in templates)
    code, templates, eyes = multi["no_face.jpg"]
    assert (code, len(templates), len(eyes)) == (ReturnCode.FaceDetectionError, 1, 1)
    assert not tpl.decode(templates[0]).has_face


def test_creates_no_threads(native_run):
    before, after, after_last_call = native_run["threads"]
    assert before == after == after_last_call


@pytest.fixture(scope="module")
def implausible_run(relocated, tmp_path_factory):
    """The C++ library on the generated images whose detections cannot all be faces."""
    folder = tmp_path_factory.mktemp("implausible")
    paths = implausible_images.write_pngs(folder / "images")
    library = next((relocated / "lib").glob("libfrvt_11_*.so"))
    return paths, run_native(library, relocated / "config", list(paths.values()), folder / "run.pkl")


def test_implausible_detections_are_passed_over_or_refused_as_in_python(implausible_run, face_verifier):
    paths, run = implausible_run
    codes = {}
    for name, path in paths.items():
        python = face_verifier.create_face_template([decode_image(path)], TemplateRole.Enrollment_11)
        code, template, eyes = run["templates"][str(path)][0]
        assert code == int(python.status.code), name
        assert eyes == [tuple(vars(e).values()) for e in python.eyes], name
        mine, theirs = tpl.decode(template), tpl.decode(python.template)
        assert mine.has_face == theirs.has_face, name
        if mine.has_face:
            assert tpl.similarity(mine.embedding, theirs.embedding) > 1 - 1e-5, name
        codes[name] = code
    assert {n for n, c in codes.items() if c == ReturnCode.FaceDetectionError} == {
        "near_black_constant",
        "near_black_noise",
        "near_black_mugshot",
    }
    assert all(c == ReturnCode.Success for n, c in codes.items() if n.startswith("upside_down"))


def test_library_reads_the_face_geometry_limits_from_its_config(relocated, tmp_path):
    config = tmp_path / "config"
    shutil.copytree(relocated / "config", config)
    settings = (config / "native.cfg").read_text()
    assert "face_min_template_fit 0.25\n" in settings
    (config / "native.cfg").write_text(settings.replace("face_min_template_fit 0.25", "face_min_template_fit 1.5"))
    library = next((relocated / "lib").glob("libfrvt_11_*.so"))
    mugshot = IMAGES / "meds" / "S001" / "S001-01-t10_01.jpg"
    run = run_native(library, config, [mugshot], tmp_path / "strict.pkl")
    assert run["templates"][str(mugshot)][0][0] == ReturnCode.FaceDetectionError  # no landmarks fit that well
    assert run["multi"][str(mugshot)][0] == ReturnCode.FaceDetectionError
    (config / "native.cfg").write_text(
        "".join(line + "\n" for line in settings.splitlines() if not line.startswith("face_min_template_fit"))
    )
    run = run_native(library, config, [mugshot], tmp_path / "missing.pkl")
    code, info, _ = run["init"]
    assert code == ReturnCode.ConfigError and "face_min_template_fit" in info


def test_embedder_batch_of_one_or_two_gives_the_same_templates(face_verifier, tmp_path):
    """The library built from the config with the other embedder batch than the default's (the
    chip and its mirror image in one call, or in two) makes the same templates as Python's default."""
    from native_build import build_submission_for_tests

    from implementation.config_dir import build_config_dir

    default_batch = int(face_verifier._embedder.input_shape[0])
    config = build_config_dir(tmp_path / "cfg", flip_in_one_call=default_batch == 1)
    submission = build_submission_for_tests(tmp_path / "submission", config)
    expected_shape = "embedder_shape " + ("1" if default_batch == 2 else "2") + " 3 150 150\n"
    assert expected_shape in (submission.root / "config" / "native.cfg").read_text()
    library = next((submission.root / "lib").glob("libfrvt_11_*.so"))
    images = [IMAGES / "meds" / "S001" / "S001-01-t10_01.jpg", IMAGES / "meds" / "S002" / "S002-01-t10_01.jpg"]
    run = run_native(library, submission.root / "config", images, tmp_path / "run.pkl")
    assert run["init"][0] == ReturnCode.Success, run["init"]
    for f in images:
        python = face_verifier.create_face_template([decode_image(f)], TemplateRole.Enrollment_11)
        code, template, _ = run["templates"][str(f)][0]
        assert code == ReturnCode.Success == python.status.code, f
        mine, theirs = tpl.decode(template).embedding, tpl.decode(python.template).embedding
        assert np.abs(mine.astype(np.float64) - theirs).max() < 1e-4, f
