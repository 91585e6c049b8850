"""An estimate of the create-template latency on NIST's CPU (Xeon E5-2630 v4), scaled by this
core's measured AVX2 FMA throughput."""

from __future__ import annotations

import math
from typing import Any


from frvt.perf.machine import AVX2_FLOPS_PER_CYCLE


#: The CPU NIST's FRVT 1:1 timing runs on, and what scaling to it assumes.
TARGET_CPU = {
    "name": "Intel Xeon E5-2630 v4 (Broadwell-EP)",
    "base_ghz": 2.2,
    "turbo_ghz": 3.1,
    "flops_per_cycle": AVX2_FLOPS_PER_CYCLE,
}


def estimate_for_target(
    create: dict[str, Any], fma_gflops_here: float | None, target: dict[str, Any] = TARGET_CPU
) -> dict[str, Any]:
    """An ESTIMATE of create-template latency on NIST's CPU, by FMA-throughput scaling.

    Parameters
    ----------
    create : dict
        The ``create_face_template`` summary from :func:`measure_implementation`. Its thread
        CPU times are used when present (wall time on a shared machine includes waiting for a
        core, which NIST's dedicated core does not), else its wall times.
    fma_gflops_here : float or None
        This core's measured single-precision AVX2 FMA peak, GFLOP/s (see
        :func:`frvt.perf.machine.measure_fma_peak`). None: no estimate.
    target : dict
        ``name``, ``base_ghz``, ``turbo_ghz``, ``flops_per_cycle``.

    Returns
    -------
    dict
        ``label`` ("ESTIMATE ..."), ``assumptions`` (list of str), the peaks, ``scale``
        (target time / time here: {turbo, base}) and the estimated ``median_ms`` / ``p99_ms``
        as {turbo, base} (a range: the turbo figure is the optimistic end).
    """
    label = f"ESTIMATE for {target['name']} (not measured; no such CPU here)"
    if not fma_gflops_here or not math.isfinite(fma_gflops_here) or fma_gflops_here <= 0:
        return {"label": label, "available": False, "reason": "no FMA throughput measured here"}
    peak = {k: target[f"{k}_ghz"] * target["flops_per_cycle"] for k in ("turbo", "base")}
    scale = {k: fma_gflops_here / v for k, v in peak.items()}
    source = create.get("cpu") or create
    basis = "thread CPU time" if create.get("cpu") else "wall time"
    return {
        "label": label,
        "available": True,
        "basis": basis,
        "fma_gflops_here": fma_gflops_here,
        "fma_gflops_target": peak,
        "scale": scale,
        "median_ms": {k: source["median_ms"] * s for k, s in scale.items()},
        "p99_ms": {k: source["p99_ms"] * s for k, s in scale.items()},
        "assumptions": [
            f"time scales with single-core AVX2 FMA peak: {fma_gflops_here:.1f} GFLOP/s measured here vs "
            f"{target['flops_per_cycle']} FLOPs/cycle x {target['turbo_ghz']}-{target['base_ghz']} GHz = "
            f"{peak['turbo']:.1f}-{peak['base']:.1f} GFLOP/s there",
            "the code reaches the same fraction of peak on both CPUs (same instructions: AVX2/FMA only; "
            "if anything here uses AVX-512, e.g. OpenCV or numpy dispatch, the estimate is optimistic)",
            "memory and caches do not change the picture (Broadwell has 256 KB L2 per core, this CPU more; "
            "memory-bound stages will scale worse than estimated)",
            "Broadwell-EP runs AVX2 code below its nominal clocks (AVX frequency offset): the base-clock "
            "figure is the realistic one, the turbo figure the optimistic one",
            f"based on the {basis} per call here, one thread; scalar code (Python, decoding) scales with "
            "clock and IPC rather than FMA throughput",
        ],
    }


def estimate_parts_for_target(
    networks: dict[str, Any] | None,
    costs: dict[str, dict[str, float]],
    fma_gflops_here: float | None,
    read_gbps_here: float | None,
) -> dict[str, Any]:
    """An ESTIMATE of create-template latency on NIST's CPU, part by part, each by its own bound.

    Parameters
    ----------
    networks : dict or None
        The ``networks`` breakdown of :func:`~frvt.perf.profile.measure.measure_implementation`
        (mean ms per call in each network, mean network calls per call, mean call ms).
    costs : dict
        FLOPs and weight bytes of one call of each network (:func:`frvt.perf.roofline.network_costs`).
    fma_gflops_here, read_gbps_here : float or None
        This core's FMA peak and memory read bandwidth.

    Returns
    -------
    dict
        ``available`` and either ``reason`` or the result of :func:`frvt.perf.roofline.estimate_parts`
        (parts: each network with its cost, and ``other`` = the mean call minus the networks).
    """
    from frvt.perf.roofline import E5_2630_V4, RooflineError, estimate_parts

    if not networks:
        return {"available": False, "reason": "the implementation reports no per-network times"}
    missing = sorted(set(networks["mean_ms"]) - set(costs))
    if missing:
        return {"available": False, "reason": f"no FLOPs or weight bytes known for {', '.join(missing)}"}
    if not (fma_gflops_here and read_gbps_here):
        return {"available": False, "reason": "no FMA peak or memory bandwidth measured here"}
    parts_ms = dict(networks["mean_ms"])
    parts_ms["other"] = networks["mean_call_ms"] - sum(networks["mean_ms"].values())
    net_costs = {name: {**costs[name], "calls": networks["calls"][name]} for name in networks["mean_ms"]}
    try:
        estimate = estimate_parts(parts_ms, net_costs, fma_gflops_here, read_gbps_here)
    except RooflineError as exc:
        return {"available": False, "reason": str(exc)}
    label = f"ESTIMATE by part for {E5_2630_V4['name']}"
    return {"available": True, "label": label, "basis": networks.get("basis", "time"), **estimate}


def network_costs_of(impl: Any) -> dict[str, dict[str, float]]:
    """FLOPs and weight bytes of the implementation's networks, when it names their directories
    (``model_dirs()``)."""
    from frvt.perf.roofline import network_costs

    dirs = getattr(impl, "model_dirs", None)
    return network_costs(dirs()) if callable(dirs) else {}
