"""Side-by-side single-thread latency: TVM untuned vs TVM tuned vs ONNX Runtime, per model.

One process, one thread everywhere (TVM_NUM_THREADS=1, ONNX Runtime intra/inter-op 1), the
same random input, runtimes interleaved call by call so that load from other processes hits
them alike; warm-up calls discarded; median and p90 of ``--runs`` calls per runtime. Also the
max abs difference of each TVM build from ONNX Runtime.

Usage::

    python scripts/quick_latency.py                       # dlib embedder + RetinaFace, broadwell
    python scripts/quick_latency.py MODEL.onnx --database DIR --runs 50 --json out.json

Compiled models are cached in ~/.cache/frvt/compiled (rebuilt when the database changes).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
os.environ.setdefault("OMP_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from implementation import compile as tvm_compile  # noqa: E402
from implementation.tvm_runtime import CompiledModel  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODELS = [
    REPO / "data" / "models" / "dlib_face_recognition_resnet_model_v1.onnx",
    REPO / "data" / "models" / "retinaface_mnet025.onnx",
]


def _ort_session(model: Path):
    import onnxruntime as ort  # pylint: disable=import-outside-toplevel

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    return ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])


def measure(model: Path, target: str, database: Path | None, runs: int, warmup: int) -> dict:
    """Latency rows (ms) of the runtimes on one model."""
    target_dict = tvm_compile.parse_target(target)
    if database is None:
        database = tvm_compile.find_tuned_database(model, target_dict)
    builds = {"tvm-untuned": tvm_compile.ensure_compiled(model, target_dict, auto_database=False)}
    if database is not None and tvm_compile.count_records(database) > 0:
        builds["tvm-tuned"] = tvm_compile.ensure_compiled(model, target_dict, database=database)
    session = _ort_session(model)
    runners = {name: CompiledModel.load(path) for name, path in builds.items()}
    first = next(iter(runners.values()))
    x = np.random.default_rng(0).normal(0, 1, first.input_shape).astype(np.float32)
    feeds = {first.input_name: x}
    calls = {name: (lambda m=m: m(x)) for name, m in runners.items()}
    calls["onnxruntime"] = lambda: session.run(None, feeds)
    reference = session.run(None, feeds)
    diffs = {
        name: max(float(np.abs(a - b).max()) for a, b in zip(m(x), reference)) for name, m in runners.items()
    }
    # Untuned TVM can be ~100x slower: give it fewer runs so the whole thing stays short.
    times: dict[str, list[float]] = {name: [] for name in calls}
    for i in range(warmup + runs):
        for name, call in calls.items():
            if name == "tvm-untuned" and i >= warmup + max(5, runs // 6):
                continue
            start = time.perf_counter()
            call()
            if i >= warmup:
                times[name].append((time.perf_counter() - start) * 1e3)
    rows = []
    for name, values in times.items():
        rows.append(
            {
                "runtime": name,
                "n": len(values),
                "median_ms": float(np.median(values)),
                "p90_ms": float(np.percentile(values, 90)),
                "max_abs_diff": diffs.get(name, 0.0),
            }
        )
    return {
        "model": model.name,
        "target": target_dict,
        "database": str(database) if database is not None else None,
        "database_records": tvm_compile.count_records(database),
        "rows": rows,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", type=Path, nargs="*", default=DEFAULT_MODELS)
    parser.add_argument("--target", default="broadwell")
    parser.add_argument("--database", type=Path, default=None, help="default: the committed one, if any")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    import tvm  # pylint: disable=import-outside-toplevel

    results = []
    for model in args.models:
        result = measure(model, args.target, args.database, args.runs, args.warmup)
        results.append(result)
        ort_ms = next(r["median_ms"] for r in result["rows"] if r["runtime"] == "onnxruntime")
        print(f"\n{result['model']}  target {result['target'].get('mcpu')}  database records {result['database_records']}")
        print(f"  {'runtime':12s} {'n':>4s} {'median ms':>10s} {'p90 ms':>9s} {'/ ORT':>7s} {'max|diff|':>10s}")
        for row in result["rows"]:
            print(f"  {row['runtime']:12s} {row['n']:4d} {row['median_ms']:10.2f} {row['p90_ms']:9.2f} "
                  f"{row['median_ms'] / ort_ms:7.2f} {row['max_abs_diff']:10.2e}")
    if args.json is not None:
        args.json.write_text(json.dumps({
            "format": 1, "tvm_version": tvm.__version__, "machine": platform.processor() or platform.machine(),
            "host_cpu": str(tvm.get_global_func("tvm.codegen.llvm.GetHostCPUName")()),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S"), "results": results,
        }, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
