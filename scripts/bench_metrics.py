"""Benchmark: exact FNMR at FMR = 1e-6 from 10^8 float32 impostor scores streamed from disk.

Writes the impostor file (400 MB for 10^8 float32, under --workdir, never in the repository), then,
each in a fresh process so that peak memory belongs to the measurement alone:

1. ``fnmr_at_fmr``: :func:`validation.streaming.fnmr_at_fmr` over the file for FMR 1e-6 ... 1e-1,
   once with the file evicted from the page cache (``posix_fadvise(DONTNEED)``, a real disk read)
   and once warm. Wall time (``perf_counter``), peak RSS (``getrusage(RUSAGE_SELF).ru_maxrss``) and
   peak traced allocations (``tracemalloc``, separate run since tracing slows allocation).
2. ``evaluate``: the full evaluation ``frvt score`` runs (FNMR at FMR with bootstrap windows, the
   DET points and the EER; warm).
3. ``verify``: loads all 10^8 scores into memory and checks that
   :func:`validation.metrics.fnmr_at_fmr` (sort-based) gives bit-identical thresholds and counts.

4. ``--lfw-scale`` (separately): writes an HDF5 of all 87,549,528 pairs among 13,233 images of
   5,749 identities (LFW's identity sizes; synthetic 32-D embeddings, cosine similarity, subject
   ids) and times ``frvt score``'s library call on it: evaluation, 1000 subject-bootstrap resamples,
   histogram and plots.

Usage::

    python scripts/bench_metrics.py                       # 1e8 impostors, 1e5 genuine
    python scripts/bench_metrics.py --n-impostor 1e6 --out /tmp/b.json   # a quick run
    python scripts/bench_metrics.py --lfw-scale           # docs/results/bench_metrics_lfw_scale.json

Writes a versioned JSON (``frvt.bench_metrics/1``; default ``docs/results/bench_metrics.json``) and
prints one markdown table row for the README.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from frvt.perf.machine import git_revision  # noqa: E402
from frvt.settings import single_thread_env  # noqa: E402

TARGETS = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)


def generate(path: Path, n: int, seed: int, chunk: int = 1 << 22) -> float:
    """Standard-normal float32 impostor similarities, written in chunks (bounded memory)."""
    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    with open(path, "wb") as fh:
        done = 0
        while done < n:
            m = min(chunk, n - done)
            rng.standard_normal(m, dtype=np.float32).tofile(fh)
            done += m
        fh.flush()
        os.fsync(fh.fileno())
    return time.perf_counter() - t0


def genuine_scores(n: int, seed: int) -> np.ndarray:
    """Genuine similarities: normal, mean 4, sd 1 (float32 like the impostors)."""
    return np.random.default_rng(seed + 1).standard_normal(n, dtype=np.float32) + np.float32(4.0)


def evict(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def measure(args) -> dict:
    """Run in a child process: one task, its time and peak memory, as JSON on stdout."""
    import tracemalloc

    from validation import metrics, score_sources, streaming

    path = Path(args.file)
    g = genuine_scores(args.n_genuine, args.seed)
    if args.cold:
        evict(path)
    if args.trace:
        tracemalloc.start()
    src = score_sources.RawScores(path, "float32")
    t0 = time.perf_counter()
    if args.task == "fnmr_at_fmr":
        ev = streaming.evaluate(g, src, TARGETS, n_grid=0, target_windows=False, with_eer=False)
    elif args.task == "evaluate":
        ev = streaming.evaluate(g, src, TARGETS)
    elif args.task == "verify":
        x = np.fromfile(path, dtype=np.float32)
        ref = metrics.fnmr_at_fmr(g, x, TARGETS)
        ev = streaming.evaluate(g, src, TARGETS, n_grid=0, target_windows=False, with_eer=False)
    else:
        raise ValueError(args.task)
    seconds = time.perf_counter() - t0
    traced = tracemalloc.get_traced_memory()[1] if args.trace else None
    out = {
        "task": args.task,
        "cold_cache": bool(args.cold),
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "peak_traced_bytes": traced,
        "passes": ev.passes,
        "operating_points": {
            metrics.fmr_key(f): {
                "threshold": p.threshold,
                "false_matches": p.false_matches,
                "n_impostor": p.n_impostor,
                "fnmr": p.fnmr,
                "false_non_matches": p.false_non_matches,
            }
            for f, p in ev.operating_points.items()
        },
    }
    if args.task == "evaluate":
        out["eer"] = ev.eer.eer
        out["det_points"] = int(ev.det.fmr.size)
    if args.task == "verify":
        same = all(ref[f] == ev.operating_points[f] for f in TARGETS)
        out["identical_to_sort"] = bool(same)
        out["mismatches"] = [metrics.fmr_key(f) for f in TARGETS if ref[f] != ev.operating_points[f]]
    return out


LFW_ROOT = REPO / ".." / "shared" / "data" / "lfw" / "lfw-deepfunneled"


def lfw_identity_sizes(seed: int) -> np.ndarray:
    """Images per identity of LFW (13,233 images of 5,749 people), from the data when present."""
    if LFW_ROOT.is_dir():
        return np.array([len(list(d.iterdir())) for d in sorted(LFW_ROOT.iterdir()) if d.is_dir()])
    rng = np.random.default_rng(seed)  # a stand-in with LFW's totals: many singletons, a long tail
    sizes = np.ones(5749, dtype=int)
    extra = rng.zipf(1.6, 20_000)
    extra = extra[extra < 500][: 13233 - 5749]
    np.add.at(sizes, rng.integers(0, 1680, extra.size), 1)
    sizes[0] += 13233 - sizes.sum()
    return sizes


def write_lfw_scale_hdf5(path: Path, seed: int) -> dict:
    """All pairs among LFW-sized data: one synthetic 32-D embedding per image (identity centre plus
    noise), cosine similarity of every pair i < j, the subject of image i as the pair's subject."""
    from validation.score_sources import HDF5ScoreWriter

    t0 = time.perf_counter()
    sizes = lfw_identity_sizes(seed)
    ident = np.repeat(np.arange(sizes.size), sizes)
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((sizes.size, 32)).astype(np.float32)
    emb = centres[ident] + 0.9 * rng.standard_normal((ident.size, 32)).astype(np.float32)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    n = ident.size
    with HDF5ScoreWriter(path, with_subjects=True) as w:
        for start in range(0, n - 1, 512):
            rows = np.arange(start, min(start + 512, n - 1))
            sim = emb[rows] @ emb.T  # (rows, n)
            for r_i, i in enumerate(rows):
                s = sim[r_i, i + 1 :]
                same = ident[i + 1 :] == ident[i]
                w.append("genuine", s[same], subjects=np.full(int(same.sum()), ident[i]))
                w.append("impostor", s[~same], subjects=np.full(int((~same).sum()), ident[i]))
    return {
        "images": int(n),
        "identities": int(sizes.size),
        "from_lfw_folders": LFW_ROOT.is_dir(),
        "seconds": time.perf_counter() - t0,
    }


