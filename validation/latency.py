"""Per-call latency: summary statistics, an instability flag and a verdict against a budget.

Measured the way pyperf measures (psf/pyperf ``_worker.py``, ``_cli.py``): warm-up calls are run
and discarded, every call is timed on its own (never a batch time divided by the batch size), the
distribution is reported (median, p90, p99, max) and a wide spread is flagged.

All times are in milliseconds. The clock is a parameter: tests pass a fake one and never sleep.

Which statistic gates the verdict
---------------------------------
:func:`verdict` compares the **median** per-call time with the budget by default, as NIST's report
cards quote the median template-generation time; p90, p99 and max are reported next to it and can
be chosen as the gate instead (``statistic="p99"``) when a stricter check is wanted.
"""

from __future__ import annotations

import math
import time
import warnings
from typing import Any, Callable, Sequence

import numpy as np

#: pyperf warns when the sample standard deviation is at least this fraction of the mean.
STDEV_FRACTION_LIMIT = 0.10
#: pyperf warns when the minimum or the maximum is this fraction (or more) away from the mean.
EXTREME_FRACTION_LIMIT = 0.50
#: Statistics :func:`verdict` accepts, by their key in :func:`latency_stats`' result.
VERDICT_STATISTICS = ("median_ms", "p90_ms", "p99_ms", "max_ms", "mean_ms")


def latency_stats(samples_ms: Sequence[float] | np.ndarray) -> dict[str, Any]:
    """Summarise per-call times and flag an unstable measurement as pyperf does.

    Parameters
    ----------
    samples_ms : array-like of float, shape (n,)
        One time per call, in milliseconds, warm-ups already removed. Non-negative and finite.

    Returns
    -------
    dict
        ``n``; ``median_ms``, ``p90_ms``, ``p99_ms`` (percentiles by linear interpolation between
        order statistics, as pyperf's ``percentile`` and numpy's default: with fewer than 100
        samples p99 lies between the two largest), ``min_ms``, ``max_ms``, ``mean_ms``,
        ``stdev_ms`` (sample standard deviation, ddof=1; NaN when n < 2), ``mad_ms`` (median
        absolute deviation from the median, unscaled, as pyperf's ``median_abs_dev``);
        ``unstable`` (bool) and ``unstable_reasons`` (list of str, empty when stable).

        pyperf's rules (``format_checks``): the standard deviation is at least 10% of the mean, or
        the minimum or the maximum is 50% (or more) away from the mean. We add: fewer than 2
        samples cannot show a spread and count as unstable. pyperf's third rule (the shortest raw
        value under 1 ms) is about loops too short for the timer and is not applied: a
        per-call latency cannot be looped, and ``perf_counter`` resolves nanoseconds.

        Over different images the spread also holds real, image-dependent variation (a large
        photograph takes longer to detect in), not only noise: read the flag as "look at the
        histogram", not as "the numbers are wrong".

        With no samples every statistic is NaN (with a RuntimeWarning) and ``unstable`` is True.

    Raises
    ------
    ValueError
        When a sample is negative, NaN or infinite, or the input is not one-dimensional.

    Examples
    --------
    >>> s = latency_stats([10.0, 10.0, 11.0, 12.0])
    >>> s["n"], s["median_ms"], s["max_ms"], s["unstable"]
    (4, 10.5, 12.0, False)
    """
    x = np.asarray(samples_ms, dtype=float)
    if x.ndim != 1:
        raise ValueError(f"samples_ms must be one-dimensional, got shape {x.shape}")
    bad = ~np.isfinite(x) | (x < 0)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"samples_ms[{i}] = {x[i]!r} is not a finite non-negative time in ms")
    n = int(x.size)
    if n == 0:
        warnings.warn("no latency samples: statistics are undefined (NaN)", RuntimeWarning, stacklevel=2)
        nan = float("nan")
        return {
            "n": 0,
            "median_ms": nan,
            "p90_ms": nan,
            "p99_ms": nan,
            "min_ms": nan,
            "max_ms": nan,
            "mean_ms": nan,
            "stdev_ms": nan,
            "mad_ms": nan,
            "unstable": True,
            "unstable_reasons": ["no samples"],
        }
    median = float(np.median(x))
    p90, p99 = (float(v) for v in np.percentile(x, [90.0, 99.0]))
    mean = float(x.mean())
    stdev = float(x.std(ddof=1)) if n >= 2 else float("nan")
    stats = {
        "n": n,
        "median_ms": median,
        "p90_ms": p90,
        "p99_ms": p99,
        "min_ms": float(x.min()),
        "max_ms": float(x.max()),
        "mean_ms": mean,
        "stdev_ms": stdev,
        "mad_ms": float(np.median(np.abs(x - median))),
    }
    reasons = instability_reasons(stats)
    stats["unstable"] = bool(reasons)
    stats["unstable_reasons"] = reasons
    return stats


