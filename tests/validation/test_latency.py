"""validation.latency: statistics against slow obvious oracles, pyperf's instability rules,
verdicts, and per-call timing with an injected clock (no sleeping, no wall-clock assertions)."""

import math
import statistics

import numpy as np
import pytest

from validation.latency import instability_reasons, latency_stats, time_calls, verdict


class StepClock:
    """A fake clock in seconds that returns the next value of a script each time it is read."""

    def __init__(self, readings):
        self.readings = list(readings)
        self.reads = 0

    def __call__(self):
        value = self.readings[self.reads]
        self.reads += 1
        return value


def oracle_percentile(values, p):
    """Linear interpolation between order statistics, written out (as pyperf's ``percentile``)."""
    v = sorted(values)
    k = (len(v) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return v[lo] if lo == hi else v[lo] * (hi - k) + v[hi] * (k - lo)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_stats_match_oracle(seed):
    x = np.random.default_rng(seed).gamma(4.0, 25.0, size=37).tolist()
    s = latency_stats(x)
    assert s["n"] == 37
    assert s["median_ms"] == pytest.approx(statistics.median(x))
    assert s["p90_ms"] == pytest.approx(oracle_percentile(x, 90))
    assert s["p99_ms"] == pytest.approx(oracle_percentile(x, 99))
    assert s["max_ms"] == max(x) and s["min_ms"] == min(x)
    assert s["mean_ms"] == pytest.approx(statistics.mean(x))
    assert s["stdev_ms"] == pytest.approx(statistics.stdev(x))
    med = statistics.median(x)
    assert s["mad_ms"] == pytest.approx(statistics.median([abs(v - med) for v in x]))


def test_percentiles_of_1_to_100():
    s = latency_stats(np.arange(1, 101, dtype=float))
    assert s["median_ms"] == 50.5
    assert s["p90_ms"] == pytest.approx(90.1)
    assert s["p99_ms"] == pytest.approx(99.01)
    assert s["max_ms"] == 100.0


def test_narrow_spread_is_stable():
    s = latency_stats([100.0, 101.0, 99.0, 100.5, 99.5])
    assert not s["unstable"] and s["unstable_reasons"] == []


def test_wide_stdev_is_unstable():
    # stdev about 21% of the mean, no single extreme beyond 50%
    s = latency_stats([80.0, 120.0, 80.0, 120.0, 80.0, 120.0])
    assert s["unstable"]
    assert len(s["unstable_reasons"]) == 1 and "standard deviation" in s["unstable_reasons"][0]


def test_one_outlier_is_flagged_by_the_maximum_rule():
    s = latency_stats([100.0] * 99 + [200.0])
    # stdev = 10 ms is 9.9% of the 101 ms mean, so only the maximum rule fires
    assert s["stdev_ms"] < 0.1 * s["mean_ms"]
    assert s["unstable"]
    assert any("maximum" in r and "greater" in r for r in s["unstable_reasons"])
    assert not any("minimum" in r for r in s["unstable_reasons"])


def test_minimum_rule_names_smaller():
    reasons = instability_reasons({"n": 3, "mean_ms": 100.0, "stdev_ms": 1.0, "min_ms": 40.0, "max_ms": 101.0})
    assert reasons == ["the minimum (40 ms) is 60% smaller than the mean (100 ms)"]


def test_single_sample_is_unstable_and_empty_is_nan():
    one = latency_stats([5.0])
    assert one["unstable"] and math.isnan(one["stdev_ms"]) and one["median_ms"] == 5.0
    with pytest.warns(RuntimeWarning):
        empty = latency_stats([])
    assert empty["n"] == 0 and math.isnan(empty["median_ms"]) and empty["unstable"]
    assert verdict(empty, 1000) == "FAIL"


@pytest.mark.parametrize("bad", [[1.0, -0.5], [1.0, float("nan")], [float("inf")]])
def test_bad_samples_are_errors_naming_the_value(bad):
    with pytest.raises(ValueError, match=r"samples_ms\[\d\]"):
        latency_stats(bad)


def test_verdict_gates_on_median_by_default_and_can_gate_on_p99():
    s = latency_stats([900.0] * 95 + [1400.0] * 5)
    assert s["median_ms"] == 900.0 and s["p99_ms"] == 1400.0
    assert verdict(s, 1000) == "PASS"
    assert verdict(s, 1000, statistic="p99") == "FAIL"
    assert verdict(s, 1000, statistic="max_ms") == "FAIL"
    assert verdict(s, 900) == "PASS"  # the budget itself is within budget
    assert verdict(s, 899.9) == "FAIL"


@pytest.mark.parametrize("budget", [0, -1, float("nan"), float("inf")])
def test_verdict_rejects_bad_budget(budget):
    with pytest.raises(ValueError, match="budget_ms"):
        verdict(latency_stats([1.0, 2.0]), budget)


def test_verdict_rejects_unknown_statistic():
    with pytest.raises(ValueError, match="p95"):
        verdict(latency_stats([1.0, 2.0]), 10, statistic="p95")


def test_time_calls_times_each_call_and_discards_warmups():
    calls = []

    def fn(x):
        calls.append(x)
        return x * 2

    # 2 warm-ups read no clock; 3 measured calls read it twice each (seconds)
    clock = StepClock([0.0, 0.010, 1.0, 1.250, 2.0, 2.0005])
    seen = []
    times = time_calls(
        fn, [(1,), (2,), (3,)], warmup=2, clock=clock, on_call=lambda i, r, ms, cpu: seen.append((i, r, ms, cpu))
    )
    assert calls == [1, 2, 1, 2, 3]  # warm-ups on the first arguments, then every argument once
    assert times == pytest.approx([10.0, 250.0, 0.5])
    assert [(i, r) for i, r, _, _ in seen] == [(0, 2), (1, 4), (2, 6)]
    assert [ms for _, _, ms, _ in seen] == pytest.approx(times)
    assert [cpu for *_, cpu in seen] == [None, None, None]
    assert clock.reads == 6


def test_time_calls_reads_the_cpu_clock_inside_the_wall_clock():
    wall = StepClock([0.0, 0.100, 1.0, 1.300])
    cpu = StepClock([5.0, 5.040, 6.0, 6.300])
    seen = []
    times = time_calls(
        lambda: None,
        [(), ()],
        warmup=0,
        clock=wall,
        cpu_clock=cpu,
        on_call=lambda i, r, ms, cpu_ms: seen.append(cpu_ms),
    )
    assert times == pytest.approx([100.0, 300.0])
    assert seen == pytest.approx([40.0, 300.0])


def test_time_calls_warmup_cycles_over_short_lists():
    calls = []
    time_calls(calls.append, [("a",)], warmup=3, clock=StepClock([0, 0]))
    assert calls == ["a", "a", "a", "a"]


def test_time_calls_rejects_bad_warmup():
    with pytest.raises(ValueError):
        time_calls(print, [], warmup=1)
    with pytest.raises(ValueError):
        time_calls(print, [(1,)], warmup=-1)
