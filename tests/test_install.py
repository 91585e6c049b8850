"""A normal install: the wheel from ``python -m build``, installed into a fresh virtual environment,
runs ``frvt validate`` on the bundled set from an empty folder, with nothing from the repository.

Marked ``install`` (``pytest -m install`` runs it alone). It costs a wheel build and a fresh
environment (pip's cache makes that a couple of minutes); the compiled models under
``frvt.settings.cache_root()`` are shared with the rest of the suite, so nothing is recompiled.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from frvt import settings

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.install


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    pytest.importorskip("build")
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--wheel", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    (path,) = out.glob("frvt-*.whl")
    return path


def test_the_wheel_holds_the_code_and_the_data_it_needs(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for module in (
        "frvt/cli/validate.py",
        "frvt/compiler/compile.py",
        "frvt/perf/bench/run.py",
        "frvt/perf/bench/cpuid_cap.c",
        "frvt/perf/profile/__main__.py",
        "frvt/settings.py",
        "implementation/pipeline.py",
        "validation/score.py",
    ):
        assert module in names, module
    data = "frvt/data/"
    for path in (
        "models/retinaface_mnet025.onnx",
        "models/dlib_face_recognition_resnet_model_v1.onnx",
        "validation/enroll.txt",
        "validation/verif.txt",
        "validation/match.txt",
        "tuning/dlib_face_recognition_resnet_model_v1-broadwell/manifest.json",
        "tuning/retinaface_mnet025-broadwell/manifest.json",
    ):
        assert data + path in names, path
    listed = [
        line.split()[1]
        for line in (ROOT / "data" / "validation" / "enroll.txt").read_text().splitlines()
        if line.strip()
    ]
    assert all(f"{data}validation/{image}" in names for image in listed)


def test_frvt_validate_from_an_empty_folder_after_pip_install(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(wheel)], capture_output=True, text=True, timeout=1800
    )
    assert install.returncode == 0, install.stderr[-3000:]
    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env.update(FRVT_CACHE=str(settings.cache_root()), PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")
    where = subprocess.run(
        [str(python), "-c", "import frvt.settings as s; print(s.data_root())"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    run = subprocess.run(
        [str(venv / "bin" / "frvt"), "validate", "--no-progress", "-j", "2"],
        cwd=empty,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = json.loads((empty / "frvt-validation" / "summary.json").read_text())
    assert summary["verdict"] in ("PASS", "WARN")
    assert {c["name"]: c["status"] for c in summary["checks"]}["initialize"] == "PASS"
    # A Python implementation is validated but cannot be sent to NIST: the package says so in its name.
    assert list((empty / "frvt-validation").glob("NOT-SUBMITTABLE_python_11_*.tar.gz"))
