"""validation.selection: order-preserving keys, exact order statistics against sorting, the counters' forms."""

from __future__ import annotations

import numpy as np
import pytest

from validation import score_sources
from validation import selection

pytestmark = pytest.mark.usefixtures("quiet_metric_warnings")


def _specials(dtype):
    f = np.finfo(dtype)
    return np.array(
        [0.0, -0.0, f.tiny, -f.tiny, f.smallest_subnormal, -f.smallest_subnormal, f.max, f.min, 1.0, -1.0, 0.5, -0.5],
        dtype=dtype,
    )


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_keys_preserve_order_and_round_trip(dtype):
    rng = np.random.default_rng(0)
    x = np.concatenate(
        [
            _specials(dtype),
            (rng.standard_normal(5000) * 10.0 ** rng.integers(-30, 30, 5000)).astype(dtype),
            np.array([-np.inf, np.inf], dtype=dtype),
        ]
    )
    x = x + dtype(0)  # -0.0 -> +0.0, as the selection does
    k = selection.float_keys(x)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(k[order].astype(np.float64)) >= 0)
    assert np.array_equal(selection.keys_to_float(k, np.dtype(dtype)), x)


def _check_selection(x, ks, **kw):
    sel = selection.kth_largest(score_sources.ArrayScores(x), ks, **kw)
    desc = np.sort(np.where(np.isnan(x), -np.inf, x + x.dtype.type(0)).astype(np.float64))[::-1]
    for i, k in enumerate(ks):
        assert sel.values[i] == desc[k], (k, sel.values[i], desc[k])
        assert sel.n_greater[i] == np.count_nonzero(desc > desc[k])
    return sel


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("path", ["collect", "radix", "radix_tiny_budget"])
def test_kth_largest_matches_sort(dtype, path):
    rng = np.random.default_rng(1)
    kw = {"chunk_size": 997}
    if path != "collect":
        kw["collect_limit"] = 0
    if path == "radix_tiny_budget":
        kw["counter_budget"] = 64
    cases = [
        rng.standard_normal(20_000).astype(dtype),
        rng.integers(-3, 4, 5000).astype(dtype),  # heavy ties
        np.full(3000, 0.25, dtype=dtype),  # all equal
        np.concatenate([np.zeros(50), -np.zeros(50), rng.standard_normal(100)]).astype(dtype),
        np.concatenate([_specials(dtype), rng.standard_normal(300).astype(dtype)]),
        np.where(rng.random(2000) < 0.2, np.nan, rng.standard_normal(2000)).astype(dtype),  # failures
    ]
    for x in cases:
        n = x.size
        ks = sorted({0, 1, 2, n // 1000, n // 100, n // 10, n // 3, n - 2, n - 1})
        _check_selection(x, ks, **kw)


def test_selection_reports_range_and_failures():
    x = np.array([np.nan, 3.0, -2.0, np.nan, 1.0])
    sel = selection.kth_largest(score_sources.ArrayScores(x), [0, 4])
    assert (sel.n_failed, sel.finite_min, sel.finite_max) == (2, -2.0, 3.0)
    assert sel.values[1] == -np.inf
    d = selection.kth_largest(score_sources.ArrayScores(x), [0], higher_is_better=False)
    assert d.values[0] == 2.0  # distances are negated: the most alike is the smallest distance


def test_counters_are_the_same_dense_sparse_packed_and_merged():
    from validation.selection import _Counts

    rng = np.random.default_rng(0)
    for size in (10, 1000, 10**6):
        idx = [rng.integers(0, size, rng.integers(0, 5000)) for _ in range(30)]
        ref = np.bincount(np.concatenate(idx), minlength=size)
        whole = _Counts(size, 100)
        for i in idx:
            whole.add(i)
        assert (whole.total() == ref).all()
        first, second = _Counts(size, 100), _Counts(size, 100)
        for i in idx[:15]:
            first.add(i)
        for i in idx[15:]:
            second.add(i)
        first.merge(second.pack())
        assert (first.total() == ref).all()
