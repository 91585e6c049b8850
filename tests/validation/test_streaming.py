"""validation.streaming: exact selection from chunked sources, equal to the in-memory metrics."""

from __future__ import annotations

import math
import tracemalloc
import warnings

import h5py
import numpy as np
import pytest

from validation import metrics as M
from validation import streaming as S

TARGETS = (1e-4, 1e-3, 1e-2, 0.1, 0.29)


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M.MetricWarning)
        yield


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
    k = S.float_keys(x)
    order = np.argsort(x, kind="stable")
    assert np.all(np.diff(k[order].astype(np.float64)) >= 0)
    assert np.array_equal(S.keys_to_float(k, np.dtype(dtype)), x)


def _check_selection(x, ks, **kw):
    sel = S.kth_largest(S.ArrayScores(x), ks, **kw)
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
    sel = S.kth_largest(S.ArrayScores(x), [0, 4])
    assert (sel.n_failed, sel.finite_min, sel.finite_max) == (2, -2.0, 3.0)
    assert sel.values[1] == -np.inf
    d = S.kth_largest(S.ArrayScores(x), [0], higher_is_better=False)
    assert d.values[0] == 2.0  # distances are negated: the most alike is the smallest distance


def _datasets():
    rng = np.random.default_rng(5)
    yield "normal", rng.normal(2, 1, 300), rng.normal(0, 1, 20_000), None, None
    yield "float32", rng.normal(2, 1, 300).astype(np.float32), rng.normal(0, 1, 20_000).astype(np.float32), None, None
    yield "ties", rng.integers(0, 8, 200).astype(float), rng.integers(0, 5, 5000).astype(float), None, None
    yield "all_equal", np.full(50, 1.0), np.full(3000, 1.0), None, None
    yield ("failures", rng.normal(2, 1, 300), rng.normal(0, 1, 5000), rng.random(300) < 0.05, rng.random(5000) < 0.05)
    yield "many_failures", rng.normal(2, 1, 40), rng.normal(0, 1, 2000), rng.random(40) < 0.8, None
    yield "perfect", rng.normal(20, 1, 40), rng.normal(0, 1, 2000), None, None


DATA = list(_datasets())


@pytest.mark.parametrize("hib", [True, False])
@pytest.mark.parametrize("name,gen,imp,gf,imf", DATA, ids=[d[0] for d in DATA])
def test_evaluate_equals_in_memory_metrics(name, gen, imp, gf, imf, hib):
    g, i = (gen, imp) if hib else (-gen, -imp)
    want = M.fnmr_at_fmr(g, i, TARGETS, genuine_failed=gf, impostor_failed=imf, higher_is_better=hib)
    want_eer = M.eer(g, i, genuine_failed=gf, impostor_failed=imf, higher_is_better=hib)
    for kw in ({}, {"collect_limit": 0, "chunk_size": 333}, {"n_grid": 3, "chunk_size": 10_000}):
        ev = S.evaluate(g, i, TARGETS, genuine_failed=gf, impostor_failed=imf, higher_is_better=hib, **kw)
        assert ev.operating_points == want
        e = ev.eer
        assert (math.isnan(e.eer) and math.isnan(want_eer.eer)) or e == want_eer
        # every DET point is an exact operating point
        c = M.error_counts(g, i, ev.det.threshold, genuine_failed=gf, impostor_failed=imf, higher_is_better=hib)
        assert np.array_equal(c.false_matches, ev.det.false_matches)
        assert np.array_equal(c.false_non_matches, ev.det.false_non_matches)


def test_file_sources_equal_array(tmp_path):
    rng = np.random.default_rng(2)
    gen = rng.normal(2, 1, 500).astype(np.float32)
    imp = rng.normal(0, 1, 50_000).astype(np.float32)
    raw = tmp_path / "imp.f32"
    imp.tofile(raw)
    npy = tmp_path / "imp.npy"
    np.save(npy, imp)
    h5 = tmp_path / "s.h5"
    with S.HDF5ScoreWriter(h5) as w:
        w.append("genuine", gen)
        for part in np.array_split(imp, 7):
            w.append("impostor", part)
    want = S.evaluate(gen, imp, TARGETS)
    for src in (S.open_scores(raw), S.open_scores(npy), S.open_scores(h5, "impostor"), S.RawScores(raw)):
        assert len(src) == imp.size
        ev = S.evaluate(gen, src, TARGETS, chunk_size=4096)
        assert ev.operating_points == want.operating_points and ev.eer == want.eer
    f64 = tmp_path / "imp.f64"
    imp.astype(np.float64).tofile(f64)
    want64 = M.fnmr_at_fmr(gen, imp.astype(float), TARGETS)
    assert S.evaluate(gen, S.open_scores(f64), TARGETS).operating_points == want64


