"""The C++ library against the Python implementation on LFW View-2: same templates, same accuracy.

Both run the same compiled models (the submission folder's ``config/``) on every image of
pairs.txt; templates are cached as they are made (a killed run resumes). Reported: the largest
difference between the two similarities of each of the 6,000 pairs, the failures to enrol of each
(and whether they are the same images), and each one's View-2 accuracy (10 folds) and TAR at
FAR = 1e-3.

    python scripts/compare_native_lfw.py --data-dir ../shared/data/lfw --json docs/results/native_lfw.json

``--submission DIR`` uses an existing submission folder (default: build one with
``frvt submission build`` into the cache).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from frvt import settings
from frvt.contract import DEFAULT_IMPLEMENTATION, ReturnCode
from frvt.lfw import image_entries, make_templates, pair_ids
from frvt.native import NativeLibrary, library_spec
from frvt.worker import WorkerLimits, WorkerPool
from frvt.perf.machine import machine_info
from frvt.submission import build_submission
from implementation.pipeline import FaceVerifier
from validation.lfw_protocol import lfw_10fold, read_pairs
from validation.metrics import tar_at_far


def scores_of(impl, cache: Path, ids_of: list[tuple[str, str]]) -> tuple[np.ndarray, np.ndarray]:
    templates: dict[str, bytes] = {}

    def load(tid: str) -> bytes:
        return templates.setdefault(tid, (cache / "templates" / "enroll" / f"{tid}.tmpl").read_bytes())

    scores = np.empty(len(ids_of))
    failed = np.zeros(len(ids_of), bool)
    for i, (a, b) in enumerate(ids_of):
        result = impl.match_templates(load(b), load(a))
        scores[i], failed[i] = result.similarity, result.status.code != ReturnCode.Success
    return scores, failed


def run_side(side: str, library: Path, config: Path, entries, ids_of, cache: Path, workers: int) -> None:
    """Templates and pair scores of one implementation, saved to ``<cache>/scores.npz``."""
    impl = NativeLibrary(library) if side == "cpp" else FaceVerifier()
    status = impl.initialize(str(config))
    if status.code != ReturnCode.Success:
        raise SystemExit(f"{side}: initialize({config}) returned {status.code.name}: {status.info}")
    settings.limit_threads_by_default()
    (cache / "templates").mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    spec = library_spec(library) if side == "cpp" else DEFAULT_IMPLEMENTATION
    pool = WorkerPool(spec, str(config), WorkerLimits(), say=print)
    try:
        records, _, made = make_templates(pool, entries, cache, workers, progress=True, say=print)
    finally:
        pool.close()
    print(f"{side}: {made} templates made in {time.perf_counter() - start:.0f} s")
    scores, failed = scores_of(impl, cache, ids_of)
    wanted = {e.id for e in entries}
    fte = sorted(r["id"] for r in records.values() if r["code"] != ReturnCode.Success and r["id"] in wanted)
    np.savez(cache / "scores.npz", scores=scores, failed=failed, fte=np.array(fte, dtype=str))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=settings.SOURCE_ROOT.parent / "shared" / "data" / "lfw")
    parser.add_argument("--submission", type=Path, default=None, help="a submission folder (default: build one)")
    parser.add_argument("--cache-dir", type=Path, default=settings.cache_root() / "lfw-native-compare")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--side", choices=("cpp", "python"), default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()

    submission = args.submission or build_submission(settings.cache_root() / "submission", log=print).root
    library = next((submission / "lib").glob("libfrvt_11_*.so"))
    config = submission / "config"
    pairs = read_pairs(args.data_dir / "pairs.txt")
    ids_of = [pair_ids(p) for p in pairs]
    ids = sorted({i for ab in ids_of for i in ab})
    entries = image_entries(args.data_dir / "lfw-deepfunneled", ids)
    same = np.array([p.is_same for p in pairs])
    folds = np.array([p.fold for p in pairs])

    if args.side:  # one implementation in this process (the two load TVM's runtime from different places)
        run_side(args.side, library, config, entries, ids_of, args.cache_dir / args.side, args.workers)
        return
    results = {}
    for side in ("cpp", "python"):
        subprocess.run(
            [
                sys.executable,
                __file__,
                "--side",
                side,
                "--submission",
                str(submission),
                "--data-dir",
                str(args.data_dir),
                "--cache-dir",
                str(args.cache_dir),
                "--workers",
                str(args.workers),
            ],
            check=True,
        )
        with np.load(args.cache_dir / side / "scores.npz") as saved:
            results[side] = {"scores": saved["scores"], "failed": saved["failed"], "fte": sorted(saved["fte"].tolist())}
        protocol = lfw_10fold(results[side]["scores"], same, folds, failed=results[side]["failed"])
        scores, failed = results[side]["scores"], results[side]["failed"]
        tar = tar_at_far(
            scores[same], scores[~same], [1e-3], genuine_failed=failed[same], impostor_failed=failed[~same]
        )
        results[side].update(
            mean_accuracy=float(protocol.mean_accuracy),
            std_accuracy=float(protocol.std_accuracy),
            **{"tar_at_far_1e-3": float(tar[1e-3])},
        )
    cpp, py = results["cpp"], results["python"]
    both = ~(cpp["failed"] | py["failed"])
    report = {
        "schema": "frvt.native_lfw/1",
        "protocol": "LFW View-2 pairs.txt: the C++ library and the Python implementation, same compiled models",
        "library": library.name,
        "n_pairs": len(pairs),
        "n_images": len(ids),
        "max_abs_similarity_difference": float(np.abs(cpp["scores"][both] - py["scores"][both]).max()),
        "same_failed_comparisons": bool(np.array_equal(cpp["failed"], py["failed"])),
        "failures_to_enrol": {"cpp": cpp["fte"], "python": py["fte"], "same": cpp["fte"] == py["fte"]},
        "mean_accuracy": {"cpp": cpp["mean_accuracy"], "python": py["mean_accuracy"]},
        "std_accuracy": {"cpp": cpp["std_accuracy"], "python": py["std_accuracy"]},
        "accuracy_difference_points": 100 * abs(cpp["mean_accuracy"] - py["mean_accuracy"]),
        "tar_at_far_1e-3": {"cpp": cpp["tar_at_far_1e-3"], "python": py["tar_at_far_1e-3"]},
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_info(),
    }
    print(json.dumps({k: v for k, v in report.items() if k != "machine"}, indent=2))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
