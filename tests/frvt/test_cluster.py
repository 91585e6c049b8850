"""An existing Dask cluster (`dask scheduler` and two `dask worker` processes) behind --scheduler."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from scale_fixtures import make_image_folder
from typer.testing import CliRunner

from frvt.cli import app
from frvt.enroll import folder_entries
from frvt.settings import SINGLE_THREAD_ENV
from frvt.store import read_store_info, read_templates

ROOT = Path(__file__).resolve().parents[2]
PROVENANCE = {"source", "created_by", "systems", "plots", "label"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_workers(address: str, n: int, procs: list, timeout: float = 60.0) -> None:
    from distributed import Client

    deadline = time.monotonic() + timeout
    while True:
        dead = [p.args for p in procs if p.poll() is not None]
        if dead:
            raise RuntimeError(f"a cluster process exited: {dead}")
        try:
            with Client(address, timeout=5) as client:
                client.wait_for_workers(n, timeout=max(1.0, deadline - time.monotonic()))
                return
        except (OSError, TimeoutError):
            if time.monotonic() > deadline:
                raise


@contextlib.contextmanager
def dask_cluster(workers: int, log_dir: Path):
    """``dask scheduler`` and ``workers`` single-threaded ``dask worker`` processes on 127.0.0.1,
    all stopped on exit (each in its own process group), whatever happens inside."""
    dask = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")
    if dask is None:
        pytest.skip("the dask command line (distributed) is not installed")
    port = _free_port()
    address = f"tcp://127.0.0.1:{port}"
    env = dict(os.environ, **SINGLE_THREAD_ENV)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    commands = [[dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]]
    commands += [
        [dask, "worker", address, "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--name", f"w{k}"]
        for k in range(workers)
    ]
    procs: list[subprocess.Popen] = []
    try:
        for k, cmd in enumerate(commands):
            log = open(log_dir / f"dask-{k}.log", "wb")  # noqa: SIM115 - closed with the process below
            procs.append(subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=log, start_new_session=True))
            log.close()
            if k == 0:
                time.sleep(0.5)
        _wait_for_workers(address, workers, procs)
        yield address
    finally:
        for p in reversed(procs):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
        for p in reversed(procs):
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(p.pid, signal.SIGKILL)
                p.wait()


def _metrics(out: Path) -> dict:
    m = json.loads((out / "metrics.json").read_text())
    return {k: v for k, v in m.items() if k not in PROVENANCE}, [
        {k: v for k, v in s.items() if k not in PROVENANCE} for s in m["systems"]
    ]


def test_enroll_and_score_on_an_existing_cluster_equal_a_single_process(
    shared_data, default_config_dir, face_verifier, tmp_path
):
    from frvt.contract import TemplateRole
    from frvt.driver import decode_image

    folder = make_image_folder(shared_data / "lfw", tmp_path / "images", per_person=3)
    store = tmp_path / "t.h5"
    runner = CliRunner()
    with dask_cluster(2, tmp_path) as address:
        r = runner.invoke(
            app,
            ["enroll", str(folder), str(store), "--config-dir", str(default_config_dir), "--scheduler", address]
            + ["--batch", "4", "--no-progress"],
        )
        assert r.exit_code == 0, r.output
        assert "2 workers" in r.output
        r = runner.invoke(
            app,
            ["score", "--all-vs-all", str(store), "--scheduler", address, "--block", "6"]
            + ["--bootstrap", "50", "--no-plots", "-o", str(tmp_path / "cluster")],
        )
        assert r.exit_code == 0, r.output

    info = read_store_info(store)
    templates = read_templates(store, 0, info.n)
    n = len(folder_entries(folder))
    assert info.complete and info.n == n
    for k in range(info.n):  # every template is the implementation's own, called in this process
        if info.codes[k] == 0:
            image = decode_image(folder / info.images[k])
            made = face_verifier.create_face_template([image], TemplateRole.Enrollment_11).template
            assert made == templates[k], info.ids[k]
    assert (info.codes != 0).sum() == 1  # the unreadable image

    r = runner.invoke(
        app,
        ["score", "--all-vs-all", str(store), "--workers", "0", "--block", "2048"]
        + ["--bootstrap", "50", "--no-plots", "-o", str(tmp_path / "single")],
    )
    assert r.exit_code == 0, r.output
    cluster, single = _metrics(tmp_path / "cluster"), _metrics(tmp_path / "single")
    assert cluster[0]["n_impostor"] == n * (n - 1) // 2 - cluster[0]["n_genuine"]
    assert cluster == single  # every number, floats compared exactly
