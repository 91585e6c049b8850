"""Resumable MetaSchedule tuning of an ONNX model for a CPU target (run it in the background).

State is the JSON database directory: every measured candidate is appended to
``database_tuning_record.json`` as soon as it is measured. ``--trials`` is the TOTAL number of
records wanted in the database, so re-running the same command after a kill (or in a later
session) continues where it stopped: it tunes ``trials - records`` more, and MetaSchedule seeds
its search with the best records already in the database instead of starting cold.

Usage (from the repository root)::

    nohup python scripts/tune.py data/models/dlib_face_recognition_resnet_model_v1.onnx \\
        --target broadwell --trials 3000 \\
        --database data/tuning/dlib_face_recognition_resnet_model_v1-broadwell \\
        >> data/tuning/dlib_face_recognition_resnet_model_v1-broadwell/tune.log 2>&1 &

    python scripts/tune.py MODEL.onnx --database NEW_DIR --conv-scheme NHWC-winograd ...
    python scripts/tune.py MODEL.onnx --database DIR --prune 8   # keep 8 best per workload
    python scripts/tune.py MODEL.onnx --database DIR --tasks     # list tasks, FLOPs, records

``--conv-scheme`` (NCHW, NHWC or NHWC-winograd convolutions, see
``frvt.compiler.passes.prepare_module``) is
recorded in the database's manifest and defaults to it, so a resumed run keeps its scheme.

``--cache-flush`` measures the selected tasks cold, as their layers run inside the model (see
``frvt.compiler.tuning.tune_module``); the manifest's ``cold_tasks`` names them. A task's
records are all warm or all cold: a run that would mix the two stops with an error, and
``--reset`` deletes the selected tasks' records first (to re-tune them in the other mode)::

    python scripts/tune.py MODEL.onnx --database DIR --op conv2d5 --cache-flush --reset ...

``--remeasure SOURCE_DB`` first times SOURCE_DB's best records of the selected tasks again in
this run's mode and adds them, so a cold search starts from the best warm schedules. A task
whose function SOURCE_DB does not have, but whose convolution it does (same input, weight and
output shapes, other operators fused around it), gets SOURCE_DB's schedules for that convolution
applied as anchor traces: a new database for a changed fusion (``layout_elementwise``) starts
from the old one's tuning::

    python scripts/tune.py data/models/retinaface_mnet025.onnx --database NEW_DIR \
        --conv-scheme NHWC-winograd --remeasure data/tuning/retinaface_mnet025-broadwell --trials 0

``--handwritten`` first times the hand-written schedules of the selected direct NHWC and
Winograd convolutions (``frvt.compiler.conv_schedules``: register-blocked micro-tiles, every
variant that fits) in this run's mode and adds them; like any record they are used only where
they measure fastest::

    python scripts/tune.py MODEL.onnx --database DIR --cache-flush --op conv2d5_ --handwritten --trials 0
    python scripts/tune.py MODEL.onnx --database DIR --cache-flush --op winograd --handwritten --trials 0

Measurements run on one thread (``TVM_NUM_THREADS=1``); MetaSchedule's per-task logs go to
``<cache root>/tuning-logs/<database-name>/`` (``$FRVT_CACHE``, default ``~/.cache/frvt``; not committed).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.settings import limit_threads_by_default  # noqa: E402

limit_threads_by_default()  # one thread, before TVM is imported

from frvt.compiler import compile as tvm_compile, databases, passes, targets, tuning  # noqa: E402


def _log(message: str) -> None:
    print(f"[{time.strftime('%Y-%m-%d %H:%M:%S')}] {message}", flush=True)


def _task_table(tasks: list, database: Path) -> list[dict]:
    """Tasks with their weight, FLOPs and best measured time in the database."""
    from tvm.s_tir import meta_schedule as ms

    db = None
    if databases.count_records(database) > 0:
        db = ms.database.JSONDatabase(work_dir=str(database), allow_missing=False)
    cold = set(databases.database_cold_tasks(database).values())
    rows = []
    for task in tasks:
        best_us = None
        n_records = 0
        if db is not None and db.has_workload(task.dispatched[0]):
            workload = db.commit_workload(task.dispatched[0])
            records = db.get_top_k(workload, 10**6)
            n_records = len(records)
            if records:
                secs = [float(s) for s in records[0].run_secs]
                best_us = sum(secs) / len(secs) * 1e6
        rows.append(
            {
                "task": task.task_name,
                "weight": int(task.weight),
                "gflops": tuning.task_flops(task) / 1e9,
                "records": n_records,
                "best_us": best_us,
                "cold": tuning.workload_hash(task.dispatched[0]) in cold,
            }
        )
    return rows


def _print_tasks(rows: list[dict]) -> None:
    total_us = 0.0
    print(f"{'task':60s} {'w':>3s} {'GFLOP':>8s} {'recs':>5s} {'best us':>10s} {'GFLOP/s':>8s}  timed")
    for row in sorted(rows, key=lambda r: -r["gflops"] * r["weight"]):
        best = row["best_us"]
        rate = row["gflops"] / (best * 1e-6) if best else float("nan")
        if best:
            total_us += best * row["weight"]
        print(
            f"{row['task'][:60]:60s} {row['weight']:3d} {row['gflops']:8.4f} {row['records']:5d} "
            f"{best if best else float('nan'):10.1f} {rate:8.1f}  {'cold' if row['cold'] else 'warm' if best else ''}"
        )
    kinds = {row["cold"] for row in rows if row["best_us"]}
    mixed = "; warm and cold times mixed" if len(kinds) == 2 else ""
    print(f"sum of best kernel times x weight: {total_us / 1e3:.2f} ms (tuned tasks only{mixed})")


def _measurement_mode(
    tasks: list, database: Path, op_names, gflops_range, cache_flush: bool, reset: bool
) -> dict[str, str]:
    """Check that this run measures each selected task as its records were (warm or cold).

    With ``reset`` the selected tasks' records are deleted first. Returns the manifest's new
    ``cold_tasks``.

    Raises
    ------
    ValueError
        A selected task has records measured the other way and ``reset`` is not given.
    """
    selected = tuning.select_tasks(tasks, op_names, gflops_range)
    cold = databases.database_cold_tasks(database)
    cold_hashes = set(cold.values())
    rows = {row["task"]: row for row in _task_table(selected, database)} if databases.count_records(database) else {}
    hashes = {task.task_name: tuning.workload_hash(task.dispatched[0]) for task in selected}
    if reset:
        dropped = databases.drop_records(database, set(hashes.values()))
        _log(f"--reset: deleted {dropped} records of {len(hashes)} tasks")
    else:
        mixed = [
            name
            for name, h in hashes.items()
            if rows.get(name, {}).get("records") and (h in cold_hashes) != cache_flush
        ]
        if mixed:
            have = "warm" if cache_flush else "cold"
            raise ValueError(
                f"{len(mixed)} selected tasks have records measured {have} ({', '.join(mixed[:4])}"
                f"{', ...' if len(mixed) > 4 else ''}); tune them {have} (drop or add --cache-flush), "
                "narrow --op, or add --reset to delete their records first"
            )
    for name, h in hashes.items():
        cold = {k: v for k, v in cold.items() if v != h}
        if cache_flush:
            cold[name] = h
    return dict(sorted(cold.items()))


def _tuning_seconds(database: Path) -> float:
    """Cumulative tuning seconds recorded in the database's manifest (0 when none)."""
    manifest_path = database / databases.MANIFEST_NAME
    return float(json.loads(manifest_path.read_text()).get("tuning_seconds", 0.0)) if manifest_path.exists() else 0.0


