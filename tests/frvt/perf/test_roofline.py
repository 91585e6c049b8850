"""Compute- or memory-bound, part by part, with the real networks' FLOPs and weight bytes."""

from __future__ import annotations

import pytest

from frvt.perf.profile import estimate_parts_for_target, format_profile
from frvt.perf.roofline import (
    E5_2630_V4,
    RooflineError,
    estimate_parts,
    format_parts,
    network_costs,
    network_floors,
    scale_network,
    scale_scalar,
)

# One call of each network, as counted from the ONNX files and written by the compiler
# (python -c "from frvt.perf.bench.models import model_macs; ...", metadata.json weight_bytes).
DETECTOR = {"flops": 2 * 264_640_000, "weight_bytes": 4_264_512}
EMBEDDER = {"flops": 2 * 270_854_144, "weight_bytes": 28_512_256}
# This machine (AMD EPYC, KVM), measured by measure_fma_peak and measure_read_bandwidth.
HERE = {"peak_gflops": 107.0, "read_gbps": 14.4}


def test_the_real_networks_cost_what_their_files_say(default_config_dir):
    costs = network_costs({"detector": default_config_dir / "detector", "embedder": default_config_dir / "embedder"})
    # the default embedder takes the chip and its mirror image in one call: twice one image's FLOPs
    assert costs == {"detector": DETECTOR, "embedder": dict(EMBEDDER, flops=2 * EMBEDDER["flops"])}
    assert network_costs({"nothing": default_config_dir / "absent"}) == {}


def test_a_library_compiled_for_a_batch_of_two_costs_twice_the_flops(default_config_dir, tmp_path):
    import json
    import shutil

    embedder = tmp_path / "embedder"
    shutil.copytree(default_config_dir / "embedder", embedder)
    meta = json.loads((embedder / "metadata.json").read_text())
    one = network_costs({"embedder": embedder})["embedder"]
    (embedder / "metadata.json").write_text(json.dumps(dict(meta, input_shape=[2, *meta["input_shape"][1:]])))
    two = network_costs({"embedder": embedder})["embedder"]
    assert two == {"flops": 2 * 2 * 270_854_144, "weight_bytes": one["weight_bytes"]}
    assert one["flops"] == 2 * 270_854_144 * meta["input_shape"][0]


def test_both_networks_are_compute_bound_here_and_on_the_target():
    detector = network_floors(**DETECTOR, **HERE)
    embedder = network_floors(**EMBEDDER, **HERE)
    assert detector["bound"] == embedder["bound"] == "compute"
    assert detector["intensity"] == pytest.approx(124.1, abs=0.1)  # FLOP per weight byte
    assert embedder["intensity"] == pytest.approx(19.0, abs=0.1)
    assert embedder["compute_ms"] == pytest.approx(5.063, abs=1e-3)  # 0.542 GFLOP at 107 GFLOP/s
    assert embedder["memory_ms"] == pytest.approx(1.980, abs=1e-3)  # 28.5 MB at 14.4 GB/s
    for ghz in (E5_2630_V4["base_ghz"], E5_2630_V4["turbo_ghz"]):
        there = network_floors(**EMBEDDER, peak_gflops=ghz * 32, read_gbps=E5_2630_V4["read_gbps"])
        assert there["bound"] == "compute"


def test_the_embedder_turns_memory_bound_below_its_intensity_times_bandwidth():
    # 107 GFLOP/s / 19.0 FLOP/byte = 5.63 GB/s: the bandwidth at which its two floors meet
    assert network_floors(**EMBEDDER, peak_gflops=107.0, read_gbps=5.7)["bound"] == "compute"
    assert network_floors(**EMBEDDER, peak_gflops=107.0, read_gbps=5.5)["bound"] == "memory"
    # the detector's weights are 7x fewer per FLOP: still compute-bound at 1 GB/s
    assert network_floors(**DETECTOR, peak_gflops=107.0, read_gbps=1.0)["bound"] == "compute"


