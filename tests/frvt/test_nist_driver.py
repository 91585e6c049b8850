"""NIST's own validation run (its unmodified driver and scripts) on our submission folder.

NIST's code is not part of this repository: set ``FRVT_NIST_TREE`` to a folder holding NIST's
``11/`` and ``common/`` (see the README) to run this test; it is skipped otherwise. The runner is
``FRVT_NIST_VALIDATE`` (default ``../shared/tools/nist_validate.sh``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from native_build import ROOT

NIST_TREE = os.environ.get("FRVT_NIST_TREE")
RUNNER = Path(os.environ.get("FRVT_NIST_VALIDATE", ROOT.parent / "shared" / "tools" / "nist_validate.sh"))


@pytest.mark.skipif(not NIST_TREE, reason="FRVT_NIST_TREE (a NIST 1:1 validation tree) is not set")
def test_nist_driver_runs_every_phase(native_submission, tmp_path):
    if not RUNNER.is_file():
        pytest.skip(f"{RUNNER} is absent")
    done = subprocess.run(
        [str(RUNNER), NIST_TREE, str(native_submission.root), str(tmp_path / "nist")],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = done.stdout.splitlines()
    assert "RESULT PASS" in lines, done.stdout
    assert not [line for line in lines if line.startswith("FAIL")], done.stdout
    tarball = next(line.split()[1] for line in lines if line.startswith("TARBALL"))
    assert tarball.endswith("libfrvt_11_frvt_001.v3.1.tar.gz")
