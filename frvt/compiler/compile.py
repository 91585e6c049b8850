"""ONNX -> Apache TVM (Relax) -> shared library, with MetaSchedule tuning and a build cache.

Never imported on the template path: the runtime side is :mod:`implementation.tvm_runtime`.

Pipeline (:func:`compile_model`)::

    ONNX --from_onnx (weights bound as constants)--> Relax
         --DecomposeOpsForInference, CanonicalizeBindings, [ConvertLayout to NHWC
           (through LAYOUT_ELEMENTWISE_OPS),]
           LegalizeOps, FoldConstant, FuseOps, FuseTIR,
           AttachAttrLayoutFreeBuffers--> fused TIR tasks                         (prepare_module)
         --MetaSchedule tuning, one thread per measurement--> JSON database      (tune_module)
         --MetaScheduleApplyDatabase, SplitLayoutRewritePreproc, FoldConstant--> scheduled module
         --tvm.compile--> model.so + metadata.json (+ model_config.json)

Weights are "layout free": a tuned convolution may store its weights in a packed layout of its
own choosing; the repacking is split out of the kernel and folded at compile time, so the
exported library carries pre-packed weights and does no repacking per call.

Output directory layout (what :class:`implementation.tvm_runtime.CompiledModel` loads)::

    <output_dir>/model.so           exported Relax VM executable, weights embedded
    <output_dir>/metadata.json      model sha256, input name/shape/layout, preprocessing,
                                    target, TVM version, database and its record count,
                                    trials, compile seconds (see ``compile_model``)
    <output_dir>/model_config.json  the ModelConfig (preprocessing as data), when one was given

Tuning databases (MetaSchedule ``JSONDatabase``) live in a directory holding
``database_workload.json``, ``database_tuning_record.json`` and ``manifest.json``; the
manifest names the model sha256 and target the database was tuned for, and the convolution
scheme (``conv_scheme``) its workloads come from; a build with that database uses that scheme. Committed databases
under ``data/tuning/<model-stem>-<target-name>/`` are found automatically by
:func:`find_tuned_database` when the model hash and target match.
"""

from __future__ import annotations

import contextlib
import hashlib
import functools
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from frvt.settings import SINGLE_THREAD_ENV, cache_root, data_root
from implementation.model_config import ModelConfig

DEFAULT_TUNING_ROOT = data_root() / "tuning"
"""Where committed tuning databases live (``data/tuning/<model-stem>-<target-name>/``)."""

TARGET_ALIASES: dict[str, dict] = {
    "broadwell": {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1},
}
"""Named targets; ``"native"`` is resolved at run time from LLVM's host CPU name."""

MANIFEST_NAME = "manifest.json"
WORKLOAD_FILE = "database_workload.json"
RECORD_FILE = "database_tuning_record.json"
METADATA_FORMAT = 1
CONV_SCHEMES = ("NCHW", "NHWC", "NHWC-winograd")
"""How :func:`prepare_module` computes convolutions: direct in NCHW (TVM's default), direct in
NHWC, or NHWC with the 3x3 stride-1 ones by Winograd (:mod:`frvt.compiler.winograd`)."""
WINOGRAD_SETTINGS = {"tiles": [[16, 4], [8, 2]], "min_channels": 8}
"""Which convolutions "NHWC-winograd" transforms, and with which output tile, for new tuning
databases (a database keeps the settings it was tuned with: :func:`database_winograd`).
``tiles`` holds (minimum input height and width, tile m) pairs; the first that fits wins.
F(4x4, 3x3) from 16x16 up; F(2x2, 3x3) on 8x8 to 15x15, where F(4x4)'s kernels, 36/9 = 4x the
original weights, would each serve only 4 tiles and the layer would read 4x the bytes (F(2x2):
16/9); smaller inputs stay direct. At batch 1 every call reads all the weights from memory
(tens of MB for the embedder, more than the caches hold), so the tile trades multiplications
against bytes."""

LEGACY_WINOGRAD_SETTINGS = {"tiles": [[8, 4]], "min_channels": 8}
"""The settings of NHWC-winograd databases whose manifest predates the ``winograd`` field:
F(4x4, 3x3) on every eligible input of at least 8x8."""


