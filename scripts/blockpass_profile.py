"""Where the time of one block goes in each pass of `frvt score --all-vs-all` (CPU time, one thread).

Usage::

    python scripts/blockpass_profile.py --store synthetic_14143.h5 --json docs/results/blockpass_profile.json
    python scripts/blockpass_profile.py --store synthetic_14143.h5 --bootstrap 0 --json docs/results/blockpass_profile_one_pass.json

Scores the store once in this process to get the passes a real run makes (their bins, edges and
bracket come from the data), then times one full block (rows 2048..4095 x columns 6144..8191 by
default) in each pass: the float32 products of its tiles alone, the products with every pair's key-bin
code, each compiled pass, and the same pass through numpy on the float64 block (the reference).
For each compiled pass it also counts the pairs whose code its table cannot decide (they take the
bounds or the exact product); for the one pass, the share of pairs whose exact similarity it keeps
(and the key bins that hold most of them), and its time with no bin kept whole (what keeping costs). Medians of ``--repeats`` runs of ``time.thread_time``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.perf.machine import git_revision  # noqa: E402


def capture_passes(store: Path, out: Path, bootstrap: int = 100) -> list:
    """The reductions a real scoring of ``store`` runs over every comparison (``bootstrap``
    resamples, plots on), in order (the sample that precedes them runs on a few blocks only)."""
    from validation import allvsall

    caught = []
    original = allvsall.StoreComparisons.run_pass

    def recording(self, reduction, chunk_size, ids=None):
        caught.append(reduction)
        return original(self, reduction, chunk_size, ids)

    allvsall.StoreComparisons.run_pass = recording
    try:
        allvsall.score_stores(store, None, out, workers=0, n_resamples=bootstrap, plots=True)
    finally:
        allvsall.StoreComparisons.run_pass = original
    return caught


def cpu_median(fn, repeats: int) -> float:
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.thread_time()
        fn()
        times.append(time.thread_time() - t0)
    return float(np.median(times))


def undecided(runner, strips) -> int:
    """Pairs of the block whose code the pass's table does not decide."""
    from validation import blockpasses as bp

    n = 0
    for _, _, args in strips:
        t = runner.table[args[1] & 0xFFFF]
        n += int(np.count_nonzero(t == (bp.SLOW if t.dtype == np.uint8 else -1)))
    return n


def kept_by_bin(part, top: int = 5) -> list[dict]:
    """The key bins holding most of the pairs the one pass keeps whole, from its packed partial:
    each bin's lowest similarity, its share of the block's pairs, and the share of the block's
    pairs above the bin (what FMR a threshold there would have on this block)."""
    hist, (bits, counts) = np.asarray(part[0]), part[4]
    n = hist.sum()
    kept = np.bincount(
        (np.asarray(bits, np.uint32) >> np.uint32(16)).astype(np.int64), weights=counts, minlength=1 << 16
    )
    above = np.cumsum(hist[::-1])[::-1] - hist  # raw bins of non-negative floats are in value order
    rows = []
    for b in np.argsort(-kept)[:top]:
        if kept[b] <= 0:
            break
        low = float(np.array([b << 16], np.uint32).view(np.float32)[0])
        rows.append({"bin_low": low, "kept_share": float(kept[b] / n), "share_above": float(above[b] / n)})
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, required=True)
    ap.add_argument("--rows", type=int, nargs=2, default=(2048, 4096))
    ap.add_argument("--cols", type=int, nargs=2, default=(6144, 8192))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--bootstrap", type=int, default=100, help="the scoring's bootstrap resamples (0: one pass)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/frvt-blockpass-profile"))
    ap.add_argument("--json", type=Path, required=True)
    args = ap.parse_args()

    from threadpoolctl import threadpool_limits

    from validation import blockpasses as bp
    from validation.allvsall import BlockContext, make_plan

    with threadpool_limits(1):
        passes = capture_passes(args.store, args.out, args.bootstrap)
        plan = make_plan(args.store)
        (r0, r1), (c0, c1) = args.rows, args.cols
        blk = (r0, r1, c0, c1)
        fast, ref = BlockContext(plan), BlockContext(plan, compiled=False)
        a, a_ok, _ = fast.panel(plan.gallery, r0, r1)
        b, b_ok, _ = fast.panel(plan.probe, c0, c1)
        rs, cs = plan.row_subject[r0:r1], plan.col_subject[c0:c1]
        strips = bp._Strips(a, a_ok, b, b_ok, rs, cs, r0, c0, plan.all_vs_all)
        pairs = (r1 - r0) * (c1 - c0)
        a32, b32t = strips.a32, strips.b32t

        def products():
            for s0 in range(0, r1 - r0, bp.TILE_ROWS):
                for t0 in range(0, c1 - c0, bp.TILE_COLS):
                    a32[s0 : s0 + bp.TILE_ROWS] @ b32t[:, t0 : t0 + bp.TILE_COLS]

        result = {
            "block": list(blk),
            "pairs": pairs,
            "float32_products_seconds": cpu_median(products, args.repeats),
            "products_and_codes_seconds": cpu_median(lambda: [x for x in strips], args.repeats),
            "passes": [],
        }
        for red in passes:
            parts = getattr(red, "reductions", [red])
            entry = {
                "pass": "+".join(type(r).__name__ for r in parts),
                "compiled_seconds": cpu_median(lambda: fast.run_block(blk, red, 1 << 18, True), args.repeats),
                "numpy_seconds": cpu_median(lambda: ref.run_block(blk, red, 1 << 18, True), max(1, args.repeats // 2)),
                "undecided_by_table": {
                    type(r).__name__: undecided(bp._KERNELS[type(r)](r, strips), strips) / pairs
                    for r in parts
                    if hasattr(bp._KERNELS[type(r)](r, strips), "table")
                },
            }
            entry["compiled_comparisons_per_cpu_second"] = pairs / entry["compiled_seconds"]
            if hasattr(red, "fine"):  # the one pass: the share of pairs whose exact similarity it keeps
                part = fast.run_block(blk, red, 1 << 18, False)
                entry["kept_whole_share"] = float(part[4][1].sum() / pairs)
                entry["kept_whole_by_bin"] = kept_by_bin(part)
                # and what the block would take were no pair kept (the same pass with no fine bin)
                bare = type(red)(red.higher_is_better, np.zeros_like(red.fine))
                entry["compiled_seconds_keeping_none"] = cpu_median(
                    lambda: fast.run_block(blk, bare, 1 << 18, True), args.repeats
                )
            result["passes"].append(entry)
            if "compiled_seconds_keeping_none" in entry:
                print(f"{entry['pass']} keeping no pair whole: {1e3 * entry['compiled_seconds_keeping_none']:.1f} ms")
                for row in entry["kept_whole_by_bin"]:
                    print(
                        f"  kept whole from {row['bin_low']:.4f}: {row['kept_share']:.2%} of the pairs "
                        f"({row['share_above']:.2e} of them above)"
                    )
            print(
                f"{entry['pass']}: {1e3 * entry['compiled_seconds']:.1f} ms compiled, "
                f"{1e3 * entry['numpy_seconds']:.1f} ms numpy; undecided {entry['undecided_by_table']}"
            )
        print(
            f"block of {pairs:,} pairs: float32 products {1e3 * result['float32_products_seconds']:.1f} ms, "
            f"with codes {1e3 * result['products_and_codes_seconds']:.1f} ms"
        )
    rev = git_revision()
    doc = {
        "schema": "frvt.blockpass-profile/1",
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(),
        "command": " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "git_revision": rev,
        "store": str(args.store),
        **result,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