def test_hdf5_failed_dataset_marks_failures(tmp_path):
    rng = np.random.default_rng(3)
    imp = rng.normal(0, 1, 4000).astype(np.float32)  # the writer stores float32
    failed = rng.random(4000) < 0.1
    imp_stored = np.where(failed, -1.0, imp)
    h5 = tmp_path / "s.h5"
    with S.HDF5ScoreWriter(h5, with_failed=True) as w:
        w.append("genuine", [3.0, 2.0])
        w.append("impostor", imp_stored, failed=failed)
    ev = S.evaluate([3.0, 2.0], S.HDF5Scores(h5, "impostor", "impostor_failed"), TARGETS)
    assert ev.operating_points == M.fnmr_at_fmr([3.0, 2.0], imp, TARGETS, impostor_failed=failed)
    assert ev.n_impostor_failed == failed.sum()


def test_bad_values_in_files_name_position(tmp_path):
    x = np.arange(10, dtype=np.float32)
    x[7] = np.nan
    raw = tmp_path / "bad.f32"
    x.tofile(raw)
    with pytest.raises(S.ScoreFileError, match=r"bad.f32, index 7.*nan") as e:
        S.evaluate([1.0], S.RawScores(raw), (0.1,))
    assert e.value.position == 7 and isinstance(e.value, ValueError)
    h5 = tmp_path / "bad.h5"
    with h5py.File(h5, "w") as f:
        f["impostor"] = np.array([0.1, np.inf, 0.3])
    with pytest.raises(S.ScoreFileError, match=r"bad.h5:impostor, index 1.*inf"):
        S.evaluate([1.0], S.HDF5Scores(h5, "impostor"), (0.5,))
    with pytest.raises(S.ScoreFileError, match="dataset missing"):
        S.HDF5Scores(h5, "genuine")
    odd = tmp_path / "odd.f32"
    odd.write_bytes(b"\x00" * 7)
    with pytest.raises(S.ScoreFileError, match="multiple of 4"):
        S.RawScores(odd)
    with pytest.raises(S.ScoreError, match="index 1"):
        S.evaluate([1.0], np.array([0.0, np.nan]), (0.5,))


def test_memory_stays_bounded_by_chunk(tmp_path):
    n = 4_000_000  # 16 MB on disk
    raw = tmp_path / "big.f32"
    np.random.default_rng(4).standard_normal(n, dtype=np.float32).tofile(raw)
    tracemalloc.start()
    try:
        ev = S.evaluate(
            np.zeros(10),
            S.RawScores(raw),
            (1e-6, 1e-3, 0.1),
            n_grid=0,
            target_windows=False,
            with_eer=False,
            chunk_size=1 << 16,
        )
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert ev.passes == 2
    assert peak < 8_000_000  # well under the 16 MB of scores (the kept bins plus one chunk)


def test_fnmr_at_fmr_wrapper_and_target_windows():
    rng = np.random.default_rng(6)
    g, i = rng.normal(2, 1, 100), rng.normal(0, 1, 10_000)
    assert S.fnmr_at_fmr(g, i, (0.01,)) == M.fnmr_at_fmr(g, i, (0.01,))
    w = S.target_window_ranks(100, 10_000)
    assert w.min() <= 50 and w.max() >= 199 and 100 in w
    assert np.array_equal(S.target_window_ranks(3, 10), np.arange(0, 10))
    assert S.tail_ranks(0, 10).size == 0


def test_writer_validates_lengths(tmp_path):
    with S.HDF5ScoreWriter(tmp_path / "w.h5", with_subjects=True) as w:
        with pytest.raises(ValueError, match="subject"):
            w.append("genuine", [1.0])
        with pytest.raises(ValueError, match="1 values for 2 scores"):
            w.append("genuine", [1.0, 2.0], subjects=[1])
        w.append("impostor", [0.5, 0.1], subjects=[3, 4])
    with h5py.File(tmp_path / "w.h5") as f:
        assert f.attrs["schema"] == "frvt.scores/1" and list(f["impostor_subject"][:]) == [3, 4]


def test_counters_are_the_same_dense_sparse_packed_and_merged():
    from validation.streaming import _Counts

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
