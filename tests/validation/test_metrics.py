"""validation.metrics against slow loop oracles and scikit-learn, on random and adversarial data."""

from __future__ import annotations

import doctest
import math
import warnings

import numpy as np
import pytest
from sklearn.metrics import det_curve, roc_curve

from validation import metrics as M

TARGETS = (1e-3, 1e-2, 0.05, 0.1, 0.29, 0.5)


# --- slow, obvious oracles: python loops over comparisons ------------------------------------------


def oracle_counts(gen, imp, t, gen_failed=None, imp_failed=None, hib=True):
    """(false matches, false non-matches) at threshold t by looping over every comparison."""
    fm = 0
    for j, s in enumerate(imp):
        failed = imp_failed is not None and imp_failed[j]
        if not failed and (s >= t if hib else s <= t):
            fm += 1
    fnm = 0
    for j, s in enumerate(gen):
        failed = gen_failed is not None and gen_failed[j]
        if failed or not (s >= t if hib else s <= t):
            fnm += 1
    return fm, fnm


def oracle_candidates(gen, imp, gen_failed=None, imp_failed=None, hib=True):
    """Distinct non-failed scores from most lenient to strictest, then the reject-all threshold."""
    vals = set()
    for arr, fl in ((gen, gen_failed), (imp, imp_failed)):
        for j, s in enumerate(arr):
            if fl is None or not fl[j]:
                vals.add(float(s))
    order = sorted(vals) if hib else sorted(vals, reverse=True)
    return order + [math.inf if hib else -math.inf]


def oracle_fnmr_at_fmr(gen, imp, f, gen_failed=None, imp_failed=None, hib=True):
    """Walk thresholds from lenient to strict; the first with FM <= floor(f * n) gives the FNMR."""
    allowed = math.floor(round(f * 10**12) * len(imp) / 10**12)
    for t in oracle_candidates(gen, imp, gen_failed, imp_failed, hib):
        fm, fnm = oracle_counts(gen, imp, t, gen_failed, imp_failed, hib)
        if fm <= allowed:
            return fm, fnm
    raise AssertionError("unreachable")


def oracle_eer(gen, imp, gen_failed=None, imp_failed=None, hib=True):
    pts = []
    for t in oracle_candidates(gen, imp, gen_failed, imp_failed, hib):
        fm, fnm = oracle_counts(gen, imp, t, gen_failed, imp_failed, hib)
        pts.append((t, fm / len(imp), fnm / len(gen)))
    for i, (t, fmr, fnmr) in enumerate(pts):
        if fnmr >= fmr:
            if i == 0:
                return math.nan
            _, fa, na = pts[i - 1]
            lam = (fa - na) / ((fa - na) + (fnmr - fmr))
            return fa + lam * (fmr - fa)
    raise AssertionError("unreachable")


# --- data ------------------------------------------------------------------------------------------


def datasets():
    rng = np.random.default_rng(11)
    out = []
    for i in range(8):
        n_imp, n_gen = int(rng.integers(20, 400)), int(rng.integers(5, 80))
        out.append((f"normal{i}", rng.normal(1.5, 1, n_gen), rng.normal(0, 1, n_imp), None, None))
    out.append(("ties", rng.integers(0, 6, 60).astype(float), rng.integers(0, 4, 300).astype(float), None, None))
    out.append(("all_equal", np.full(30, 0.5), np.full(200, 0.5), None, None))
    out.append(
        ("float32", rng.normal(2, 1, 50).astype(np.float32), rng.normal(0, 1, 500).astype(np.float32), None, None)
    )
    gen, imp = rng.normal(2, 1, 70), rng.normal(0, 1, 400)
    out.append(("failures", gen, imp, rng.random(70) < 0.1, rng.random(400) < 0.1))
    ties_g, ties_i = rng.integers(0, 5, 40).astype(float), rng.integers(0, 5, 200).astype(float)
    out.append(("ties_failures", ties_g, ties_i, rng.random(40) < 0.2, rng.random(200) < 0.2))
    out.append(("many_failures", rng.normal(2, 1, 20), rng.normal(0, 1, 50), rng.random(20) < 0.7, None))
    out.append(("perfect", rng.normal(10, 1, 30), rng.normal(0, 1, 300), None, None))
    out.append(("inverted", rng.normal(-3, 1, 30), rng.normal(0, 1, 300), None, None))
    out.append(("zeros", np.array([0.0, -0.0, 1.0]), np.array([-0.0, 0.0, 0.0, -1.0]), None, None))
    return out


DATA = datasets()
IDS = [d[0] for d in DATA]


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        yield


