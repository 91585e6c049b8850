"""MetaSchedule tuning on one thread: the tasks of a prepared module, tuning runs appending to a
database, and re-measuring a database's records (warm -> cold, or onto re-fused functions).
"""

from __future__ import annotations

import functools
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from frvt.compiler.databases import count_records, snapshot_database
from frvt.settings import cache_root, single_thread_environment


def extract_tasks(mod, target: dict) -> list:
    """MetaSchedule tasks (one per distinct fused TIR function) of a prepared module."""
    import tvm
    from tvm.s_tir.meta_schedule.relax_integration import (
        extract_tasks as ms_extract_tasks,
    )

    return ms_extract_tasks(mod, tvm.target.Target(target))


def select_tasks(
    tasks: list, op_names: list[str] | None = None, gflops_range: tuple[float, float] | None = None
) -> list:
    """The tasks whose name contains one of ``op_names`` and whose GFLOPs per model call
    (FLOPs x occurrences) is in ``[low, high)`` (each filter only when given)."""
    if op_names:
        tasks = [t for t in tasks if any(name in t.task_name for name in op_names)]
    if gflops_range is not None:
        low, high = gflops_range
        tasks = [t for t in tasks if low <= task_flops(t) * int(t.weight) / 1e9 < high]
    return tasks


def task_flops(task) -> float:
    """Floating-point operations of one call of a task's TIR function."""
    from tvm.s_tir.analysis import estimate_tir_flops

    return float(estimate_tir_flops(task.dispatched[0]))


#: MetaSchedule timing for cold measurements (``tune_module(cache_flush=True)``): the flush runs
#: before each repeat, so each of the 10 timed runs is a single call right after a flush.
COLD_EVALUATOR = {"number": 1, "repeat": 10, "min_repeat_ms": 0, "enable_cpu_cache_flush": True}


def workload_hash(func_mod) -> str:
    """The structural hash a JSON database stores for a task's workload (first field of its line)."""
    from tvm.s_tir import meta_schedule as ms

    return str(ms.database.Workload(func_mod).as_json()[0])


def _runner_initializer() -> None:
    """Runs in each measurement worker: one TVM thread."""
    import tvm

    tvm.get_global_func("runtime.config_threadpool")(1, 1)


def _local_runner(cache_flush: bool):
    """MetaSchedule's measuring runner: one thread, warm (its default timing) or cold."""
    from tvm.s_tir import meta_schedule as ms

    return ms.runner.LocalRunner(
        timeout_sec=60,
        initializer=_runner_initializer,
        evaluator_config=ms.runner.EvaluatorConfig(**COLD_EVALUATOR) if cache_flush else None,
    )


