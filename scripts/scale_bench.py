"""Scoring at scale: comparisons per second against the machine's matrix-multiply peak, and memory.

Usage::

    # an existing store (e.g. LFW's, from `frvt enroll`), scored all-vs-all, the GEMM peak measured alongside
    python scripts/scale_bench.py --store lfw.h5 --json docs/results/scale_lfw.json

    # synthetic stores: random unit templates with a planted genuine structure, sizes chosen by
    # their number of comparisons
    python scripts/scale_bench.py --synthetic 1e7 1e8 1e9 --json docs/results/scale_synthetic.json

For each run: the time of each pass over every comparison (the key histogram, the kept bins or
radix digits, the EER bracket, the subject bootstrap's counts, the plot histogram), comparisons
per second per pass, and the peak resident memory of this process and its Dask workers together
(sampled every 0.2 s); with ``--repeats``, medians. The single-thread float32 and float64 matrix-multiply peaks are measured in
the same run (median of 5 products of 2048 x 2048 matrices); the machine peak is that times the
number of workers. A comparison costs ``2 d`` floating-point operations of matrix product
(``d`` = template dimension), so the product alone would run at ``peak / (2 d)`` comparisons per second.

Both are also measured in CPU seconds (the product's thread, the threads that computed the blocks
summed over workers): on a machine shared with other jobs, wall time measures the load, CPU time
what the work costs. Each pass's ``worker_cores`` is its workers' CPU seconds over its wall time;
``machine_busy_cores`` is what every process on the machine used during the run (``/proc/stat``),
``own_cpu_seconds`` what this process and its workers used: the rest went to other jobs.
``whole_*`` is the whole reduction: every comparison over the time of all passes.

Synthetic templates: ``n / per_identity`` identities, each a random unit centre; each image is its
centre plus Gaussian noise (``noise`` per unit of norm), normalised, encoded as the default
implementation's templates with the model fingerprint ``SYN1``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.perf.machine import git_revision  # noqa: E402
from validation.allvsall import DEFAULT_BLOCK  # noqa: E402


def gemm_peak(dtype, n: int = 2048, k: int = 2048, repeats: int = 5) -> tuple[float, float]:
    """Single-thread GFLOP/s of an ``n x k`` by ``k x n`` product, per second of wall time and per
    second of this thread's CPU time (medians of ``repeats``; they differ when the machine is shared)."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, k)).astype(dtype)
    b = rng.standard_normal((k, n)).astype(dtype)
    wall, cpu = [], []
    with threadpool_limits(1):
        a @ b
        for _ in range(repeats):
            t0, c0 = time.perf_counter(), time.thread_time()
            a @ b
            wall.append(time.perf_counter() - t0)
            cpu.append(time.thread_time() - c0)
    flop = 2.0 * n * n * k
    return flop / float(np.median(wall)) / 1e9, flop / float(np.median(cpu)) / 1e9


def machine_busy_seconds() -> float | None:
    """CPU seconds every core of the machine has spent busy since boot (Linux ``/proc/stat``), or None."""
    try:
        with open("/proc/stat") as f:
            ticks = [int(x) for x in f.readline().split()[1:]]
    except OSError:
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")  # all but idle and iowait


class PeakMemory:
    """Peak of the summed resident memory of this process and its children, sampled in a thread; also
    the CPU seconds they used (children sampled too: at most one interval of each child's is missed)
    and those the whole machine used (every process, ours and others')."""

    def __init__(self, interval: float = 0.2) -> None:
        import psutil

        self.proc = psutil.Process()
        self.interval = interval
        self.peak = 0
        self._cpu: dict[int, float] = {}
        self._cpu0 = sum(self.proc.cpu_times()[:2])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> int:
        total = 0
        for p in [self.proc, *self.proc.children(recursive=True)]:
            try:
                total += p.memory_info().rss
                self._cpu[p.pid] = sum(p.cpu_times()[:2])
            except Exception:  # noqa: BLE001 - a child that just exited
                pass
        return total

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._sample())
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakMemory":
        self._busy0, self._t0 = machine_busy_seconds(), time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self._cpu[self.proc.pid] = sum(self.proc.cpu_times()[:2])
        self.seconds = time.perf_counter() - self._t0
        self.own_cpu = sum(self._cpu.values()) - self._cpu0
        busy = machine_busy_seconds()
        self.machine_cpu = None if busy is None or self._busy0 is None else busy - self._busy0


def n_for_comparisons(c: float) -> int:
    """Templates whose all-vs-all holds about ``c`` comparisons: ``n (n - 1) / 2 = c``."""
    return int(round((1 + math.sqrt(1 + 8 * c)) / 2))


