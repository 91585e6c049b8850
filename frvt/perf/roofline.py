"""Which resource bounds each part of a template call, and what that part would take on another CPU.

A part is a compiled network (its FLOPs and the bytes of weights it reads per call) or the code
around the networks (pre- and post-processing: resizing, decoding boxes, NMS, alignment, Python).

- A network's time has two floors: ``FLOPs / FMA peak`` (compute) and ``weight bytes / memory
  bandwidth`` (at batch 1 every call reads all its weights, and between two calls the other
  network's weights have evicted them). The higher floor names the bound (the roofline model:
  arithmetic intensity in FLOP/byte above the machine balance, FMA peak over bandwidth, means
  compute-bound). Its time scales to the target by the ratio of its floors there and here, so a
  part keeps the fraction of its bound it reaches here.
- The code around the networks works on a few images that fit in the caches, with scalar and
  short vector code: it is bound by the core's clock (and its instructions per cycle), and scales
  by the clock ratio. This core's clock is the one its FMA peak implies (peak / FLOPs per cycle).

Nothing is timed here: the inputs are measured elsewhere (:func:`frvt.perf.machine.measure_fma_peak`,
:func:`frvt.perf.machine.measure_read_bandwidth`, per-call network times) and passed in.
"""

from __future__ import annotations

import math
from typing import Any, Mapping

#: The CPU NIST's FRVT 1:1 timing runs on, as the roofline needs it.
E5_2630_V4 = {
    "name": "Intel Xeon E5-2630 v4 (Broadwell-EP)",
    "base_ghz": 2.2,
    "turbo_ghz": 3.1,
    "flops_per_cycle": 32,  # 2 AVX2 FMA units x 8 fp32 lanes x 2 FLOPs (multiply + add)
    "read_gbps": 12.0,
    "read_gbps_source": (
        "assumed, not measured: one core's memory bandwidth on a 2-socket Xeon E5 v3/v4 is set by the "
        "misses it keeps in flight over the memory latency (Little's law: 10 line-fill buffers, more "
        "with the L2 prefetcher, over about 85 ns gives 7.5-15 GB/s); J. McCalpin reports 19.9 GB/s "
        "single-thread STREAM Triad on a 2-socket Xeon E5-2690 v3 (Intel community forum, 'single core "
        "bandwidth: haswell vs. broadwell vs. skylake'), which counts writes too. 12 GB/s is taken in "
        "between; a memory-bound part's estimate scales as 1 / this figure"
    ),
}


class RooflineError(ValueError):
    """An input to the roofline is not a positive finite number; the message names it."""