@pytest.mark.parametrize("hib", [True, False])
@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=IDS)
def test_fnmr_at_fmr_matches_loop_oracle(name, gen, imp, gf, imf, hib):
    g, i = (gen, imp) if hib else (-np.asarray(gen), -np.asarray(imp))
    res = M.fnmr_at_fmr(g, i, TARGETS, genuine_failed=gf, impostor_failed=imf, higher_is_better=hib)
    for f in TARGETS:
        p = res[f]
        if len(imp) < math.ceil(1 / f - 1e-9):
            assert not p.estimable and math.isnan(p.fnmr) and math.isnan(p.threshold)
            continue
        fm, fnm = oracle_fnmr_at_fmr(g, i, f, gf, imf, hib)
        assert (p.false_matches, p.false_non_matches) == (fm, fnm), (name, f)
        assert p.fnmr == fnm / len(gen) and p.fmr == fm / len(imp)
        # the returned threshold really gives those counts, and the next stricter-to-lenient step fails
        assert oracle_counts(g, i, p.threshold, gf, imf, hib) == (fm, fnm)
        ft = np.asarray(imp).dtype.type  # the threshold is in the impostor scores' precision
        lenient = np.nextafter(ft(p.threshold), ft(-np.inf if hib else np.inf))
        assert oracle_counts(g, i, lenient, gf, imf, hib)[0] > p.allowed_false_matches


@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=IDS)
def test_eer_matches_loop_oracle(name, gen, imp, gf, imf):
    e = M.eer(gen, imp, genuine_failed=gf, impostor_failed=imf)
    want = oracle_eer(gen, imp, gf, imf)
    if math.isnan(want):
        assert math.isnan(e.eer)
    else:
        assert e.eer == pytest.approx(want, abs=1e-12)
        assert oracle_counts(gen, imp, e.threshold, gf, imf) == (e.false_matches, e.false_non_matches)
    d = M.eer(-np.asarray(gen), -np.asarray(imp), genuine_failed=gf, impostor_failed=imf, higher_is_better=False)
    assert (math.isnan(d.eer) and math.isnan(e.eer)) or (d.eer == e.eer and d.threshold == -e.threshold)


@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=IDS)
def test_error_counts_match_loop_oracle(name, gen, imp, gf, imf):
    ts = np.unique(np.concatenate([gen, imp, [np.inf, -1e9]]))
    c = M.error_counts(gen, imp, ts, genuine_failed=gf, impostor_failed=imf)
    for j, t in enumerate(ts):
        assert (c.false_matches[j], c.false_non_matches[j]) == oracle_counts(gen, imp, t, gf, imf)
    assert np.array_equal(c.fmr, c.false_matches / len(imp))
    assert np.array_equal(c.fnmr, c.false_non_matches / len(gen))


def _sklearn_inputs(gen, imp, gf, imf):
    g = np.asarray(gen, dtype=np.float64).copy()
    i = np.asarray(imp, dtype=np.float64).copy()
    floor = min(g.min(), i.min()) - 1.0
    if gf is not None:
        g[gf] = floor
    if imf is not None:
        i[imf] = floor
    y = np.r_[np.ones(g.size), np.zeros(i.size)]
    return y, np.r_[g, i], floor


@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=IDS)
def test_det_points_match_sklearn_roc_curve(name, gen, imp, gf, imf):
    d = M.det_points(gen, imp, genuine_failed=gf, impostor_failed=imf)
    y, s, floor = _sklearn_inputs(gen, imp, gf, imf)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    keep = thr != floor  # sklearn's threshold at the failure stand-in would accept failures: NIST never does
    fpr, fnr, thr = fpr[keep][::-1], (1 - tpr[keep])[::-1], thr[keep][::-1]
    assert np.array_equal(d.threshold, thr.astype(np.float64))
    assert np.allclose(d.fmr, fpr, rtol=0, atol=1e-15)
    assert np.allclose(d.fnmr, fnr, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=IDS)
def test_det_points_match_sklearn_det_curve(name, gen, imp, gf, imf):
    y, s, floor = _sklearn_inputs(gen, imp, gf, imf)
    fpr, fnr, thr = det_curve(y, s)
    c = M.error_counts(gen, imp, thr, genuine_failed=gf, impostor_failed=imf)
    ok = thr != floor
    assert np.allclose(c.fmr[ok], fpr[ok], atol=1e-15)
    assert np.allclose(c.fnmr[ok], fnr[ok], atol=1e-12)


def test_fnmr_at_fmr_agrees_with_sklearn_roc_on_random_data():
    rng = np.random.default_rng(3)
    gen, imp = rng.normal(2, 1, 3000), rng.normal(0, 1, 200_000)
    res = M.fnmr_at_fmr(gen, imp, (1e-4, 1e-3, 1e-2, 1e-1))
    y, s, _ = _sklearn_inputs(gen, imp, None, None)
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    for f, p in res.items():
        # best TPR among ROC points with FPR <= f
        assert p.fnmr == pytest.approx(1 - tpr[fpr <= f + 1e-15].max(), abs=1e-12)


