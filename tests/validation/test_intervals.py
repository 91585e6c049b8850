"""validation.intervals: Clopper-Pearson against exact binomial sums, the subject bootstrap against
a resample-by-resample oracle that rebuilds the resampled score lists."""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import pytest

from validation import intervals as I
from validation import metrics as M
from validation import score_sources
from validation import streaming as S


def _binom_tail_le(k, n, p):
    """P(X <= k) for X ~ Binomial(n, p), summed exactly with fractions of the terms."""
    return float(sum(Fraction(math.comb(n, i)) * Fraction(p) ** i * Fraction(1 - p) ** (n - i) for i in range(k + 1)))


def _bisect(f, lo=0.0, hi=1.0, iters=60):
    """Root of a decreasing function on [lo, hi]."""
    for _ in range(iters):
        mid = (lo + hi) / 2
        if f(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


@pytest.mark.parametrize("k,n", [(0, 10), (1, 10), (5, 10), (10, 10), (3, 40), (17, 60), (0, 1), (1, 1)])
def test_clopper_pearson_matches_binomial_tails(k, n):
    alpha = 0.05
    lo, hi = I.clopper_pearson(k, n, 0.95)
    # upper: P(X <= k | p=hi) = alpha/2; lower: P(X >= k | p=lo) = alpha/2
    want_hi = 1.0 if k == n else _bisect(lambda p: _binom_tail_le(k, n, p) - alpha / 2)
    want_lo = 0.0 if k == 0 else _bisect(lambda p: alpha / 2 - (1 - _binom_tail_le(k - 1, n, p)))
    assert hi == pytest.approx(want_hi, abs=1e-9)
    assert lo == pytest.approx(want_lo, abs=1e-9)
    assert lo <= k / n <= hi


def test_clopper_pearson_vectorised_edges_and_rule_of_three():
    lo, hi = I.clopper_pearson(np.array([0, 2, 5]), np.array([5, 5, 5]))
    assert lo[0] == 0.0 and hi[2] == 1.0 and lo[1] < 0.4 < hi[1]
    lo, hi = I.clopper_pearson(0, 1_000_000)
    assert hi == pytest.approx(3.689e-6, rel=1e-3)
    lo, hi = I.clopper_pearson(0, 0)
    assert math.isnan(lo) and math.isnan(hi)
    with pytest.raises(ValueError):
        I.clopper_pearson(3, 2)
    with pytest.raises(ValueError):
        I.clopper_pearson(1, 2, confidence=1.5)


def _clustered(seed, n_sub=25, n_gen=150, n_imp=2500):
    rng = np.random.default_rng(seed)
    effect = rng.normal(0, 0.4, n_sub)
    gs = rng.integers(0, n_sub, n_gen)
    isub = rng.integers(0, n_sub, n_imp)
    g = rng.normal(2, 1, n_gen) + effect[gs]
    i = rng.normal(0, 1, n_imp) + effect[isub]
    return g, i, gs, isub


def _oracle_bootstrap(g, i, gs, isub, f, n_resamples, seed, gf=None, imf=None):
    """Rebuild each resample's score lists (score repeated by its subject's multiplicity)."""
    subjects = np.unique(np.concatenate([gs, isub]))
    draws = np.random.default_rng(seed).integers(0, subjects.size, size=(n_resamples, subjects.size))
    out = []
    for r in range(n_resamples):
        mult = np.bincount(draws[r], minlength=subjects.size)
        gm = mult[np.searchsorted(subjects, gs)]
        im = mult[np.searchsorted(subjects, isub)]
        G, Imp = np.repeat(g, gm), np.repeat(i, im)
        GF = None if gf is None else np.repeat(gf, gm)
        IF = None if imf is None else np.repeat(imf, im)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(M.fnmr_at_fmr(G, Imp, (f,), genuine_failed=GF, impostor_failed=IF)[f].fnmr)
    return np.array(out)


@pytest.mark.parametrize("f", [1e-3, 1e-2, 0.1])
def test_subject_bootstrap_equals_resample_oracle(f):
    g, i, gs, isub = _clustered(0)
    res = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (f,), n_resamples=30, seed=5)[f]
    want = _oracle_bootstrap(g, i, gs, isub, f, 30, 5)
    assert res.n_clipped == 0
    assert np.array_equal(np.isnan(res.resample_fnmr), np.isnan(want))
    assert np.allclose(res.resample_fnmr[~np.isnan(want)], want[~np.isnan(want)], atol=1e-12)
    ok = want[~np.isnan(want)]
    assert (res.ci_low, res.ci_high) == pytest.approx(tuple(np.quantile(ok, [0.025, 0.975])))
    assert (res.seed, res.n_resamples, res.n_subjects) == (5, 30, 25)