LAYOUT_ELEMENTWISE_OPS = ["relax.nn.leakyrelu"]
"""Elementwise operators that Relax's ``ConvertLayout`` has no layout rule for, and that NHWC
schemes of new tuning databases let the layout pass through (with ``relax.nn.relu``'s rule).
Without a rule ConvertLayout brings the tensor back to NCHW around the operator: RetinaFace's
leaky ReLUs left 14 ``transpose -> leaky_relu -> transpose`` functions between its NHWC
convolutions (``data/tuning/README.md`` has what they cost). With it the activation fuses into the convolution
before it. A database keeps the setting it was tuned with (:func:`database_layout_elementwise`):
the fused functions, hence the tuned workloads, differ."""


class CompileError(RuntimeError):
    """The model could not be imported, tuned or compiled."""


# --------------------------------------------------------------------------------------------
# Targets, hashes, database discovery (no TVM import needed except for "native")
# --------------------------------------------------------------------------------------------


def parse_target(spec: str | dict) -> dict:
    """Turn a target name or JSON into a TVM target dict.

    Parameters
    ----------
    spec : str or dict
        ``"broadwell"`` (Xeon E5-2630 v4: AVX2 + FMA), ``"native"`` (this machine's CPU, as LLVM
        names it), a JSON object string such as ``'{"kind": "llvm", "mcpu": "skylake"}'``, or a
        dict. ``num-cores`` defaults to 1 (the budget is per call on one thread).

    Returns
    -------
    dict
        A target dict accepted by ``tvm.target.Target``.

    Examples
    --------
    >>> parse_target("broadwell")
    {'kind': 'llvm', 'mcpu': 'broadwell', 'num-cores': 1}
    >>> parse_target('{"kind": "llvm", "mcpu": "skylake"}')
    {'kind': 'llvm', 'mcpu': 'skylake', 'num-cores': 1}
    """
    if isinstance(spec, dict):
        target = dict(spec)
    elif spec in TARGET_ALIASES:
        target = dict(TARGET_ALIASES[spec])
    elif spec == "native":
        import tvm

        host = str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")())
        target = {"kind": "llvm", "mcpu": host}
    elif isinstance(spec, str) and spec.lstrip().startswith("{"):
        try:
            target = json.loads(spec)
        except json.JSONDecodeError as exc:
            raise ValueError(f"target {spec!r} is not valid JSON: {exc}") from exc
        if not isinstance(target, dict) or "kind" not in target:
            raise ValueError(f"target {spec!r} must be a JSON object with a 'kind'")
    else:
        raise ValueError(f"unknown target {spec!r}: use 'broadwell', 'native' or a JSON object string")
    target.setdefault("num-cores", 1)
    return target


def target_name(target: dict) -> str:
    """Short name of a target for directory names: its ``mcpu``, else its ``kind``.

    >>> target_name({"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    'broadwell'
    """
    return str(target.get("mcpu") or target.get("kind"))


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def database_files(database: str | Path) -> tuple[Path, Path]:
    """(workload file, tuning-record file) of a JSON database directory."""
    database = Path(database)
    return database / WORKLOAD_FILE, database / RECORD_FILE