def tune_module(
    mod,
    target: dict,
    database: str | Path,
    *,
    trials: int,
    max_trials_per_task: int | None = None,
    trials_per_iter: int = 64,
    builder_workers: int = 1,
    builder_timeout_sec: float = 120.0,
    op_names: list[str] | None = None,
    seed: int | None = None,
    log_dir: str | Path | None = None,
    search_threads: int = 2,
    population_size: int = 128,
    genetic_iters: int = 3,
    gflops_range: tuple[float, float] | None = None,
    scheduler: str = "gradient",
    cache_flush: bool = False,
) -> int:
    """Run MetaSchedule on a prepared module, appending records to a JSON database.

    Measurements run in a worker process on ONE thread (``TVM_NUM_THREADS=1`` and the thread
    pool configured to one worker), with MetaSchedule's default timing (mean of 3 runs, each
    repeated for at least 100 ms: warm caches), or with ``cache_flush`` cold (see
    :data:`COLD_EVALUATOR`). Records are committed to ``database`` as their batch is
    joined (see ``scheduler``); a new run on the same database seeds its search with the best
    records already there and does not re-measure them.

    Parameters
    ----------
    mod : IRModule
        Output of :func:`~frvt.compiler.passes.prepare_module`.
    target : dict
        Target dict (``parse_target``).
    database : path
        JSON database directory; created when missing, appended to when present.
    trials : int
        New measured candidates in this call, over all tasks (MetaSchedule's global budget).
    max_trials_per_task : int, optional
        Cap per task in this call (default: ``trials``).
    trials_per_iter : int
        Candidates measured per search iteration of a task.
    op_names : list of str, optional
        Tune only tasks whose name contains one of these.
    log_dir : path, optional
        MetaSchedule's per-task logs (default ``<cache root>/tuning-logs/<database name>``,
        outside the database directory so that it stays small enough to commit).
    search_threads : int
        Threads of the evolutionary search and cost model (not of the measurements).
    population_size, genetic_iters : int
        Evolutionary-search population and generations (MetaSchedule's defaults, 512 and 4,
        spend minutes per search iteration on a busy 2-core machine).
    gflops_range : (float, float), optional
        Tune only tasks whose GFLOPs per model call (FLOPs x occurrences) is in [low, high).
    scheduler : {"gradient", "round-robin"}
        MetaSchedule's task scheduler. "gradient" spends trials where they cut latency most,
        but commits nothing to the database until every task has had its first round;
        "round-robin" commits each batch as soon as it is measured.
    cache_flush : bool
        Measure every candidate with the CPU caches flushed of all its arguments but the first
        (the activation input, which the previous layer has just written): each timed run is
        one call after a flush, as a layer runs inside the model, where its weights were
        evicted by the other layers' since its last call. Warm measurements (the default) keep
        a 2 MB weight tensor in the 4 MB L2 across the repeats and favour schedules that
        re-read it. Records measured cold are not comparable with warm ones: keep one kind per
        workload (``scripts/tune.py`` records which in the manifest's ``cold_tasks``).

    Returns
    -------
    int
        Records in the database after tuning.
    """
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.relax_integration import (
        extracted_tasks_to_tune_contexts,
    )

    from frvt.compiler import winograd  # noqa: F401  (registers the Winograd schedule rules)

    winograd.register_schedule_rules()  # the Winograd transforms' rules, for the search
    database = Path(database)
    database.mkdir(parents=True, exist_ok=True)
    tasks = select_tasks(extract_tasks(mod, target), op_names, gflops_range)
    if not tasks:
        return count_records(database)
    if log_dir is None:
        log_dir = cache_root() / "tuning-logs" / database.resolve().name
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    with single_thread_environment():
        contexts, weights = extracted_tasks_to_tune_contexts(
            tasks,
            work_dir=str(log_dir),
            strategy=ms.search_strategy.EvolutionarySearch(
                population_size=population_size, genetic_num_iters=genetic_iters
            ),
            seed=seed,
            num_threads=search_threads,
        )
        ms.tune.tune_tasks(
            tasks=contexts,
            task_weights=weights,
            work_dir=str(log_dir),
            max_trials_global=trials,
            max_trials_per_task=max_trials_per_task or trials,
            num_trials_per_iter=trials_per_iter,
            builder=ms.builder.LocalBuilder(max_workers=builder_workers, timeout_sec=builder_timeout_sec),
            runner=_local_runner(cache_flush),
            database=ms.database.JSONDatabase(work_dir=str(database)),
            cost_model=ms.cost_model.XGBModel(
                extractor=ms.feature_extractor.PerStoreFeature(),
                adaptive_training=True,
                num_tuning_cores=search_threads,
            ),
            task_scheduler=scheduler,
        )
    return count_records(database)


@dataclass(frozen=True)
class Remeasured:
    """What :func:`remeasure_records` did: records added (``transferred`` of them from another
    task's schedule), and each candidate it could not measure or transfer."""

    added: int
    errors: tuple[str, ...] = ()
    transferred: int = 0


def _anchor_key(prim_mod) -> tuple:
    """Shapes of a task's first two arguments and its output: for a fused convolution, its
    input, (packed) weights and result, whatever elementwise operators are fused after it."""
    from tvm.s_tir import meta_schedule as ms

    shapes = [tuple(int(d) for d in info.shape) for info in ms.arg_info.ArgInfo.from_prim_func(prim_mod["main"])]
    return (shapes[0], shapes[1] if len(shapes) > 2 else (), shapes[-1])


def _anchor_index(src) -> dict:
    """``{_anchor_key: [(label, workload)]}`` over the workloads of a database that have records."""
    index: dict = {}
    seen = set()
    for record in src.get_all_tuning_records():
        name = f"workload {workload_hash(record.workload.mod)}"
        if name not in seen:
            seen.add(name)
            index.setdefault(_anchor_key(record.workload.mod), []).append((name, record.workload))
    return index


def _source_candidates(
    src, mod, top_k: int, anchor_index: Callable[[], dict], tvm_target
) -> tuple[list, list[str], bool]:
    """``(record label, trace, MeasureCandidate)`` for a task from the source database.

    The task's own records when the source has its workload; otherwise the best records of the
    source's workloads with the same :func:`_anchor_key` (``anchor_index()``, built on the first
    task that needs it), applied to this task's function with
    MetaSchedule's ``schedule_using_anchor_trace`` (the convolution scheduled as in the source,
    operators fused around it inlined): a change of the fused epilogue, such as a leaky ReLU that
    now fuses into the convolution (:data:`~frvt.compiler.passes.LAYOUT_ELEMENTWISE_OPS`), keeps its tuned schedule.
    Returns the candidates, the transfers that failed, and whether these are transfers.
    """
    import tvm
    from tvm import s_tir
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.trace_apply import schedule_using_anchor_trace

    if src.has_workload(mod):
        records = src.get_top_k(src.commit_workload(mod), top_k)
        return (
            [
                (f"record #{rank + 1}", record.trace, record.as_measure_candidate())
                for rank, record in enumerate(records)
            ],
            [],
            False,
        )
    candidates, failures = [], []
    func = mod["main"]
    if not (func.attrs and "global_symbol" in func.attrs):  # as MetaSchedule's tasks: built as "main"
        func = func.with_attr("global_symbol", "main")
    mod = tvm.IRModule({"main": func})
    for name, workload in anchor_index().get(_anchor_key(mod), []):
        for rank, record in enumerate(src.get_top_k(workload, top_k)):
            label = f"record #{rank + 1} of {name}"
            sch = s_tir.Schedule(mod)
            try:
                schedule_using_anchor_trace(sch, record.trace, tvm_target)
            except Exception as exc:  # TVM raises its own error types
                failures.append(f"{label} does not apply: {_error_summary(str(exc))}")
                continue
            # as MetaSchedule measures: the builder drops the weight repacking, so the arguments
            # are the repacked weights
            args_info = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            candidates.append((label, sch.trace, ms.MeasureCandidate(sch, args_info)))
    return candidates, failures, True