def instability_reasons(stats: dict[str, Any]) -> list[str]:
    """pyperf's warnings for a summary from :func:`latency_stats`; empty when the spread is narrow.

    Parameters
    ----------
    stats : dict
        Needs ``n``, ``mean_ms``, ``stdev_ms``, ``min_ms``, ``max_ms``.

    Returns
    -------
    list of str
        One sentence per rule broken, with the numbers.
    """
    n, mean = stats["n"], stats["mean_ms"]
    if n < 2:
        return [f"only {n} sample(s): the spread is unknown"]
    reasons = []
    if mean <= 0:
        # every sample is 0 ms (a clock too coarse for the call): relative spread is undefined
        return ["the mean is 0 ms: the clock is too coarse for these calls"]
    stdev = stats["stdev_ms"]
    if stdev >= STDEV_FRACTION_LIMIT * mean:
        reasons.append(f"the standard deviation ({stdev:.3g} ms) is {stdev / mean:.0%} of the mean ({mean:.3g} ms)")
    for name in ("min", "max"):
        value = stats[f"{name}_ms"]
        rel = (value - mean) / mean
        if abs(rel) >= EXTREME_FRACTION_LIMIT:
            side = "greater" if rel > 0 else "smaller"
            reasons.append(
                f"the {'minimum' if name == 'min' else 'maximum'} ({value:.3g} ms) is "
                f"{abs(rel):.0%} {side} than the mean ({mean:.3g} ms)"
            )
    return reasons


def verdict(stats: dict[str, Any], budget_ms: float, statistic: str = "median_ms") -> str:
    """PASS when the chosen statistic of the per-call times is within the budget, else FAIL.

    Parameters
    ----------
    stats : dict
        From :func:`latency_stats`.
    budget_ms : float
        The limit per call, in milliseconds (NIST's current 1:1 limit is 1500; ours 1000). > 0.
    statistic : str
        Which statistic gates: ``"median_ms"`` (default, what NIST's report cards quote),
        ``"p90_ms"``, ``"p99_ms"``, ``"max_ms"`` or ``"mean_ms"``; the ``_ms`` suffix may be left
        off (``"p99"``).

    Returns
    -------
    str
        ``"PASS"`` when ``stats[statistic] <= budget_ms``; ``"FAIL"`` otherwise, including when the
        statistic is NaN (no samples: nothing shows the budget is met).

    Raises
    ------
    ValueError
        When the budget is not a positive finite number or the statistic is unknown.
    """
    if not (
        isinstance(budget_ms, (int, float, np.integer, np.floating)) and math.isfinite(budget_ms) and budget_ms > 0
    ):
        raise ValueError(f"budget_ms = {budget_ms!r} is not a positive number of milliseconds")
    key = statistic if statistic.endswith("_ms") else f"{statistic}_ms"
    if key not in VERDICT_STATISTICS:
        raise ValueError(f"statistic {statistic!r} is not one of {', '.join(VERDICT_STATISTICS)}")
    value = float(stats[key])
    return "PASS" if value <= budget_ms else "FAIL"  # NaN compares False: FAIL


def time_calls(
    fn: Callable[..., Any],
    args_list: Sequence[tuple],
    warmup: int = 3,
    clock: Callable[[], float] = time.perf_counter,
    on_call: Callable[[int, Any, float, float | None], None] | None = None,
    cpu_clock: Callable[[], float] | None = None,
) -> list[float]:
    """Time each call ``fn(*args)`` on its own, after warm-up calls whose times are discarded.

    Parameters
    ----------
    fn : callable
        The function to time.
    args_list : sequence of tuple, length n
        The arguments of each measured call, in order.
    warmup : int
        Number of warm-up calls made first, on ``args_list[0], args_list[1], ...`` (cycling when
        ``warmup > n``); they are not timed into the result and ``on_call`` does not see them.
    clock : callable returning float seconds
        A monotonic clock; ``time.perf_counter`` by default. Read once just before and once
        just after each call, nothing else in between.
    on_call : callable (index, result, elapsed_ms, cpu_ms) -> None, optional
        Called after each measured call, outside the timed interval, e.g. to read the
        implementation's stage times or keep the result. ``cpu_ms`` is None without ``cpu_clock``.
    cpu_clock : callable returning float seconds, optional
        A CPU-time clock for the calling thread (``time.thread_time``), read just inside the wall
        clock's readings. Wall time is what NIST measures; on a shared machine the CPU time shows
        how much of it was spent waiting for a core.

    Returns
    -------
    list of float, length n
        Per-call wall time in milliseconds, in the order of ``args_list``.

    Raises
    ------
    ValueError
        When ``warmup`` is negative, or ``warmup > 0`` with an empty ``args_list``.
    """
    if warmup < 0:
        raise ValueError(f"warmup = {warmup} is negative")
    n = len(args_list)
    if warmup and not n:
        raise ValueError("cannot warm up on an empty args_list")
    for i in range(warmup):
        fn(*args_list[i % n])
    times = []
    for i, args in enumerate(args_list):
        if cpu_clock is None:
            t0 = clock()
            result = fn(*args)
            t1 = clock()
            cpu_ms = None
        else:
            t0 = clock()
            c0 = cpu_clock()
            result = fn(*args)
            c1 = cpu_clock()
            t1 = clock()
            cpu_ms = (c1 - c0) * 1000.0
        elapsed_ms = (t1 - t0) * 1000.0
        times.append(elapsed_ms)
        if on_call is not None:
            on_call(i, result, elapsed_ms, cpu_ms)
    return times
