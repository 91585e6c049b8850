"""The report's figures as PNG bytes: readable in print and for colour-blind readers.

Series are told apart by colour from the Okabe-Ito palette *and* by line style and marker, so a
grey-scale print still separates them; heatmaps use cividis (perceptually uniform, readable with
any colour vision deficiency, monotone in lightness). matplotlib's object API on the Agg canvas:
no pyplot, no global state.
"""

from __future__ import annotations

import io
import math
from typing import Sequence

import numpy as np

OKABE_ITO = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")
LINE_STYLES = ("-", "--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)), (0, (1, 1)))
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
HEATMAP = "cividis"


def style(i: int) -> dict:
    """Colour, line style and marker of the ``i``-th series."""
    return {
        "color": OKABE_ITO[i % len(OKABE_ITO)],
        "linestyle": LINE_STYLES[i % len(LINE_STYLES)],
        "marker": MARKERS[i % len(MARKERS)],
    }


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def png(fig, dpi: int = 110) -> bytes:
    """The figure as PNG bytes (no timestamp in the metadata)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _pos(a) -> np.ndarray:
    a = np.array([np.nan if v is None else v for v in a], dtype=np.float64)
    a[~(a > 0)] = np.nan
    return a


def det_figure(systems: Sequence[dict], confidence: float = 0.95) -> bytes:
    """DET curves of several systems on log axes, each with a Clopper-Pearson band on FNMR at each
    threshold and the FNMR-at-FMR points with their intervals.

    ``systems``: ``metrics.json`` system entries (``label``, ``det``, ``fnmr_at_fmr``, counts).
    """
    from validation.intervals import clopper_pearson

    fig = _figure(7.2, 5.2)
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    x_lo = 1e-6
    for i, s in enumerate(systems):
        st = style(i)
        det = s.get("det") or {}
        x, y = _pos(det.get("fmr", [])), _pos(det.get("fnmr", []))
        order = np.argsort(np.nan_to_num(x, nan=np.inf), kind="stable")
        x, y = x[order], y[order]
        n_gen = s.get("n_genuine") or 0
        label = f"{s.get('label', f'system {i + 1}')} (genuine {n_gen:,}, impostor {s.get('n_impostor') or 0:,})"
        ax.plot(x, y, color=st["color"], linestyle=st["linestyle"], lw=1.6, label=label)
        fnm = det.get("false_non_matches")
        if fnm and n_gen:
            lo, hi = clopper_pearson(np.asarray(fnm)[order], n_gen, confidence)
            lo, hi = _pos(lo), _pos(hi)
            ok = ~np.isnan(x) & ~np.isnan(hi)
            ax.fill_between(
                x[ok], np.where(np.isnan(lo[ok]), hi[ok] * 1e-3, lo[ok]), hi[ok], color=st["color"], alpha=0.15, lw=0
            )
        for key, v in (s.get("fnmr_at_fmr") or {}).items():
            if not v.get("estimable") or not (v.get("fnmr") or 0) > 0 or not (v.get("fmr") or 0) > 0:
                continue
            yerr = None
            if v.get("ci_low") is not None and v.get("ci_high") is not None:
                yerr = [[max(v["fnmr"] - max(v["ci_low"], 1e-12), 0)], [max(v["ci_high"] - v["fnmr"], 0)]]
            ax.errorbar(
                [v["fmr"]],
                [v["fnmr"]],
                yerr=yerr,
                fmt=st["marker"],
                ms=5,
                color=st["color"],
                capsize=2,
                lw=1,
                mfc="white" if i % 2 else st["color"],
            )
        if np.any(~np.isnan(x)):
            x_lo = min(x_lo, float(np.nanmin(x)))
    ax.set_xlim(x_lo, 1.0)
    ax.set_ylim(1e-4, 1.0)
    ax.set_xlabel("False match rate (FMR)")
    ax.set_ylabel("False non-match rate (FNMR)")
    ax.grid(True, which="major", lw=0.5, alpha=0.6)
    ax.grid(True, which="minor", lw=0.3, alpha=0.25)
    if systems:
        ax.legend(loc="lower left", fontsize=8)
    ax.set_title(
        f"DET; bands: {confidence:.0%} Clopper-Pearson per threshold; bars: interval of FNMR at FMR", fontsize=9
    )
    return png(fig)


def latency_figure(
    samples_ms: Sequence[float], budget_ms: float | None, title: str, stats: dict | None = None
) -> bytes:
    """Histogram of per-call latency with the budget, the median and the p99 as vertical lines."""
    x = np.asarray([v for v in samples_ms if v is not None and math.isfinite(v)], dtype=np.float64)
    fig = _figure(7.2, 3.6)
    ax = fig.add_subplot()
    if x.size:
        hi = max(float(x.max()), float(budget_ms or 0)) * 1.05
        bins = np.linspace(0, hi, 60) if budget_ms and budget_ms > 4 * x.max() else 40
        ax.hist(x, bins=bins, color=OKABE_ITO[0], alpha=0.75, edgecolor="white", lw=0.3, label=f"calls (n={x.size})")
        if budget_ms and budget_ms > 4 * x.max():
            ax.set_xscale("symlog", linthresh=max(1.0, float(np.median(x)) / 4))
    lines = []
    if stats:
        for key, name, ls in (("median_ms", "median", "--"), ("p99_ms", "p99", ":")):
            if stats.get(key) is not None:
                lines.append((stats[key], f"{name} {stats[key]:.1f} ms", ls, OKABE_ITO[1]))
    if budget_ms:
        lines.append((budget_ms, f"budget {budget_ms:g} ms", "-", OKABE_ITO[6]))
    for v, name, ls, c in lines:
        ax.axvline(v, color=c, linestyle=ls, lw=1.4, label=name)
    ax.set_xlabel("milliseconds per call (one thread)")
    ax.set_ylabel("calls")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8, loc="upper right")
    return png(fig)


def latency_summary_figure(stats: dict, budget_ms: float | None, title: str) -> bytes:
    """Median, p90, p99 and max as bars against the budget (when only statistics are known)."""
    keys = [("median_ms", "median"), ("p90_ms", "p90"), ("p99_ms", "p99"), ("max_ms", "max")]
    vals = [(name, stats.get(k)) for k, name in keys if stats.get(k) is not None]
    fig = _figure(7.2, 2.4)
    ax = fig.add_subplot()
    hatches = ("", "//", "..", "xx")
    for i, (name, v) in enumerate(vals):
        ax.barh(i, v, color=OKABE_ITO[i % 4], hatch=hatches[i], edgecolor="black", lw=0.5)
        ax.annotate(f"{v:.1f} ms", (v, i), textcoords="offset points", xytext=(4, 0), va="center", fontsize=8)
    ax.set_yticks(range(len(vals)), [n for n, _ in vals])
    if budget_ms:
        ax.axvline(budget_ms, color="black", lw=1.5, label=f"budget {budget_ms:g} ms")
        ax.set_xscale("log")
        ax.legend(fontsize=8, loc="lower right")
    ax.set_xlabel("milliseconds per call (one thread)")
    ax.set_title(title, fontsize=9)
    return png(fig)


def heatmap_figure(
    matrix: Sequence[Sequence[float | None]], groups: Sequence[str], counts: Sequence[Sequence[str]] | None, title: str
) -> bytes:
    """Cross-group FMR (enrolled group x probe group) on a log colour scale, each cell annotated."""
    from matplotlib.colors import LogNorm

    m = np.array([[np.nan if v is None else v for v in row] for row in matrix], dtype=np.float64)
    n = len(groups)
    fig = _figure(1.6 + 1.25 * n, 1.2 + 1.0 * n)
    ax = fig.add_subplot()
    pos = m[m > 0]
    norm = (
        LogNorm(vmin=float(pos.min()), vmax=float(pos.max()) if pos.max() > pos.min() else float(pos.min()) * 10)
        if pos.size
        else None
    )
    shown = np.where(m > 0, m, np.nan)
    im = ax.imshow(shown, cmap=HEATMAP, norm=norm)
    for i in range(n):
        for j in range(n):
            v = m[i, j]
            text = "n/a" if np.isnan(v) else f"{v:.2e}"
            if counts is not None:
                text += f"\n{counts[i][j]}"
            light = norm is not None and v > 0 and norm(v) > 0.6
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="black" if light else "white" if v > 0 else "black",
            )
    ax.set_xticks(range(n), groups)
    ax.set_yticks(range(n), groups)
    ax.set_xlabel("probe group")
    ax.set_ylabel("enrolled group")
    ax.set_title(title, fontsize=9)
    if norm is not None:
        fig.colorbar(im, ax=ax, label="FMR (log scale)", shrink=0.8)
    return png(fig)


def ratio_figure(groups: Sequence[str], series: dict[str, tuple[list, list, list]], title: str) -> bytes:
    """Each group's FMR and FNMR relative to the overall (1 = no differential), with intervals."""
    fig = _figure(7.2, 1.4 + 0.45 * len(groups) * max(1, len(series)))
    ax = fig.add_subplot()
    hatches = ("", "//", "..", "xx")
    k = len(series)
    h = 0.8 / max(k, 1)
    for s, (name, (vals, lo, hi)) in enumerate(series.items()):
        for g in range(len(groups)):
            v = vals[g]
            if v is None:
                continue
            y = g + (s - (k - 1) / 2) * h
            xerr = None
            if lo[g] is not None and hi[g] is not None:
                xerr = [[max(v - lo[g], 0)], [max(hi[g] - v, 0)]]
            ax.barh(
                y,
                v,
                height=h * 0.9,
                color=OKABE_ITO[s % 8],
                hatch=hatches[s % 4],
                edgecolor="black",
                lw=0.5,
                label=name if g == 0 or vals[0] is None else None,
            )
            if xerr:
                ax.errorbar([v], [y], xerr=xerr, fmt="none", ecolor="black", capsize=2, lw=1)
    ax.axvline(1.0, color="black", lw=1, linestyle="--")
    ax.set_yticks(range(len(groups)), groups)
    ax.set_xlabel("rate relative to the overall rate (1 = same as overall)")
    ax.set_title(title, fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right")
    return png(fig)


def bench_figure(rows: Sequence[dict], model: str) -> bytes:
    """Median time per call of each runtime for one model (bars; p90 as a whisker)."""
    ok = [r for r in rows if r.get("model") == model and r.get("median_ms") is not None]
    fig = _figure(7.2, 1.2 + 0.32 * max(len(ok), 1))
    ax = fig.add_subplot()
    hatches = ("", "//", "..", "xx", "\\\\", "++")
    groups = sorted({r.get("group", "") for r in ok})
    for i, r in enumerate(ok):
        gi = groups.index(r.get("group", ""))
        p90 = r.get("p90_ms")
        ax.barh(
            i,
            r["median_ms"],
            color=OKABE_ITO[gi % 8],
            hatch=hatches[gi % 6],
            edgecolor="black",
            lw=0.5,
            label=f"group {r.get('group', '')}",
        )
        if p90 is not None and p90 >= r["median_ms"]:
            ax.errorbar(
                [r["median_ms"]], [i], xerr=[[0], [p90 - r["median_ms"]]], fmt="none", ecolor="black", capsize=2
            )
    ax.set_yticks(range(len(ok)), [f"{r.get('runtime')} ({r.get('group')})" for r in ok], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("median ms per call, one thread (whisker: p90)")
    ax.set_title(f"{model}", fontsize=9)
    handles, labels = ax.get_legend_handles_labels()
    uniq = dict(zip(labels, handles))
    if uniq:
        ax.legend(uniq.values(), uniq.keys(), fontsize=8, loc="lower right")
    return png(fig)
