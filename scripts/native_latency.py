"""The C++ library against the Python implementation: per-call latency and load time, in one run.

Both use the same compiled models (the submission folder's ``config/``), one thread each:

1. load time: ``initialize`` in a fresh process, alternating C++ and Python, ``--loads`` times each
   (the C++ time is measured inside the bridge, around the library's own call);
2. ``frvt validate --library lib/libfrvt_11_<org>_<seq>.so --config-dir config`` and
   ``frvt validate --config-dir config`` on the bundled validation set, alternating, ``--rounds``
   times each: the create-template median per call on one thread from each run's ``summary.json``.

    python scripts/native_latency.py --json docs/results/native_latency.json

Run it on an otherwise idle machine: the two share it, and the ratio is what to read.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from frvt import settings
from frvt.perf.machine import machine_info
from frvt.submission import build_submission

_LOAD = r"""
import json, sys, time
kind, library, config = sys.argv[1:4]
if kind == "cpp":
    from frvt.native import NativeLibrary
    impl = NativeLibrary(library)
    status = impl.initialize(config)
    seconds = impl.last_call_seconds
else:
    from implementation.pipeline import FaceVerifier
    impl = FaceVerifier()
    start = time.perf_counter()
    status = impl.initialize(config)
    seconds = time.perf_counter() - start
assert status.code == 0, status
print(json.dumps({"seconds": seconds}))
"""


def load_seconds(kind: str, library: Path, config: Path) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _LOAD, kind, str(library), str(config)],
        capture_output=True,
        text=True,
        check=True,
        env=settings.single_thread_env(),
    )
    return json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def validate_median_ms(args: list[str], out: Path) -> dict:
    command = [sys.executable, "-m", "frvt.cli", "validate", "-o", str(out), "--no-progress", *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    summary_path = out / "summary.json"
    if not summary_path.exists():
        raise SystemExit(f"{' '.join(command)} wrote no summary:\n{done.stderr[-2000:]}")
    summary = json.loads(summary_path.read_text())
    failed = [c["name"] for c in summary["checks"] if c["status"] == "FAIL"]
    return {
        "median_ms": summary["latency"]["median_ms"],
        "p90_ms": summary["latency"]["p90_ms"],
        "n": summary["latency"]["n"],
        "failed_checks": failed,
        "exit": done.returncode,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--submission", type=Path, default=None, help="a submission folder (default: build one)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--work-dir", type=Path, default=settings.cache_root() / "native-latency")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    submission = args.submission or build_submission(settings.cache_root() / "submission", log=print).root
    library = next((submission / "lib").glob("libfrvt_11_*.so"))
    config = submission / "config"
    loads: dict[str, list[float]] = {"cpp": [], "python": []}
    for _ in range(args.loads):
        for kind in loads:
            loads[kind].append(load_seconds(kind, library, config))
    print("initialize (s): " + ", ".join(f"{k} median {statistics.median(v):.3f}" for k, v in loads.items()))

    runs: dict[str, list[dict]] = {"cpp": [], "python": []}
    for i in range(args.rounds):
        for kind in runs:
            extra = ["--library", str(library)] if kind == "cpp" else []
            result = validate_median_ms([*extra, "--config-dir", str(config)], args.work_dir / f"{kind}-{i}")
            runs[kind].append(result)
            print(
                f"round {i} {kind}: create_face_template median {result['median_ms']:.1f} ms (n={result['n']}), "
                f"failed checks: {result['failed_checks'] or 'none'}"
            )
    medians = {k: statistics.median(r["median_ms"] for r in v) for k, v in runs.items()}
    report = {
        "schema": "frvt.native_latency/1",
        "date": time.strftime("%Y-%m-%d"),
        "library": library.name,
        "initialize_s": {k: {"median": statistics.median(v), "all": v} for k, v in loads.items()},
        "create_template_median_ms": {k: {"median_of_runs": medians[k], "runs": v} for k, v in runs.items()},
        "cpp_over_python": medians["cpp"] / medians["python"],
        "commands": {
            "cpp": f"frvt validate --library {library} --config-dir {config}",
            "python": f"frvt validate --config-dir {config}",
        },
        "cpu_count": os.cpu_count(),
        "machine": machine_info(),
    }
    print(
        f"create_face_template median: C++ {medians['cpp']:.1f} ms, Python {medians['python']:.1f} ms "
        f"(C++ / Python {report['cpp_over_python']:.2f})"
    )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
