"""frvt.perf.machine: machine description, git revision, versioned JSON, and the FMA kernel's FLOP
accounting with an injected clock (no wall-clock assertions)."""

import datetime as dt
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from frvt.perf.machine import (
    ISA_FLAGS,
    REPO_ROOT,
    FmaPeakUnavailable,
    _cpuinfo,
    git_dirty,
    git_revision,
    machine_info,
    measure_fma_peak,
    measure_read_bandwidth,
    versioned,
)


def test_machine_info_describes_this_machine_as_json():
    info = machine_info()
    json.dumps(info)  # serialisable as is
    assert set(info["isa"]) == set(ISA_FLAGS) and all(isinstance(v, bool) for v in info["isa"].values())
    assert info["logical_cores"] >= 1 and 1 <= info["usable_cores"] <= info["logical_cores"]
    assert info["memory_bytes"] > 0
    assert info["versions"]["numpy"] == __import__("numpy").__version__
    assert set(info["versions"]) >= {"numpy", "opencv", "tvm", "tvm_ffi"}
    assert re.fullmatch(r"\d+\.\d+\.\d+", info["python"])
    if Path("/proc/cpuinfo").is_file():
        flags = set(_cpuinfo()["flags"].split())
        assert info["isa"]["avx2"] == ("avx2" in flags)
        assert info["cpu_model"] == _cpuinfo()["model name"]


def test_cpuinfo_reads_only_the_first_processor(tmp_path):
    p = tmp_path / "cpuinfo"
    p.write_text(
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz\nflags\t\t: fma avx2\n\n"
        "processor\t: 1\nmodel name\t: other\n"
    )
    info = _cpuinfo(str(p))
    assert info["model name"] == "Intel(R) Xeon(R) CPU E5-2630 v4 @ 2.20GHz" and info["flags"] == "fma avx2"
    assert _cpuinfo(str(tmp_path / "missing")) == {}


def test_git_revision_inside_and_outside_a_checkout(tmp_path):
    assert git_revision(tmp_path) is None and git_dirty(tmp_path) is None
    if shutil.which("git") is None or not (REPO_ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout.strip()
    assert git_revision() == head and re.fullmatch(r"[0-9a-f]{40}", head)
    assert isinstance(git_dirty(), bool)


def test_versioned_wraps_a_payload():
    machine = {"cpu_model": "x"}
    out = versioned("frvt.test/1", {"a": 1, "b": [2.5]}, machine=machine)
    assert list(out)[:3] == ["schema", "created", "machine"]
    assert out["schema"] == "frvt.test/1" and out["machine"] is machine and out["a"] == 1 and out["b"] == [2.5]
    created = dt.datetime.fromisoformat(out["created"])
    assert created.tzinfo is not None and abs(dt.datetime.now(dt.timezone.utc) - created) < dt.timedelta(hours=1)
    with pytest.raises(ValueError, match="machine"):
        versioned("frvt.test/1", {"machine": 1}, machine=machine)
    with pytest.raises(ValueError, match="schema"):
        versioned("", {}, machine=machine)


class TickClock:
    """Every reading is ``step`` seconds after the previous one."""

    def __init__(self, step: float) -> None:
        self.t, self.step = 0.0, step

    def __call__(self) -> float:
        self.t += self.step
        return self.t


def test_fma_peak_counts_192_flops_per_iteration():
    clock = TickClock(0.05)  # each timed call "takes" 50 ms
    try:
        r = measure_fma_peak(seconds_per_repeat=0.001, repeats=3, clock=clock)
    except FmaPeakUnavailable as exc:
        pytest.skip(str(exc))
    # calibration stops at once (50 ms >= 20 ms): 65536 iterations scaled to 1 ms / 50 ms
    assert r["iterations"] == int(65536 * 0.001 / 0.05)
    assert r["flops_per_call"] == r["iterations"] * 12 * 8 * 2
    expected = r["flops_per_call"] / 0.05 / 1e9
    assert r["repeats_gflops"] == pytest.approx([expected] * 3)
    assert r["peak_gflops"] == pytest.approx(expected) and r["implied_ghz"] == pytest.approx(expected / 32)


def test_fma_peak_without_a_compiler_is_unavailable():
    with pytest.raises(FmaPeakUnavailable, match="no C compiler"):
        measure_fma_peak(compiler="no-such-cc-frvt")


def test_read_bandwidth_counts_the_array_bytes_per_timed_sum():
    clock = TickClock(0.01)  # each timed sum "takes" 10 ms
    r = measure_read_bandwidth(megabytes=4.0, repeats=3, clock=clock)
    assert r["repeats_gbps"] == pytest.approx([4e6 / 0.01 / 1e9] * 3)  # 4 MB in 10 ms = 0.4 GB/s
    assert r["read_gbps"] == pytest.approx(0.4) and r["median_gbps"] == pytest.approx(0.4)
