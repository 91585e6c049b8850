"""Uncertainty of error rates: Clopper-Pearson at a fixed threshold, subject bootstrap for FNMR@FMR.

* :func:`clopper_pearson` is the exact binomial interval for ``k`` errors in ``n`` independent
  trials (e.g. ``false_non_matches`` of ``n_genuine`` at one threshold). It treats the threshold as
  fixed and the comparisons as independent, so for FNMR at an FMR target, whose threshold is
  itself estimated from impostor scores that share subjects, it is too narrow.
* :func:`subject_bootstrap` resamples *subjects* (identities) with replacement, since comparisons
  that share a person are not independent (Bolle, Ratha & Pankanti's subsets bootstrap). A resample
  draws ``n_subjects`` identities; every genuine and impostor comparison of a drawn identity enters
  as many times as the identity was drawn (an impostor comparison belongs to the subject of its
  enrolled template). In each resample the FMR-target threshold is recomputed on the resampled
  impostors and FNMR is measured on the resampled genuine comparisons; the interval is the
  percentile interval of those FNMRs. The seed and the number of resamples are recorded.

  Exactness: per-subject counts are taken at a fine grid of impostor order statistics around each
  target (:func:`validation.streaming.target_window_ranks`: about 200 ranks spanning a factor
  ``1 + max(0.2, 10/sqrt(k))`` either side of the target's ``k`` allowed false matches, every rank
  when ``k`` is small), and a resample's threshold is snapped to the lowest grid value meeting the
  target; between grid ranks (0.2% apart at most, in FMR) the snapped threshold can only be
  stricter, so a resample's FNMR can only be slightly overstated. A resample whose threshold falls
  outside the window is counted in ``n_clipped`` (with a warning).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Sequence

import numpy as np

from validation.metrics import MetricWarning
from validation.score_sources import DEFAULT_CHUNK, ArrayScores, ScoreSource
from validation.selection import _Counts, _CountsPass, _similarity, run_pass
from validation.streaming import StreamingEvaluation, evaluate, target_window_ranks


MIN_VALID_FRACTION = 0.95
"""A bootstrap interval is given only when at least this share of resamples could estimate FNMR."""


def clopper_pearson(k, n, confidence: float = 0.95) -> tuple[np.ndarray | float, np.ndarray | float]:
    """Exact (Clopper-Pearson) two-sided interval for a binomial proportion ``k / n``.

    Parameters
    ----------
    k, n : int or array_like of int
        Errors and trials (e.g. false non-matches and genuine comparisons at one threshold).
    confidence : float
        Coverage, e.g. 0.95.

    Returns
    -------
    (low, high) : floats or arrays
        Fractions; ``low = 0`` when ``k = 0``, ``high = 1`` when ``k = n``; NaN when ``n = 0``.

    >>> lo, hi = clopper_pearson(0, 3_000_000)
    >>> round(hi * 3_000_000, 2)  # "rule of three": about 3.69 / n at 95%
    3.69
    """
    from scipy.stats import beta

    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence {confidence!r} is not in (0, 1)")
    k_a = np.asarray(k, dtype=np.float64)
    n_a = np.asarray(n, dtype=np.float64)
    if np.any(k_a < 0) or np.any(k_a > n_a):
        raise ValueError("need 0 <= k <= n")
    alpha = 1.0 - confidence
    with np.errstate(invalid="ignore", divide="ignore"):
        low = np.where(k_a > 0, beta.ppf(alpha / 2, k_a, n_a - k_a + 1), 0.0)
        high = np.where(k_a < n_a, beta.ppf(1 - alpha / 2, k_a + 1, n_a - k_a), 1.0)
    low = np.where(n_a > 0, low, np.nan)
    high = np.where(n_a > 0, high, np.nan)
    if low.ndim == 0:
        return float(low), float(high)
    return low, high


@dataclass(frozen=True)
class BootstrapInterval:
    """Percentile interval of FNMR at one FMR target over subject resamples.

    Attributes
    ----------
    fmr_target : float
    ci_low, ci_high : float
        Fractions; NaN when fewer than ``MIN_VALID_FRACTION`` of the resamples could estimate the
        target (e.g. the data hold barely ``1/FMR`` impostors, and half the resamples fewer).
    confidence : float
    n_resamples : int
    n_valid : int
        Resamples in which the target was estimable (enough resampled impostors, some genuine).
    n_clipped : int
        Resamples whose threshold fell outside the precomputed window (their FNMR is approximate).
    seed : int
    n_subjects : int
    resample_fnmr : numpy.ndarray, shape (n_resamples,)
        FNMR in each resample (NaN where not estimable), in draw order.
    """

    fmr_target: float
    ci_low: float
    ci_high: float
    confidence: float
    n_resamples: int
    n_valid: int
    n_clipped: int
    seed: int
    n_subjects: int
    resample_fnmr: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False, compare=False)
    method: str = "subject bootstrap, percentile"


def _as_source(ids, name: str) -> ScoreSource:
    return ids if hasattr(ids, "chunks") else ArrayScores(np.asarray(ids), name)


class SubjectEdgePass(_CountsPass):
    """Impostor counts per (subject, number of ``edges`` strictly below the score), flattened."""

    def __init__(self, subjects: np.ndarray, edges: np.ndarray, higher_is_better: bool, chunk_size: int) -> None:
        self.subjects, self.edges, self.higher_is_better = subjects, edges, higher_is_better
        self.width = edges.size + 1
        self.chunk_size = chunk_size

    def start(self):
        return _Counts(self.subjects.size * self.width, self.chunk_size)

    def add(self, acc, x, ids):
        s = _similarity(np.asarray(x), self.higher_is_better)
        sid = np.searchsorted(self.subjects, ids)
        idx = np.searchsorted(self.edges, s, side="left")  # edges strictly below the score
        acc.add(sid.astype(np.int64) * self.width + idx)
        return acc


def _subject_universe(genuine_subject: np.ndarray, impostor_subject: ScoreSource, chunk_size: int) -> np.ndarray:
    own = getattr(impostor_subject, "unique", None)
    if own is not None:
        return np.unique(np.concatenate([np.unique(genuine_subject), own()]))
    parts = [np.unique(genuine_subject)]
    for _, ids in impostor_subject.chunks(chunk_size):
        parts.append(np.unique(ids))
        if len(parts) > 64:
            parts = [np.unique(np.concatenate(parts))]
    return np.unique(np.concatenate(parts))


def _window_edges(sel, targets: dict) -> tuple[np.ndarray, dict]:
    """The order statistics of each target's window (the edges, ascending) and the windows' ranks."""
    value_of = dict(zip(sel.ks.tolist(), sel.values.tolist()))
    windows = {}
    for f, p in targets.items():
        ranks = target_window_ranks(p.allowed_false_matches, sel.n)
        missing = [r for r in ranks.tolist() if r not in value_of]
        if missing:
            raise ValueError("the evaluation lacks the target windows: call evaluate(..., target_windows=True)")
        windows[f] = ranks
    edges = np.unique(np.array([value_of[r] for w in windows.values() for r in w.tolist()], dtype=np.float64))
    return edges, windows


def bootstrap_companion(genuine_subject, impostor_subject, *, higher_is_better: bool, chunk_size: int = DEFAULT_CHUNK):
    """For :func:`validation.streaming.evaluate`'s ``companions``: the subject bootstrap's counting
    pass, built from the order statistics, to run in the same pass as the EER's. Give
    :func:`subject_bootstrap` ``precomputed=(pass, result)``.

    Returns a function ``(selection, operating_points, genuine) -> (passes, ids)`` (no pass when no
    target is estimable).
    """
    gid = np.asarray(genuine_subject)
    isrc = _as_source(impostor_subject, "impostor_subject")

    def make(sel, ops, genuine=None):
        targets = {f: p for f, p in ops.items() if p.estimable}
        if not targets:
            return [], None
        edges, _ = _window_edges(sel, targets)
        subjects = _subject_universe(gid, isrc, chunk_size)
        return [SubjectEdgePass(subjects, edges, higher_is_better, chunk_size)], isrc

    return make


def subject_bootstrap(
    evaluation: StreamingEvaluation,
    genuine_subject,
    impostor: ScoreSource | np.ndarray,
    impostor_subject,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    chunk_size: int = DEFAULT_CHUNK,
    batch: int = 50,
    precomputed: tuple | None = None,
) -> dict[float, BootstrapInterval]:
    """Subject-level bootstrap interval of FNMR at each estimable FMR target of ``evaluation``.

    Parameters
    ----------
    evaluation : StreamingEvaluation
        From :func:`validation.streaming.evaluate` with ``target_windows=True`` on the same scores.
    genuine_subject : array_like, shape (n_genuine,)
        Subject id of each genuine comparison (ints or strings).
    impostor : ScoreSource or numpy.ndarray
        The impostor scores given to ``evaluate`` (read once more).
    impostor_subject : ScoreSource or array_like, shape (n_impostor,)
        Subject id of each impostor comparison (the enrolled template's subject).
    n_resamples : int
    seed : int
        Seed of ``numpy.random.default_rng``; recorded in the result.
    confidence : float
    chunk_size : int
    batch : int
        Resamples per matrix product (memory: ``batch * n_subjects`` floats).
    precomputed : (SubjectEdgePass, counts), optional
        The counting pass already run (:func:`bootstrap_companion`); used when it is the pass this
        evaluation needs, else the pass is run here.

    Returns
    -------
    dict mapping each estimable target to a :class:`BootstrapInterval`.
    """
    if n_resamples < 1:
        raise ValueError("n_resamples must be >= 1")
    ev = evaluation
    source = impostor if hasattr(impostor, "chunks") else None
    if source is None:
        from validation.score_sources import source_from_array

        source = source_from_array(impostor, higher_is_better=ev.higher_is_better)
    gid = np.asarray(genuine_subject)
    if gid.shape != ev.genuine.shape:
        raise ValueError(f"genuine_subject has shape {gid.shape}, the genuine scores {ev.genuine.shape}")
    isrc = _as_source(impostor_subject, "impostor_subject")
    if len(isrc) != len(source):
        raise ValueError(f"impostor_subject has {len(isrc)} ids for {len(source)} impostor scores")
    sel = ev.selection
    n = sel.n
    targets = {f: p for f, p in ev.operating_points.items() if p.estimable}
    if not targets:
        return {}
    edges, windows = _window_edges(sel, targets)
    done = precomputed[0] if precomputed is not None else None
    if (
        isinstance(done, SubjectEdgePass)
        and bool(done.higher_is_better) == bool(ev.higher_is_better)
        and np.array_equal(done.edges, edges)
        and np.isin(gid, done.subjects).all()
    ):
        subjects, imp_counts = done.subjects, precomputed[1]
    else:
        subjects = _subject_universe(gid, isrc, chunk_size)
        imp_counts = run_pass(
            source, SubjectEdgePass(subjects, edges, ev.higher_is_better, chunk_size), chunk_size, ids=isrc
        )
    value_of = dict(zip(sel.ks.tolist(), sel.values.tolist()))
    n_sub, n_edges = subjects.size, edges.size
    width = n_edges + 1
    imp_counts = imp_counts.reshape(n_sub, width)
    n_imp_s = imp_counts.sum(axis=1).astype(np.float64)
    # above[s, j]: impostors of subject s strictly above edge j
    above = np.cumsum(imp_counts[:, ::-1], axis=1)[:, ::-1][:, 1:].astype(np.float64)
    del imp_counts

    gsid = np.searchsorted(subjects, gid)
    gidx = np.searchsorted(edges, ev.genuine, side="left")  # edges strictly below the score
    gen_counts = np.bincount(gsid * width + gidx, minlength=n_sub * width).reshape(n_sub, width)
    n_gen_s = gen_counts.sum(axis=1).astype(np.float64)
    # at_or_below[s, j]: genuine of subject s at or below edge j (rejected just above it): idx <= j
    at_or_below = np.cumsum(gen_counts, axis=1)[:, :-1].astype(np.float64)
    del gen_counts

    cols = {f: np.searchsorted(edges, np.array([value_of[r] for r in w.tolist()][::-1])) for f, w in windows.items()}
    above_at = {f: np.ascontiguousarray(above[:, c]) for f, c in cols.items()}
    below_at = {f: np.ascontiguousarray(at_or_below[:, c]) for f, c in cols.items()}
    del above, at_or_below
    fractions = {f: Fraction(repr(float(f))) for f in targets}
    rng = np.random.default_rng(seed)
    fnmrs = {f: [] for f in targets}
    clipped = {f: 0 for f in targets}
    done = 0
    while done < n_resamples:
        b = min(batch, n_resamples - done)
        draws = rng.integers(0, n_sub, size=(b, n_sub))
        mult = np.bincount((np.arange(b)[:, None] * n_sub + draws).ravel(), minlength=b * n_sub)
        mult = mult.reshape(b, n_sub).astype(np.float64)
        w_imp = np.rint(mult @ n_imp_s).astype(np.int64)
        w_gen = mult @ n_gen_s
        for f, c in cols.items():
            fm = mult @ above_at[f]  # (b, window) false matches, edges ascending
            fnm = mult @ below_at[f]
            q = fractions[f]
            allowed = (q.numerator * w_imp) // q.denominator
            j = np.sum(fm > allowed[:, None], axis=1)
            hit_top = j == c.size
            j = np.minimum(j, c.size - 1)
            low_clip = (j == 0) & (windows[f].max() < n - 1)
            clipped[f] += int(np.count_nonzero(hit_top | low_clip))
            valid = (allowed >= ev.min_false_matches) & (w_gen > 0)
            with np.errstate(invalid="ignore", divide="ignore"):
                r = fnm[np.arange(b), j] / w_gen
            fnmrs[f].append(np.where(valid, r, np.nan))
        done += b
    out: dict[float, BootstrapInterval] = {}
    alpha = 1.0 - confidence
    for f in targets:
        vals = np.concatenate(fnmrs[f])
        ok = vals[~np.isnan(vals)]
        if ok.size < vals.size:
            warnings.warn(
                f"subject bootstrap at FMR {f:g}: {vals.size - ok.size} of {vals.size} resamples "
                "could not estimate it (too few impostors or no genuine drawn)",
                MetricWarning,
                stacklevel=2,
            )
        if clipped[f]:
            warnings.warn(
                f"subject bootstrap at FMR {f:g}: {clipped[f]} of {vals.size} resample thresholds fell "
                "outside the precomputed window; their FNMR is approximate",
                MetricWarning,
                stacklevel=2,
            )
        if ok.size >= MIN_VALID_FRACTION * vals.size:
            lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2]).tolist()
        else:  # conditioning on the resamples that happen to have enough impostors would bias it
            lo, hi = math.nan, math.nan
            warnings.warn(
                f"subject bootstrap at FMR {f:g}: no interval, fewer than {MIN_VALID_FRACTION:.0%} of "
                "resamples could estimate it",
                MetricWarning,
                stacklevel=2,
            )
        out[f] = BootstrapInterval(
            f, float(lo), float(hi), confidence, n_resamples, int(ok.size), clipped[f], seed, int(n_sub), vals
        )
    return out


def bootstrap_fnmr_at_fmr(
    genuine,
    impostor,
    genuine_subject,
    impostor_subject,
    fmr_targets: Sequence[float] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1),
    *,
    genuine_failed=None,
    impostor_failed=None,
    higher_is_better: bool = True,
    min_false_matches: int = 1,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
) -> dict[float, BootstrapInterval]:
    """In-memory convenience: :func:`validation.streaming.evaluate` then :func:`subject_bootstrap`.

    Parameters are those of the two functions; arrays of shape (n_genuine,) and (n_impostor,).
    """
    from validation.score_sources import source_from_array

    src = source_from_array(impostor, impostor_failed, higher_is_better=higher_is_better)
    ev = evaluate(
        genuine,
        src,
        fmr_targets,
        genuine_failed=genuine_failed,
        higher_is_better=higher_is_better,
        min_false_matches=min_false_matches,
        n_grid=0,
        with_eer=False,
    )
    return subject_bootstrap(
        ev, genuine_subject, src, impostor_subject, n_resamples=n_resamples, seed=seed, confidence=confidence
    )
