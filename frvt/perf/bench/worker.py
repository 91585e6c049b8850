"""The measuring process (``python -m frvt.perf.bench SPEC.json OUT.json``): one model in one ISA group."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from frvt.perf.bench.cpuid_cap import _cpuid_cap_state
from frvt.perf.bench.inputs import onnxruntime_session
from frvt.perf.bench.models import AVX2_CAPS, THREAD_ENV, BenchError
from frvt.perf.bench.report import _nan_to_none
from frvt.perf.bench.runtimes import (
    LoadedRuntime,
    _load_dlib,
    _load_onnxruntime,
    _load_opencv,
    _load_openvino,
    _load_tvm,
)
from frvt.perf.bench.timing import output_difference, time_interleaved


def measure_group(spec: dict[str, Any]) -> dict[str, Any]:
    """Load the runtimes of one model in this process and time them interleaved.

    Runs in the fresh process of one ISA group (``python -m frvt.perf.bench SPEC OUT``); the caps are
    already in the environment.

    Parameters
    ----------
    spec : dict
        ``model``, ``onnx`` (path), ``group``, ``inputs`` (``.npz`` path with ``x`` and maybe
        ``chip``), ``cpu_avx512`` (bool: the CPU has AVX-512F), ``affinity`` (CPUs to run on,
        optional), ``reference_out`` (``.npz`` path for ONNX Runtime's outputs, optional),
        ``runtimes``: list of
        ``{"runtime", "kind", "repeats", "warmup"}`` plus ``artefact`` and ``target`` for TVM.

    Returns
    -------
    dict
        ``rows`` (one per runtime: ``runtime``, ``isa_used``, ``isa_capped``, ``status``,
        ``note``, ``info``, ``wall_ms``, ``cpu_ms``, ``max_abs_diff``, ``max_rel_diff``,
        ``load_seconds``), ``rounds``, ``threads`` (of this process after loading),
        ``affinity`` (CPUs before and after loading), ``load_average`` (before and after timing),
        ``environment``, ``cpuid_cap`` (the cap's counters at each stage, None without it).
    """
    import psutil

    onnx_path = Path(spec["onnx"])
    group = spec["group"]
    with np.load(spec["inputs"]) as data:
        inputs = {k: data[k] for k in data.files}
    if spec.get("affinity"):
        os.sched_setaffinity(0, spec["affinity"])  # the parent's CPUs before anything pinned it
    affinity_before = sorted(os.sched_getaffinity(0))
    cap_start = _cpuid_cap_state()
    reference_session = onnxruntime_session(onnx_path)  # imports onnxruntime: MLAS reads CPUID now
    cap_after_ort = _cpuid_cap_state()
    ort_capped = bool(
        cap_start
        and cap_after_ort
        and cap_after_ort["active"]
        and cap_after_ort["leaf7_traps"] > cap_start["leaf7_traps"]
    )
    output_names = [o.name for o in reference_session.get_outputs()]
    reference = reference_session.run(None, {reference_session.get_inputs()[0].name: inputs["x"]})
    if spec.get("reference_out"):
        np.savez(spec["reference_out"], *reference)
    loaded: dict[str, LoadedRuntime] = {}
    rows: dict[str, dict[str, Any]] = {}
    for entry in spec["runtimes"]:
        name, kind = entry["runtime"], entry["kind"]
        row = {
            "runtime": name,
            "status": "ok",
            "note": entry.get("note", ""),
            "info": {},
            "wall_ms": [],
            "cpu_ms": [],
            "isa_used": None,
            "isa_capped": None,
            "max_abs_diff": float("nan"),
            "max_rel_diff": float("nan"),
        }
        rows[name] = row
        start = time.perf_counter()
        try:
            if kind == "tvm":
                rt = _load_tvm(Path(entry["artefact"]), entry["target"])
            elif kind == "onnxruntime":
                rt = _load_onnxruntime(onnx_path, group, bool(spec.get("cpu_avx512")), ort_capped)
            elif kind == "openvino":
                rt = _load_openvino(onnx_path, group)
            elif kind == "opencv":
                rt = _load_opencv(onnx_path, group, output_names)
            elif kind == "dlib":
                rt = _load_dlib()
            else:
                raise BenchError(f"unknown runtime kind {kind!r}")
        except Exception as exc:  # one runtime failing to load is a row, not a crash
            row.update(status="error", note=f"load failed: {type(exc).__name__}: {exc}")
            continue
        row["load_seconds"] = time.perf_counter() - start
        row.update(isa_used=rt.isa_used, isa_capped=rt.isa_capped, info=rt.info)
        if rt.info.get("note"):
            row["note"] = "; ".join(s for s in (row["note"], rt.info["note"]) if s)
        loaded[name] = rt
    threads = psutil.Process().num_threads()
    affinity_after = sorted(os.sched_getaffinity(0))
    cap_loaded = _cpuid_cap_state()
    calls = {name: (lambda rt=rt: rt.run(inputs)) for name, rt in loaded.items()}
    entries = {e["runtime"]: e for e in spec["runtimes"]}
    load_before = os.getloadavg()
    times = time_interleaved(
        calls,
        repeats={n: int(entries[n]["repeats"]) for n in calls},
        warmup={n: int(entries[n]["warmup"]) for n in calls},
    )
    load_after = os.getloadavg()
    cap_end = _cpuid_cap_state()
    for name in loaded:
        row = rows[name]
        if name in times.errors:
            row.update(status="error", note=f"call failed: {times.errors[name]}")
            continue
        row["wall_ms"], row["cpu_ms"] = times.wall_ms[name], times.cpu_ms[name]
        if name in times.first_output:
            row["max_abs_diff"], row["max_rel_diff"] = output_difference(times.first_output[name], reference)
    return {
        "model": spec["model"],
        "group": group,
        "rows": list(rows.values()),
        "rounds": times.rounds,
        "threads": threads,
        "affinity": {"before": affinity_before, "after": affinity_after},
        "load_average": {"before": list(load_before), "after": list(load_after)},
        "environment": {k: os.environ.get(k) for k in (*THREAD_ENV, *AVX2_CAPS, "LD_PRELOAD")},
        "cpuid_cap": None
        if cap_start is None
        else {
            "start": cap_start,
            "after_onnxruntime_import": cap_after_ort,
            "after_loading": cap_loaded,
            "after_timing": cap_end,
        },
    }


def _worker_main(argv: Sequence[str]) -> int:
    """``python -m frvt.perf.bench SPEC.json OUT.json``: measure one model in one ISA group."""
    if len(argv) != 2:
        sys.stderr.write("usage: python -m frvt.perf.bench SPEC.json OUT.json\n")
        return 2
    spec = json.loads(Path(argv[0]).read_text())
    result = measure_group(spec)
    Path(argv[1]).write_text(json.dumps(_nan_to_none(result)))
    return 0
