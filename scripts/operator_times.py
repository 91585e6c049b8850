"""Per-operator times of a model inside the model: TVM builds from several databases, and ONNX Runtime.

    python scripts/operator_times.py data/models/dlib_face_recognition_resnet_model_v1.onnx \\
        data/tuning/dlib_face_recognition_resnet_model_v1-broadwell-winograd \\
        data/tuning/dlib_face_recognition_resnet_model_v1-broadwell [--onnxruntime] [--repeat 40]

Each database is compiled for Broadwell in its own scheme and Winograd settings and profiled with
``CompiledModel.profile`` (every compiled kernel and VM builtin timed through the Relax VM's
instrument hook, which adds a few microseconds per call), one build after the other, each alone
on one thread. ``--onnxruntime`` adds ONNX Runtime's own per-node profile (one thread, sequential
execution; under ``frvt.perf.bench``'s CPUID cap when it is preloaded, see ``frvt bench``). Kernel times
measured here, in the model, are what a tuning database's times (``scripts/tune.py --tasks``)
should predict; see ``data/tuning/README.md`` on cold measurements.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.settings import limit_threads_by_default  # noqa: E402

limit_threads_by_default()  # one thread, before TVM is imported

import numpy as np  # noqa: E402

from frvt.perf.bench import onnxruntime_session  # noqa: E402
from frvt.compiler import compile as tvm_compile, databases, passes  # noqa: E402
from implementation.tvm_runtime import CompiledModel  # noqa: E402


def _onnxruntime_profile(model: Path, x: np.ndarray, name: str, repeat: int) -> list[tuple[str, float]]:
    """(node name and output shape, mean microseconds per call) from ONNX Runtime's profiler."""
    with tempfile.TemporaryDirectory() as tmp:
        session = onnxruntime_session(model, profile_prefix=str(Path(tmp) / "ort"))
        for _ in range(3 + repeat):  # the first 3 calls are warm-up, dropped below
            session.run(None, {name: x})
        events = json.loads(Path(session.end_profiling()).read_text())
    durations: dict[str, list[float]] = collections.defaultdict(list)
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            args = event.get("args", {})
            shape = [list(o.values())[0] for o in args.get("output_type_shape", [])][:1]
            durations[f"{args.get('op_name', '?')} {event['name'][:-12]} -> {shape[0] if shape else '?'}"].append(
                event["dur"]
            )
    means = ((key, float(np.mean(us[-repeat:]))) for key, us in durations.items())
    return sorted(means, key=lambda item: -item[1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path, help="ONNX model")
    parser.add_argument("databases", type=Path, nargs="*", help="tuning database directories")
    parser.add_argument("--onnxruntime", action="store_true", help="also ONNX Runtime's per-node profile")
    parser.add_argument("--repeat", type=int, default=40, help="profiled calls per build")
    parser.add_argument("--top", type=int, default=25, help="operators shown per build")
    parser.add_argument("--json", type=Path, default=None, help="write every operator's time here")
    args = parser.parse_args()

    name, shape = passes.onnx_input_spec(args.model)
    x = np.random.default_rng(0).uniform(-1.0, 1.0, shape).astype(np.float32)
    result = {}
    for database in args.databases:
        artefact = tvm_compile.ensure_compiled(
            args.model, "broadwell", database=database, conv_scheme=databases.database_conv_scheme(database)
        )
        operators = CompiledModel.load(artefact).profile(x, repeat=args.repeat)
        total = sum(op.time_us for op in operators)
        print(f"\n{database.name}: {total / 1e3:.2f} ms per call summed over {len(operators)} operators")
        for op in operators[: args.top]:
            print(f"{op.time_us:9.1f} us {op.calls:4d}x  {op.name}")
        result[str(database)] = [{"name": op.name, "time_us": op.time_us, "calls": op.calls} for op in operators]
    if args.onnxruntime:
        nodes = _onnxruntime_profile(args.model, x, name, args.repeat)
        print(
            f"\nONNX Runtime: {sum(us for _, us in nodes) / 1e3:.2f} ms per call summed over {len(nodes)} nodes"
            f"{' (CPUID cap preloaded)' if 'frvt_cpuid_cap' in os.environ.get('LD_PRELOAD', '') else ''}"
        )
        for key, us in nodes[: args.top]:
            print(f"{us:9.1f} us  {key}")
        result["onnxruntime"] = [{"name": key, "time_us": us} for key, us in nodes]
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
