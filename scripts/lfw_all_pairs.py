"""All genuine and all impostor pairs among LFW's 13,233 images, scored by the default implementation.

Usage (after ``frvt lfw --all-images --cache-dir DIR`` has made every template)::

    python scripts/lfw_all_pairs.py --cache-dir ~/.cache/frvt/lfw/default \\
        --scores /tmp/lfw_all_pairs.h5 --out docs/results/lfw_all_pairs

It decodes every template (``implementation.template``), computes the similarity of every pair
i < j in blocks with the same formula as ``FaceVerifier.match_templates`` (checked on a random
sample of pairs against the real call), writes the 87.5 million scores to an HDF5 score file
(subject ids for the bootstrap, the two templates of every pair for demographics, failed templates
flagged and scored -1), then runs ``frvt score``'s library on it: FNMR at FMR 1e-6 ... 1e-1 with
intervals, EER, DET plot, ``metrics.json``; with ``--demographics LABELS.csv`` also the demographic
differentials (``demographics.json``), as ``frvt score --demographics`` does. ``--skip-write`` scores
an existing ``--scores`` file again.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from implementation import template as tpl  # noqa: E402


def load_templates(cache: Path) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Image ids (sorted), unit embeddings (n, d) float32 and failed flags (n,)."""
    paths = sorted((cache / "templates" / "enroll").glob("*.tmpl"))
    ids, rows, failed = [], [], []
    dim = None
    for p in paths:
        t = tpl.decode(p.read_bytes())
        ids.append(p.stem)
        if t.has_face:
            dim = t.embedding.size
            rows.append(t.embedding)
            failed.append(False)
        else:
            rows.append(None)
            failed.append(True)
    emb = np.zeros((len(ids), dim), np.float32)
    for i, r in enumerate(rows):
        if r is not None:
            emb[i] = r
    return ids, emb, np.array(failed)


def check_against_matcher(cache: Path, ids, emb, failed, config_dir: str, n: int = 2000, seed: int = 0) -> float:
    """Max |vectorised similarity - FaceVerifier.match_templates| on random pairs."""
    from implementation import FaceVerifier

    fv = FaceVerifier()
    assert fv.initialize(config_dir).ok
    rng = np.random.default_rng(seed)
    worst = 0.0
    for _ in range(n):
        i, j = rng.integers(len(ids), size=2)
        a = (cache / "templates" / "enroll" / f"{ids[i]}.tmpl").read_bytes()
        b = (cache / "templates" / "enroll" / f"{ids[j]}.tmpl").read_bytes()
        s = fv.match_templates(a, b).similarity
        v = (
            -1.0
            if failed[i] or failed[j]
            else min(1.0, max(0.0, (1.0 + float(emb[i].astype(np.float64) @ emb[j])) / 2))
        )
        worst = max(worst, abs(s - v))
    return worst


def write_scores(path: Path, ids, emb, failed, block: int = 512) -> dict:
    from validation.demographics import HDF5PairWriter

    names = np.array([i.rsplit("_", 1)[0] for i in ids])
    _, subject = np.unique(names, return_inverse=True)
    n = len(ids)
    counts = {"genuine": 0, "impostor": 0}
    with HDF5PairWriter(path, templates=ids, identities=list(names)) as w:
        for start in range(0, n, block):
            stop = min(n, start + block)
            sims = (1.0 + emb[start:stop] @ emb.T) / 2.0  # (b, n) float32
            np.clip(sims, 0.0, 1.0, out=sims)
            for r, i in enumerate(range(start, stop)):
                j = np.arange(i + 1, n)
                if j.size == 0:
                    continue
                s = sims[r, i + 1 :].copy()
                f = failed[i] | failed[j]
                s[f] = -1.0
                same = subject[j] == subject[i]
                for cls, mask in (("genuine", same), ("impostor", ~same)):
                    if mask.any():
                        w.append(
                            cls,
                            s[mask],
                            np.full(mask.sum(), subject[i]),
                            np.full(mask.sum(), i),
                            j[mask],
                            failed=f[mask],
                        )
                        counts[cls] += int(mask.sum())
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache-dir", type=Path, required=True, help="template cache of `frvt lfw --all-images`")
    ap.add_argument("--config-dir", default=None, help="config of the implementation, for the cross-check")
    ap.add_argument("--scores", type=Path, default=Path("/tmp/lfw_all_pairs.h5"))
    ap.add_argument("--out", type=Path, default=Path("docs/results/lfw_all_pairs"))
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--demographics", type=Path, default=None, help="labels CSV (e.g. scripts/lfw_sex_labels.py)")
    ap.add_argument("--fmr", type=float, action="append", default=None, help="FMR targets (default 1e-6..1e-1)")
    ap.add_argument("--skip-write", action="store_true", help="score an existing --scores file")
    args = ap.parse_args()

    t0 = time.perf_counter()
    ids, emb, failed = load_templates(args.cache_dir)
    print(f"{len(ids)} templates, {int(failed.sum())} failed, {time.perf_counter() - t0:.1f} s")
    if args.config_dir:
        worst = check_against_matcher(args.cache_dir, ids, emb, failed, args.config_dir)
        print(f"vectorised similarity vs match_templates on 2000 random pairs: max abs diff {worst:.2e}")
        assert worst < 1e-5, worst
    t0 = time.perf_counter()
    if args.skip_write:
        import h5py

        with h5py.File(args.scores, "r") as f:
            counts = {"genuine": int(f["genuine"].shape[0]), "impostor": int(f["impostor"].shape[0])}
    else:
        counts = write_scores(args.scores, ids, emb, failed)
        print(f"wrote {counts} to {args.scores} in {time.perf_counter() - t0:.1f} s")

    from validation.metrics import FMR_TARGETS
    from validation.score import ScoreInput, format_report, score

    t0 = time.perf_counter()
    report = score(
        [ScoreInput.from_path(args.scores, "frvt-default on LFW all pairs")],
        args.out,
        n_resamples=args.bootstrap,
        fmr_targets=tuple(args.fmr) if args.fmr else FMR_TARGETS,
    )
    print(format_report(report))
    if args.demographics:
        from validation.demographics import format_all, read_labels, score_demographics

        doc, path = score_demographics(report, read_labels(args.demographics), args.out, n_resamples=args.bootstrap)
        print(format_all(doc))
        print(f"wrote {path}")
    print(f"scored in {time.perf_counter() - t0:.1f} s; metrics in {args.out}/metrics.json")
    (args.out / "provenance.json").write_text(
        json.dumps(
            {"command": " ".join(sys.argv), "n_images": len(ids), "failed_templates": int(failed.sum()), **counts},
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