def count_records(database: str | Path | None) -> int:
    """Number of tuning records (measured candidates) in a JSON database directory; 0 if none."""
    if database is None:
        return 0
    records = database_files(database)[1]
    if not records.exists():
        return 0
    with open(records, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def database_digest(database: str | Path | None) -> str:
    """SHA-256 over a database's workload and record files ("" when there is no database)."""
    if database is None:
        return ""
    digest = hashlib.sha256()
    for path in database_files(database):
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_manifest(database: str | Path, onnx_path: str | Path, target: dict, **extra: Any) -> None:
    """Write ``manifest.json`` naming the model and target a database was tuned for."""
    import tvm

    database = Path(database)
    database.mkdir(parents=True, exist_ok=True)
    manifest_path = database / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(
        {
            "model": Path(onnx_path).name,
            "model_sha256": file_sha256(onnx_path),
            "target": target,
            "target_name": target_name(target),
            "tvm_version": tvm.__version__,
            "records": count_records(database),
        }
    )
    manifest.update(extra)
    _atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(database: str | Path | None) -> dict:
    """A database's ``manifest.json`` ({} when there is none or it does not parse)."""
    if database is None:
        return {}
    try:
        return json.loads((Path(database) / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def database_conv_scheme(database: str | Path | None) -> str:
    """The convolution scheme a database was tuned with (its manifest's ``conv_scheme``).

    Databases without the field predate the option and were tuned in NCHW.
    """
    scheme = read_manifest(database).get("conv_scheme", "NCHW")
    if scheme not in CONV_SCHEMES:
        raise CompileError(f"{Path(database) / MANIFEST_NAME}: unknown conv_scheme {scheme!r}")
    return scheme


def database_winograd(database: str | Path | None) -> dict:
    """The Winograd settings a database was tuned with (its manifest's ``winograd``).

    NHWC-winograd manifests without the field predate it (:data:`LEGACY_WINOGRAD_SETTINGS`);
    no database, or one not yet tuned in NHWC-winograd, gets :data:`WINOGRAD_SETTINGS`.
    """
    manifest = read_manifest(database)
    if "winograd" in manifest:
        return manifest["winograd"]
    if manifest.get("conv_scheme") == "NHWC-winograd" and count_records(database) > 0:
        return LEGACY_WINOGRAD_SETTINGS
    return WINOGRAD_SETTINGS


def database_layout_elementwise(database: str | Path | None) -> list[str]:
    """The elementwise operators a database's layout conversion passed through (its manifest's
    ``layout_elementwise``).

    NHWC or NHWC-winograd manifests with records but without the field predate it: none. No
    database, or one not yet tuned, gets :data:`LAYOUT_ELEMENTWISE_OPS`.
    """
    manifest = read_manifest(database)
    if "layout_elementwise" in manifest:
        return list(manifest["layout_elementwise"])
    if manifest.get("conv_scheme", "NCHW") != "NCHW" and count_records(database) > 0:
        return []
    return list(LAYOUT_ELEMENTWISE_OPS)


def scheme_settings(database: str | Path | None, scheme: str) -> dict:
    """The settings besides the scheme that :func:`prepare_module` takes from a database, and
    that its manifest records: ``winograd`` and ``layout_elementwise``, where the scheme uses them."""
    settings: dict = {}
    if scheme.startswith("NHWC"):
        settings["layout_elementwise"] = database_layout_elementwise(database)
    if scheme == "NHWC-winograd":
        settings["winograd"] = database_winograd(database)
    return settings


@contextlib.contextmanager
def _layout_rules(op_names: list[str]) -> Iterator[None]:
    """Give each named operator ``relax.nn.relu``'s layout rule while the block runs (only those
    without one; TVM's own rules are never replaced)."""
    import tvm

    rule = tvm.ir.Op.get("relax.nn.relu").get_attr("FRelaxInferLayout")
    added = []
    try:
        for name in op_names:
            try:
                op = tvm.ir.Op.get(name)
            except Exception as exc:
                raise CompileError(f"layout_elementwise: {name!r} is not a Relax operator") from exc
            if op.get_attr("FRelaxInferLayout") is None:
                op.set_attr("FRelaxInferLayout", rule)
                added.append(op)
        yield
    finally:
        for op in added:
            op.reset_attr("FRelaxInferLayout")


def find_tuned_database(
    onnx_path: str | Path, target: dict, roots: tuple[Path, ...] = (DEFAULT_TUNING_ROOT,)
) -> Path | None:
    """A committed database tuned for this model file and target, or None.

    A database matches when its ``manifest.json`` has the model's SHA-256 and the same
    ``target_name`` (``mcpu``) as ``target``, and it holds records. When several match (say, a
    database for another convolution scheme still being tuned beside the one in use), the one
    named ``<model-stem>-<target-name>`` wins, then the one with the most records.
    """
    sha = file_sha256(onnx_path)
    name = target_name(target)
    canonical = f"{Path(onnx_path).stem}-{name}"
    matches = []
    for root in roots:
        if not Path(root).is_dir():
            continue
        for manifest_path in sorted(Path(root).glob(f"*/{MANIFEST_NAME}")):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if manifest.get("model_sha256") == sha and manifest.get("target_name") == name:
                n_records = count_records(manifest_path.parent)
                if n_records > 0:
                    matches.append((manifest_path.parent.name != canonical, -n_records, manifest_path.parent))
    return min(matches, key=lambda match: match[:2])[2] if matches else None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


# --------------------------------------------------------------------------------------------
# ONNX -> prepared Relax module
# --------------------------------------------------------------------------------------------


def onnx_input_spec(onnx_path: str | Path) -> tuple[str, tuple[int, ...]]:
    """(name, static shape) of the ONNX model's single graph input (initialisers and inputs no node
    reads excluded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    read = {x for n in model.graph.node for x in n.input}
    inputs = [i for i in model.graph.input if i.name not in initializers and i.name in read]
    if len(inputs) != 1:
        raise CompileError(f"{onnx_path}: expected one graph input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims)
    return inputs[0].name, shape


def import_onnx(onnx_path: str | Path, input_shape: tuple[int, ...] | None = None):
    """ONNX file -> Relax IRModule with the weights bound as constants.

    Parameters
    ----------
    onnx_path : path
        The model. It must have one float32 input; dynamic dimensions need ``input_shape``.
    input_shape : tuple of int, optional
        Static input shape overriding the file's.
    """
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    name, shape = onnx_input_spec(onnx_path)
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
    if any(s <= 0 for s in shape):
        raise CompileError(f"{onnx_path}: input {name!r} has a dynamic shape {shape}; give one")
    from frvt.compiler.onnx_fold import drop_inference_dropout, fold_constant_dequantize

    model = onnx.load(str(onnx_path))
    fold_constant_dequantize(model)  # weight-only (also blocked) quantisation -> float32 weights
    drop_inference_dropout(model)  # identity at inference; its tuple output stops the NHWC layout pass
    try:
        return from_onnx(model, shape_dict={name: list(shape)}, keep_params_in_input=False)
    except Exception as exc:  # the frontend raises many types
        raise CompileError(f"TVM's ONNX importer failed on {onnx_path}: {exc}") from exc


def prepare_module(
    mod,
    target: dict,
    conv_scheme: str = "NCHW",
    winograd: dict | None = None,
    layout_elementwise: list[str] | None = None,
):
    """Relax module -> fused TIR functions ready for tuning (the tuning tasks' source).

    The same function runs before tuning (``scripts/tune.py``) and before building, so the
    tuned workloads match what is compiled.

    Parameters
    ----------
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}
        How convolutions are computed (:data:`CONV_SCHEMES`). "NHWC" (kernels "OHWI") converts
        them with Relax's ``ConvertLayout``: the channels, multiples of 8 in these networks,
        become the innermost axis and vectorise across AVX2 lanes, where NCHW vectorises along
        widths such as 17 or 35 that 8 does not divide. Transposes are inserted only where a
        non-convolution operator needs NCHW; the weights are transposed at compile time.
        "NHWC-winograd" also computes the 3x3 stride-1 convolutions by Winograd
        (:mod:`frvt.compiler.winograd`: F(4x4, 3x3) does 4x fewer multiplications, F(2x2, 3x3)
        2.25x; kernels transformed at compile time). The tuned workloads differ between
        schemes, so a database serves the scheme it was tuned with (:func:`database_conv_scheme`).
    winograd : dict, optional
        Which convolutions Winograd computes, and the tiles (``make_legalize_conv2d``'s
        arguments); default :data:`WINOGRAD_SETTINGS`. A database serves the settings it was
        tuned with (:func:`database_winograd`).
    layout_elementwise : list of str, optional
        For the NHWC schemes: elementwise operators the layout conversion passes through;
        default :data:`LAYOUT_ELEMENTWISE_OPS`. A database serves the setting it was tuned with
        (:func:`database_layout_elementwise`; :func:`scheme_settings` gives both).
    """
    import tvm
    from tvm import relax

    if conv_scheme not in CONV_SCHEMES:
        raise ValueError(f"conv_scheme must be one of {CONV_SCHEMES}, not {conv_scheme!r}")
    layout_passes = []
    legalize_map = None
    if conv_scheme.startswith("NHWC"):
        layout_passes = [
            relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
            relax.transform.CanonicalizeBindings(),
        ]
    if conv_scheme == "NHWC-winograd":
        from frvt.compiler.winograd import make_legalize_conv2d

        legalize_map = {
            "relax.nn.conv2d": make_legalize_conv2d(**(winograd if winograd is not None else WINOGRAD_SETTINGS))
        }
    seq = tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            *layout_passes,
            relax.transform.FoldConstant(),
            relax.transform.LegalizeOps(legalize_map),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
            relax.transform.AttachAttrLayoutFreeBuffers(),
        ]
    )
    elementwise = (
        (layout_elementwise if layout_elementwise is not None else LAYOUT_ELEMENTWISE_OPS) if layout_passes else []
    )
    with tvm.target.Target(target), _layout_rules(elementwise):
        return seq(mod)


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


# --------------------------------------------------------------------------------------------
# Tuning
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def single_thread_environment() -> Iterator[None]:
    """Set ``frvt.SINGLE_THREAD_ENV`` for child processes (builders, runners)."""
    saved = {key: os.environ.get(key) for key in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


#: MetaSchedule timing for cold measurements (``tune_module(cache_flush=True)``): the flush runs
#: before each repeat, so each of the 10 timed runs is a single call right after a flush.
COLD_EVALUATOR = {"number": 1, "repeat": 10, "min_repeat_ms": 0, "enable_cpu_cache_flush": True}


def workload_hash(func_mod) -> str:
    """The structural hash a JSON database stores for a task's workload (first field of its line)."""
    from tvm.s_tir import meta_schedule as ms

    return str(ms.database.Workload(func_mod).as_json()[0])


def drop_records(database: str | Path, workload_hashes: set[str]) -> int:
    """Delete the records of the given workloads (by :func:`workload_hash`) from a database.

    The workload lines stay (records of other workloads point at them by index). Used before
    re-tuning tasks in another measurement mode (``scripts/tune.py --reset``).

    Returns
    -------
    int
        Records deleted.
    """
    workloads_path, records_path = database_files(database)
    if not records_path.exists():
        return 0
    dropped_indices = {
        i for i, line in enumerate(_complete_lines(workloads_path)) if json.loads(line)[0] in workload_hashes
    }
    kept, dropped = [], 0
    for line in _complete_lines(records_path):
        if json.loads(line)[0] in dropped_indices:
            dropped += 1
        else:
            kept.append(line)
    _atomic_write_text(records_path, "".join(line + "\n" for line in kept))
    return dropped


def database_cold_tasks(database: str | Path | None) -> dict[str, str]:
    """``{task name: workload hash}`` of the tasks whose records were measured cold (manifest)."""
    return dict(read_manifest(database).get("cold_tasks", {}))


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
        Output of :func:`prepare_module`.
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
        MetaSchedule's per-task logs (default ``~/.cache/frvt/tuning-logs/<database name>``,
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
    now fuses into the convolution (:data:`LAYOUT_ELEMENTWISE_OPS`), keeps its tuned schedule.
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


# --------------------------------------------------------------------------------------------
# Build, export, metadata
# --------------------------------------------------------------------------------------------


def constant_bytes(mod) -> int:
    """Bytes of a Relax module's constants: the weights (as packed for the kernels) that one
    call of the model reads."""
    import numpy as np
    import tvm
    from tvm import relax

    total = 0

    def visit(expr) -> None:
        nonlocal total
        data = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
        if data is not None and hasattr(data, "shape"):  # a tensor constant (TVM 0.27's relax.Constant)
            total += int(np.prod([int(d) for d in data.shape])) * np.dtype(str(data.dtype)).itemsize

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return total


def build_module(mod, target: dict, database: str | Path | None = None):
    """Prepared module (+ tuning database) -> ``(tvm.runtime.Executable, constant bytes)``.

    Functions found in the database get their tuned schedule (and packed weights folded at
    compile time); the others are compiled unscheduled (correct but slow). The second value is
    :func:`constant_bytes` of the final module.
    """
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    tvm_target = tvm.target.Target(target)
    with tvm_target, tempfile.TemporaryDirectory(prefix="frvt-db-") as snapshot:
        if database is not None and count_records(database) > 0:
            # A snapshot: a tuning run may be appending to the database right now.
            snapshot_database(database, snapshot)
            db = ms.database.JSONDatabase(work_dir=snapshot, allow_missing=False)
            with db:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        mod = tvm.transform.Sequential(
            [
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.FoldConstant(),
                relax.transform.DeadCodeElimination(),
            ]
        )(mod)
        n_bytes = constant_bytes(mod)
    return tvm.compile(mod, target=tvm_target), n_bytes


def _complete_lines(path: Path) -> list[str]:
    """The lines of a database file that parse as JSON (a last line may still be being written)."""
    lines = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        lines.append(line)
    return lines


def snapshot_database(database: str | Path, out: str | Path) -> int:
    """Copy a JSON database's two files to ``out`` (created), dropping a last line still being
    written (a tuning run may be appending right now), and its manifest (the convolution scheme
    and Winograd settings a build from the snapshot must use); returns the records copied."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for source in database_files(database):
        (out / source.name).write_text("".join(line + "\n" for line in _complete_lines(source)))
    manifest = Path(database) / MANIFEST_NAME
    if manifest.exists():
        shutil.copyfile(manifest, out / MANIFEST_NAME)
    return count_records(out)


def compile_model(
    onnx_path: str | Path,
    *,
    target: str | dict = "broadwell",
    output_dir: str | Path,
    model_config: ModelConfig | None = None,
    database: str | Path | None = None,
    tune: bool = False,
    trials: int = 2000,
    max_trials_per_task: int | None = None,
    progress: bool | Callable[[str], None] = True,
    auto_database: bool = True,
    conv_scheme: str | None = None,
) -> dict:
    """Compile an ONNX model for a CPU target and export it with its metadata.

    Parameters
    ----------
    onnx_path : path
        ONNX model with one static-shape float32 input.
    target : str or dict
        ``"broadwell"``, ``"native"``, a JSON string or a dict (see :func:`parse_target`).
    output_dir : path
        Receives ``model.so``, ``metadata.json`` and, if ``model_config`` is given,
        ``model_config.json``. Written atomically (a temporary directory renamed into place).
    model_config : ModelConfig, optional
        Preprocessing and embedding description saved next to the library.
    database : path, optional
        MetaSchedule JSON database directory. Default: a committed database whose manifest
        matches the model hash and target (:func:`find_tuned_database`), else none when not
        tuning, else an error.
    tune : bool
        Run MetaSchedule first, appending to ``database`` (``trials`` new measurements).
    trials, max_trials_per_task : int
        Tuning budget of this call (only with ``tune``).
    progress : bool or callable
        True: report stages to stderr via tqdm; a callable receives stage messages.
    auto_database : bool
        Look for a committed database when ``database`` is None (False: compile untuned).
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}, optional
        How convolutions are computed (:func:`prepare_module`). Default: the scheme the
        database was tuned with (:func:`database_conv_scheme`), NCHW without a database.

    Returns
    -------
    dict
        The metadata written to ``metadata.json``: ``format``, ``model`` (file name),
        ``model_sha256``, ``input_name``, ``input_shape``, ``layout``, ``conv_scheme``,
        ``winograd`` (the settings, None for other schemes), ``layout_elementwise`` (operators
        the NHWC layout passed through), ``output_shapes``,
        ``preprocessing`` (the ModelConfig dict or None), ``target``, ``tvm_version``,
        ``database`` (path or None), ``database_records``, ``database_sha256``, ``tuned``,
        ``trials``, ``weight_bytes`` (the constants one call reads, as packed: Winograd kernels
        are 16/9 or 36/9 times the original weights), ``compile_seconds``, ``library``.

    Raises
    ------
    CompileError
        Import, tuning or compilation failed.
    ValueError
        Bad target or arguments.
    """
    import numpy as np
    import tvm

    report = _progress_reporter(progress)
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    target_dict = parse_target(target)
    if database is None and auto_database:
        database = find_tuned_database(onnx_path, target_dict)
        if database is not None:
            report(f"using tuned database {database} ({count_records(database)} records)")
    if tune and database is None:
        raise ValueError("tuning needs a database directory (--database DIR)")
    scheme = resolve_conv_scheme(conv_scheme, database, tune, report)

    input_name, input_shape = onnx_input_spec(onnx_path)
    if model_config is not None and all(s > 0 for s in model_config.input_shape):
        input_shape = tuple(model_config.input_shape)
    report(f"importing {onnx_path.name} (input {input_name} {list(input_shape)})")
    mod = import_onnx(onnx_path, input_shape)
    report(f"preparing for {json.dumps(target_dict)}, convolutions {scheme}")
    settings = scheme_settings(database, scheme)
    mod = prepare_module(mod, target_dict, scheme, **settings)
    if tune:
        report(f"tuning {trials} trials into {database}")
        n_records = tune_module(mod, target_dict, database, trials=trials, max_trials_per_task=max_trials_per_task)
        write_manifest(database, onnx_path, target_dict, conv_scheme=scheme, **settings)
        report(f"database has {n_records} records")
    report("compiling")
    try:
        executable, weight_bytes = build_module(mod, target_dict, database)
    except Exception as exc:
        raise CompileError(f"TVM failed to compile {onnx_path}: {exc}") from exc

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        report("exporting")
        executable.export_library(str(staging / "model.so"))
        output_shapes = _output_shapes(staging / "model.so", input_shape, np)
        metadata = {
            "format": METADATA_FORMAT,
            "model": onnx_path.name,
            "model_sha256": file_sha256(onnx_path),
            "input_name": input_name,
            "input_shape": list(input_shape),
            "layout": model_config.layout if model_config is not None else "NCHW",
            "conv_scheme": scheme,
            "winograd": settings.get("winograd"),
            "layout_elementwise": settings.get("layout_elementwise", []),
            "output_shapes": output_shapes,
            "preprocessing": model_config.to_json() if model_config is not None else None,
            "target": target_dict,
            "tvm_version": tvm.__version__,
            "database": str(database) if database is not None else None,
            "database_records": count_records(database),
            "database_sha256": database_digest(database),
            "tuned": count_records(database) > 0,
            "trials": trials if tune else 0,
            "weight_bytes": weight_bytes,
            "compile_seconds": round(time.perf_counter() - start, 3),
            "library": "model.so",
        }
        metadata = json.loads(json.dumps(metadata))  # what a reader of the file gets
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        if model_config is not None:
            model_config.save(staging / "model_config.json")
        staging.chmod(0o755)  # mkdtemp makes it private
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report(f"wrote {output_dir} in {metadata['compile_seconds']:.1f} s")
    return metadata


def resolve_conv_scheme(
    conv_scheme: str | None, database: str | Path | None, tune: bool, report: Callable[[str], None]
) -> str:
    """The requested scheme, else the database's; says so when they disagree.

    Raises
    ------
    ValueError
        An unknown scheme, or tuning one scheme into a database that holds another's records
        (its manifest names a single scheme).
    """
    tuned_scheme = database_conv_scheme(database)
    if conv_scheme is None:
        return tuned_scheme
    if conv_scheme not in CONV_SCHEMES:
        raise ValueError(f"conv_scheme must be one of {CONV_SCHEMES}, not {conv_scheme!r}")
    if conv_scheme == tuned_scheme or count_records(database) == 0:
        return conv_scheme
    if tune:
        raise ValueError(f"{database} holds {tuned_scheme} records; tune {conv_scheme} into a new directory")
    report(
        f"warning: {database} was tuned with {tuned_scheme} convolutions; their schedules do "
        f"not apply to {conv_scheme} ones, which compile untuned"
    )
    return conv_scheme


def _output_shapes(library: Path, input_shape: tuple[int, ...], np) -> list[list[int]]:
    """Run the exported library once on zeros to record its output shapes."""
    from implementation.tvm_runtime import run_library_once

    outputs = run_library_once(library, np.zeros(input_shape, dtype=np.float32))
    return [list(o.shape) for o in outputs]


def _progress_reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        from tqdm import tqdm

        return lambda message: tqdm.write(f"[frvt compile] {message}")
    return lambda message: None


# --------------------------------------------------------------------------------------------
# Cache
# --------------------------------------------------------------------------------------------


def cache_key(
    onnx_path: str | Path,
    target: str | dict,
    database: str | Path | None = None,
    model_config: ModelConfig | None = None,
    conv_scheme: str | None = None,
) -> str:
    """Hex key of a compiled artefact: model sha256 + target + TVM version + database content
    + convolution scheme (+ the model config saved beside it)."""
    import tvm

    payload = {
        "model_sha256": file_sha256(onnx_path),
        "target": parse_target(target),
        "tvm_version": tvm.__version__,
        "database_sha256": database_digest(database),
        "format": METADATA_FORMAT,
    }
    scheme = conv_scheme or database_conv_scheme(database)
    if scheme != "NCHW":  # keys of NCHW builds are unchanged since the option came
        payload["conv_scheme"] = scheme
        settings = scheme_settings(database, scheme)
        if "winograd" in settings:
            payload["winograd"] = settings["winograd"]
        if settings.get("layout_elementwise"):  # keys of builds without it are unchanged
            payload["layout_elementwise"] = settings["layout_elementwise"]
    if model_config is not None:
        payload["model_config"] = model_config.to_json()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def ensure_compiled(
    onnx_path: str | Path,
    target: str | dict = "broadwell",
    cache_dir: str | Path | None = None,
    database: str | Path | None = None,
    model_config: ModelConfig | None = None,
    progress: bool | Callable[[str], None] = False,
    auto_database: bool = True,
    conv_scheme: str | None = None,
) -> Path:
    """Directory of a compiled model for (model, target, TVM, database); built once.

    Parameters
    ----------
    onnx_path : path
        The model.
    target : str or dict
        See :func:`parse_target`.
    cache_dir : path, optional
        Root of the cache (default ``~/.cache/frvt/compiled``). The artefact lives in
        ``<cache_dir>/<model-stem>-<target-name>-<key>/``; a concurrent or killed build never
        leaves a half-written directory (atomic rename).
    database : path, optional
        Tuning database; default: the committed one for this model hash and target, if any.
    model_config : ModelConfig, optional
        Saved beside the library.
    auto_database : bool
        Use the committed database for this model hash and target when ``database`` is None
        (False: an untuned build).
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}, optional
        See :func:`compile_model` (default: the database's).

    Returns
    -------
    Path
        Directory holding ``model.so`` and ``metadata.json``.
    """
    onnx_path = Path(onnx_path)
    target_dict = parse_target(target)
    if database is None and auto_database:
        database = find_tuned_database(onnx_path, target_dict)
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "compiled"
    key = cache_key(onnx_path, target_dict, database, model_config, conv_scheme)
    out = cache_dir / f"{onnx_path.stem}-{target_name(target_dict)}-{key}"
    if (out / "metadata.json").exists() and (out / "model.so").exists():
        return out
    compile_model(
        onnx_path,
        target=target_dict,
        output_dir=out,
        model_config=model_config,
        database=database,
        progress=progress,
        auto_database=False,
        conv_scheme=conv_scheme,
    )
    return out


# --------------------------------------------------------------------------------------------
# Database pruning
# --------------------------------------------------------------------------------------------


def prune_database(database: str | Path, keep_per_workload: int = 8) -> tuple[int, int]:
    """Keep only the fastest ``keep_per_workload`` records of each workload (in place, atomic).

    Records that failed (no run time) are dropped. Keeping several per workload lets a later
    tuning session seed its search from them; applying the database uses only the best one.

    Returns
    -------
    (int, int)
        Records before and after.
    """
    records_path = database_files(database)[1]
    if not records_path.exists():
        return 0, 0
    by_workload: dict[int, list[tuple[float, str]]] = {}
    n_before = 0
    for line in records_path.read_text().splitlines():
        if not line.strip():
            continue
        n_before += 1
        workload_index, record = json.loads(line)
        run_secs = record[1]
        if not run_secs:
            continue
        mean = sum(float(s) for s in run_secs) / len(run_secs)
        if mean >= 1e9:  # MetaSchedule stores 1e10 for failed runs
            continue
        by_workload.setdefault(workload_index, []).append((mean, line))
    kept = []
    for workload_index in sorted(by_workload):
        kept.extend(line for _, line in sorted(by_workload[workload_index])[:keep_per_workload])
    _atomic_write_text(records_path, "".join(line + "\n" for line in kept))
    return n_before, len(kept)


def merge_database(source: str | Path, destination: str | Path) -> int:
    """Append ``source``'s workloads and records to ``destination`` (created when missing).

    Workloads already in ``destination`` (the same line of ``database_workload.json``, which
    holds the structural hash and the function) are not duplicated; the records are renumbered
    to point at them. Used to seed a database for a new convolution scheme with the records of
    the functions both schemes share (everything but the convolutions that change). Partial
    last lines of a database being written are skipped.

    Returns
    -------
    int
        Records appended.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    src_workloads, src_records = database_files(source)
    dst_workloads, dst_records = database_files(destination)
    workloads = _complete_lines(dst_workloads)
    index = {line: i for i, line in enumerate(workloads)}
    remap = {}
    for i, line in enumerate(_complete_lines(src_workloads)):
        if line not in index:
            index[line] = len(workloads)
            workloads.append(line)
        remap[i] = index[line]
    appended = []
    for line in _complete_lines(src_records):
        workload_index, record = json.loads(line)
        if workload_index in remap:
            appended.append(json.dumps([remap[workload_index], record]))
    _atomic_write_text(dst_workloads, "".join(line + "\n" for line in workloads))
    records = _complete_lines(dst_records) + appended
    _atomic_write_text(dst_records, "".join(line + "\n" for line in records))
    return len(appended)
