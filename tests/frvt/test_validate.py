"""``frvt validate`` end to end (in process) with small real implementations, good and broken."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reference_impls
from frvt.cli import app
from frvt.records import read_image_list, read_match_log, read_template_log
from frvt.validate import validate

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "data" / "validation"
MODULE = "reference_impls"


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """A subset of the bundled set: 8 MEDS enrolments with their mates, plus every edge case."""
    out = tmp_path_factory.mktemp("lists")
    enroll = read_image_list(BUNDLED / "enroll.txt")
    verif = read_image_list(BUNDLED / "verif.txt")
    keep_e = [e for e in enroll if not e.id.startswith("e_edge")][:8] + [e for e in enroll if e.id.startswith("e_edge")]
    subjects = {e.identity for e in keep_e}
    keep_v = [v for v in verif if v.identity in subjects and "profile" not in v.id][:10] + [
        v for v in verif if v.id.startswith("v_edge")
    ]
    line = lambda x: f"{x.id} {x.path} {int(x.label)} {x.identity}\n"  # noqa: E731
    (out / "enroll.txt").write_text("".join(map(line, keep_e)))
    (out / "verif.txt").write_text("".join(map(line, keep_v)))
    (out / "match.txt").write_text("".join(f"{e.id}.template {v.id}.template\n" for e in keep_e for v in keep_v))
    # NIST's multi-image and multi-person lists, for the subjects kept
    multiface = read_image_list(BUNDLED / "enroll_multiface.txt")
    multi_line = lambda x: " ".join([x.id] + [f"{r.path} {r.label_token}" for r in x.images]) + "\n"  # noqa: E731
    (out / "enroll_multiface.txt").write_text("".join(map(multi_line, multiface[:2] + multiface[-1:])))
    ids = {e.id for e in keep_e}
    persons = [m for m in read_image_list(BUNDLED / "verif_multiperson.txt") if m.id in ids]
    (out / "verif_multiperson.txt").write_text("".join(map(multi_line, persons)))
    return out


@pytest.fixture(scope="module")
def config_dir(tmp_path_factory) -> Path:
    return reference_impls.make_config_dir(tmp_path_factory.mktemp("pixel_config"))


def run(small_set, config_dir, tmp_path, name, **kw):
    kw.setdefault("call_timeout_s", 20.0)
    return validate(f"{MODULE}:{name}", small_set, tmp_path / "out", config_dir, workers=2, progress=False, **kw)


def status_of(result, name):
    return {c.name: c.status for c in result.checks}[name]


def test_good_implementation_passes_and_writes_nist_outputs(small_set, config_dir, tmp_path):
    result = run(small_set, config_dir, tmp_path, "PixelMatcher")
    statuses = {c.name: c.status for c in result.checks}
    assert "FAIL" not in statuses.values(), [c for c in result.checks if c.status == "FAIL"]
    # edge cases fail to enrol, so codes are tallied as a warning, never silently
    assert statuses["return_codes"] == "WARN"
    out = tmp_path / "out"
    enroll_rows = read_template_log(out / "validation" / "enroll.log")
    verif_rows = read_template_log(out / "validation" / "verif.log")
    match_rows = read_match_log(out / "validation" / "match.log")
    n_e = len((small_set / "enroll.txt").read_text().splitlines())
    n_v = len((small_set / "verif.txt").read_text().splitlines())
    assert (len(enroll_rows), len(verif_rows), len(match_rows)) == (n_e, n_v, n_e * n_v)
    codes = {r.id: r.code for r in enroll_rows + verif_rows}
    assert codes["e_edge_zero_bytes"] == 5 and codes["v_edge_text"] == 5  # ParseError from the harness
    assert codes["e_edge_all_white"] == 8  # FaceDetectionError from the implementation
    assert all((out / "validation" / "templates" / f"{r.id}.template").exists() for r in enroll_rows + verif_rows)
    assert (
        (out / "validation" / "enroll.log")
        .read_text()
        .startswith(
            "id image templateSizeBytes returnCode isLeftEyeAssigned isRightEyeAssigned xleft yleft xright yright\n"
        )
    )
    summary = json.loads((out / "summary.json").read_text())
    assert summary["schema"].startswith("frvt.validate/")
    assert {"name", "status", "nist", "detail"} <= set(summary["checks"][0])
    assert summary["submittable"] is False and "Python" in summary["not_submittable_reason"]
    assert {"median_ms", "p90_ms", "p99_ms", "max_ms", "budget_ms"} <= set(summary["latency"])
    with tarfile.open(result.package) as tar:
        names = tar.getnames()
        version = tar.extractfile("./doc/version.txt").read().decode()
    # a Python implementation cannot be submitted: the name says so, and there is no ./lib
    assert result.package.name == "NOT-SUBMITTABLE_python_11_testorg_001.tar.gz"
    assert "./config/pixel.cfg" in names and "./validation/match.log" in names and "./validation/os.txt" in names
    assert not any(n.startswith("./lib") for n in names)
    assert version.strip() == "pixel-matcher 1.0"


@pytest.mark.parametrize(
    "impl, check",
    [
        ("NegativeScores", "scores_non_negative"),
        ("ExtraThreads", "single_thread"),
        ("HardcodedConfig", "config_path"),
        ("EmptyTemplate", "template_sizes"),
        ("ScoresFailedTemplates", "failed_templates_matchable"),
        ("ConstantScore", "unique_scores"),
        ("EyesOutside", "eye_coordinates"),
        ("Raises", "no_exceptions"),
        ("NoVersion", "version_txt"),
    ],
)
def test_each_broken_implementation_fails_its_check(small_set, config_dir, tmp_path, impl, check, monkeypatch):
    monkeypatch.setenv(reference_impls.HARDCODED_ENV, str(config_dir))
    result = run(small_set, config_dir, tmp_path, impl)
    assert status_of(result, check) == "FAIL", [c for c in result.checks if c.name == check]
    assert json.loads((tmp_path / "out" / "summary.json").read_text())["verdict"] == "FAIL"


@pytest.mark.parametrize(
    "impl, check, expect",
    [
        ("SegfaultOnOne", "no_crashes", "SIGSEGV"),
        ("HangOnOne", "no_timeouts", "e_S003"),
        ("ExitInMatch", "no_crashes", "status 3"),
        ("RunawayAllocation", "no_crashes", "MiB"),
        ("CExtensionRaises", "no_exceptions", "zlib.error"),
        ("AbortOnOne", "no_crashes", "SIGABRT"),
        ("NativeHardcodedConfig", "config_path", "hard-coded path"),
        ("NotImplementedTemplates", "not_implemented", "NotImplemented"),
        ("MultiPersonFewerEyes", "multiperson_templates", "2 templates, 1 EyePairs"),
    ],
)
def test_gallery_of_broken_implementations(small_set, config_dir, tmp_path, impl, check, expect, monkeypatch):
    """Each ends the run normally, with a complete summary, its check FAILing and the input named;
    the config folder is back in place."""
    monkeypatch.setenv(reference_impls.HARDCODED_ENV, str(config_dir))
    result = run(small_set, config_dir, tmp_path, impl, call_timeout_s=3.0, memory_limit_mib=400)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    checks = {c["name"]: c for c in summary["checks"]}
    assert checks[check]["status"] == "FAIL", checks[check]
    assert expect in checks[check]["detail"], checks[check]["detail"]
    assert summary["verdict"] == "FAIL" and "latency" in summary and len(checks) >= 19
    assert (config_dir / reference_impls.CONFIG_NAME).exists()
    assert not list(config_dir.parent.glob(f".{config_dir.name}.frvt-moved-*"))
    if check in ("no_crashes", "no_timeouts"):
        # the lost call has its row, the worker was replaced and the rest of the run went on
        assert (tmp_path / "out" / "validation" / "match.log").exists()
        assert sum(p["worker_restarts"] for p in summary["phases"].values()) >= 1
    nist = {
        "no_crashes": "fatal",
        "no_timeouts": "not checked",
        "no_exceptions": "fatal",
        "config_path": "fatal",
        "not_implemented": "fatal",
        "multiperson_templates": "fatal",
    }[check]
    assert checks[check]["nist"] == nist
    assert result.summary["nist_fatal"] == ([] if nist != "fatal" else result.summary["nist_fatal"])


def test_latency_budget_fails_when_exceeded(small_set, config_dir, tmp_path):
    result = run(small_set, config_dir, tmp_path, "PixelMatcher", budget_ms=1e-6)
    assert status_of(result, "latency") == "FAIL"


def test_cli_exit_codes(small_set, config_dir, tmp_path, monkeypatch):
    runner = CliRunner()
    ok = runner.invoke(
        app,
        [
            "validate",
            "-i",
            f"{MODULE}:PixelMatcher",
            "--input-dir",
            str(small_set),
            "-o",
            str(tmp_path / "a"),
            "--config-dir",
            str(config_dir),
            "-j",
            "2",
            "--no-progress",
        ],
    )
    assert ok.exit_code == 0, ok.output
    assert "verdict:" in ok.output and "single_thread" in ok.output
    bad = runner.invoke(
        app,
        [
            "validate",
            "-i",
            f"{MODULE}:ConstantScore",
            "--input-dir",
            str(small_set),
            "-o",
            str(tmp_path / "b"),
            "--config-dir",
            str(config_dir),
            "-j",
            "2",
            "--no-progress",
        ],
    )
    assert bad.exit_code == 1
    assert "unique_scores" in bad.output and "FAIL" in bad.output


def test_malformed_list_line_stops_before_any_work(small_set, config_dir, tmp_path):
    broken = tmp_path / "lists"
    broken.mkdir()
    for name in ("enroll.txt", "verif.txt", "match.txt"):
        (broken / name).write_text((small_set / name).read_text())
    lines = (broken / "verif.txt").read_text().splitlines()
    lines[2] = "v_only_two_fields somewhere.jpg"
    (broken / "verif.txt").write_text("\n".join(lines) + "\n")
    result = CliRunner().invoke(
        app,
        [
            "validate",
            "-i",
            f"{MODULE}:PixelMatcher",
            "--input-dir",
            str(broken),
            "-o",
            str(tmp_path / "out"),
            "--config-dir",
            str(config_dir),
            "--no-progress",
        ],
    )
    assert result.exit_code == 2
    assert "verif.txt:3" in result.output
    assert not (tmp_path / "out").exists()


def test_unknown_template_in_match_list_is_an_error(small_set, tmp_path):
    broken = tmp_path / "lists"
    broken.mkdir()
    for name in ("enroll.txt", "verif.txt"):
        (broken / name).write_text((small_set / name).read_text())
    (broken / "match.txt").write_text("e_nobody v_edge_text\n")
    result = CliRunner().invoke(
        app, ["validate", "-i", f"{MODULE}:PixelMatcher", "--input-dir", str(broken), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "match.txt:1" in result.output and "e_nobody" in result.output


def test_unloadable_implementation_is_a_clear_error(small_set, tmp_path):
    result = CliRunner().invoke(
        app, ["validate", "-i", "no_such_module:Thing", "--input-dir", str(small_set), "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2 and "no_such_module" in result.output
