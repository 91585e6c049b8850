"""Ablation of the convolution schemes: one model built from several tuning databases, side by side.

    python scripts/conv_schemes.py data/models/dlib_face_recognition_resnet_model_v1.onnx \\
        data/tuning/dlib_face_recognition_resnet_model_v1-broadwell-nchw \\
        data/tuning/dlib_face_recognition_resnet_model_v1-broadwell-nhwc \\
        data/tuning/dlib_face_recognition_resnet_model_v1-broadwell \\
        --json docs/results/conv_schemes.json

Each database is compiled for Broadwell in the scheme its manifest names (NCHW, NHWC or
NHWC-winograd, see ``frvt.compiler.passes.prepare_module``), at the input shape its manifest
names (the embedder's ``-flip`` databases: a batch of two; all the databases must agree); the
builds run one thread each, interleaved call by call in this process
(``frvt.perf.bench.time_interleaved``), on the same seeded input. Prints the median and p90 per build, the ratio of each median to the first build's,
each build's max abs difference from ONNX Runtime, and the weights it reads per call (as
packed: Winograd kernels are larger) with the time that takes at this thread's measured memory
read bandwidth (``frvt.perf.machine.measure_read_bandwidth``), a floor under a batch-1 call. Speed
against the other runtimes is ``frvt bench``'s job; this compares TVM builds with each other only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.settings import limit_threads_by_default  # noqa: E402

limit_threads_by_default()  # one thread, before TVM is imported

import numpy as np  # noqa: E402

from frvt.perf.bench import onnxruntime_session, time_interleaved  # noqa: E402
from frvt.perf.bench.inputs import batched_onnx  # noqa: E402
from frvt.perf.machine import measure_fma_peak, measure_read_bandwidth  # noqa: E402
from frvt.compiler import compile as tvm_compile, databases, passes  # noqa: E402
from implementation.tvm_runtime import CompiledModel  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX model")
    parser.add_argument("databases", type=Path, nargs="+", help="tuning database directories")
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--json", type=Path, default=None, help="write the result here")
    args = parser.parse_args()

    name, shape = passes.onnx_input_spec(args.model)
    # the databases' input shape (a batch: the embedder's chip and mirror image), the model file's by default
    shapes = {tuple(databases.read_manifest(d).get("input_shape") or shape) for d in args.databases}
    if len(shapes) != 1:
        parser.error(f"the databases were tuned at different input shapes: {sorted(shapes)}")
    (input_shape,) = shapes
    x = np.random.default_rng(0).uniform(-1.0, 1.0, input_shape).astype(np.float32)
    onnx_model = args.model
    if tuple(input_shape) != tuple(shape):
        onnx_model = batched_onnx(args.model, input_shape[0], Path(tempfile.mkdtemp()) / args.model.name)
    reference = onnxruntime_session(onnx_model).run(None, {name: x})
    calls, builds = {}, []
    for database in args.databases:
        scheme = databases.database_conv_scheme(database)
        artefact = tvm_compile.ensure_compiled(
            args.model, "broadwell", database=database, conv_scheme=scheme, input_shape=tuple(input_shape)
        )
        model = CompiledModel.load(artefact)
        diff = max(float(np.max(np.abs(ours - ref))) for ours, ref in zip(model(x), reference))
        label = f"{database.name} ({scheme})"
        calls[label] = (lambda m: lambda: m(x))(model)
        builds.append(
            {
                "database": str(database),
                "conv_scheme": scheme,
                "winograd": model.metadata.get("winograd"),
                "layout_elementwise": model.metadata.get("layout_elementwise", []),
                "cold_tasks": len(databases.database_cold_tasks(database)),
                "records": databases.count_records(database),
                "max_abs_diff_vs_onnxruntime": diff,
                "weight_mb": model.metadata.get("weight_bytes", float("nan")) / 1e6,
            }
        )
    fma = measure_fma_peak()
    memory = measure_read_bandwidth()
    times = time_interleaved(calls, args.repeats, args.warmup)
    first = None
    print(
        f"{'build':60s} {'median ms':>10s} {'p90 ms':>8s} {'ratio':>6s} {'max abs diff':>12s} "
        f"{'weights MB':>10s} {'floor ms':>8s}"
    )
    for build, label in zip(builds, calls):
        samples = sorted(times.wall_ms[label])
        median = statistics.median(samples)
        first = first or median
        build.update(
            label=label,
            median_ms=median,
            p90_ms=samples[int(0.9 * (len(samples) - 1))],
            ratio_to_first=median / first,
            n=len(samples),
            weight_floor_ms=build["weight_mb"] / memory["read_gbps"],
        )
        print(
            f"{label[:60]:60s} {median:10.2f} {build['p90_ms']:8.2f} {median / first:6.2f} "
            f"{build['max_abs_diff_vs_onnxruntime']:12.1e} {build['weight_mb']:10.1f} {build['weight_floor_ms']:8.2f}"
        )
    print(f"AVX2 FMA peak in this run: {fma['peak_gflops']:.1f} GFLOP/s; memory read: {memory['read_gbps']:.1f} GB/s")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "schema": "frvt.conv_schemes/1",
                    "model": args.model.name,
                    "date": time.strftime("%Y-%m-%d %H:%M"),
                    "fma_peak": fma,
                    "memory_read": memory,
                    "repeats": args.repeats,
                    "builds": builds,
                },
                indent=2,
            )
            + "\n"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
