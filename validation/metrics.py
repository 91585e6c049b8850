"""Verification error rates from genuine and impostor comparison scores, held in memory.

Conventions, fixed once for the whole package:

* **Direction.** Scores are similarities (higher means more alike) unless a function is called
  with ``higher_is_better=False``, in which case they are distances (lower means more alike).
  Internally distances are negated; thresholds are always returned in the caller's units.
* **Decision rule and ties.** A comparison is a *match* when ``score >= threshold`` (for distances:
  ``distance <= threshold``). A score equal to the threshold is accepted.
* **Rates.** ``FMR(t) = false_matches / n_impostor`` where ``false_matches`` counts impostor
  comparisons accepted at ``t``; ``FNMR(t) = false_non_matches / n_genuine`` where
  ``false_non_matches`` counts genuine comparisons rejected at ``t``. Counts are always reported
  beside the rates.
* **NIST failure rule.** A failed comparison (a template that could not be made, or a comparison
  returning -1 with a non-success code) is a non-match at every threshold: it stays in the
  denominator of both rates, it is a false non-match when genuine and never a false match when
  impostor. Pass failures as boolean masks (``genuine_failed`` / ``impostor_failed``); the score of
  a failed comparison is ignored. Internally a failure is the similarity ``-inf``.
* **FNMR at FMR.** For a target ``f`` with ``n_impostor`` impostor comparisons, at most
  ``k = floor(f * n_impostor)`` false matches are allowed (computed exactly on the decimal value of
  ``f``). The threshold is the lowest one with at most ``k`` false matches: just above the
  ``(k+1)``-th highest impostor similarity, i.e. ``numpy.nextafter(s[k], inf)`` with ``s`` the
  impostor similarities sorted high to low (the next number above ``s[k]`` in the impostor scores'
  precision: float32 scores get a float32 threshold). Ties at ``s[k]`` are therefore all rejected
  and the achieved FMR can be below the target; it is reported.
* **Estimability.** A target is estimable when ``k >= min_false_matches`` (default 1), i.e. when
  ``n_impostor >= ceil(min_false_matches / f)``: with fewer impostors the data cannot distinguish
  FMR ``f`` from zero. Otherwise the result is NaN and a :class:`MetricWarning` names the shortfall.
* **EER.** The error rates are evaluated at every candidate threshold (each distinct finite score,
  plus ``+inf`` which rejects everything). Between the last candidate where FNMR < FMR and the
  next, where FNMR >= FMR, the two rates are interpolated linearly and the EER is where they meet.
  The reported threshold is the one of the two candidates nearer the crossing (the lower on a tie).

Undefined quantities (an empty class, an unsupported FMR target) are NaN with a warning; malformed
input (a NaN or infinite score that is not marked as failed, a wrong shape) raises
:class:`ScoreError` naming the array, index and value.

>>> points = fnmr_at_fmr([0.9, 0.8, 0.3], [0.1, 0.2, 0.35, 0.5], fmr_targets=(0.25,))
>>> p = points[0.25]
>>> (p.false_matches, p.n_impostor, p.false_non_matches, p.n_genuine)
(1, 4, 1, 3)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Iterable, Sequence

import numpy as np

FMR_TARGETS: tuple[float, ...] = (1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1)
"""The FMR levels NIST reports FNMR at."""


class MetricWarning(UserWarning):
    """A metric could not be estimated from the data and is NaN."""


class ScoreError(ValueError):
    """A score that cannot be used: names where it came from, its position and its value.

    Parameters
    ----------
    source : str
        The array name or file path.
    position : int or None
        0-based index into an array, or 1-based line number in a text file (see ``position_kind``).
    value : str
        The offending value as text.
    reason : str
        What is wrong with it.
    position_kind : str
        ``"index"`` or ``"line"``.
    """

    def __init__(
        self, source: str, position: int | None, value: object, reason: str, position_kind: str = "index"
    ) -> None:
        self.source = str(source)
        self.position = position
        self.value = str(value)
        self.reason = reason
        self.position_kind = position_kind
        where = self.source if position is None else f"{self.source}, {position_kind} {position}"
        super().__init__(f"{where}: {reason}: {self.value!r}")


def fmr_key(fmr: float) -> str:
    """The key used for an FMR level in results, e.g. ``1e-06`` or ``1e-01``."""
    short = f"{float(fmr):.0e}"
    return short if float(short) == float(fmr) else repr(float(fmr))


def allowed_false_matches(fmr: float, n_impostor: int) -> int:
    """``floor(fmr * n_impostor)``, exact for decimal ``fmr`` (no rounding surprises at 0.29*100)."""
    return int(math.floor(Fraction(repr(float(fmr))) * int(n_impostor)))


def required_impostors(fmr: float, min_false_matches: int = 1) -> int:
    """The fewest impostor comparisons for which ``fmr`` is estimable: ``ceil(m / fmr)``."""
    return int(math.ceil(Fraction(int(min_false_matches)) / Fraction(repr(float(fmr)))))


def prepare_scores(
    scores: Iterable[float] | np.ndarray,
    failed: Iterable[bool] | np.ndarray | None = None,
    *,
    higher_is_better: bool = True,
    name: str = "scores",
) -> np.ndarray:
    """Validate scores once and turn them into similarities with ``-inf`` for failed comparisons.

    Parameters
    ----------
    scores : array_like, shape (n,)
        Similarities (``higher_is_better=True``) or distances.
    failed : array_like of bool, shape (n,), optional
        True where the comparison failed (NIST: score -1 and a non-success code). Those scores are
        ignored and become ``-inf``: never accepted at any threshold.
    higher_is_better : bool
        False for distances; they are negated.
    name : str
        Used in error messages.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)
        Similarities; ``-inf`` marks a failed comparison.

    Raises
    ------
    ScoreError
        A non-finite score not marked as failed, a non-numeric array, a wrong shape.
    """
    try:
        a = np.asarray(scores, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ScoreError(name, None, "", f"scores are not numeric ({exc})") from None
    if a.ndim == 0 and a.size == 0:
        a = a.reshape(0)
    if a.ndim != 1:
        raise ScoreError(name, None, f"shape {a.shape}", "scores must be one-dimensional")
    a = a.copy()
    if failed is not None:
        f = np.asarray(failed)
        if f.shape != a.shape:
            raise ScoreError(name, None, f"shape {f.shape}", f"failure mask must have shape {a.shape}")
        f = f.astype(bool)
    else:
        f = np.zeros(a.shape, dtype=bool)
    bad = ~np.isfinite(a) & ~f
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreError(name, i, a[i], "score is not finite (mark failed comparisons in the failure mask)")
    if not higher_is_better:
        a = -a
    a += 0.0  # -0.0 -> +0.0 so that equal scores are one value everywhere
    a[f] = -np.inf
    return a


def to_user_threshold(similarity_threshold: float | np.ndarray, higher_is_better: bool) -> float | np.ndarray:
    """A threshold on the internal similarity scale in the caller's units (distance: negated)."""
    return similarity_threshold if higher_is_better else -similarity_threshold