def test_each_bound_scales_by_its_own_figure():
    base = {"peak_gflops": 2.2 * 32, "read_gbps": 12.0}
    compute = scale_network(6.0, **EMBEDDER, here=HERE, there=base)
    assert compute["scale"] == pytest.approx(107.0 / 70.4)  # FMA peaks
    starved = {"peak_gflops": 107.0, "read_gbps": 2.0}  # memory-bound here
    memory = scale_network(16.0, **EMBEDDER, here=starved, there={"peak_gflops": 70.4, "read_gbps": 3.0})
    assert memory["here"]["bound"] == memory["there"]["bound"] == "memory"
    assert memory["scale"] == pytest.approx(2.0 / 3.0) and memory["ms"] == pytest.approx(16.0 * 2.0 / 3.0)
    # at 4 GB/s there, 70.4 GFLOP/s takes longer than the 28.5 MB: compute-bound again
    assert (
        scale_network(16.0, **EMBEDDER, here=starved, there={"peak_gflops": 70.4, "read_gbps": 4.0})["there"]["bound"]
        == "compute"
    )
    # memory-bound here, compute-bound there: the binding floor changes
    mixed = scale_network(16.0, **EMBEDDER, here=starved, there={"peak_gflops": 70.4, "read_gbps": 100.0})
    assert mixed["there"]["bound"] == "compute"
    assert mixed["scale"] == pytest.approx((EMBEDDER["flops"] / 70.4e9) / (EMBEDDER["weight_bytes"] / 2e9))
    assert scale_scalar(3.0, 3.344, 2.2)["ms"] == pytest.approx(3.0 * 3.344 / 2.2)
    with pytest.raises(RooflineError, match="read_gbps"):
        network_floors(**EMBEDDER, peak_gflops=107.0, read_gbps=0.0)


def test_parts_add_up_and_pre_post_processing_scales_with_the_clock():
    parts = {"detector": 8.0, "embedder": 12.0, "other": 3.0}
    costs = {"detector": {**DETECTOR, "calls": 1.0}, "embedder": {**EMBEDDER, "calls": 2.0}}
    est = estimate_parts(parts, costs, HERE["peak_gflops"], HERE["read_gbps"])
    assert est["ghz_here"] == pytest.approx(107.0 / 32)
    assert est["parts"]["other"]["bound_here"] == "clock"
    assert est["parts"]["other"]["ms"]["base"] == pytest.approx(3.0 * (107.0 / 32) / 2.2)
    assert est["parts"]["embedder"]["ms"]["base"] == pytest.approx(12.0 * 107.0 / 70.4)  # per call x 2 calls
    assert est["parts"]["embedder"]["bound_target"] == {"turbo": "compute", "base": "compute"}
    assert est["total_ms_here"] == pytest.approx(23.0)
    assert est["total_ms"]["base"] == pytest.approx(sum(p["ms"]["base"] for p in est["parts"].values()))
    text = "\n".join(format_parts(est))
    assert "12.0 GB/s" in text and "McCalpin" in text
    assert "3.1-2.2 GHz" in text


def test_profile_estimate_by_part_from_measured_network_times():
    networks = {
        "mean_ms": {"detector": 8.0, "embedder": 12.0},
        "calls": {"detector": 1.0, "embedder": 2.0},
        "mean_call_ms": 23.0,
    }
    costs = {"detector": DETECTOR, "embedder": EMBEDDER}
    est = estimate_parts_for_target(networks, costs, 107.0, 14.4)
    assert est["available"] and est["parts"]["other"]["ms_here"] == pytest.approx(3.0)
    assert estimate_parts_for_target(None, costs, 107.0, 14.4)["available"] is False
    missing = estimate_parts_for_target(networks, {"detector": DETECTOR}, 107.0, 14.4)
    assert missing["available"] is False and "embedder" in missing["reason"]
    assert "memory bandwidth" in estimate_parts_for_target(networks, costs, 107.0, None)["reason"]
    text = format_profile({"estimate_by_part": est})
    assert "detector" in text and "compute" in text and "clock" in text
