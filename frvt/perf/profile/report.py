"""Profiles read, written, compared and shown: JSON files, the text table, the comparison of two
profiles, the latency histogram."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from frvt.perf.profile.measure import ProfileError


def load_profile(path: str | Path) -> dict[str, Any]:
    """Read a profile written by ``frvt profile --json``; raises ProfileError when it is not one."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProfileError(f"{path}: cannot read a profile: {exc}") from exc
    schema = data.get("schema", "") if isinstance(data, dict) else ""
    if not str(schema).startswith("frvt.profile/"):
        raise ProfileError(f"{path}: schema {schema!r} is not a frvt.profile result")
    return data


def save_profile(result: dict[str, Any], path: str | Path) -> Path:
    """Write a profile as JSON (atomically); returns the path."""
    from frvt.records import write_json

    write_json(path, result)
    return Path(path)


def compare_profiles(a: dict[str, Any], b: dict[str, Any]) -> list[dict[str, Any]]:
    """Per-call and per-stage times of two profiles side by side.

    Parameters
    ----------
    a, b : dict
        Profiles (from :func:`profile_implementation` or :func:`load_profile`): a is the baseline.

    Returns
    -------
    list of dict
        One row per quantity: ``name``, ``a_ms``, ``b_ms`` and ``ratio`` = b / a (below 1: b is
        faster; NaN when either side lacks it or a is 0). Rows: create_face_template median, p90,
        p99, max; match_templates median and p99; decode median; then each stage's mean (the union
        of both profiles' stages, in a's order then b's).
    """
    rows = []

    def add(name: str, va: float | None, vb: float | None) -> None:
        fa = float(va) if va is not None else float("nan")
        fb = float(vb) if vb is not None else float("nan")
        ratio = fb / fa if (math.isfinite(fa) and math.isfinite(fb) and fa > 0) else float("nan")
        rows.append({"name": name, "a_ms": fa, "b_ms": fb, "ratio": ratio})

    for call, keys in (
        ("create_face_template", ("median_ms", "p90_ms", "p99_ms", "max_ms")),
        ("match_templates", ("median_ms", "p99_ms")),
        ("decode", ("median_ms",)),
    ):
        for k in keys:
            add(f"{call} {k[:-3]}", (a.get(call) or {}).get(k), (b.get(call) or {}).get(k))
    sa = (a.get("stages") or {}).get("stages") or {}
    sb = (b.get("stages") or {}).get("stages") or {}
    names = list(sa) + [n for n in sb if n not in sa]
    for n in names:
        add(f"stage {n} mean", (sa.get(n) or {}).get("mean_ms"), (sb.get(n) or {}).get("mean_ms"))
    return rows


def _fmt_ms(v: float) -> str:
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:.3f}" if v < 10 else f"{v:.1f}"