def measure_score(args) -> dict:
    """Child process: validation.score.score on the LFW-scale file, time and peak RSS."""
    from validation.score import ScoreInput, score

    t0 = time.perf_counter()
    rep = score(
        [ScoreInput.from_path(args.file, "lfw-scale")],
        Path(args.file).parent / "score_out",
        n_resamples=1000,
        seed=0,
        plots=True,
    )
    seconds = time.perf_counter() - t0
    m = rep.metrics
    return {
        "task": "frvt score (evaluate + 1000 subject-bootstrap resamples + histogram + plots)",
        "seconds": seconds,
        "peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        "n_genuine": m["n_genuine"],
        "n_impostor": m["n_impostor"],
        "eer": m["eer"],
        "fnmr_at_fmr": {
            k: {x: v[x] for x in ("fnmr", "ci_low", "ci_high", "false_matches", "threshold")}
            for k, v in m["fnmr_at_fmr"].items()
        },
        "warnings": rep.warnings,
    }


def lfw_scale(args) -> int:
    path = args.workdir / f"lfw_scale_seed{args.seed}.h5"
    gen = None
    if not path.exists():
        gen = write_lfw_scale_hdf5(path, args.seed)
    cmd = [sys.executable, __file__, "--measure", "--task", "score", "--file", str(path), "--seed", str(args.seed)]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env=single_thread_env(),
    )
    if r.returncode != 0:
        raise SystemExit(f"frvt score failed:\n{r.stderr}")
    run = json.loads(r.stdout)
    result = {
        "schema": "frvt.bench_metrics/1",
        "what": "frvt score on an HDF5 of all pairs among LFW-sized data",
        "file_bytes": path.stat().st_size,
        "generate": gen,
        "machine": machine(),
        "run": run,
        "command": "python scripts/bench_metrics.py --lfw-scale",
    }
    out = args.out.with_name(args.out.stem + "_lfw_scale.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        path.unlink()
    print(
        f"| all pairs of LFW-sized data: {run['n_genuine']:,} genuine, {run['n_impostor']:,} impostor "
        f"(HDF5, {result['file_bytes'] / 1e9:.2f} GB) | frvt score with 1000 subject-bootstrap resamples and "
        f"plots: {run['seconds']:.1f} s, peak RSS {run['peak_rss_bytes'] / 2**20:.0f} MiB |"
    )
    print(f"wrote {out}")
    return 0


def child(args, task: str, cold: bool = False, trace: bool = False) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--measure",
        "--task",
        task,
        "--file",
        str(args.file),
        "--n-genuine",
        str(args.n_genuine),
        "--seed",
        str(args.seed),
    ]
    cmd += (["--cold"] if cold else []) + (["--trace"] if trace else [])
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        check=False,
        env=single_thread_env(),
    )
    if r.returncode != 0:
        raise SystemExit(f"child {task} failed:\n{r.stderr}")
    return json.loads(r.stdout)


