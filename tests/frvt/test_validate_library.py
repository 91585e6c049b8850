"""``frvt validate --library``: NIST 1:1 C++ libraries, well behaved and broken, through the whole run.

The broken ones are compiled here from ``native_libs/faulty.cpp``, one fault each; every run must
end normally (exit 1, summary written) with the check that names the fault FAILed.
"""

from __future__ import annotations

import json
import tarfile

import pytest
from native_build import ROOT, build_faulty_library
from typer.testing import CliRunner

import frvt.contract
from frvt.cli import app

pytestmark = pytest.mark.skipif(
    not hasattr(frvt.contract, "ImplementationSpec"), reason="needs the harness's worker processes (ImplementationSpec)"
)

IMAGES = ROOT / "data" / "validation" / "images"
TRIGGER = IMAGES / "edge" / "small_S008.jpg"  # the one image under 100 px wide: faulty.cpp's trigger


@pytest.fixture(scope="module")
def small_input(tmp_path_factory):
    """Three subjects (one of them the trigger image), all pairs, and one multi-person image."""
    d = tmp_path_factory.mktemp("input")
    enroll = [
        ("e_a", IMAGES / "meds/S001/S001-01-t10_01.jpg"),
        ("e_b", IMAGES / "meds/S002/S002-01-t10_01.jpg"),
        ("e_c", TRIGGER),
    ]
    verif = [
        ("v_a", IMAGES / "meds/S001/S001-02-t10_01.jpg"),
        ("v_b", IMAGES / "meds/S003/S003-01-t10_01.jpg"),
        ("v_c", IMAGES / "meds/S004/S004-01-t10_01.jpg"),
    ]
    (d / "enroll.txt").write_text("".join(f"{i} {p} FaceMugshot\n" for i, p in enroll))
    (d / "verif.txt").write_text("".join(f"{i} {p} FaceMugshot\n" for i, p in verif))
    (d / "match.txt").write_text("".join(f"{e} {v}\n" for e, _ in enroll for v, _ in verif))
    (d / "verif_multiperson.txt").write_text(f"e_a {IMAGES / 'edge' / 'two_faces_S022.jpg'} FaceMugshot\n")
    return d


def _config(tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "settings.txt").write_text("threshold 0.5\n")
    return config


def _run(library, config, input_dir, out, *extra):
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--library",
            str(library),
            "--config-dir",
            str(config),
            "--input-dir",
            str(input_dir),
            "-o",
            str(out),
            "--no-progress",
            "-j",
            "2",
            "--call-timeout",
            "4",
            *extra,
        ],
    )
    summary = json.loads((out / "summary.json").read_text())
    return result, {c["name"]: c for c in summary["checks"]}, summary


@pytest.mark.parametrize(
    ("fault", "check"),
    [
        ("segfault", "no_crashes"),
        ("hang", "no_timeouts"),
        ("throw", "no_exceptions"),
        ("thread", "single_thread"),
        ("fewer_eyes", "multiperson_templates"),
        ("old_structs", "initialize"),
    ],
)
def test_broken_library_fails_the_right_check(fault, check, small_input, tmp_path):
    library = build_faulty_library(tmp_path / "submission", fault)
    result, checks, _ = _run(library, _config(tmp_path), small_input, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert checks[check]["status"] == "FAIL", checks[check]


def test_hard_coded_config_path_fails(small_input, tmp_path):
    config = _config(tmp_path)
    library = build_faulty_library(tmp_path / "submission", "hardcoded_config", hardcoded_config=config)
    result, checks, _ = _run(library, config, small_input, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert checks["config_path"]["status"] == "FAIL", checks["config_path"]


def test_wrong_library_name_fails(small_input, tmp_path):
    library = build_faulty_library(tmp_path / "submission", "none", name="libfaulty.so")
    result, checks, _ = _run(library, _config(tmp_path), small_input, tmp_path / "out")
    assert result.exit_code == 1, result.output
    assert checks["initialize"]["status"] == "FAIL" and "libfrvt_11_<org>_<seq>.so" in checks["initialize"]["detail"]


def _package_members(summary) -> set[str]:
    with tarfile.open(summary["package"]) as tar:
        return set(tar.getnames())


def test_well_behaved_library_gives_nists_package(small_input, tmp_path):
    library = build_faulty_library(tmp_path / "submission", "none")
    result, checks, summary = _run(library, _config(tmp_path), small_input, tmp_path / "out", "--version", "faulty 1.0")
    assert not [c for c in checks.values() if c["status"] == "FAIL"], result.output
    assert summary["package"].endswith("libfrvt_11_faulty_001.v3.1.tar.gz")
    members = _package_members(summary)
    assert {
        "./config",
        "./lib",
        "./validation",
        "./doc",
        "./lib/libfrvt_11_faulty_001.so",
        "./doc/version.txt",
        "./validation/os.txt",
        "./config/settings.txt",
    } <= members


def test_default_implementation_library_passes(native_submission, tmp_path):
    """Our own library on the bundled validation set: no check FAILs, and the package is NIST's."""
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "--library",
            str(native_submission.library),
            "--config-dir",
            str(native_submission.config_dir),
            "-o",
            str(out),
            "--no-progress",
            "-j",
            "2",
        ],
    )
    summary = json.loads((out / "summary.json").read_text())
    failed = [c for c in summary["checks"] if c["status"] == "FAIL"]
    assert result.exit_code == 0 and not failed, (result.output, failed)
    assert summary["package"].endswith("libfrvt_11_frvt_001.v3.1.tar.gz")
    members = _package_members(summary)
    assert {
        "./lib/libfrvt_11_frvt_001.so",
        "./lib/libtvm_runtime.so",
        "./lib/libtvm_ffi.so",
        "./config/native.cfg",
        "./doc/version.txt",
        "./validation/os.txt",
    } <= members
