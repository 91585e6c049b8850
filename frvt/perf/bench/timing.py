"""Interleaved per-call timing of several runtimes (any process; the clocks are parameters), and output differences."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

# --- interleaved timing (any process; the clocks are parameters) ---------------------------


@dataclass
class InterleavedTimes:
    """Per-call times of several runtimes measured in interleaved rounds.

    Attributes
    ----------
    wall_ms, cpu_ms : dict of str -> list of float
        Timed calls (warm-ups removed), in milliseconds, per runtime.
    first_output : dict of str -> object
        What each runtime's first call returned (used to compare outputs).
    errors : dict of str -> str
        Runtimes whose call raised, with the exception; they were dropped from later rounds.
    order : list of str
        Every call made, in order (warm-ups included).
    rounds : int
        Number of rounds.
    """

    wall_ms: dict[str, list[float]] = field(default_factory=dict)
    cpu_ms: dict[str, list[float]] = field(default_factory=dict)
    first_output: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)
    order: list[str] = field(default_factory=list)
    rounds: int = 0


def schedule_rounds(calls_per_runtime: Mapping[str, int]) -> list[list[str]]:
    """Which runtimes are called in each round.

    There are as many rounds as the largest number of calls; a runtime with fewer calls has them
    spread evenly over the rounds (its i-th call in round ``ceil((i + 1) * rounds / n) - 1``),
    and the order within a round is rotated by one runtime per round.

    Parameters
    ----------
    calls_per_runtime : mapping of str -> int
        Calls (warm-ups + timed) per runtime, >= 0; the mapping's order is the base order.

    Returns
    -------
    list of list of str
        One list per round.

    Examples
    --------
    >>> schedule_rounds({"a": 3, "b": 3, "slow": 1})
    [['a', 'b'], ['b', 'a'], ['slow', 'a', 'b']]
    """
    names = list(calls_per_runtime)
    if any(n < 0 for n in calls_per_runtime.values()):
        raise ValueError(f"negative call count in {dict(calls_per_runtime)}")
    n_rounds = max(calls_per_runtime.values(), default=0)
    members: list[set[str]] = [set() for _ in range(n_rounds)]
    for name, n in calls_per_runtime.items():
        for i in range(n):
            members[math.ceil((i + 1) * n_rounds / n) - 1].add(name)
    rounds = []
    for r, member in enumerate(members):
        k = r % len(names) if names else 0
        rotated = names[k:] + names[:k]
        rounds.append([name for name in rotated if name in member])
    return rounds


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    repeats: Mapping[str, int] | int,
    warmup: Mapping[str, int] | int = 1,
    clock: Callable[[], float] = time.perf_counter,
    cpu_clock: Callable[[], float] = time.process_time,
) -> InterleavedTimes:
    """Time several runtimes call by call, in interleaved rounds (:func:`schedule_rounds`).

    Parameters
    ----------
    calls : mapping of str -> callable
        One zero-argument callable per runtime (one inference on a fixed input).
    repeats : int or mapping of str -> int
        Timed calls per runtime, >= 1.
    warmup : int or mapping of str -> int
        Discarded calls per runtime before its timed ones, >= 0.
    clock, cpu_clock : callable returning seconds
        Wall clock and CPU clock (``time.perf_counter`` and ``time.process_time`` by default;
        tests pass fakes).

    Returns
    -------
    InterleavedTimes
        A runtime whose call raises is recorded in ``errors`` and called no more.

    Raises
    ------
    ValueError
        A repeat count below 1 or a negative warm-up count.
    """
    names = list(calls)
    reps = {n: repeats if isinstance(repeats, int) else int(repeats[n]) for n in names}
    warm = {n: warmup if isinstance(warmup, int) else int(warmup.get(n, 0)) for n in names}
    bad = [n for n in names if reps[n] < 1 or warm[n] < 0]
    if bad:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0: {[(n, reps[n], warm[n]) for n in bad]}")
    result = InterleavedTimes(wall_ms={n: [] for n in names}, cpu_ms={n: [] for n in names})
    done = dict.fromkeys(names, 0)
    rounds = schedule_rounds({n: warm[n] + reps[n] for n in names})
    for members in rounds:
        for name in members:
            if name in result.errors:
                continue
            call = calls[name]
            c0, t0 = cpu_clock(), clock()
            try:
                out = call()
            except Exception as exc:  # a runtime failing is a result, not a crash of the shoot-out
                result.errors[name] = f"{type(exc).__name__}: {exc}"
                continue
            t1, c1 = clock(), cpu_clock()
            result.order.append(name)
            if done[name] == 0:
                result.first_output[name] = out
            if done[name] >= warm[name]:
                result.wall_ms[name].append((t1 - t0) * 1e3)
                result.cpu_ms[name].append((c1 - c0) * 1e3)
            done[name] += 1
    result.rounds = len(rounds)
    return result


def output_difference(outputs: Sequence[np.ndarray], reference: Sequence[np.ndarray]) -> tuple[float, float]:
    """(max abs difference, max abs difference / max abs reference value) over all outputs.

    Outputs are compared in order, each reshaped to its reference's shape. NaN when the number
    of outputs or their sizes differ.
    """
    if len(outputs) != len(reference):
        return float("nan"), float("nan")
    worst, scale = 0.0, 0.0
    for out, ref in zip(outputs, reference):
        out, ref = np.asarray(out, np.float64), np.asarray(ref, np.float64)
        if out.size != ref.size:
            return float("nan"), float("nan")
        worst = max(worst, float(np.max(np.abs(out.reshape(ref.shape) - ref))) if ref.size else 0.0)
        scale = max(scale, float(np.max(np.abs(ref))) if ref.size else 0.0)
    return worst, (worst / scale if scale > 0 else float("nan"))