def machine() -> dict:
    cpu = None
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "git_revision": git_revision(),
        "load_average_at_start": os.getloadavg(),
    }


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n-impostor", type=float, default=1e8)
    ap.add_argument("--n-genuine", type=float, default=1e5)
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/frvt-bench"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "results" / "bench_metrics.json")
    ap.add_argument("--no-verify", action="store_true", help="skip the in-memory exactness check")
    ap.add_argument("--keep", action="store_true", help="keep the score file")
    ap.add_argument(
        "--lfw-scale",
        action="store_true",
        help="instead: frvt score on an HDF5 of all ~87.5 M pairs among LFW-sized data (13,233 images)",
    )
    ap.add_argument("--measure", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--file", help=argparse.SUPPRESS)
    ap.add_argument("--cold", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.n_genuine = int(args.n_genuine)
    if args.measure:
        json.dump(measure_score(args) if args.task == "score" else measure(args), sys.stdout)
        return 0
    if args.lfw_scale:
        return lfw_scale(args)

    n = int(args.n_impostor)
    args.workdir.mkdir(parents=True, exist_ok=True)
    args.file = args.workdir / f"impostor_{n}_seed{args.seed}.f32"
    gen_s = None
    if not args.file.exists() or args.file.stat().st_size != 4 * n:
        gen_s = generate(args.file, n, args.seed)
    runs = {
        "fnmr_at_fmr_cold": child(args, "fnmr_at_fmr", cold=True),
        "fnmr_at_fmr_warm": child(args, "fnmr_at_fmr"),
        "fnmr_at_fmr_traced": child(args, "fnmr_at_fmr", trace=True),
        "evaluate_warm": child(args, "evaluate"),
    }
    if not args.no_verify:
        runs["verify"] = child(args, "verify")
    result = {
        "schema": "frvt.bench_metrics/1",
        "what": "exact FNMR at FMR 1e-6..1e-1 from float32 impostor scores streamed from a raw file",
        "n_impostor": n,
        "n_genuine": args.n_genuine,
        "file_bytes": args.file.stat().st_size,
        "generate_seconds": gen_s,
        "machine": machine(),
        "runs": runs,
        "command": "python scripts/bench_metrics.py " + " ".join(argv if argv is not None else sys.argv[1:]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    if not args.keep:
        args.file.unlink()
    cold, warm, traced, full = (
        runs[k] for k in ("fnmr_at_fmr_cold", "fnmr_at_fmr_warm", "fnmr_at_fmr_traced", "evaluate_warm")
    )
    p6 = warm["operating_points"]["1e-06"]
    exact = runs.get("verify", {}).get("identical_to_sort")
    print(
        f"| {n:.0e} float32 impostors ({result['file_bytes'] / 1e6:.0f} MB file) | "
        f"FNMR@FMR=1e-6..1e-1: {cold['seconds']:.1f} s cold cache, {warm['seconds']:.1f} s warm, "
        f"{warm['passes']} passes | peak RSS {warm['peak_rss_bytes'] / 2**20:.0f} MiB, traced "
        f"{traced['peak_traced_bytes'] / 2**20:.0f} MiB | with DET + EER: {full['seconds']:.1f} s, "
        f"{full['peak_rss_bytes'] / 2**20:.0f} MiB | exact: {'yes, identical to a full sort' if exact else exact} "
        f"(FMR 1e-6: threshold {p6['threshold']:.6g}, {p6['false_matches']} false matches) |"
    )
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
