"""Orchestration in the parent process: one measuring process per model and ISA group, rows, ratios, throughput."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from frvt import settings
from frvt.perf.bench.cpuid_cap import CPUID_CAP_ENV, build_cpuid_cap
from frvt.perf.bench.inputs import batched_onnx, make_inputs
from frvt.perf.bench.models import (
    AVX2_CAPS,
    DEFAULT_IMAGE,
    GROUP_TARGET,
    GROUPS,
    RATIO_RUNTIME,
    REPO_ROOT,
    RUNTIMES,
    SCHEMA,
    THREAD_ENV,
    BenchError,
    ModelSpec,
    model_macs,
    model_weight_bytes,
    resolve_models,
)
from frvt.perf.bench.timing import output_difference
from frvt.perf.machine import FmaPeakUnavailable, machine_info, measure_fma_peak, measure_read_bandwidth, versioned
from validation.latency import latency_stats

# --- orchestration (the parent process) -----------------------------------------------------


def _group_env(group: str, cpuid_cap: Path | None = None) -> dict[str, str]:
    env = dict(os.environ, **THREAD_ENV)
    for key in (*AVX2_CAPS, CPUID_CAP_ENV):
        env.pop(key, None)
    preload = [p for p in env.pop("LD_PRELOAD", "").split() if "frvt_cpuid_cap" not in p]
    if group == "avx2":
        env.update(AVX2_CAPS)
        if cpuid_cap is not None:
            preload.insert(0, str(cpuid_cap))
            env[CPUID_CAP_ENV] = str(cpuid_cap)
    if preload:
        env["LD_PRELOAD"] = " ".join(preload)
    root = str(REPO_ROOT)
    env["PYTHONPATH"] = os.pathsep.join([root, *(p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p)])
    return env


def _run_group_process(
    spec: dict[str, Any], scratch: Path, timeout: float | None, cpuid_cap: Path | None
) -> dict[str, Any]:
    tag = f"{spec['model']}-{spec['group']}"
    spec_path, out_path = scratch / f"{tag}.spec.json", scratch / f"{tag}.out.json"
    spec_path.write_text(json.dumps(spec))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "frvt.perf.bench", str(spec_path), str(out_path)],
            env=_group_env(spec["group"], cpuid_cap),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"measuring {tag} took longer than {timeout} s") from exc
    if proc.returncode != 0 or not out_path.exists():
        raise BenchError(f"measuring {tag} failed (exit {proc.returncode}): {proc.stderr.strip()[-2000:]}")
    return json.loads(out_path.read_text())


def _tvm_artefact(
    spec: ModelSpec,
    group: str,
    tuned: bool,
    cache_dir: Path | None,
    report: Callable[[str], None],
    scratch: Path,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[Path | None, dict, str]:
    """(compiled directory or None, target dict, note) for a TVM row. A tuned database is
    compiled from a snapshot taken now (its content, not its path, keys the compile cache).
    ``input_shape`` compiles for another shape than the file's (a batch), with the database
    tuned for that shape."""
    from frvt.compiler import CompileError, databases
    from frvt.compiler.compile import ensure_compiled
    from frvt.compiler.targets import parse_target, target_name

    target = parse_target(GROUP_TARGET[group])
    name = target_name(target)
    cache_root = Path(cache_dir) if cache_dir is not None else settings.cache_root() / "compiled"
    conv_scheme = "NCHW"
    if tuned:
        database = databases.find_tuned_database(spec.path, target, input_shape=input_shape)
        if database is None:
            label = "not tuned for native" if group == "full" else f"not tuned for {name}"
            shape = f", input shape {'x'.join(map(str, input_shape))}" if input_shape else ""
            return (
                None,
                target,
                f"{label}: no database under data/tuning/ for this model hash and target {name}{shape}",
            )
        shown = database.relative_to(REPO_ROOT) if database.is_relative_to(REPO_ROOT) else database
        conv_scheme = databases.database_conv_scheme(database)
        snapshot = scratch / f"database-{spec.name}-{name}"
        n_records = databases.snapshot_database(database, snapshot)
        database = snapshot
        note = f"database {shown} ({conv_scheme} convolutions), snapshot of {n_records} records"
    else:
        # An empty database directory: ensure_compiled would otherwise pick the committed one.
        database = cache_root / "empty-database"
        database.mkdir(parents=True, exist_ok=True)
        note = "no tuning database (default schedules)"
    report(f"compiling {spec.name} for {name} ({'tuned' if tuned else 'untuned'}), cached after the first time")
    try:
        artefact = ensure_compiled(
            spec.path, target, cache_dir=cache_root, database=database, conv_scheme=conv_scheme, input_shape=input_shape
        )
    except (CompileError, ValueError) as exc:
        return None, target, f"compile failed: {exc}"
    return artefact, target, note


def run_benchmark(
    models: Sequence[str | ModelSpec] | None = None,
    runtimes: Sequence[str] | None = None,
    groups: Sequence[str] = GROUPS,
    repeats: int = 30,
    untuned_repeats: int = 3,
    warmup: int = 3,
    image: str | Path | None = None,
    seed: int = 0,
    fma: bool = True,
    cache_dir: str | Path | None = None,
    command: str | None = None,
    progress: Callable[[str], None] | None = None,
    timeout: float | None = None,
    batch: int = 1,
) -> dict[str, Any]:
    """Run the shoot-out and return it as versioned JSON (schema ``frvt.bench/1``).

    Parameters
    ----------
    models : sequence of str or ModelSpec, optional
        Built-in names (``dlib_resnet``, ``retinaface``, ``iresnet50``) or ``.onnx`` paths;
        default all three built-in models.
    runtimes : sequence of str, optional
        Subset of :data:`RUNTIMES` (default all; ``dlib`` runs only on the dlib model). ONNX
        Runtime always runs once as the reference for output differences, timed only if listed.
    groups : sequence of str
        ISA groups (:data:`GROUPS`), each measured in its own fresh process per model.
    repeats : int
        Timed calls per runtime (>= 1), after ``warmup`` discarded calls.
    untuned_repeats : int
        Timed calls of ``tvm-untuned`` (>= 1; it can take seconds per call), after one warm-up.
    image : path, optional
        Face photograph the real inputs are made from (:func:`make_inputs`).
    fma : bool
        Measure this core's AVX2 FMA peak (~2 s) for ``fraction_of_fma_peak``.
    cache_dir : path, optional
        Root of compiled TVM models (``frvt.compiler.compile.ensure_compiled``).
    command : str, optional
        The command line that ran this, stored in the result.
    progress : callable, optional
        Receives one message per stage.
    timeout : float, optional
        Seconds allowed per measuring process.
    batch : int
        Images per call (:func:`make_inputs`). Above 1, every runtime gets a copy of the model
        with that batch (:func:`batched_onnx`), TVM tuned the database tuned for that input shape
        (none: the row is skipped), and dlib is not run. FLOPs count the whole batch.

    Returns
    -------
    dict
        ``schema``, ``created``, ``machine``, ``command``, ``settings``, ``fma_peak`` (dict or
        None), ``models`` ({name: {path, gmacs, gflops, macs, input}}), ``groups`` (per model and
        group: rounds, threads, load averages, environment), ``rows`` (see the module docstring;
        keys ``model``, ``runtime``, ``group``, ``isa``, ``isa_used``, ``isa_capped``, ``target``,
        ``status``, ``note``, ``n``, ``median_ms``, ``p90_ms``, ``min_ms``, ``max_ms``, ...,
        ``cpu_median_ms``, ``cpu_per_wall``, ``ratio_to_tvm_tuned``, ``cpu_ratio_to_tvm_tuned``,
        ``gflops``, ``achieved_gflops``, ``fraction_of_fma_peak``, ``max_abs_diff``,
        ``max_rel_diff``, ``samples_ms``, ``cpu_samples_ms``).

    Raises
    ------
    BenchError
        Unknown names, bad counts, missing files, a measuring process that failed.
    """
    report = progress or (lambda message: None)
    runtimes = list(runtimes) if runtimes else list(RUNTIMES)
    unknown = [r for r in runtimes if r not in RUNTIMES]
    if unknown:
        raise BenchError(f"unknown runtime(s) {unknown}: choose from {', '.join(RUNTIMES)}")
    bad_groups = [g for g in groups if g not in GROUPS]
    if bad_groups or not groups:
        raise BenchError(f"unknown or no ISA group(s) {list(groups)}: choose from {', '.join(GROUPS)}")
    if batch < 1:
        raise BenchError(f"batch must be >= 1, got {batch}")
    if repeats < 1 or untuned_repeats < 1 or warmup < 0:
        raise BenchError(
            f"repeats ({repeats}) and untuned_repeats ({untuned_repeats}) must be >= 1, warmup ({warmup}) >= 0"
        )
    specs = resolve_models(models)
    affinity = sorted(os.sched_getaffinity(0))  # loading a TVM module later pins this thread to CPU 0
    machine = machine_info()
    machine["runtime_versions"] = _runtime_versions()
    fma_peak = read_bandwidth = None
    if fma:
        report("measuring the AVX2 FMA peak of one core")
        try:
            fma_peak = measure_fma_peak()
        except FmaPeakUnavailable as exc:
            report(f"no FMA peak: {exc}")
        report("measuring one thread's memory read bandwidth")
        read_bandwidth = measure_read_bandwidth()
    avx512 = bool(machine["isa"].get("avx512f"))
    model_info: dict[str, Any] = {}
    group_info: list[dict[str, Any]] = []
    rows: list[dict[str, Any]] = []
    cpuid_cap: dict[str, Any] = {"used": False, "reason": "no avx2 group"}
    with tempfile.TemporaryDirectory(prefix="frvt_bench_") as tmp:
        scratch = Path(tmp)
        cap_lib = None
        if "avx2" in groups and avx512:
            report("building the CPUID cap (hides AVX-512 from every library in the avx2 group's process)")
            cap_lib, reason = build_cpuid_cap(scratch / "cpuid_cap")
            cpuid_cap = {"used": cap_lib is not None, "reason": reason}
        elif "avx2" in groups:
            cpuid_cap = {"used": False, "reason": "this CPU has no AVX-512 to hide"}
        for spec in specs:
            report(f"{spec.name}: counting MACs, making the input")
            macs = model_macs(spec.path)
            if batch > 1:
                macs = {k: v * batch for k, v in macs.items()}
            weights = model_weight_bytes(spec.path)
            inputs, described = make_inputs(spec, image, seed, batch)
            peer_onnx = spec.path if batch == 1 else batched_onnx(spec.path, batch, scratch / f"{spec.name}.onnx")
            inputs_path = scratch / f"{spec.name}.npz"
            np.savez(inputs_path, **inputs)
            model_info[spec.name] = {
                "path": str(spec.path),
                "kind": spec.kind,
                "macs": macs,
                "gmacs": macs["total"] / 1e9,
                "gflops": 2 * macs["total"] / 1e9,
                "weight_bytes": weights,
                "input": described,
                "input_shape": list(inputs["x"].shape),
                "batch": batch,
            }
            references: dict[str, Path] = {}
            for group in groups:
                entries, skipped = _group_entries(
                    spec,
                    group,
                    runtimes,
                    repeats,
                    untuned_repeats,
                    warmup,
                    cache_dir,
                    report,
                    scratch,
                    tuple(inputs["x"].shape) if batch > 1 else None,
                )
                os.sched_setaffinity(0, affinity)
                report(f"{spec.name} [{group}]: timing {', '.join(e['runtime'] for e in entries) or 'nothing'}")
                measured = {"rows": [], "rounds": 0}
                if entries:
                    references[group] = scratch / f"{spec.name}-{group}.reference.npz"
                    measured = _run_group_process(
                        {
                            "model": spec.name,
                            "onnx": str(peer_onnx),
                            "group": group,
                            "inputs": str(inputs_path),
                            "cpu_avx512": avx512,
                            "affinity": affinity,
                            "reference_out": str(references[group]),
                            "runtimes": entries,
                        },
                        scratch,
                        timeout,
                        cap_lib,
                    )
                group_info.append(
                    {k: v for k, v in measured.items() if k != "rows"} | {"model": spec.name, "group": group}
                )
                targets = {e["runtime"]: e.get("target") for e in entries}
                for raw in measured["rows"] + skipped:
                    rows.append(_make_row(spec.name, group, raw, targets.get(raw["runtime"]), avx512))
            if len(references) == 2 and all(path.exists() for path in references.values()):
                # different kernels leave different rounding: evidence that the cap changed ONNX Runtime's choice
                with np.load(references["avx2"]) as a, np.load(references["full"]) as b:
                    diff = output_difference([a[k] for k in a.files], [b[k] for k in b.files])
                model_info[spec.name]["onnxruntime_avx2_vs_full_max_abs_diff"] = diff[0]
    rows.sort(
        key=lambda r: (list(model_info).index(r["model"]), GROUPS.index(r["group"]), RUNTIMES.index(r["runtime"]))
    )
    add_ratios(rows)
    add_throughput(
        rows, {name: info["gflops"] for name, info in model_info.items()}, fma_peak["peak_gflops"] if fma_peak else None
    )
    add_memory_floor(
        rows,
        {name: info["weight_bytes"] for name, info in model_info.items()},
        read_bandwidth["read_gbps"] if read_bandwidth else None,
    )
    payload = {
        "command": command,
        "settings": {
            "models": [s.name for s in specs],
            "runtimes": runtimes,
            "groups": list(groups),
            "repeats": repeats,
            "untuned_repeats": untuned_repeats,
            "warmup": warmup,
            "image": str(image) if image else str(DEFAULT_IMAGE),
            "seed": seed,
            "batch": batch,
            "thread_env": THREAD_ENV,
            "avx2_caps": AVX2_CAPS,
        },
        "fma_peak": fma_peak,
        "read_bandwidth": read_bandwidth,
        "cpuid_cap": cpuid_cap,
        "models": model_info,
        "groups": group_info,
        "rows": rows,
    }
    return versioned(SCHEMA, payload, machine)


def _group_entries(
    spec: ModelSpec,
    group: str,
    runtimes: list[str],
    repeats: int,
    untuned_repeats: int,
    warmup: int,
    cache_dir,
    report,
    scratch: Path,
    input_shape: tuple[int, ...] | None = None,
) -> tuple[list[dict], list[dict]]:
    """The runtimes to measure for one model and group, and the rows of those skipped
    (``input_shape``: a batch other than the file's)."""
    entries: list[dict] = []
    skipped: list[dict] = []
    for name in runtimes:
        if name == "dlib" and (spec.kind != "dlib" or input_shape is not None):
            continue
        entry: dict[str, Any] = {"runtime": name, "kind": name, "repeats": repeats, "warmup": warmup}
        if name.startswith("tvm-"):
            tuned = name == "tvm-tuned"
            artefact, target, note = _tvm_artefact(spec, group, tuned, cache_dir, report, scratch, input_shape)
            if artefact is None:
                skipped.append(
                    {
                        "runtime": name,
                        "status": "skipped",
                        "note": note,
                        "target": target,
                        "isa_used": None,
                        "isa_capped": None,
                        "wall_ms": [],
                        "cpu_ms": [],
                        "max_abs_diff": float("nan"),
                        "max_rel_diff": float("nan"),
                        "info": {},
                    }
                )
                continue
            entry.update(kind="tvm", artefact=str(artefact), target=target, note=note)
            if not tuned:
                entry.update(repeats=untuned_repeats, warmup=min(warmup, 1))
        entries.append(entry)
    return entries, skipped


def _runtime_versions() -> dict[str, str | None]:
    from importlib import metadata

    versions = {}
    for key, dist in (("openvino", "openvino"), ("dlib", "dlib-bin"), ("onnx", "onnx"), ("onnxruntime", "onnxruntime")):
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    return versions


def _make_row(model: str, group: str, raw: dict[str, Any], target: dict | None, avx512: bool) -> dict[str, Any]:
    """A reported row from a measured (or skipped) one: statistics of the samples."""
    runtime = raw["runtime"]
    if group == "avx2":
        isa = "avx2"
    else:
        isa = "native" if runtime.startswith("tvm-") else ("avx512" if avx512 else "avx2")
    row: dict[str, Any] = {
        "model": model,
        "runtime": runtime,
        "group": group,
        "isa": isa,
        "isa_used": raw.get("isa_used"),
        "isa_capped": raw.get("isa_capped"),
        "target": target if target is not None else raw.get("target"),
        "status": raw["status"],
        "note": raw.get("note", ""),
    }
    wall, cpu = raw.get("wall_ms", []), raw.get("cpu_ms", [])
    if raw["status"] == "ok" and wall:
        stats = latency_stats(wall)
        cpu_stats = latency_stats(cpu)
        row.update(
            {
                k: stats[k]
                for k in ("n", "median_ms", "p90_ms", "p99_ms", "min_ms", "max_ms", "mean_ms", "stdev_ms", "unstable")
            }
        )
        row["cpu_median_ms"], row["cpu_p90_ms"] = cpu_stats["median_ms"], cpu_stats["p90_ms"]
        row["cpu_per_wall"] = float(np.sum(cpu) / np.sum(wall)) if np.sum(wall) > 0 else float("nan")
    else:
        nan = float("nan")
        row.update(
            {
                "n": 0,
                "median_ms": nan,
                "p90_ms": nan,
                "p99_ms": nan,
                "min_ms": nan,
                "max_ms": nan,
                "mean_ms": nan,
                "stdev_ms": nan,
                "unstable": True,
                "cpu_median_ms": nan,
                "cpu_p90_ms": nan,
                "cpu_per_wall": nan,
            }
        )
    for key in ("max_abs_diff", "max_rel_diff"):
        value = raw.get(key)
        row[key] = float(value) if value is not None else float("nan")
    row["info"] = raw.get("info", {})
    row["load_seconds"] = raw.get("load_seconds")
    row["samples_ms"], row["cpu_samples_ms"] = [float(v) for v in wall], [float(v) for v in cpu]
    return row


def add_ratios(rows: list[dict[str, Any]]) -> None:
    """Set ``ratio_to_tvm_tuned`` and ``cpu_ratio_to_tvm_tuned`` on every row, in place.

    The ratio is the row's median over the median of the ``tvm-tuned`` row of the same model and
    group (above 1: TVM tuned is faster). NaN when that group has no measured ``tvm-tuned`` row.
    """
    reference = {(r["model"], r["group"]): r for r in rows if r["runtime"] == RATIO_RUNTIME and r["status"] == "ok"}
    for row in rows:
        ref = reference.get((row["model"], row["group"]))
        for key, stat in (("ratio_to_tvm_tuned", "median_ms"), ("cpu_ratio_to_tvm_tuned", "cpu_median_ms")):
            ok = ref is not None and row["status"] == "ok" and ref[stat] > 0
            row[key] = row[stat] / ref[stat] if ok else float("nan")


def add_throughput(rows: list[dict[str, Any]], gflops: Mapping[str, float], peak_gflops: float | None) -> None:
    """Set ``gflops`` (of the model), ``achieved_gflops`` (GFLOPs / median seconds) and
    ``fraction_of_fma_peak`` (achieved / peak; NaN without a peak), and the same from the CPU
    time (``cpu_achieved_gflops``, ``cpu_fraction_of_fma_peak``), on every row, in place."""
    for row in rows:
        g = gflops[row["model"]]
        row["gflops"] = g
        for prefix, stat in (("", "median_ms"), ("cpu_", "cpu_median_ms")):
            ms = row[stat]
            achieved = g / (ms / 1e3) if ms and ms > 0 and math.isfinite(ms) else float("nan")
            row[f"{prefix}achieved_gflops"] = achieved
            row[f"{prefix}fraction_of_fma_peak"] = achieved / peak_gflops if peak_gflops else float("nan")


def add_memory_floor(
    rows: list[dict[str, Any]], model_weight_bytes: Mapping[str, int], read_gbps: float | None
) -> None:
    """Set ``weight_bytes`` (what one call reads: a TVM build's weights as packed, from its
    metadata, Winograd kernels included; for other runtimes the model file's weights, a lower
    bound), ``memory_floor_ms`` (those bytes at this thread's read bandwidth: the time of a call
    that only streamed its weights from memory) and ``cpu_fraction_of_memory_floor``
    (floor / CPU-time median; 1 would be a call as fast as its weights arrive) on every row, in
    place. NaN without a bandwidth."""
    for row in rows:
        packed = (row.get("info") or {}).get("weight_bytes")
        weight_bytes = int(packed) if packed else int(model_weight_bytes[row["model"]])
        row["weight_bytes"] = weight_bytes
        floor = weight_bytes / (read_gbps * 1e9) * 1e3 if read_gbps else float("nan")
        row["memory_floor_ms"] = floor
        ms = row.get("cpu_median_ms", float("nan"))
        ok = ms and ms > 0 and math.isfinite(ms)
        row["cpu_fraction_of_memory_floor"] = floor / ms if ok else float("nan")