def format_profile(result: dict[str, Any]) -> str:
    """The profile as text: latency table, verdict, stage breakdown, operators, estimate."""
    lines = []
    m = result.get("machine") or {}
    versions = m.get("versions") or {}
    lines.append(f"implementation {result.get('implementation')}  target {result.get('target')}")
    lines.append(
        f"machine: {m.get('cpu_model')}, {m.get('usable_cores')} usable core(s); TVM {versions.get('tvm')}; "
        f"git {(m.get('git_revision') or 'unknown')[:12]}{' (dirty)' if m.get('git_dirty') else ''}"
    )
    img = result.get("images") or {}
    lines.append(
        f"images: {img.get('n_profiled')} profiled of {img.get('n_files')} files "
        f"({len(img.get('skipped') or [])} undecodable), {img.get('repeats')} pass(es), "
        f"{img.get('warmup')} warm-up call(s) discarded; threads after run: "
        f"{(result.get('process') or {}).get('threads_after_run')}"
    )
    lines.append("")
    lines.append(f"{'per call (ms)':<22}{'n':>6}{'median':>10}{'p90':>10}{'p99':>10}{'max':>10}  spread")
    for call in ("create_face_template", "match_templates", "decode"):
        s = result.get(call) or {}
        spread = "UNSTABLE" if s.get("unstable") else "ok"
        lines.append(
            f"{call:<22}{s.get('n', 0):>6}{_fmt_ms(s.get('median_ms')):>10}{_fmt_ms(s.get('p90_ms')):>10}"
            f"{_fmt_ms(s.get('p99_ms')):>10}{_fmt_ms(s.get('max_ms')):>10}  {spread}"
        )
        cpu = s.get("cpu")
        if cpu:
            lines.append(
                f"{'  thread CPU time':<22}{'':>6}{_fmt_ms(cpu['median_ms']):>10}{_fmt_ms(cpu['p90_ms']):>10}"
                f"{_fmt_ms(cpu['p99_ms']):>10}{_fmt_ms(cpu['max_ms']):>10}"
            )
    proc = result.get("process") or {}
    affinity, usable = proc.get("cpu_affinity_after_run"), (result.get("machine") or {}).get("usable_cores")
    if affinity is not None and usable is not None and len(affinity) < usable:
        lines.append(
            f"  warning: the implementation pinned the process to CPU(s) {affinity} of {usable}: processes "
            "forked after initialize (as NIST's are) inherit the pin and share those CPU(s)"
        )
    ratio = (result.get("create_face_template") or {}).get("wall_to_cpu")
    if ratio is not None and math.isfinite(ratio) and ratio > 1.2:
        load = (result.get("process") or {}).get("load_average")
        lines.append(
            f"  warning: median wall time is {ratio:.2f}x the thread CPU time: the call waited for a core "
            f"(load average {load[0]:.1f} on {(result.get('machine') or {}).get('logical_cores')} cores)"
            if load
            else f"  warning: median wall time is {ratio:.2f}x the thread CPU time"
        )
    for call in ("create_face_template", "match_templates"):
        for reason in (result.get(call) or {}).get("unstable_reasons") or []:
            lines.append(f"  warning ({call}): {reason}")
    create = result.get("create_face_template") or {}
    stat = result.get("verdict_statistic", "median_ms")
    lines.append("")
    lines.append(
        f"VERDICT: {result.get('verdict')}  (create_face_template {stat[:-3]} "
        f"{_fmt_ms(create.get(stat))} ms vs budget {_fmt_ms(result.get('budget_ms'))} ms; "
        f"{create.get('n_over_budget', 0)} of {create.get('n', 0)} calls over budget)"
    )
    codes = create.get("return_codes") or {}
    if codes:
        lines.append("return codes: " + ", ".join(f"{k} {v}" for k, v in sorted(codes.items())))
    st = result.get("stages")
    lines.append("")
    if st:
        lines.append("stage breakdown (mean ms per create_face_template call):")
        lines.append(
            f"  {'(file decode by the harness, outside the call)':<48}{_fmt_ms(st.get('harness_decode_mean_ms')):>10}"
        )
        for name in st["order"]:
            s = st["stages"][name]
            lines.append(f"  {name:<48}{_fmt_ms(s['mean_ms']):>10}  {s['share']:6.1%}")
        total = sum(st["stages"][n]["mean_ms"] for n in st["order"])
        lines.append(f"  {'= mean create_face_template call':<48}{_fmt_ms(total):>10}")
        if st.get("calls_with_negative_other"):
            lines.append(
                f"  warning: in {st['calls_with_negative_other']} call(s) the stages add up to more than the call"
            )
    else:
        lines.append("stage breakdown: the implementation reports no last_stage_times")
    ops = result.get("operators")
    lines.append("")
    if ops is None:
        lines.append("operator profile: the implementation has no operator_profiles()")
    elif "error" in ops:
        lines.append(f"operator profile failed: {ops['error']}")
    else:
        for model, prof in ops["models"].items():
            lines.append(
                f"operators of {model}: {prof['total_us'] / 1000:.2f} ms in {prof['n_operators']} operators; "
                f"top {len(prof['top'])} = {prof['top_share']:.0%}"
            )
            for r in prof["top"]:
                lines.append(f"  {r['time_us'] / 1000:9.3f} ms {r['share']:6.1%}  x{r['calls']:<3} {r['name']}")
    est = result.get("estimate") or {}
    lines.append("")
    if est.get("available"):
        lines.append(f"{est['label']}:")
        lines.append(
            f"  create_face_template median {_fmt_ms(est['median_ms']['turbo'])}-{_fmt_ms(est['median_ms']['base'])} ms, "
            f"p99 {_fmt_ms(est['p99_ms']['turbo'])}-{_fmt_ms(est['p99_ms']['base'])} ms (turbo-base)"
        )
        for a in est["assumptions"]:
            lines.append(f"  assumes: {a}")
    elif est:
        lines.append(f"{est.get('label')}: unavailable ({est.get('reason')})")
    lines += _format_parts_estimate(result.get("estimate_by_part"))
    return "\n".join(lines)