def test_ties_at_threshold_are_accepted():
    c = M.error_counts([0.5, 0.4], [0.5, 0.6, 0.3], [0.5])
    assert (c.false_matches[0], c.false_non_matches[0]) == (2, 1)
    d = M.error_counts([0.5, 0.6], [0.5, 0.4], [0.5], higher_is_better=False)
    assert (d.false_matches[0], d.false_non_matches[0]) == (2, 1)


def test_failures_stay_in_denominators_and_never_match():
    gen, imp = np.array([0.9, -1.0, 0.8]), np.array([0.1, -1.0, 0.95])
    c = M.error_counts(gen, imp, [-5.0], genuine_failed=[False, True, False], impostor_failed=[False, True, False])
    assert c.n_genuine == 3 and c.n_impostor == 3
    assert (c.false_non_matches[0], c.false_matches[0]) == (1, 2)  # the failed genuine is a non-match


def test_estimability_rule_and_warning_names_shortfall():
    f = 1e-3
    need = M.required_impostors(f)
    assert need == 1000
    rng = np.random.default_rng(0)
    with pytest.warns(M.MetricWarning, match="short by 1"):
        p = M.fnmr_at_fmr(rng.normal(size=10), rng.normal(size=need - 1), (f,))[f]
    assert not p.estimable and math.isnan(p.fnmr) and "999" in p.reason
    q = M.fnmr_at_fmr(rng.normal(size=10), rng.normal(size=need), (f,))[f]
    assert q.estimable and q.allowed_false_matches == 1
    assert M.required_impostors(1e-3, min_false_matches=3) == 3000
    with pytest.warns(M.MetricWarning):
        r = M.fnmr_at_fmr(rng.normal(size=10), rng.normal(size=2999), (f,), min_false_matches=3)[f]
    assert not r.estimable


def test_allowed_false_matches_is_exact_for_decimal_targets():
    assert M.allowed_false_matches(0.29, 100) == 29  # 0.29 * 100 == 28.999999999999996 in floats
    assert M.allowed_false_matches(1e-6, 10**6) == 1
    assert M.allowed_false_matches(1e-6, 10**6 - 1) == 0


def test_empty_classes_give_nan_with_warning():
    with pytest.warns(M.MetricWarning):
        p = M.fnmr_at_fmr([], np.arange(1000.0), (0.01,))[0.01]
    assert not p.estimable and "no genuine" in p.reason
    with pytest.warns(M.MetricWarning):
        p = M.fnmr_at_fmr([1.0], [], (0.01,))[0.01]
    assert not p.estimable
    with pytest.warns(M.MetricWarning):
        assert math.isnan(M.eer([], [1.0]).eer)
    with pytest.warns(M.MetricWarning):
        assert math.isnan(M.eer([1.0], []).eer)
    with pytest.warns(M.MetricWarning):
        c = M.error_counts([], [1.0], [0.5])
    assert math.isnan(c.fnmr[0]) and c.fmr[0] == 1.0


def test_all_equal_scores_eer_is_one_half():
    e = M.eer(np.full(10, 0.3), np.full(40, 0.3))
    assert e.eer == 0.5


def test_bad_scores_raise_naming_index_and_value():
    with pytest.raises(M.ScoreError, match=r"impostor, index 2.*nan"):
        M.fnmr_at_fmr([1.0], [0.1, 0.2, np.nan])
    with pytest.raises(M.ScoreError, match=r"genuine, index 0.*inf"):
        M.eer([np.inf], [0.1])
    with pytest.raises(ValueError):
        M.fnmr_at_fmr([1.0], [0.1], (0.0,))
    # a failed comparison may carry any value
    p = M.fnmr_at_fmr([1.0, np.nan], np.linspace(0, 1, 100), (0.1,), genuine_failed=[False, True])[0.1]
    assert p.false_non_matches == 1 and p.n_genuine == 2


def test_tar_at_far_is_one_minus_fnmr():
    rng = np.random.default_rng(1)
    g, i = rng.normal(2, 1, 100), rng.normal(0, 1, 1000)
    tar = M.tar_at_far(g, i, (0.01,))
    assert tar[0.01] == 1 - M.fnmr_at_fmr(g, i, (0.01,))[0.01].fnmr


def test_fmr_keys():
    assert [M.fmr_key(f) for f in M.FMR_TARGETS] == ["1e-06", "1e-05", "1e-04", "1e-03", "1e-02", "1e-01"]
    assert M.fmr_key(0.29) == "0.29"


def test_failure_count():
    c = M.failure_count([0, 0, 8, 0, 4])
    assert (c.n_failed, c.n_attempts, c.rate) == (2, 5, 0.4)
    assert math.isnan(M.failure_count([]).rate)


def test_docstring_examples():
    assert doctest.testmod(M).failed == 0
