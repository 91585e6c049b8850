"""Exact verification metrics over impostor scores that do not fit in memory.

Impostor scores are read in chunks from a score source (:mod:`validation.score_sources`); genuine
scores (far fewer) are held in memory. Memory is bounded by the chunk size and a fixed counter
budget, never by the number of impostors. The wanted order statistics are found exactly by
selection on integer keys (:mod:`validation.selection`), so the FNMR-at-FMR thresholds are the same
numbers :func:`validation.metrics.fnmr_at_fmr` finds by sorting, and the DET points and the EER are
exact too (the EER takes one more pass, over the impostors between two known operating points).

The conventions (direction, ties, failures, estimability, EER interpolation) are those of
:mod:`validation.metrics`; internally scores are similarities and a failed comparison is ``-inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from validation.metrics import (
    FMR_TARGETS,
    DETCurve,
    EqualErrorRate,
    OperatingPoint,
    allowed_false_matches,
    check_fmr_target,
    eer_from_points,
    estimability,
    next_above,
    operating_point,
    prepare_scores,
    to_user_threshold,
    unestimable_point,
)
from validation.score_sources import DEFAULT_CHUNK, ScoreSource, source_from_array
from validation.selection import (
    COLLECT_LIMIT,
    COUNTER_BUDGET,
    MultiPass,
    Selection,
    _Pass,
    _similarity,
    fine_bins_from_sample,
    float_keys,
    key_histogram,
    keys_to_float,
    kth_largest,
    run_pass,
)


def tail_ranks(n: int, n_points: int, top_fraction: float = 0.01) -> np.ndarray:
    """0-based ranks from the top, geometric from 0 to ``ceil(top_fraction * n)`` (all when few).

    The exact DET points in the low-FMR tail, where the 65,536 coarse bins are too few.
    """
    if n <= 0 or n_points <= 0:
        return np.zeros(0, dtype=np.int64)
    top = max(1, min(n, int(math.ceil(top_fraction * n))))
    g = np.unique(np.round(np.geomspace(1, top, max(n_points, 2))).astype(np.int64)) - 1
    return g[g < n]


def target_window_ranks(k: int, n: int, n_points: int = 201) -> np.ndarray:
    """Ranks around ``k`` spanning a factor ``1 + w`` either way, ``w = max(0.2, 10 / sqrt(k))``.

    Thresholds of subject-bootstrap resamples land in this window (the factor is wide where few
    false matches make the threshold noisy); it is the grid the bootstrap snaps thresholds to.
    """
    w = max(0.2, 10.0 / math.sqrt(max(k, 1)))
    r = np.round(k * np.exp(np.linspace(-math.log1p(w), math.log1p(w), n_points))).astype(np.int64)
    lo = max(0, int(math.floor(k / (1 + w))))
    hi = min(n - 1, int(math.ceil(k * (1 + w))))
    small = np.arange(lo, min(hi, lo + n_points) + 1, dtype=np.int64)  # every rank when k is small
    r = np.unique(np.concatenate([r, small, [k]]))
    return r[(r >= 0) & (r < n)]


@dataclass(frozen=True)
class StreamingEvaluation:
    """Everything :func:`evaluate` computes.

    ``det`` holds exact operating points (a subset of the full DET steps): the most lenient one
    (every finite score accepted), one at the lower edge of each of the 65,536 key bins that holds
    impostor scores, and one just above each selected order statistic (the tail grid and windows
    around each FMR target). ``selection`` holds those order statistics (the subject bootstrap
    snaps to them). ``genuine`` are the prepared genuine similarities in input order (``-inf`` =
    failed); ``genuine_sorted`` ascending.
    """

    operating_points: dict[float, OperatingPoint]
    eer: EqualErrorRate
    det: DETCurve
    selection: Selection
    genuine: np.ndarray
    genuine_sorted: np.ndarray
    n_genuine_failed: int
    n_impostor_failed: int
    higher_is_better: bool
    min_false_matches: int
    passes: int
    companions: tuple = ()

    @property
    def n_genuine(self) -> int:
        return int(self.genuine.size)

    @property
    def n_impostor(self) -> int:
        return int(self.selection.n)


class BracketPass(_Pass):
    """Distinct similarities ``v`` with ``lo <= v < hi`` and their counts, and the lowest similarity
    ``>= hi``; memory: the distinct values only."""

    def __init__(self, lo: float, hi: float, higher_is_better: bool, merge_at: int = 1 << 22) -> None:
        self.lo, self.hi = np.float64(lo), np.float64(hi)  # numpy scalars: float32 chunks compare in float64
        self.higher_is_better, self.merge_at = higher_is_better, merge_at

    def start(self):
        return {"values": [], "counts": [], "held": 0, "next_above": math.inf}

    @staticmethod
    def _merge(acc) -> None:
        u = np.concatenate(acc["values"])
        c = np.concatenate(acc["counts"])
        order = np.argsort(u, kind="stable")
        u, c = u[order], c[order]
        uu, start = np.unique(u, return_index=True)
        acc["values"], acc["counts"] = [uu], [np.add.reduceat(c, start)]
        acc["held"] = uu.size

    def add(self, acc, x, ids):
        x = _similarity(np.asarray(x), self.higher_is_better)
        inside = x[(x >= self.lo) & (x < self.hi)]
        if inside.size:
            u, c = np.unique(inside.astype(np.float64), return_counts=True)
            acc["values"].append(u)
            acc["counts"].append(c)
            acc["held"] += u.size
            if acc["held"] > self.merge_at:
                self._merge(acc)
        above = x[x >= self.hi]
        if above.size:
            acc["next_above"] = min(acc["next_above"], float(above.min()))
        return acc

    def pack(self, acc):
        if acc["values"]:
            self._merge(acc)
        return acc

    def merge(self, acc, packed):
        acc["values"] += packed["values"]
        acc["counts"] += packed["counts"]
        acc["held"] += packed["held"]
        acc["next_above"] = min(acc["next_above"], packed["next_above"])
        if acc["held"] > self.merge_at:
            self._merge(acc)
        return acc

    def finish(self, acc):
        if not acc["values"]:
            return np.zeros(0), np.zeros(0, dtype=np.int64), acc["next_above"]
        self._merge(acc)
        return acc["values"][0], acc["counts"][0], acc["next_above"]


def _det_on_grid(sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    """Exact (threshold, false matches) pairs on the similarity scale, thresholds ascending.

    From the order statistics (threshold just above each) and from the key-bin lower edges
    (threshold = the lowest float of the bin, false matches = scores in that bin and above), and
    the most lenient point (just above a failed comparison).
    """
    t_parts = [next_above(np.array([-np.inf]), sel.dtype), next_above(sel.values, sel.dtype)]
    fm_parts = [np.array([sel.n - sel.n_failed]), sel.n_greater]
    if sel.hist is not None and sel.n:
        bits = 32 if sel.dtype == np.float32 else 64
        nonempty = np.flatnonzero(sel.hist)
        edge_keys = nonempty.astype(np.uint64) << np.uint64(bits - 16)
        with np.errstate(invalid="ignore"):  # bins beyond +-inf have NaN edges; dropped below
            edges = keys_to_float(edge_keys, sel.dtype).astype(np.float64)
        at_or_above = np.cumsum(sel.hist[::-1])[::-1]  # scores in bins >= b
        ok = ~np.isnan(edges) & np.isfinite(edges)
        t_parts.append(edges[ok])
        fm_parts.append(at_or_above[nonempty][ok])
    t = np.concatenate(t_parts)
    fm = np.concatenate(fm_parts).astype(np.int64)
    order = np.argsort(t, kind="stable")
    t, fm = t[order], fm[order]
    keep = np.concatenate([[True], t[1:] != t[:-1]]) if t.size else np.zeros(0, bool)
    return t[keep], fm[keep]


def _eer_ranks(sample: np.ndarray, n: int, g_sorted: np.ndarray) -> np.ndarray:
    """Ranks from the top of the impostor scores near the EER, judged from the raw-bin histogram of
    a sample of them and the genuine similarities: the counts at or above the two key-bin edges
    around the crossing, scaled to the ``n`` scores (empty when the sample says nothing)."""
    hs = key_histogram(np.asarray(sample, np.float64))
    m = hs.sum()
    if m <= 0 or not g_sorted.size:
        return np.zeros(0, np.int64)
    with np.errstate(invalid="ignore"):
        edges = keys_to_float(np.arange(1 << 16, dtype=np.uint32) << np.uint32(16), np.float32).astype(np.float64)
    ok = np.isfinite(edges)
    fmr = (np.cumsum(hs[::-1])[::-1] / m)[ok]
    fnmr = np.searchsorted(g_sorted, edges[ok], side="left") / g_sorted.size
    cross = np.flatnonzero(fnmr >= fmr)
    if not cross.size:
        return np.zeros(0, np.int64)
    b = int(cross[0])
    r = np.round(fmr[max(b - 1, 0) : b + 2] * n).astype(np.int64)
    return np.clip(r, 0, n - 1)


def bracket_from_fine(sel: Selection, lo: float, hi: float):
    """:class:`BracketPass`'s result over ``[lo, hi)`` from the scores the selection kept whole
    (:attr:`Selection.fine`), or None when a key bin it needs was not kept."""
    fine = sel.fine
    if fine is None or sel.hist is None:
        return None
    k_lo, k_hi = (float_keys(np.array([lo, hi], np.float32)) >> np.uint32(16)).astype(np.int64)
    if not fine.covers(np.flatnonzero(sel.hist[k_lo : k_hi + 1]) + k_lo):
        return None
    v = fine.values()
    inside = (v >= lo) & (v < hi)
    u, c = v[inside], fine.counts[inside]
    next_above = math.inf
    key_bins = fine.key_bins()
    for b in np.flatnonzero(sel.hist[k_hi:]) + k_hi:  # the first score >= hi: in the first bin holding one
        if not fine.bins[b]:
            return None
        above = v[(key_bins == b) & (v >= hi)]
        if above.size:
            next_above = float(above.min())
            break
    return u, c.astype(np.int64), next_above


def evaluate(
    genuine,
    impostor: ScoreSource | np.ndarray,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    *,
    genuine_failed=None,
    impostor_failed=None,
    higher_is_better: bool = True,
    min_false_matches: int = 1,
    n_grid: int = 256,
    target_windows: bool = True,
    with_eer: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    counter_budget: int = COUNTER_BUDGET,
    collect_limit: int = COLLECT_LIMIT,
    companions=None,
) -> StreamingEvaluation:
    """FNMR at each FMR target, the EER and a DET curve, reading the impostors in chunks.

    Parameters
    ----------
    genuine : array_like, shape (n_genuine,)
        Genuine scores, held in memory.
    impostor : ScoreSource or numpy.ndarray
        Impostor scores in the caller's units (an array is validated and wrapped).
    fmr_targets : sequence of float
    genuine_failed, impostor_failed : array_like of bool, optional
        Failed comparisons (``impostor_failed`` only with an array; a source marks them with NaN).
    higher_is_better : bool
        False when both sets are distances.
    min_false_matches : int
        Estimability rule of :mod:`validation.metrics`.
    n_grid : int
        Exact DET points in the top 1% of impostor scores (see :func:`tail_ranks`).
    target_windows : bool
        Also select the ranks around each target (:func:`target_window_ranks`), which the subject
        bootstrap needs.
    with_eer : bool
        Compute the EER (one more pass).
    chunk_size, counter_budget, collect_limit : int
        Memory bounds (see :func:`~validation.selection.kth_largest`).
    companions : callable, optional
        ``companions(selection, operating_points, genuine)`` -> ``(reductions, ids)`` (``genuine``: the
        prepared genuine similarities): more passes that need only the order statistics and the
        genuine scores (the subject bootstrap's counts, a plot histogram), run in the same
        pass over the impostors as the EER's (``ids``: the subject ids they read, or None). Their
        results are ``StreamingEvaluation.companions``, in order.

    Returns
    -------
    StreamingEvaluation
        Operating points and EER identical to :func:`validation.metrics.fnmr_at_fmr` and
        :func:`validation.metrics.eer` on the same data. Passes over the impostors: 2 (3 when the
        selected bins hold more than ``collect_limit`` scores, more for float64), plus 1 for the EER
        and the companions. A float32 source that can sample itself (``sample_histogram()``, the
        raw-bin histogram of a sample) takes 1 when the sample's guess of the bins holds every
        statistic and the EER, plus 1 for companions that still need one.
    """
    if hasattr(impostor, "chunks"):
        if impostor_failed is not None:
            raise ValueError("impostor_failed applies to an array; a source marks failures with NaN")
        source = impostor
    else:
        source = source_from_array(impostor, impostor_failed, higher_is_better=higher_is_better)
    g = prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine")
    g_sorted = np.sort(g)
    n = len(source)
    ops: dict[float, OperatingPoint] = {}
    wanted: dict[float, int] = {}
    for f in fmr_targets:
        f = check_fmr_target(f)
        reason = estimability(f, n, g.size, min_false_matches)
        if reason:
            ops[f] = unestimable_point(f, reason, n, g.size)
        else:
            wanted[f] = allowed_false_matches(f, n)
    parts = [tail_ranks(n, n_grid), np.fromiter(wanted.values(), dtype=np.int64, count=len(wanted))]
    if target_windows:
        parts += [target_window_ranks(k, n) for k in wanted.values()]
    ks = np.unique(np.concatenate(parts))
    fine = None
    sample_of = getattr(source, "sample_histogram", None)
    if sample_of is not None and n and ks.size and higher_is_better and source.dtype == np.float32:
        # a source that can sample itself cheaply: guess the bins of the wanted statistics (and of
        # the EER), so that one pass finds them
        sample = sample_of()
        guess = ks if not with_eer else np.concatenate([ks, _eer_ranks(sample, n, g_sorted)])
        fine = fine_bins_from_sample(sample, n, guess)
    sel = (
        kth_largest(
            source,
            ks,
            higher_is_better=higher_is_better,
            chunk_size=chunk_size,
            counter_budget=counter_budget,
            collect_limit=collect_limit,
            fine=fine,
        )
        if n
        else Selection(
            ks, np.zeros(0), np.zeros(0, dtype=np.int64), 0, 0, math.nan, math.nan, 0, None, np.dtype(np.float64)
        )
    )
    passes = sel.passes
    pos_of = {int(k): i for i, k in enumerate(sel.ks)}
    for f, k in wanted.items():
        i = pos_of[k]
        ops[f] = operating_point(f, sel.values[i], int(sel.n_greater[i]), n, g_sorted, higher_is_better, sel.dtype)
    ops = {check_fmr_target(f): ops[check_fmr_target(f)] for f in fmr_targets}
    extra, extra_ids = companions(sel, ops, g) if companions is not None else ([], None)
    extra_results: list = []

    def bracket_and_companions(bracket):
        """The bracket pass with the companions in the same pass; their results go to extra_results."""
        nonlocal passes
        passes += 1
        if not extra:
            return run_pass(source, bracket, chunk_size)
        results = run_pass(source, MultiPass([bracket, *extra]), chunk_size, ids=extra_ids)
        extra_results.extend(results[1:])
        return results[0]

    t_sim, fm = _det_on_grid(sel)
    fnm = np.searchsorted(g_sorted, t_sim, side="left").astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = DETCurve(
            to_user_threshold(t_sim, higher_is_better),
            fm,
            n,
            fnm,
            g.size,
            fm / n if n else np.full(fm.shape, np.nan),
            fnm / g.size if g.size else np.full(fm.shape, np.nan),
        )

    eer = EqualErrorRate(math.nan, math.nan, math.nan, math.nan, None, n, None, g.size)
    if with_eer:
        if n == 0 or g.size == 0:
            eer = eer_from_points(np.zeros(1), np.zeros(1), np.zeros(1), n, g.size)
        else:
            b = int(np.flatnonzero(fnm / g.size >= fm / n)[0]) if fm[-1] * g.size <= fnm[-1] * n else None
            if b is None:  # the grid ends before the crossing: add the point that rejects everything
                t_sim, fm, fnm = np.append(t_sim, np.inf), np.append(fm, 0), np.append(fnm, g.size)
                b = int(np.flatnonzero(fnm / g.size >= fm / n)[0])
            if b == 0:
                eer = eer_from_points(t_sim[:1], fm[:1], fnm[:1], n, g.size)
            else:
                lo, hi = float(t_sim[b - 1]), float(t_sim[b])
                known = bracket_from_fine(sel, lo, hi)
                u, c, next_imp = (
                    known if known is not None else bracket_and_companions(BracketPass(lo, hi, higher_is_better))
                )
                g_in = g_sorted[(g_sorted >= lo) & (g_sorted < hi)]
                g_above = g_sorted[g_sorted >= hi]
                next_above = min(next_imp, float(g_above[0]) if g_above.size else math.inf)
                cand = np.unique(np.concatenate([u, g_in]))
                # impostors >= t for t in [lo, hi): those >= hi plus those in [t, hi)
                cum_from_top = np.concatenate([np.cumsum(c[::-1])[::-1], [0]])
                fm_c = int(fm[b]) + cum_from_top[np.searchsorted(u, cand, side="left")]
                cand = np.append(cand, next_above)
                fm_c = np.append(fm_c, int(fm[b]))
                fnm_c = np.searchsorted(g_sorted, cand, side="left").astype(np.int64)
                r = eer_from_points(cand, fm_c, fnm_c, n, g.size)
                eer = EqualErrorRate(
                    r.eer,
                    float(to_user_threshold(r.threshold, higher_is_better)),
                    r.fmr,
                    r.fnmr,
                    r.false_matches,
                    n,
                    r.false_non_matches,
                    g.size,
                )
    if extra and not extra_results:  # no EER pass was needed: the companions on their own
        extra_results = run_pass(source, MultiPass(extra), chunk_size, ids=extra_ids)
        passes += 1
    return StreamingEvaluation(
        ops,
        eer,
        det,
        sel,
        g,
        g_sorted,
        int(np.count_nonzero(g == -np.inf)),
        sel.n_failed,
        higher_is_better,
        min_false_matches,
        passes,
        tuple(extra_results),
    )


def fnmr_at_fmr(
    genuine, impostor: ScoreSource | np.ndarray, fmr_targets: Sequence[float] = FMR_TARGETS, **kwargs
) -> dict[float, OperatingPoint]:
    """Only FNMR at each FMR target (2 passes over float32 impostors). See :func:`evaluate`."""
    kwargs.setdefault("n_grid", 0)
    kwargs.setdefault("target_windows", False)
    kwargs.setdefault("with_eer", False)
    return evaluate(genuine, impostor, fmr_targets, **kwargs).operating_points


def histogram(source: ScoreSource, edges: np.ndarray, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, int]:
    """Counts of the scores in the bins ``edges`` (caller's units), and the number of failures.

    Returns
    -------
    counts : numpy.ndarray of int64, shape (len(edges) - 1,)
    n_failed : int
        Failed comparisons (NaN in the source), not binned.
    """
    counts, n_failed = run_pass(source, HistogramPass(edges), chunk_size)
    return counts, n_failed


def histogram_bin_of_ranges(floor: np.ndarray, ceil: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """For each range of scores ``[floor, ceil]``: the bin of ``edges`` (``np.histogram``'s, the last
    one closed) that holds the whole range, -2 when the range lies outside every bin, -1 when it
    straddles an edge or an end."""
    nbins = edges.size - 1
    k_lo = np.minimum(np.searchsorted(edges, floor, side="right") - 1, nbins - 1)
    k_hi = np.minimum(np.searchsorted(edges, ceil, side="right") - 1, nbins - 1)
    inside = (floor >= edges[0]) & (ceil <= edges[-1])
    outside = (ceil < edges[0]) | (floor > edges[-1])
    return np.where(outside, -2, np.where(inside & (k_lo == k_hi), k_lo, -1))


def histogram_from_selection(sel: Selection, edges: np.ndarray):
    """:func:`histogram` of the scores a selection was made from, without a pass, when its key
    histogram decides every count: each key bin holding scores lies inside one bin of ``edges``
    (or outside them all), or its scores were kept whole (:attr:`Selection.fine`). None otherwise,
    and for float64 keys. ``edges`` on the similarity scale."""
    if sel.hist is None or sel.dtype != np.float32:
        return None
    edges = np.asarray(edges, np.float64)
    nbins = edges.size - 1
    if nbins < 1:
        return None
    hist = sel.hist.copy()
    inf_bin = int(float_keys(np.array([-np.inf], np.float32))[0]) >> 16
    hist[inf_bin] -= sel.n_failed  # the failures: -inf, never binned (the bin holds no other float)
    bins = np.flatnonzero(hist)
    with np.errstate(invalid="ignore"):
        floor = keys_to_float(bins.astype(np.uint32) << np.uint32(16), np.float32).astype(np.float64)
        ceil = keys_to_float((bins.astype(np.uint32) << np.uint32(16)) | np.uint32(0xFFFF), np.float32)
    ceil = ceil.astype(np.float64)
    if not (np.isfinite(floor).all() and np.isfinite(ceil).all()):
        return None
    k = histogram_bin_of_ranges(floor, ceil, edges)
    counts = np.zeros(nbins, np.int64)
    np.add.at(counts, k[k >= 0], hist[bins[k >= 0]])
    mixed = bins[k == -1]
    if mixed.size:
        fine = sel.fine
        if fine is None or not fine.covers(mixed):
            return None
        v = fine.values()
        take = np.isin(fine.key_bins(), mixed) & (v >= edges[0]) & (v <= edges[-1])
        k = np.minimum(np.searchsorted(edges, v[take], side="right") - 1, nbins - 1)
        np.add.at(counts, k, fine.counts[take])
    return counts, int(sel.n_failed)


class HistogramPass(_Pass):
    """Counts in the bins ``edges`` (caller's units) and the number of failures (NaN)."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.asarray(edges)

    def start(self):
        return [np.zeros(len(self.edges) - 1, dtype=np.int64), 0]

    def add(self, acc, x, ids):
        x = np.asarray(x)
        fin = np.isfinite(x)
        acc[1] += int(x.size - np.count_nonzero(fin))
        c, _ = np.histogram(x[fin] if not fin.all() else x, bins=self.edges)
        acc[0] += c
        return acc

    def merge(self, acc, packed):
        acc[0] += packed[0]
        acc[1] += packed[1]
        return acc