def _format_parts_estimate(estimate: dict[str, Any] | None) -> list[str]:
    """The per-part estimate's lines (empty when the profile has none)."""
    from frvt.perf.roofline import format_parts

    if not estimate:
        return []
    if not estimate.get("available"):
        return ["", f"ESTIMATE by part: unavailable ({estimate.get('reason')})"]
    return ["", f"{estimate['label']} (not measured; each part scaled by what bounds it):", *format_parts(estimate)]


def format_comparison(rows: list[dict[str, Any]], a_name: str = "A", b_name: str = "B") -> str:
    """Rows from :func:`compare_profiles` as a text table (ratio = B / A; < 1 means B is faster)."""
    width = max([len(r["name"]) for r in rows] + [10])
    lines = [f"{'ms':<{width}}{a_name[-14:]:>16}{b_name[-14:]:>16}{'B/A':>8}"]
    for r in rows:
        ratio = f"{r['ratio']:.2f}" if math.isfinite(r["ratio"]) else "-"
        lines.append(f"{r['name']:<{width}}{_fmt_ms(r['a_ms']):>16}{_fmt_ms(r['b_ms']):>16}{ratio:>8}")
    return "\n".join(lines)


def plot_latency_histogram(result: dict[str, Any], path: str | Path) -> Path:
    """Histograms of per-call create-template and match times (PNG), the budget marked.

    Returns the path written. Uses matplotlib's Agg backend (no display needed).
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4))
    for ax, call in zip(fig.subplots(1, 2), ("create_face_template", "match_templates")):
        s = result.get(call) or {}
        samples = s.get("samples_ms") or []
        if samples:
            cpu = (s.get("cpu") or {}).get("samples_ms") or []
            bins = np.histogram_bin_edges(samples + cpu, bins=min(50, max(5, len(samples) // 3)))
            ax.hist(samples, bins=bins, color="tab:blue", alpha=0.8, label="wall time")
            if cpu:
                ax.hist(cpu, bins=bins, color="tab:gray", alpha=0.6, label="thread CPU time")
            for key, style in (("median_ms", "-"), ("p99_ms", "--")):
                ax.axvline(s[key], color="black", linestyle=style, label=f"{key[:-3]} {_fmt_ms(s[key])} ms")
        if call == "create_face_template":
            ax.axvline(result["budget_ms"], color="tab:red", label=f"budget {_fmt_ms(result['budget_ms'])} ms")
        ax.set_title(f"{call} (n={s.get('n', 0)})")
        ax.set_xlabel("milliseconds per call")
        ax.set_ylabel("calls")
        ax.legend(fontsize=8)
    fig.suptitle(f"{result.get('implementation')}: verdict {result.get('verdict')}")
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", dpi=100)
    return path
