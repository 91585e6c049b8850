"""frvt.compiler.tuning and scripts/tune.py: a real (two-candidate) MetaSchedule run on a tiny
ONNX model, cold and warm measurements, re-measuring records."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


from frvt.compiler import databases, passes, targets, tuning

REPO = Path(__file__).resolve().parents[3]


def test_tune_script_measures_cold_records_them_and_refuses_to_mix(tiny_model, tmp_path):
    """A real (two-candidate) MetaSchedule run with the caches flushed before each timed call."""
    database = tmp_path / "db"
    tune = [
        sys.executable,
        str(REPO / "scripts" / "tune.py"),
        str(tiny_model),
        "--database",
        str(database),
        "--op",
        "conv2d",
        "--scheduler",
        "round-robin",
        "--trials-per-iter",
        "2",
        "--trials",
        "2",
        "--builder-workers",
        "1",
        "--search-threads",
        "1",
        "--population",
        "8",
        "--genetic-iters",
        "1",
    ]
    run = subprocess.run([*tune, "--cache-flush"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    assert databases.count_records(database) >= 1
    cold = databases.database_cold_tasks(database)
    assert len(cold) == 1 and "conv2d" in next(iter(cold))
    # measured cold: each record holds COLD_EVALUATOR["repeat"] single-call times
    record = json.loads((database / databases.RECORD_FILE).read_text().splitlines()[0])
    assert len(record[1][1]) == tuning.COLD_EVALUATOR["repeat"]
    listing = subprocess.run([*tune, "--tasks"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert listing.returncode == 0 and " cold" in listing.stdout
    # the same task measured warm now would mix the two kinds of time: refused, naming the task
    warm = subprocess.run([*tune, "--trials", "4"], capture_output=True, text=True, cwd=REPO, timeout=600)
    assert warm.returncode == 2
    assert "measured cold" in warm.stdout + warm.stderr and next(iter(cold)) in warm.stdout + warm.stderr
    assert databases.count_records(database) >= 1
    # the cold records measured again, warm, into another database: rebuilt from their traces
    target = targets.parse_target("broadwell")
    tasks = tuning.select_tasks(
        tuning.extract_tasks(passes.prepare_module(passes.import_onnx(tiny_model), target), target),
        ["conv2d"],
    )
    again = tmp_path / "again"
    remeasured = tuning.remeasure_records(tasks, target, database, again, top_k=1, cache_flush=False)
    assert remeasured.added == 1 == databases.count_records(again), remeasured.errors
    record = json.loads((again / databases.RECORD_FILE).read_text().splitlines()[0])
    assert len(record[1][1]) == 1 and 0 < record[1][1][0] < 1  # one warm mean, in seconds
    # a candidate that cannot be measured (here: no build finishes in a millisecond) is reported, named
    failed = tuning.remeasure_records(
        tasks, target, database, tmp_path / "none", top_k=1, cache_flush=False, builder_timeout_sec=1e-3
    )
    assert failed.added == 0 and databases.count_records(tmp_path / "none") == 0
    assert len(failed.errors) == 1 and tasks[0].task_name in failed.errors[0] and "build:" in failed.errors[0]
