"""validation.lfw_protocol: 10-fold accuracy against a loop oracle; pairs.txt parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from validation import lfw_protocol as L

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data"


def oracle_fold_accuracy(scores, same, folds, failed=None):
    """Per fold: try every candidate threshold on the other folds in a loop, keep the best (middle of
    ties), count correct calls on the held-out fold in a loop."""
    out = []
    for lab in sorted(set(folds.tolist())):
        train = [j for j in range(len(scores)) if folds[j] != lab]
        test = [j for j in range(len(scores)) if folds[j] == lab]
        ok = lambda j: failed is None or not failed[j]  # noqa: E731
        vals = sorted({float(scores[j]) for j in train if ok(j)})
        cands = vals[:1] + [(a + b) / 2 for a, b in zip(vals, vals[1:])] + [float("inf")]
        accs = []
        for t in cands:
            correct = sum(1 for j in train if (ok(j) and scores[j] >= t) == bool(same[j]))
            accs.append(correct)
        best = [c for c, a in zip(cands, accs) if a == max(accs)]
        t = best[(len(best) - 1) // 2]
        correct = sum(1 for j in test if (ok(j) and scores[j] >= t) == bool(same[j]))
        out.append((t, correct, len(test)))
    return out


def _pairs(seed, n=240, ties=False):
    rng = np.random.default_rng(seed)
    same = np.tile([True] * 12 + [False] * 12, n // 24)
    folds = np.repeat(np.arange(10), n // 10)
    s = np.where(same, rng.normal(1.2, 1, n), rng.normal(0, 1, n))
    if ties:
        s = np.round(s)
    return s, same, folds


@pytest.mark.parametrize("seed,ties", [(0, False), (1, True), (2, False)])
def test_lfw_10fold_matches_loop_oracle(seed, ties):
    s, same, folds = _pairs(seed, ties=ties)
    r = L.lfw_10fold(s, same, folds)
    want = oracle_fold_accuracy(s, same, folds)
    assert len(r.folds) == 10
    for f, (t, correct, n) in zip(r.folds, want):
        assert (f.threshold, f.n_correct, f.n_pairs) == (t, correct, n)
    acc = np.array([c / n for _, c, n in want])
    assert r.mean_accuracy == pytest.approx(acc.mean())
    assert r.std_accuracy == pytest.approx(acc.std(ddof=1))
    assert r.standard_error == pytest.approx(acc.std(ddof=1) / np.sqrt(10))


def test_lfw_failures_are_different_and_distances_flip():
    s, same, folds = _pairs(3)
    failed = np.random.default_rng(3).random(s.size) < 0.05
    r = L.lfw_10fold(s, same, folds, failed=failed)
    want = oracle_fold_accuracy(s, same, folds, failed)
    assert [f.n_correct for f in r.folds] == [c for _, c, _ in want]
    d = L.lfw_10fold(-s, same, folds, failed=failed, higher_is_better=False)
    assert [f.n_correct for f in d.folds] == [f.n_correct for f in r.folds]
    assert [f.threshold for f in d.folds] == [-f.threshold for f in r.folds]


def test_perfect_separation_and_bad_input():
    same = np.tile([True, False], 50)
    s = np.where(same, 1.0, 0.0)
    r = L.lfw_10fold(s, same, np.repeat(np.arange(10), 10))
    assert r.mean_accuracy == 1.0 and all(f.threshold == 0.5 for f in r.folds)
    with pytest.raises(ValueError, match="one shape"):
        L.lfw_10fold(s, same[:-1], np.repeat(np.arange(10), 10))
    with pytest.raises(ValueError, match="two folds"):
        L.lfw_10fold(s, same, np.zeros(100, int))


def test_read_pairs_errors_name_the_line(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text("1\t2\nA\t1\t2\nB\t1\t3\nA\t1\tB\t2\nC\t1\tD\n")
    with pytest.raises(ValueError, match=r"line 5: expected 'name1 i name2 j'"):
        L.read_pairs(p)
    p.write_text("1\t1\nA\t1\t2\nA\t1\tB\t2\n")
    pairs = L.read_pairs(p)
    assert pairs[0] == L.LFWPair("A", 1, "A", 2, 0, True)
    assert pairs[1].image_paths("/x")[1] == Path("/x/B/B_0002.jpg")


def test_read_the_real_pairs_txt():
    path = DATA / "lfw" / "pairs.txt"
    if not path.exists():
        pytest.skip("../shared/data/lfw is absent")
    pairs = L.read_pairs(path)
    assert len(pairs) == 6000 and sum(p.is_same for p in pairs) == 3000
    assert sorted({p.fold for p in pairs}) == list(range(10))
    root = DATA / "lfw" / "lfw-deepfunneled"
    assert all(a.exists() and b.exists() for a, b in (p.image_paths(root) for p in pairs[:50]))


def test_result_as_dict():
    s, same, folds = _pairs(4)
    r = L.lfw_10fold(s, same, folds)
    d = r.as_dict()
    assert d["fold_accuracies"] == r.fold_accuracies and len(d["fold_thresholds"]) == 10
    assert d["mean_accuracy"] == pytest.approx(np.mean(r.fold_accuracies))
