"""validation.streaming: exact selection from chunked sources, equal to the in-memory metrics."""

from __future__ import annotations

import math
import tracemalloc

import numpy as np
import pytest

from validation import metrics as M
from validation import score_sources
from validation import streaming as S

TARGETS = (1e-4, 1e-3, 1e-2, 0.1, 0.29)

pytestmark = pytest.mark.usefixtures("quiet_metric_warnings")


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


def test_memory_stays_bounded_by_chunk(tmp_path):
    n = 4_000_000  # 16 MB on disk
    raw = tmp_path / "big.f32"
    np.random.default_rng(4).standard_normal(n, dtype=np.float32).tofile(raw)
    tracemalloc.start()
    try:
        ev = S.evaluate(
            np.zeros(10),
            score_sources.RawScores(raw),
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


class _Sampled:
    """A float32 score source that offers a sample of itself, as store comparisons do: the first
    pass keeps the guessed bins whole (``sample`` decides the guess: a fair one, or a misleading one)."""

    def __init__(self, scores: np.ndarray, failed: np.ndarray, sample: np.ndarray) -> None:
        self.inner = score_sources.source_from_array(scores, failed)
        self.dtype = np.dtype(np.float32)
        self._sample = sample
        self.passes: list[str] = []

    def __len__(self) -> int:
        return len(self.inner)

    def chunks(self, chunk_size=score_sources.DEFAULT_CHUNK):
        return self.inner.chunks(chunk_size)

    def run_pass(self, reduction, chunk_size, ids=None):
        from validation.selection import run_pass

        self.passes.append(type(reduction).__name__)
        return run_pass(self.inner, reduction, chunk_size, ids)

    def sample_histogram(self):
        x = np.where(np.isnan(self._sample), -np.inf, self._sample).astype(np.float32)
        return np.bincount(x.view(np.uint32) >> 16, minlength=1 << 16)


@pytest.mark.parametrize("guess", ["fair", "misleading"])
def test_a_sampled_guess_gives_the_same_numbers_in_fewer_passes(guess):
    rng = np.random.default_rng(8)
    g = rng.normal(0.8, 0.05, 2_000).astype(np.float32)
    i = rng.normal(0.5, 0.05, 400_000).astype(np.float32)
    i[1000:3000] = i[5000:7000]  # ties
    failed = rng.random(i.size) < 0.01
    i_nan = np.where(failed, np.nan, i).astype(np.float32)
    sample = i_nan[::50] if guess == "fair" else i_nan[::50] + np.float32(0.15)
    src = _Sampled(i, failed, sample)
    ev = S.evaluate(g, src, TARGETS + (1e-5,), target_windows=True)
    want = S.evaluate(g, i, TARGETS + (1e-5,), impostor_failed=failed, target_windows=True)
    assert ev.operating_points == want.operating_points and ev.eer == want.eer
    assert np.array_equal(ev.selection.values, want.selection.values)
    assert np.array_equal(ev.selection.n_greater, want.selection.n_greater)
    assert np.array_equal(ev.det.false_matches, want.det.false_matches)
    if guess == "fair":  # the statistics and the EER from the one pass
        assert src.passes == ["FineBinsPass"] and ev.passes == 1
    else:  # the guess missed: the missed statistics and the EER take their passes
        assert src.passes[0] == "FineBinsPass" and len(src.passes) >= 2
    edges = np.arange(60, 130) * 2.0**-7  # on the float32 grid: every key bin inside one bin
    assert S.histogram_from_selection(ev.selection, edges)[0].tolist() == np.histogram(i[~failed], edges)[0].tolist()
    odd = np.linspace(0.3, 0.9, 37)  # key bins straddle edges: counted from the kept scores, or not at all
    got = S.histogram_from_selection(ev.selection, odd)
    if got is not None:
        assert got[0].tolist() == np.histogram(i[~failed], odd)[0].tolist()
