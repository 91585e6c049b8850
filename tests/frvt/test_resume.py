"""A real ``frvt validate`` killed with SIGKILL mid-phase, then ``--resume``.

The whole process tree (the harness and its workers) is killed the way an out-of-memory killer or a
lost machine would, at a point inside a phase; ``--resume`` must put the moved config folder back,
say so, finish the run, and leave the same logs, templates and checks as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import reference_impls

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "data" / "validation"
IMPL = "reference_impls:SlowPixelMatcher"  # 30 ms per template: time for the kill to land mid-phase


def _command(out: Path, config: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "from frvt.cli import app; app()",
        "validate",
        "-i",
        IMPL,
        "--input-dir",
        str(BUNDLED),
        "-o",
        str(out),
        "--config-dir",
        str(config),
        "-j",
        "2",
        "--no-progress",
        *extra,
    ]


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(reference_impls.__file__).parent), env.get("PYTHONPATH", "")])
    return env


def _run(out: Path, config: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        _command(out, config, *extra), env=_env(), capture_output=True, text=True, timeout=600, check=False
    )


def _outputs(out: Path) -> dict[str, bytes]:
    """Everything NIST reads (logs, templates, OS file) and our exact-score logs, by relative path."""
    files = sorted(p for sub in ("validation", "extra") for p in (out / sub).rglob("*") if p.is_file())
    return {str(p.relative_to(out)): p.read_bytes() for p in files}


def _checks(out: Path) -> dict[str, str]:
    summary = json.loads((out / "summary.json").read_text())
    return {c["name"]: c["status"] for c in summary["checks"]} | {"verdict": summary["verdict"]}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> Path:
    base = tmp_path_factory.mktemp("uninterrupted")
    config = reference_impls.make_config_dir(base / "config")
    done = _run(base / "out", config)
    assert done.returncode in (0, 1), done.stderr
    return base / "out"


@pytest.mark.parametrize(("journal", "rows"), [("enroll", 12), ("match", 400)])
def test_sigkill_mid_phase_then_resume_equals_an_uninterrupted_run(uninterrupted, tmp_path, journal, rows):
    config = reference_impls.make_config_dir(tmp_path / "config")
    before = {p.name: p.read_bytes() for p in config.iterdir()}
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _command(out, config),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the kill takes the workers too
    )
    path = out / ".run" / f"{journal}.jsonl"
    deadline = time.monotonic() + 300
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if path.exists() and path.read_bytes().count(b"\n") >= rows:
                break
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before the kill point"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert not (out / "summary.json").exists()
    assert not config.exists(), "the config folder was not moved away during the run"

    resumed = _run(out, config, "--resume")
    assert resumed.returncode in (0, 1), resumed.stderr
    assert "restored the config folder" in resumed.stderr + resumed.stdout
    assert {p.name: p.read_bytes() for p in config.iterdir()} == before
    assert "taken from the journal" in resumed.stderr + resumed.stdout

    got, want = _outputs(out), _outputs(uninterrupted)
    assert got.keys() == want.keys()
    assert [name for name in want if got[name] != want[name]] == []
    assert _checks(out) == _checks(uninterrupted)


def test_next_run_restores_a_config_folder_left_moved(tmp_path):
    """Without --resume too: the next run into the same output folder puts the config folder back."""
    config = reference_impls.make_config_dir(tmp_path / "config")
    out = tmp_path / "out"
    proc = subprocess.Popen(
        _command(out, config), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    path = out / ".run" / "enroll_single.jsonl"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not path.exists():
        time.sleep(0.005)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert not config.exists()
    again = _run(out, config)
    assert "restored the config folder" in again.stderr + again.stdout
    assert (config / reference_impls.CONFIG_NAME).read_text() == "size=24\n"
    assert again.returncode in (0, 1), again.stderr