def _rate(count: np.ndarray | int, n: int, what: str, warn: bool = True) -> np.ndarray | float:
    if n == 0:
        if warn:
            warnings.warn(
                f"{what} is undefined: no {what.split()[-1]} comparisons (denominator 0); NaN",
                MetricWarning,
                stacklevel=3,
            )
        return np.full(np.shape(count), np.nan) if np.ndim(count) else math.nan
    return np.asarray(count, dtype=np.float64) / n if np.ndim(count) else float(count) / n


@dataclass(frozen=True)
class ErrorCounts:
    """Error counts at given thresholds (arrays of shape (m,), thresholds in the caller's units).

    ``false_matches`` counts accepted impostor comparisons, ``false_non_matches`` rejected genuine
    comparisons (failures included); ``fmr = false_matches / n_impostor`` and
    ``fnmr = false_non_matches / n_genuine`` (NaN when a denominator is 0).
    """

    threshold: np.ndarray
    false_matches: np.ndarray
    n_impostor: int
    false_non_matches: np.ndarray
    n_genuine: int
    fmr: np.ndarray
    fnmr: np.ndarray


def _counts_on_similarity(
    gen_sorted: np.ndarray, imp_sorted: np.ndarray, t: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """(false matches, false non-matches) at similarity thresholds ``t`` (accept ``s >= t``)."""
    fm = imp_sorted.size - np.searchsorted(imp_sorted, t, side="left")
    fnm = np.searchsorted(gen_sorted, t, side="left")
    return fm.astype(np.int64), fnm.astype(np.int64)


def error_counts(
    genuine, impostor, thresholds, *, genuine_failed=None, impostor_failed=None, higher_is_better: bool = True
) -> ErrorCounts:
    """False matches and false non-matches at each threshold.

    Parameters
    ----------
    genuine, impostor : array_like, shape (n_genuine,), (n_impostor,)
        Scores of mated and non-mated comparisons.
    thresholds : array_like, shape (m,)
        Decision thresholds in the scores' units; accept when ``score >= t`` (distances: ``<= t``).
    genuine_failed, impostor_failed : array_like of bool, optional
        Failed comparisons (non-matches at every threshold).
    higher_is_better : bool
        False when the scores are distances.

    Returns
    -------
    ErrorCounts
    """
    g = np.sort(prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine"))
    i = np.sort(prepare_scores(impostor, impostor_failed, higher_is_better=higher_is_better, name="impostor"))
    t_user = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    if np.isnan(t_user).any():
        raise ScoreError("thresholds", int(np.flatnonzero(np.isnan(t_user))[0]), "nan", "threshold is NaN")
    t = t_user if higher_is_better else -t_user
    fm, fnm = _counts_on_similarity(g, i, t)
    return ErrorCounts(
        t_user, fm, i.size, fnm, g.size, _rate(fm, i.size, "FMR impostor"), _rate(fnm, g.size, "FNMR genuine")
    )


@dataclass(frozen=True)
class DETCurve:
    """Operating points, ordered from the most lenient threshold to the strictest (FMR falling).

    All arrays have shape (m,). ``threshold`` is in the caller's units; ``fmr`` and ``fnmr`` are
    fractions; a threshold of ``+inf`` (similarity) rejects everything.
    """

    threshold: np.ndarray
    false_matches: np.ndarray
    n_impostor: int
    false_non_matches: np.ndarray
    n_genuine: int
    fmr: np.ndarray
    fnmr: np.ndarray


def _det_on_similarity(g_sorted: np.ndarray, i_sorted: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    both = np.concatenate([g_sorted, i_sorted])
    cand = np.unique(both[np.isfinite(both)])
    cand = np.append(cand, np.inf)
    fm, fnm = _counts_on_similarity(g_sorted, i_sorted, cand)
    return cand, fm, fnm


def det_points(
    genuine, impostor, *, genuine_failed=None, impostor_failed=None, higher_is_better: bool = True
) -> DETCurve:
    """Every distinct operating point: the rates at each distinct finite score and at ``+inf``.

    Parameters are as in :func:`error_counts`. Memory is O(n_genuine + n_impostor); for very large
    impostor sets use :mod:`validation.streaming`, which samples the curve at chosen FMR levels.

    Returns
    -------
    DETCurve
        Thresholds ascend in similarity (the FMR falls, the FNMR rises along the arrays).
    """
    g = np.sort(prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine"))
    i = np.sort(prepare_scores(impostor, impostor_failed, higher_is_better=higher_is_better, name="impostor"))
    cand, fm, fnm = _det_on_similarity(g, i)
    return DETCurve(
        to_user_threshold(cand, higher_is_better),
        fm,
        i.size,
        fnm,
        g.size,
        _rate(fm, i.size, "FMR impostor"),
        _rate(fnm, g.size, "FNMR genuine"),
    )


@dataclass(frozen=True)
class EqualErrorRate:
    """The equal error rate and the candidate threshold nearest the FMR/FNMR crossing.

    ``eer`` is interpolated between two adjacent operating points; ``fmr``/``fnmr`` and the counts
    are the exact values at ``threshold`` (caller's units). NaN fields when undefined.
    """

    eer: float
    threshold: float
    fmr: float
    fnmr: float
    false_matches: int | None
    n_impostor: int
    false_non_matches: int | None
    n_genuine: int


def eer_from_points(
    threshold: np.ndarray,
    false_matches: np.ndarray,
    false_non_matches: np.ndarray,
    n_impostor: int,
    n_genuine: int,
    *,
    warn: bool = True,
) -> EqualErrorRate:
    """EER from operating points ordered by ascending similarity threshold (FMR falling).

    ``threshold`` is on the similarity scale; the caller converts it. The points must include the
    first crossing (the last point with FNMR < FMR and the next one).
    """
    if n_impostor == 0 or n_genuine == 0:
        if warn:
            warnings.warn(
                f"EER is undefined: n_genuine={n_genuine}, n_impostor={n_impostor}; NaN", MetricWarning, stacklevel=3
            )
        return EqualErrorRate(math.nan, math.nan, math.nan, math.nan, None, n_impostor, None, n_genuine)
    fmr = false_matches / n_impostor
    fnmr = false_non_matches / n_genuine
    at_or_past = np.flatnonzero(fnmr >= fmr)
    b = int(at_or_past[0])
    if b == 0:
        if warn:
            warnings.warn(
                f"EER is undefined: already at the most lenient threshold FNMR {fnmr[0]:.4g} >= FMR "
                f"{fmr[0]:.4g} (failed genuine comparisons: {int(false_non_matches[0])} of {n_genuine}); NaN",
                MetricWarning,
                stacklevel=3,
            )
        return EqualErrorRate(math.nan, math.nan, math.nan, math.nan, None, n_impostor, None, n_genuine)
    a = b - 1
    gap_a = fmr[a] - fnmr[a]  # > 0
    gap_b = fnmr[b] - fmr[b]  # >= 0
    lam = gap_a / (gap_a + gap_b)
    value = float(fmr[a] + lam * (fmr[b] - fmr[a]))
    j = a if lam <= 0.5 else b
    return EqualErrorRate(
        value,
        float(threshold[j]),
        float(fmr[j]),
        float(fnmr[j]),
        int(false_matches[j]),
        n_impostor,
        int(false_non_matches[j]),
        n_genuine,
    )


def eer(
    genuine, impostor, *, genuine_failed=None, impostor_failed=None, higher_is_better: bool = True
) -> EqualErrorRate:
    """Equal error rate (see the module docstring for the interpolation rule).

    Parameters are as in :func:`error_counts`.

    Returns
    -------
    EqualErrorRate
        NaN with a :class:`MetricWarning` when a class is empty, or when failures make FNMR >= FMR
        already at the most lenient threshold.
    """
    g = np.sort(prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine"))
    i = np.sort(prepare_scores(impostor, impostor_failed, higher_is_better=higher_is_better, name="impostor"))
    cand, fm, fnm = _det_on_similarity(g, i)
    r = eer_from_points(cand, fm, fnm, i.size, g.size)
    return EqualErrorRate(
        r.eer,
        float(to_user_threshold(r.threshold, higher_is_better)),
        r.fmr,
        r.fnmr,
        r.false_matches,
        r.n_impostor,
        r.false_non_matches,
        r.n_genuine,
    )


@dataclass(frozen=True)
class OperatingPoint:
    """FNMR at one FMR target, with the threshold that achieves it and every count behind it.

    Attributes
    ----------
    fmr_target : float
    estimable : bool
        False when ``n_impostor < ceil(min_false_matches / fmr_target)`` or a class is empty.
    reason : str
        Why it is not estimable ("" when it is).
    threshold : float
        Caller's units; accept when ``score >= threshold`` (distances: ``<=``). NaN if not estimable.
    false_matches, n_impostor : int
        Impostor comparisons accepted at ``threshold`` (at most ``allowed_false_matches``).
    fmr : float
        Achieved ``false_matches / n_impostor`` (<= fmr_target).
    false_non_matches, n_genuine : int
        Genuine comparisons rejected at ``threshold``, failures included.
    fnmr : float
        ``false_non_matches / n_genuine``.
    allowed_false_matches : int
        ``floor(fmr_target * n_impostor)``.
    """

    fmr_target: float
    estimable: bool
    reason: str
    threshold: float
    false_matches: int | None
    n_impostor: int
    fmr: float
    false_non_matches: int | None
    n_genuine: int
    fnmr: float
    allowed_false_matches: int

    @property
    def tar(self) -> float:
        """True accept rate ``1 - fnmr``."""
        return 1.0 - self.fnmr


def check_fmr_target(fmr: float) -> float:
    f = float(fmr)
    if not (0.0 < f < 1.0):
        raise ValueError(f"FMR target {fmr!r} is not in (0, 1)")
    return f


def estimability(fmr: float, n_impostor: int, n_genuine: int, min_false_matches: int = 1) -> str:
    """ "" when FNMR at ``fmr`` can be estimated, else the reason (names the shortfall)."""
    if n_genuine == 0:
        return "no genuine comparisons"
    need = required_impostors(fmr, min_false_matches)
    if n_impostor < need:
        return (
            f"FMR {fmr:g} needs at least {need} impostor comparisons (>= {min_false_matches} "
            f"false match allowed), have {n_impostor}: short by {need - n_impostor}"
        )
    return ""


def next_above(value: float | np.ndarray, dtype=np.float64) -> float | np.ndarray:
    """The smallest number of ``dtype`` above ``value``: the threshold that rejects ``value``.

    Taken in the scores' own precision, so that comparing float32 scores with it in float32 (as
    numpy does for ``scores32 >= python_float``) gives the same decisions as in float64.
    """
    t = np.dtype(dtype).type
    return np.nextafter(np.asarray(value).astype(t), t(np.inf)).astype(np.float64)


def operating_point(
    fmr_target: float,
    kth_similarity: float,
    n_greater: int,
    n_impostor: int,
    g_sorted: np.ndarray,
    higher_is_better: bool,
    dtype=np.float64,
) -> OperatingPoint:
    """Build the result for one estimable target from the ``(k+1)``-th highest impostor similarity.

    ``kth_similarity`` is ``s[k]`` (similarities sorted high to low, ``k`` the allowed false
    matches), ``n_greater`` the number of impostor similarities strictly above it, ``g_sorted`` the
    ascending genuine similarities (``-inf`` for failures), ``dtype`` the impostor scores' precision.
    """
    t = float(next_above(kth_similarity, dtype))
    fnm = int(np.searchsorted(g_sorted, t, side="left"))
    return OperatingPoint(
        fmr_target,
        True,
        "",
        float(to_user_threshold(t, higher_is_better)),
        int(n_greater),
        n_impostor,
        n_greater / n_impostor,
        fnm,
        g_sorted.size,
        fnm / g_sorted.size,
        allowed_false_matches(fmr_target, n_impostor),
    )


def unestimable_point(
    fmr_target: float, reason: str, n_impostor: int, n_genuine: int, warn: bool = True
) -> OperatingPoint:
    if warn:
        warnings.warn(f"FNMR at FMR {fmr_target:g} is not estimable: {reason}; NaN", MetricWarning, stacklevel=3)
    return OperatingPoint(
        fmr_target,
        False,
        reason,
        math.nan,
        None,
        n_impostor,
        math.nan,
        None,
        n_genuine,
        math.nan,
        allowed_false_matches(fmr_target, n_impostor),
    )


def fnmr_at_fmr(
    genuine,
    impostor,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    *,
    genuine_failed=None,
    impostor_failed=None,
    higher_is_better: bool = True,
    min_false_matches: int = 1,
) -> dict[float, OperatingPoint]:
    """FNMR at each FMR target, with its threshold and counts.

    Parameters
    ----------
    genuine, impostor : array_like, shape (n_genuine,), (n_impostor,)
        Scores (similarities unless ``higher_is_better=False``).
    fmr_targets : sequence of float in (0, 1)
        FMR levels; default NIST's 1e-6 ... 1e-1.
    genuine_failed, impostor_failed : array_like of bool, optional
        Failed comparisons: non-matches at every threshold, kept in the denominators.
    higher_is_better : bool
        False when the scores are distances.
    min_false_matches : int
        A target is estimable only when it allows at least this many false matches.

    Returns
    -------
    dict mapping each target to an :class:`OperatingPoint` (NaN fields and a
    :class:`MetricWarning` when not estimable).
    """
    g = np.sort(prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine"))
    imp = prepare_scores(impostor, impostor_failed, higher_is_better=higher_is_better, name="impostor")
    precision = np.float32 if np.asarray(impostor).dtype == np.float32 else np.float64
    n = imp.size
    out: dict[float, OperatingPoint] = {}
    wanted: dict[float, int] = {}
    for f in fmr_targets:
        f = check_fmr_target(f)
        reason = estimability(f, n, g.size, min_false_matches)
        if reason:
            out[f] = unestimable_point(f, reason, n, g.size)
        else:
            wanted[f] = allowed_false_matches(f, n)
    if wanted:
        # the (k+1)-th highest is the (n-1-k)-th lowest (0-based)
        pos = sorted({n - 1 - k for k in wanted.values()})
        part = np.partition(imp, pos)
        for f, k in wanted.items():
            s = part[n - 1 - k]
            n_greater = int(np.count_nonzero(imp > s))
            out[f] = operating_point(f, s, n_greater, n, g, higher_is_better, precision)
    return {check_fmr_target(f): out[check_fmr_target(f)] for f in fmr_targets}


def tar_at_far(genuine, impostor, far_targets: Sequence[float] = FMR_TARGETS, **kwargs) -> dict[float, float]:
    """True accept rate ``1 - FNMR`` at each false accept rate (= FMR) target; NaN if not estimable.

    Keyword arguments are those of :func:`fnmr_at_fmr`.
    """
    return {f: p.tar for f, p in fnmr_at_fmr(genuine, impostor, far_targets, **kwargs).items()}


@dataclass(frozen=True)
class FailureCount:
    """Failed attempts among all attempts: ``rate = n_failed / n_attempts`` (NaN when none)."""

    n_failed: int
    n_attempts: int

    @property
    def rate(self) -> float:
        return self.n_failed / self.n_attempts if self.n_attempts else math.nan


def failure_count(return_codes: Iterable[int] | np.ndarray) -> FailureCount:
    """Count non-success (non-zero) NIST return codes, e.g. FTE from an enrolment log."""
    c = np.asarray(list(return_codes) if not isinstance(return_codes, np.ndarray) else return_codes)
    return FailureCount(int(np.count_nonzero(c != 0)), int(c.size))