def _positive(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RooflineError(f"{name} = {value!r} is not a number") from None
    if not (math.isfinite(v) and v > 0):
        raise RooflineError(f"{name} = {value!r} is not a positive finite number")
    return v


def _non_negative(name: str, value: Any) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise RooflineError(f"{name} = {value!r} is not a number") from None
    if not (math.isfinite(v) and v >= 0):
        raise RooflineError(f"{name} = {value!r} is not a finite number >= 0")
    return v


def network_floors(flops: float, weight_bytes: float, peak_gflops: float, read_gbps: float) -> dict[str, Any]:
    """The compute and memory floors of one network call, and which is higher.

    Parameters
    ----------
    flops : float
        Floating-point operations of one call (2 x multiply-accumulates).
    weight_bytes : float
        Bytes of weights one call reads.
    peak_gflops : float
        The core's fp32 FMA peak, GFLOP/s.
    read_gbps : float
        The core's memory read bandwidth, GB/s (10^9 bytes per second).

    Returns
    -------
    dict
        ``compute_ms`` = flops / peak, ``memory_ms`` = bytes / bandwidth (milliseconds),
        ``intensity`` (FLOP/byte), ``balance`` (peak / bandwidth, FLOP/byte) and ``bound``:
        ``"compute"`` when ``compute_ms >= memory_ms`` (equivalently intensity >= balance),
        else ``"memory"``.

    Examples
    --------
    >>> network_floors(1e9, 1e8, 100.0, 10.0)["bound"]  # 10 FLOP/byte at a balance of 10
    'compute'
    >>> network_floors(1e9, 2e8, 100.0, 10.0)["bound"]
    'memory'
    """
    flops = _positive("flops", flops)
    weight_bytes = _positive("weight_bytes", weight_bytes)
    peak_gflops = _positive("peak_gflops", peak_gflops)
    read_gbps = _positive("read_gbps", read_gbps)
    compute_ms = flops / (peak_gflops * 1e9) * 1e3
    memory_ms = weight_bytes / (read_gbps * 1e9) * 1e3
    return {
        "compute_ms": compute_ms,
        "memory_ms": memory_ms,
        "intensity": flops / weight_bytes,
        "balance": peak_gflops / read_gbps,
        "bound": "compute" if compute_ms >= memory_ms else "memory",
    }


def scale_network(
    ms_here: float,
    flops: float,
    weight_bytes: float,
    here: Mapping[str, float],
    there: Mapping[str, float],
) -> dict[str, Any]:
    """A network call's time on another CPU: scaled by the ratio of its binding floors.

    ``here`` and ``there`` hold ``peak_gflops`` and ``read_gbps``. The result has ``ms`` (the
    estimate), ``scale`` (there / here), ``here`` and ``there`` (the floors of
    :func:`network_floors` on each CPU; the bound may differ between them).
    """
    ms_here = _non_negative("ms_here", ms_here)
    a = network_floors(flops, weight_bytes, here["peak_gflops"], here["read_gbps"])
    b = network_floors(flops, weight_bytes, there["peak_gflops"], there["read_gbps"])
    scale = max(b["compute_ms"], b["memory_ms"]) / max(a["compute_ms"], a["memory_ms"])
    return {"ms": ms_here * scale, "scale": scale, "here": a, "there": b}


def scale_scalar(ms_here: float, ghz_here: float, ghz_there: float) -> dict[str, Any]:
    """Clock-bound code's time on another CPU: ``ms_here x ghz_here / ghz_there`` (same
    instructions per cycle assumed)."""
    ms_here = _non_negative("ms_here", ms_here)
    scale = _positive("ghz_here", ghz_here) / _positive("ghz_there", ghz_there)
    return {"ms": ms_here * scale, "scale": scale, "bound": "clock"}


def estimate_parts(
    parts_ms: Mapping[str, float],
    costs: Mapping[str, Mapping[str, float]],
    peak_gflops_here: float,
    read_gbps_here: float,
    target: Mapping[str, Any] = E5_2630_V4,
) -> dict[str, Any]:
    """Each part of a template call scaled to ``target`` by its own bound, at its turbo and base clock.

    Parameters
    ----------
    parts_ms : mapping
        Mean milliseconds per template call of each part: the networks by name (all their calls
        in one template call) and ``"other"`` (the rest of the call).
    costs : mapping
        For each network in ``parts_ms``: ``flops`` and ``weight_bytes`` of one call, and
        ``calls`` (mean calls per template call).
    peak_gflops_here, read_gbps_here : float
        Measured on this core.
    target : mapping
        ``base_ghz``, ``turbo_ghz``, ``flops_per_cycle``, ``read_gbps``.

    Returns
    -------
    dict
        ``parts``: {name: {``ms_here``, ``bound_here``, ``bound_target``, ``ms`` {turbo, base},
        ``scale`` {turbo, base}, and for networks ``floors_here``, ``calls``, ``flops``,
        ``weight_bytes``}}; ``total_ms_here``; ``total_ms`` {turbo, base}; ``ghz_here`` (implied
        by the FMA peak); ``here`` and ``target`` figures.
    """
    peak_here = _positive("peak_gflops_here", peak_gflops_here)
    here = {"peak_gflops": peak_here, "read_gbps": _positive("read_gbps_here", read_gbps_here)}
    ghz_here = peak_here / target["flops_per_cycle"]
    clocks = {k: float(target[f"{k}_ghz"]) for k in ("turbo", "base")}
    there = {
        k: {"peak_gflops": ghz * target["flops_per_cycle"], "read_gbps": target["read_gbps"]}
        for k, ghz in clocks.items()
    }
    parts: dict[str, Any] = {}
    for name, ms in parts_ms.items():
        if name in costs:
            cost = costs[name]
            calls = _non_negative(f"calls of {name}", cost["calls"])
            if calls == 0:
                continue
            per_call = ms / calls
            scaled = {k: scale_network(per_call, cost["flops"], cost["weight_bytes"], here, there[k]) for k in clocks}
            parts[name] = {
                "ms_here": ms,
                "calls": calls,
                "flops": float(cost["flops"]),
                "weight_bytes": float(cost["weight_bytes"]),
                "floors_here": scaled["base"]["here"],
                "bound_here": scaled["base"]["here"]["bound"],
                "bound_target": {k: s["there"]["bound"] for k, s in scaled.items()},
                "scale": {k: s["scale"] for k, s in scaled.items()},
                "ms": {k: s["ms"] * calls for k, s in scaled.items()},
            }
        else:
            scaled = {k: scale_scalar(max(ms, 0.0), ghz_here, ghz) for k, ghz in clocks.items()}
            parts[name] = {
                "ms_here": ms,
                "bound_here": "clock",
                "bound_target": {k: "clock" for k in clocks},
                "scale": {k: s["scale"] for k, s in scaled.items()},
                "ms": {k: s["ms"] for k, s in scaled.items()},
            }
    return {
        "parts": parts,
        "total_ms_here": sum(p["ms_here"] for p in parts.values()),
        "total_ms": {k: sum(p["ms"][k] for p in parts.values()) for k in clocks},
        "ghz_here": ghz_here,
        "here": here,
        "target": {k: dict(v) for k, v in there.items()},
    }


def network_costs(model_dirs: Mapping[str, Any]) -> dict[str, dict[str, float]]:
    """FLOPs and weight bytes of one call of each compiled network.

    Parameters
    ----------
    model_dirs : mapping
        {network name: compiled-model directory}, each with ``metadata.json`` (its
        ``weight_bytes``: the constants one call reads, as packed; its ``input_shape``) and
        ``model.onnx`` (counted by :func:`frvt.perf.bench.models.model_macs`: Conv, Gemm and
        MatMul; FLOPs = 2 x MACs, times the compiled batch over the file's).

    Returns
    -------
    dict
        {name: {"flops", "weight_bytes"}}; a network lacking either file is left out.
    """
    import json
    from pathlib import Path

    from frvt.compiler.passes import onnx_input_spec
    from frvt.perf.bench.models import model_macs

    costs = {}
    for name, directory in model_dirs.items():
        directory = Path(directory)
        metadata, onnx = directory / "metadata.json", directory / "model.onnx"
        if not (metadata.is_file() and onnx.is_file()):
            continue
        meta = json.loads(metadata.read_text())
        weight_bytes = meta.get("weight_bytes")
        if not weight_bytes:
            continue
        # the file is counted at its own batch; the library may be compiled for another (say, two
        # images per call)
        file_batch = max(onnx_input_spec(onnx)[1][0], 1)
        batch = int((meta.get("input_shape") or [file_batch])[0])
        flops = 2.0 * model_macs(onnx)["total"] * batch / file_batch
        costs[name] = {"flops": flops, "weight_bytes": float(weight_bytes)}
    return costs


def format_parts(estimate: Mapping[str, Any], target: Mapping[str, Any] = E5_2630_V4) -> list[str]:
    """Lines of text for :func:`estimate_parts`: per part its bound here and there, its time here
    and its estimate (turbo-base), then the assumptions."""
    here = estimate["here"]
    lines = [
        f"  by part (mean {estimate.get('basis', 'time')} per create_face_template call, ms; here "
        f"{here['peak_gflops']:.1f} GFLOP/s FMA peak, "
        f"{here['read_gbps']:.1f} GB/s read, {estimate['ghz_here']:.2f} GHz implied):",
        f"  {'part':<12}{'bound here':>12}{'there':>10}{'here ms':>10}{'estimate ms':>16}   why",
    ]
    for name, part in estimate["parts"].items():
        there = part["bound_target"]["base"]
        if "floors_here" in part:
            floors = part["floors_here"]
            why = (
                f"{part['flops'] / 1e9:.2f} GFLOP, {part['weight_bytes'] / 1e6:.1f} MB of weights x {part['calls']:.2f} "
                f"call(s): {floors['intensity']:.0f} FLOP/byte vs balance {floors['balance']:.1f} here, "
                f"{estimate['target']['base']['peak_gflops'] / estimate['target']['base']['read_gbps']:.1f} there"
            )
        else:
            why = "pre/post-processing around the networks: data in cache, scalar and short-vector code"
        lines.append(
            f"  {name:<12}{part['bound_here']:>12}{there:>10}{part['ms_here']:>10.2f}"
            f"{part['ms']['turbo']:>8.2f}-{part['ms']['base']:<7.2f}   {why}"
        )
    lines.append(
        f"  {'= total':<12}{'':>22}{estimate['total_ms_here']:>10.2f}"
        f"{estimate['total_ms']['turbo']:>8.2f}-{estimate['total_ms']['base']:<7.2f}"
    )
    lines += [
        f"  assumes: {target['name']}: {target['flops_per_cycle']} fp32 FLOPs/cycle (2 AVX2 FMA units) at "
        f"{target['turbo_ghz']}-{target['base_ghz']} GHz = {estimate['target']['turbo']['peak_gflops']:.1f}-"
        f"{estimate['target']['base']['peak_gflops']:.1f} GFLOP/s",
        f"  assumes: single-core memory read bandwidth there {target['read_gbps']} GB/s ({target['read_gbps_source']})",
        "  assumes: a network keeps the fraction of its roofline bound (the higher of FLOPs / peak and weight "
        "bytes / bandwidth) that it reaches here; pre/post-processing scales with the clock (same instructions "
        "per cycle)",
    ]
    return lines