def synthetic_store(
    path: Path, n: int, *, dim: int = 128, per_identity: int = 4, noise: float = 0.9, seed: int = 0, batch: int = 50_000
) -> Path:
    """Write (or reuse) a store of ``n`` synthetic templates (see the module docstring)."""
    from frvt.store import create_store, read_store_info, write_results
    from implementation import template as tpl

    if path.exists() and read_store_info(path).complete:
        return path
    path.unlink(missing_ok=True)
    fingerprint = b"SYN1"
    rng = np.random.default_rng(seed)
    n_id = max(1, n // per_identity)
    identity = np.arange(n) // per_identity % n_id
    ids = [f"s{i:09d}" for i in range(n)]
    create_store(
        path,
        ids,
        [f"id{k:08d}" for k in identity],
        ids,
        implementation="synthetic",
        implementation_version=f"random unit centres + noise {noise} (seed {seed})",
        config_dir="",
        role="Enrollment_11",
        header=tpl.VectorForm(fingerprint, dim).header(),
    )
    centres = rng.standard_normal((n_id, dim))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    for start in range(0, n, batch):
        stop = min(n, start + batch)
        x = centres[identity[start:stop]] + noise / math.sqrt(dim) * rng.standard_normal((stop - start, dim))
        x = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
        templates = [tpl.encode(v, fingerprint) for v in x]
        write_results(
            path,
            np.arange(start, stop),
            np.zeros(stop - start),
            templates,
            np.zeros(stop - start),
            [""] * (stop - start),
        )
    return path


def score_run(
    store: Path, out: Path, workers: int, block: int, bootstrap: int, plots: bool, progress: bool = False
) -> dict:
    from validation.allvsall import score_stores

    from threadpoolctl import threadpool_limits

    t0 = time.perf_counter()
    with PeakMemory() as mem, threadpool_limits(1):  # one thread, like each Dask worker (workers=0: here)
        report, timings = score_stores(
            store, None, out, workers=workers, block=block, n_resamples=bootstrap, plots=plots, progress=progress
        )
    wall = time.perf_counter() - t0
    m = report.metrics
    n_pairs = m["n_genuine"] + m["n_impostor"]
    fine = report.systems[0].evaluation.selection.fine
    return {
        "store": str(store),
        "n_templates": int(round((1 + math.sqrt(1 + 8 * n_pairs)) / 2)),
        "n_comparisons": n_pairs,
        "n_genuine": m["n_genuine"],
        "n_impostor": m["n_impostor"],
        "workers": workers,
        "block": block,
        "bootstrap": bootstrap,
        "wall_seconds": wall,
        "pass_seconds": sum(t["seconds"] for t in timings),
        "passes": timings,
        "peak_rss_bytes": mem.peak,
        # the CPU seconds of this process and its workers over the whole run (scoring, bootstrap,
        # start and stop of the cluster), and those of every process on the machine meanwhile: on a
        # shared machine, the difference is what other jobs took from the workers
        "own_cpu_seconds": mem.own_cpu,
        "machine_cpu_seconds": mem.machine_cpu,
        "machine_busy_cores": None if mem.machine_cpu is None else mem.machine_cpu / mem.seconds,
        # impostor comparisons whose exact similarity the one pass kept (the guessed bins)
        "kept_whole_share": None if fine is None else float(fine.counts.sum() / max(1, m["n_impostor"])),
        "eer": m["eer"],
        "fnmr_at_fmr": {k: v["fnmr"] for k, v in m["fnmr_at_fmr"].items()},
    }


def median_run(reps: list[dict]) -> dict:
    """One run's record from repeats of it: each pass's seconds and CPU seconds, the wall time and the
    peak memory are medians (every repeat's values kept alongside); the numbers scored are the same."""
    r = dict(reps[0])
    r["repeats"] = len(reps)
    for key in ("wall_seconds", "peak_rss_bytes", "own_cpu_seconds", "machine_cpu_seconds", "machine_busy_cores"):
        if any(x[key] is None for x in reps):
            continue
        r[key] = float(np.median([x[key] for x in reps]))
        r[f"{key}_each"] = [x[key] for x in reps]
    passes = []
    for k, t in enumerate(reps[0]["passes"]):
        t = dict(t)
        for key in ("seconds", "cpu_seconds"):
            t[f"{key}_each"] = [x["passes"][k][key] for x in reps]
            t[key] = float(np.median(t[f"{key}_each"]))
        t["comparisons_per_second"] = t["comparisons"] / t["seconds"]
        t["comparisons_per_cpu_second"] = t["comparisons"] / t["cpu_seconds"]
        passes.append(t)
    r["passes"] = passes
    r["pass_seconds"] = sum(t["seconds"] for t in passes)
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, action="append", default=[], help="an existing template store")
    ap.add_argument("--synthetic", type=float, nargs="*", default=[], help="comparisons of each synthetic run")
    ap.add_argument("--synthetic-dir", type=Path, default=Path("/tmp/frvt-synthetic"))
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="Dask workers; 0: this process")
    ap.add_argument("--block", type=int, default=DEFAULT_BLOCK)
    ap.add_argument("--bootstrap", type=int, default=100)
    ap.add_argument("--plots", action="store_true")
    ap.add_argument("--progress", action="store_true", help="a progress bar per pass")
    ap.add_argument("--out", type=Path, default=Path("/tmp/frvt-scale-bench"))
    ap.add_argument("--repeats", type=int, default=1, help="score each store this many times: medians per pass")
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    (s_peak, s_peak_cpu), (d_peak, d_peak_cpu) = gemm_peak(np.float32), gemm_peak(np.float64)
    print(
        f"single-thread GEMM peak: float32 {s_peak:.1f} GFLOP/s ({s_peak_cpu:.1f} per CPU second), "
        f"float64 {d_peak:.1f} GFLOP/s ({d_peak_cpu:.1f})"
    )
    runs = []
    rev = git_revision()
    from frvt.perf.machine import machine_info

    doc = {
        "schema": "frvt.scale-bench/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "git_revision": rev,
        "gemm_single_thread_gflops": {"float32": s_peak, "float64": d_peak},
        "gemm_single_thread_gflops_per_cpu_second": {"float32": s_peak_cpu, "float64": d_peak_cpu},
        "workers": args.workers,
        "machine": machine_info(),
        "runs": runs,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    jobs = [("store", p) for p in args.store] + [("synthetic", c) for c in args.synthetic]
    for kind, what in jobs:
        if kind == "synthetic":
            n = n_for_comparisons(what)
            args.synthetic_dir.mkdir(parents=True, exist_ok=True)
            t0 = time.perf_counter()
            store = synthetic_store(args.synthetic_dir / f"synthetic_{n}.h5", n)
            print(f"synthetic store of {n:,} templates in {time.perf_counter() - t0:.1f} s")
        else:
            store = what
        reps = [
            score_run(store, args.out / store.stem, args.workers, args.block, args.bootstrap, args.plots, args.progress)
            for _ in range(max(1, args.repeats))
        ]
        r = median_run(reps)
        r["kind"] = kind
        dim = 128
        peak_cmp = {
            "float32": max(1, args.workers) * s_peak * 1e9 / (2 * dim),  # --workers 0: this process
            "float64": max(1, args.workers) * d_peak * 1e9 / (2 * dim),
        }
        core_cpu = s_peak_cpu * 1e9 / (2 * dim)  # one core's float32 product, per CPU second
        for t in r["passes"]:
            t["fraction_of_float32_peak"] = t["comparisons_per_second"] / peak_cmp["float32"]
            t["fraction_of_float64_peak"] = t["comparisons_per_second"] / peak_cmp["float64"]
            t["fraction_of_float32_peak_cpu"] = t["comparisons_per_cpu_second"] / core_cpu
            t["worker_cores"] = t["cpu_seconds"] / t["seconds"]  # cores the workers' threads kept busy
        r["gemm_peak_comparisons_per_second"] = peak_cmp
        r["gemm_peak_comparisons_per_cpu_second"] = {"float32": core_cpu, "float64": d_peak_cpu * 1e9 / (2 * dim)}
        # the whole reduction: every pass, per second of wall time and per CPU second of the workers
        r["whole_comparisons_per_second"] = r["n_comparisons"] / r["pass_seconds"]
        r["whole_fraction_of_float32_peak"] = r["whole_comparisons_per_second"] / peak_cmp["float32"]
        r["pass_cpu_seconds"] = sum(t["cpu_seconds"] for t in r["passes"])
        r["whole_comparisons_per_cpu_second"] = r["n_comparisons"] / r["pass_cpu_seconds"]
        r["whole_fraction_of_float32_peak_cpu"] = r["whole_comparisons_per_cpu_second"] / core_cpu
        runs.append(r)
        args.json.write_text(json.dumps(doc, indent=1) + "\n")  # after each run: a long series keeps what it did
        per = ", ".join(
            f"{t['pass']} {t['comparisons_per_second']:.3g}/s ({t['comparisons_per_cpu_second']:.3g}/CPU s)"
            for t in r["passes"]
        )
        print(
            f"{r['n_comparisons']:,} comparisons: {r['wall_seconds']:.1f} s wall, passes {r['pass_seconds']:.1f} s "
            f"({per}); whole reduction {r['whole_comparisons_per_cpu_second']:.3g}/CPU s = "
            f"{r['whole_fraction_of_float32_peak_cpu']:.1%} of one core's float32 product; "
            f"peak memory {r['peak_rss_bytes'] / 2**20:.0f} MiB; workers kept "
            f"{', '.join(format(t['worker_cores'], '.2f') for t in r['passes'])} cores busy in the passes; "
            f"the machine {r.get('machine_busy_cores', math.nan):.2f} cores, this run "
            f"{r['own_cpu_seconds'] / r['wall_seconds']:.2f}"
        )


if __name__ == "__main__":
    main()