def remeasure_records(
    tasks: list,
    target: dict,
    source: str | Path,
    destination: str | Path,
    *,
    top_k: int = 8,
    cache_flush: bool = True,
    attempts: int = 2,
    builder_timeout_sec: float = 120.0,
) -> Remeasured:
    """Measure ``source``'s best records of ``tasks`` again and add them to ``destination``.

    Each task's ``top_k`` schedules in ``source`` are rebuilt from their traces and timed like a
    tuning run of :func:`tune_module` with the same ``cache_flush``, so that records measured
    warm can seed a cold database (a search starts from the best records of its database)
    without being compared with cold times. A task whose function is not in ``source`` takes the
    schedules of the source's functions around the same convolution (:func:`_source_candidates`).

    A candidate whose build or run fails (a worker timing out on a loaded machine) is tried up to
    ``attempts`` times; what still fails is returned in :attr:`Remeasured.errors`, naming the task
    and the record, never silently dropped (``scripts/tune.py`` logs them).
    """
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from frvt.compiler import winograd  # noqa: F401  (registers the Winograd schedule rules)

    if count_records(source) == 0:
        return Remeasured(0)
    Path(destination).mkdir(parents=True, exist_ok=True)
    tvm_target = tvm.target.Target(target)
    added = transferred = 0
    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="frvt-db-") as snapshot, single_thread_environment():
        snapshot_database(source, snapshot)  # source may be a database being tuned right now
        src = ms.database.JSONDatabase(work_dir=snapshot, allow_missing=False)
        dst = ms.database.JSONDatabase(work_dir=str(destination))
        anchor_index = functools.cache(lambda: _anchor_index(src))  # only transfers need it
        builder = ms.builder.LocalBuilder(max_workers=1, timeout_sec=builder_timeout_sec)
        runner = _local_runner(cache_flush)
        for task in tasks:
            mod = task.dispatched[0]
            candidates, transfer_errors, is_transfer = _source_candidates(src, mod, top_k, anchor_index, tvm_target)
            if is_transfer and not candidates:
                errors.extend(f"{task.task_name}: {message}" for message in transfer_errors)
                continue
            workload = dst.commit_workload(mod)
            pending = list(candidates)
            failures: dict[str, str] = {}
            for _ in range(max(attempts, 1)):
                if not pending:
                    break
                builds = builder.build([ms.builder.BuilderInput(c.sch.mod, tvm_target) for _, _, c in pending])
                retry = []
                to_run = []
                for item, build in zip(pending, builds):
                    if build.error_msg is not None:
                        failures[item[0]] = f"build: {_error_summary(build.error_msg)}"
                        retry.append(item)
                    else:
                        to_run.append((item, build))
                futures = runner.run(
                    [ms.runner.RunnerInput(build.artifact_path, "cpu", item[2].args_info) for item, build in to_run]
                )
                for ((label, trace, candidate), build), future in zip(to_run, futures):
                    result = future.result()
                    if result.error_msg is None and result.run_secs:
                        dst.commit_tuning_record(
                            ms.database.TuningRecord(
                                trace, workload, [float(s) for s in result.run_secs], tvm_target, candidate.args_info
                            )
                        )
                        added += 1
                        transferred += is_transfer
                        failures.pop(label, None)
                    else:
                        failures[label] = f"run: {_error_summary(result.error_msg or 'no times returned')}"
                        retry.append((label, trace, candidate))
                    shutil.rmtree(Path(build.artifact_path).parent, ignore_errors=True)
                pending = retry
            errors.extend(f"{task.task_name} {label}: {message}" for label, message in failures.items())
    return Remeasured(added, tuple(errors), transferred)


def _error_summary(message: str) -> str:
    """The last non-empty line of a builder/runner error: they carry whole tracebacks, which end
    with the exception itself."""
    lines = [line.strip() for line in str(message).splitlines() if line.strip()]
    return lines[-1] if lines else "unknown error"