def test_subject_bootstrap_with_failures_and_string_ids():
    g, i, gs, isub = _clustered(1)
    rng = np.random.default_rng(2)
    gf, imf = rng.random(g.size) < 0.1, rng.random(i.size) < 0.1
    names = np.array([f"person_{k:02d}" for k in range(25)])
    res = I.bootstrap_fnmr_at_fmr(
        g, i, names[gs], names[isub], (0.01,), genuine_failed=gf, impostor_failed=imf, n_resamples=20, seed=3
    )[0.01]
    want = _oracle_bootstrap(g, i, names[gs], names[isub], 0.01, 20, 3, gf, imf)
    assert np.allclose(res.resample_fnmr, want, atol=1e-12, equal_nan=True)


def test_bootstrap_is_reproducible_and_seed_matters():
    g, i, gs, isub = _clustered(2)
    a = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01,), n_resamples=25, seed=1)[0.01]
    b = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01,), n_resamples=25, seed=1)[0.01]
    c = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01,), n_resamples=25, seed=2)[0.01]
    assert np.array_equal(a.resample_fnmr, b.resample_fnmr)
    assert not np.array_equal(a.resample_fnmr, c.resample_fnmr)


def test_bootstrap_interval_is_wider_than_clopper_pearson_when_subjects_cluster():
    rng = np.random.default_rng(4)
    n_sub = 40
    effect = rng.normal(0, 1.0, n_sub)  # strong per-person effect: pairs of a person are not independent
    gs = np.repeat(np.arange(n_sub), 25)
    g = rng.normal(2, 0.3, gs.size) + effect[gs]
    isub = rng.integers(0, n_sub, 20_000)
    i = rng.normal(0, 1, isub.size)
    b = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01,), n_resamples=200, seed=0)[0.01]
    p = M.fnmr_at_fmr(g, i, (0.01,))[0.01]
    lo, hi = I.clopper_pearson(p.false_non_matches, p.n_genuine)
    assert (b.ci_high - b.ci_low) > 1.5 * (hi - lo)
    assert b.ci_low <= p.fnmr <= b.ci_high


def test_bootstrap_streams_hdf5_subjects(tmp_path):
    g, i, gs, isub = _clustered(3)
    h5 = tmp_path / "s.h5"
    with score_sources.HDF5ScoreWriter(h5, with_subjects=True, dtype="float64") as w:
        w.append("genuine", g, subjects=gs)
        w.append("impostor", i, subjects=isub)
    src = score_sources.HDF5Scores(h5, "impostor")
    ev = S.evaluate(g, src, (0.01,))
    res = I.subject_bootstrap(
        ev,
        gs,
        src,
        score_sources.HDF5Scores(h5, "impostor_subject", validate=False),
        n_resamples=15,
        seed=9,
        chunk_size=500,
    )[0.01]
    want = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01,), n_resamples=15, seed=9)[0.01]
    assert np.array_equal(res.resample_fnmr, want.resample_fnmr)


def test_bootstrap_needs_windows_and_aligned_ids():
    g, i, gs, isub = _clustered(4)
    ev = S.evaluate(g, i, (0.01,), target_windows=False)
    with pytest.raises(ValueError, match="target_windows"):
        I.subject_bootstrap(ev, gs, i, isub, n_resamples=5)
    ev = S.evaluate(g, i, (0.01,))
    with pytest.raises(ValueError, match="ids for"):
        I.subject_bootstrap(ev, gs, i, isub[:-1], n_resamples=5)


def test_bootstrap_unusable_when_most_resamples_lack_impostors():
    g, i, gs, isub = _clustered(5, n_imp=1000)
    with pytest.warns(M.MetricWarning, match="could not estimate"), pytest.warns(M.MetricWarning, match="no interval"):
        b = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (1e-3,), n_resamples=40, seed=0)[1e-3]
    assert math.isnan(b.ci_low) and b.n_valid < 40


def test_subject_bootstrap_with_ties_between_genuine_and_impostor_scores():
    g, i, gs, isub = _clustered(6)
    g, i = np.round(g * 2) / 2, np.round(i * 2) / 2  # half-integer scores: many exact ties across classes
    res = I.bootstrap_fnmr_at_fmr(g, i, gs, isub, (0.01, 0.1), n_resamples=20, seed=4)
    for f in (0.01, 0.1):
        want = _oracle_bootstrap(g, i, gs, isub, f, 20, 4)
        assert res[f].n_clipped == 0
        assert np.allclose(res[f].resample_fnmr, want, atol=1e-12, equal_nan=True), f


def test_docstring_examples():
    import doctest

    assert doctest.testmod(I).failed == 0
    assert doctest.testmod(S).failed == 0
