"""Summarise repeated ``frvt bench`` runs of one model: per run, each runtime's median and its ratio
to tuned TVM; over the runs, the median and range of each ratio.

    frvt bench --models dlib_resnet --runtimes tvm-tuned,onnxruntime,openvino --groups avx2 --json runs/run1.json
    ...  (as many runs as wanted, one after another)
    python scripts/summarise_bench_runs.py runs/run*.json --range 1-5 --range 6-17 --json summary.json

Prints the table; ``--json`` writes it (schema ``frvt.bench-runs/1``). The raw run files need not be
kept: the summary holds every number quoted from them.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path


def _run_number(path: Path) -> tuple[int, str]:
    digits = re.findall(r"\d+", path.stem)
    return (int(digits[-1]) if digits else 0, path.name)


def summarise(
    paths: list[Path], model: str, group: str, reference: str = "tvm-tuned", ranges: list[tuple[int, int]] | None = None
) -> dict:
    """Per-run medians (ms) and time ratios ``reference / runtime`` of one model and group, and
    each ratio's median and range over the runs numbered in each of ``ranges`` (default: all runs)."""
    runs = []
    for path in sorted(paths, key=_run_number):
        data = json.loads(path.read_text())
        rows = {
            r["runtime"]: r for r in data["rows"] if r["model"] == model and r["group"] == group and r["status"] == "ok"
        }
        if reference not in rows:
            raise SystemExit(f"{path}: no {reference} row for {model} [{group}]")
        medians = {name: r["median_ms"] for name, r in rows.items()}
        runs.append(
            {
                "run": _run_number(path)[0],
                "file": path.name,
                "created": data.get("created"),
                "git_revision": data.get("machine", {}).get("git_revision"),
                "fma_peak_gflops": (data.get("fma_peak") or {}).get("peak_gflops"),
                "command": data.get("command"),
                "median_ms": medians,
                "ratio": {name: medians[reference] / ms for name, ms in medians.items() if name != reference},
            }
        )
    peers = sorted({name for run in runs for name in run["ratio"]})
    overall: dict[str, dict] = {}
    for low, high in ranges or [(min(r["run"] for r in runs), max(r["run"] for r in runs))]:
        chosen = [run for run in runs if low <= run["run"] <= high]
        key = f"runs {low}-{high}"
        overall[key] = {}
        for name in peers:
            values = [run["ratio"][name] for run in chosen if name in run["ratio"]]
            overall[key][name] = {
                "n": len(values),
                "median": statistics.median(values),
                "min": min(values),
                "max": max(values),
                "at_or_under_1": sum(v <= 1.0 for v in values),
            }
    return {
        "schema": "frvt.bench-runs/1",
        "model": model,
        "group": group,
        "reference": reference,
        "ratio": f"{reference} median / runtime median",
        "runs": runs,
        "summary": overall,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", nargs="+", type=Path, help="frvt bench --json files")
    parser.add_argument("--model", default="dlib_resnet")
    parser.add_argument("--group", default="avx2")
    parser.add_argument(
        "--range",
        action="append",
        default=[],
        dest="ranges",
        help="summarise the runs numbered in this range, e.g. 6-17 (repeatable; default: all)",
    )
    parser.add_argument("--json", type=Path, help="write the summary here")
    args = parser.parse_args(argv)
    ranges = [tuple(int(v) for v in text.split("-", 1)) for text in args.ranges]
    result = summarise(args.runs, args.model, args.group, ranges=ranges or None)
    for run in result["runs"]:
        ratios = ", ".join(f"{k} {v:.2f}" for k, v in run["ratio"].items())
        print(f"{run['file']:<12} {run['created']}  {ratios}")
    for key, per_runtime in result["summary"].items():
        for name, s in per_runtime.items():
            print(
                f"{key}: {result['reference']} / {name}: median {s['median']:.2f}, {s['min']:.2f}-{s['max']:.2f} "
                f"over {s['n']} runs, {s['at_or_under_1']} at or under 1"
            )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