def _run_with_time_limit(minutes: float) -> tuple[int, bool]:
    """Run this script without ``--time-limit`` in its own process group; stop it at the deadline.

    Returns the exit status and whether the run was stopped at the deadline.
    """
    argv = sys.argv[1:]
    i = argv.index("--time-limit")
    child_argv = argv[:i] + argv[i + 2 :]
    child = subprocess.Popen([sys.executable, __file__, *child_argv], start_new_session=True)
    try:
        return child.wait(timeout=minutes * 60), False
    except subprocess.TimeoutExpired:
        _log(f"time limit of {minutes:g} min reached: stopping the tuning run")
        os.killpg(child.pid, signal.SIGTERM)
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
        return 0, True
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX model")
    parser.add_argument("--target", default="broadwell", help="broadwell | native | JSON dict")
    parser.add_argument("--database", type=Path, required=True, help="JSON database directory")
    parser.add_argument("--trials", type=int, default=2000, help="total records wanted in the database")
    parser.add_argument("--max-trials-per-task", type=int, default=None)
    parser.add_argument("--trials-per-iter", type=int, default=16)
    parser.add_argument(
        "--scheduler",
        choices=("gradient", "round-robin"),
        default="gradient",
        help="gradient commits nothing until every task had one round; round-robin commits at once",
    )
    parser.add_argument("--builder-workers", type=int, default=2)
    parser.add_argument("--search-threads", type=int, default=2)
    parser.add_argument("--population", type=int, default=128)
    parser.add_argument("--genetic-iters", type=int, default=3)
    parser.add_argument(
        "--conv-scheme",
        choices=passes.CONV_SCHEMES,
        default=None,
        help="how convolutions are computed (default: the database's, else NCHW)",
    )
    parser.add_argument(
        "--input-shape",
        type=int,
        nargs="+",
        default=None,
        help="static input shape (default: the database's, else the model's); e.g. 2 3 150 150 for a batch of two",
    )
    parser.add_argument("--op", action="append", default=None, help="tune only tasks containing this")
    parser.add_argument(
        "--gflops-range",
        type=float,
        nargs=2,
        default=None,
        metavar=("LOW", "HIGH"),
        help="tune only tasks with LOW <= GFLOPs x occurrences < HIGH",
    )
    parser.add_argument(
        "--prune",
        type=int,
        default=None,
        metavar="K",
        help="only prune the database to the K best records per workload",
    )
    parser.add_argument("--tasks", action="store_true", help="only list the tasks and their state")
    parser.add_argument(
        "--cache-flush",
        action="store_true",
        help="measure cold: flush the caches of all arguments but the input before each timed call",
    )
    parser.add_argument(
        "--reset",
        action="store_true",
        help="delete the selected tasks' records before tuning (to re-tune them warm or cold)",
    )
    parser.add_argument(
        "--remeasure",
        type=Path,
        default=None,
        metavar="SOURCE_DB",
        help="first measure SOURCE_DB's best records of the selected tasks again, in this run's "
        "mode, and add them (seeds a cold database with the best warm schedules)",
    )
    parser.add_argument("--remeasure-top", type=int, default=8, metavar="K", help="records per task for --remeasure")
    parser.add_argument(
        "--handwritten",
        action="store_true",
        help="first measure the hand-written schedules of the selected direct NHWC and Winograd "
        "convolutions (frvt.compiler.conv_schedules), in this run's mode, and add them",
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=None,
        metavar="MIN",
        help="stop after MIN minutes (records measured so far are kept)",
    )
    args = parser.parse_args()
    if args.time_limit is not None:
        start = time.time()
        status, stopped = _run_with_time_limit(args.time_limit)
        if args.database.is_dir():
            extra = {}
            if stopped:  # the killed child could not add its time to the manifest
                extra["tuning_seconds"] = round(_tuning_seconds(args.database) + time.time() - start, 1)
            databases.write_manifest(args.database, args.model, targets.parse_target(args.target), **extra)
            _log(f"{args.database}: {databases.count_records(args.database)} records")
        return status

    target = targets.parse_target(args.target)
    database: Path = args.database
    if args.prune is not None:
        before, after = databases.prune_database(database, args.prune)
        _log(f"pruned {database}: {before} -> {after} records")
        databases.write_manifest(database, args.model, target)
        return 0

    try:  # one database, one scheme (also for --tasks: the records would match nothing)
        scheme = tvm_compile.resolve_conv_scheme(args.conv_scheme, database, tune=True, report=_log)
    except ValueError as exc:
        _log(f"error: {exc}")
        return 2
    _log(
        f"model {args.model} sha256 {databases.file_sha256(args.model)[:16]} target {json.dumps(target)} "
        f"convolutions {scheme}"
    )
    settings = databases.scheme_settings(database, scheme)
    if settings:
        _log(f"scheme settings {json.dumps(settings)}")
    recorded_shape = databases.read_manifest(database).get("input_shape")
    if args.input_shape and recorded_shape and list(args.input_shape) != list(recorded_shape):
        _log(f"error: {database} was tuned at input shape {recorded_shape}, not {args.input_shape}")
        return 2
    input_shape = tuple(args.input_shape or recorded_shape or passes.onnx_input_spec(args.model)[1])
    mod = passes.prepare_module(
        passes.import_onnx(args.model, input_shape),
        target,
        scheme,
        **settings,
    )
    tasks = tuning.extract_tasks(mod, target)  # once: the listing, the checks and --remeasure share them
    if args.tasks:
        _print_tasks(_task_table(tasks, database))
        return 0

    database.mkdir(parents=True, exist_ok=True)
    gflops_range = tuple(args.gflops_range) if args.gflops_range else None
    try:
        cold_tasks = _measurement_mode(tasks, database, args.op, gflops_range, args.cache_flush, args.reset)
    except ValueError as exc:
        _log(f"error: {exc}")
        return 2
    databases.write_manifest(
        database,
        args.model,
        target,
        conv_scheme=scheme,
        cold_tasks=cold_tasks,
        input_shape=list(input_shape),
        **settings,
    )
    if args.remeasure is not None:
        selected = tuning.select_tasks(tasks, args.op, gflops_range)
        remeasured = tuning.remeasure_records(
            selected, target, args.remeasure, database, top_k=args.remeasure_top, cache_flush=args.cache_flush
        )
        _log(
            f"--remeasure: {remeasured.added} records of {args.remeasure} measured "
            f"{'cold' if args.cache_flush else 'warm'} and added ({remeasured.transferred} of them "
            f"transferred from another function around the same convolution)"
        )
        for error in remeasured.errors:
            _log(f"--remeasure: not measured: {error}")
    if args.handwritten:
        _measure_handwritten(tuning.select_tasks(tasks, args.op, gflops_range), target, database, args.cache_flush)
    records = databases.count_records(database)
    remaining = args.trials - records
    _log(f"database {database}: {records} records; {max(remaining, 0)} trials to go")
    if remaining <= 0:
        databases.write_manifest(database, args.model, target)  # the record count after the measurements
        return 0
    start = time.time()
    records = tuning.tune_module(
        mod,
        target,
        database,
        trials=remaining,
        max_trials_per_task=args.max_trials_per_task,
        trials_per_iter=args.trials_per_iter,
        builder_workers=args.builder_workers,
        search_threads=args.search_threads,
        population_size=args.population,
        genetic_iters=args.genetic_iters,
        op_names=args.op,
        scheduler=args.scheduler,
        gflops_range=gflops_range,
        cache_flush=args.cache_flush,
    )
    elapsed = time.time() - start
    databases.write_manifest(database, args.model, target, tuning_seconds=round(_tuning_seconds(database) + elapsed, 1))
    _log(f"done: {records} records, {elapsed / 60:.1f} min this run")
    _print_tasks(_task_table(tasks, database))
    return 0


def _measure_handwritten(tasks: list, target: dict, database: Path, cache_flush: bool) -> None:
    """``--handwritten``: every variant of ``frvt.compiler.conv_schedules`` for the tasks that have a
    direct NHWC or a Winograd convolution, timed like ``--remeasure`` records and added to the database."""
    import tempfile

    from frvt.compiler import conv_schedules

    with tempfile.TemporaryDirectory(prefix="frvt-handwritten-") as seed:
        written, errors = conv_schedules.write_seed_database(tasks, target, seed)
        for error in errors:
            _log(f"--handwritten: not scheduled: {error}")
        tasks = [t for t in tasks if written.get(t.task_name)]  # the others keep the search's schedules
        if not tasks:
            _log("--handwritten: no selected task has a direct NHWC or Winograd convolution with a tile that fits")
            return
        measured = tuning.remeasure_records(
            tasks, target, seed, database, top_k=max(written.values()), cache_flush=cache_flush
        )
    _log(
        f"--handwritten: {measured.added} of {sum(written.values())} hand-written schedules measured "
        f"{'cold' if cache_flush else 'warm'} and added"
    )
    for error in measured.errors:
        _log(f"--handwritten: not measured: {error}")


if __name__ == "__main__":
    sys.exit(main())
