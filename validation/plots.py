"""Figures of verification results: DET curves on NIST's axes and score histograms (PNG and SVG).

Drawn with matplotlib's object API on the Agg canvas (no pyplot, no global state). Inputs are
plain arrays computed elsewhere (:mod:`validation.streaming`), so plotting never reads scores.

DET axes as in NIST's FRVT 1:1 reports: false match rate on a log x axis, false non-match rate on
a log y axis, both fractions. Rates of exactly zero cannot be drawn on a log axis and are left out
of the line (the counts are in ``metrics.json``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

FORMATS: tuple[str, ...] = ("png", "svg")


@dataclass(frozen=True)
class OperatingMark:
    """One operating point to mark: FNMR at an FMR target, with its interval (fractions)."""

    label: str
    fmr: float
    fnmr: float
    ci_low: float = float("nan")
    ci_high: float = float("nan")


@dataclass(frozen=True)
class DETSeries:
    """One system's DET curve.

    Attributes
    ----------
    label : str
    fmr, fnmr : numpy.ndarray, shape (m,)
        Operating points (fractions), any order along the curve.
    band_low, band_high : numpy.ndarray, shape (m,), optional
        Interval of the FNMR at each point (drawn as a shaded band).
    marks : sequence of OperatingMark
        Points to mark (e.g. FNMR at FMR 1e-6 ... 1e-1) with their intervals as error bars.
    n_genuine, n_impostor : int
        Shown in the legend.
    """

    label: str
    fmr: np.ndarray
    fnmr: np.ndarray
    band_low: np.ndarray | None = None
    band_high: np.ndarray | None = None
    marks: Sequence[OperatingMark] = field(default_factory=tuple)
    n_genuine: int | None = None
    n_impostor: int | None = None


def _figure(width: float = 7.0, height: float = 5.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save(fig, stem: Path, formats: Sequence[str]) -> list[Path]:
    import matplotlib

    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    with matplotlib.rc_context({"svg.hashsalt": "frvt"}):
        for fmt in formats:
            if fmt not in ("png", "svg"):
                raise ValueError(f"unknown figure format {fmt!r} (png, svg)")
            p = stem.with_suffix(f".{fmt}")
            meta = {"Date": None} if fmt == "svg" else {}
            fig.savefig(p, format=fmt, dpi=150, metadata=meta)
            paths.append(p)
    return paths


def _positive(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64).copy()
    a[~(a > 0)] = np.nan
    return a


def plot_det(
    series: Sequence[DETSeries],
    stem: str | os.PathLike,
    *,
    title: str = "DET",
    formats: Sequence[str] = FORMATS,
    fmr_min: float | None = None,
) -> list[Path]:
    """Overlay DET curves of several systems; write ``<stem>.png`` / ``<stem>.svg``.

    Parameters
    ----------
    series : sequence of DETSeries
    stem : path-like
        Output path without extension.
    title : str
    formats : sequence of "png", "svg"
    fmr_min : float, optional
        Left end of the FMR axis (default: the smallest positive FMR plotted, at most 1e-6).

    Returns
    -------
    list of Path
        The files written.
    """
    fig = _figure()
    ax = fig.add_subplot()
    ax.set_xscale("log")
    ax.set_yscale("log")
    colours = [c["color"] for c in __import__("matplotlib").rcParams["axes.prop_cycle"]]
    x_lo = 1e-6
    y_lo = 1.0
    for i, s in enumerate(series):
        colour = colours[i % len(colours)]
        order = np.argsort(np.asarray(s.fmr, dtype=np.float64), kind="stable")
        x = _positive(np.asarray(s.fmr)[order])
        y = _positive(np.asarray(s.fnmr)[order])
        counts = ""
        if s.n_genuine is not None and s.n_impostor is not None:
            counts = f" (genuine {s.n_genuine:,}, impostor {s.n_impostor:,})"
        ax.plot(x, y, color=colour, lw=1.5, label=f"{s.label}{counts}")
        if s.band_low is not None and s.band_high is not None:
            lo = _positive(np.asarray(s.band_low)[order])
            hi = _positive(np.asarray(s.band_high)[order])
            ok = ~np.isnan(x) & ~np.isnan(hi)
            ax.fill_between(
                x[ok], np.where(np.isnan(lo[ok]), hi[ok] * 1e-3, lo[ok]), hi[ok], color=colour, alpha=0.18, lw=0
            )
        for m in s.marks:
            if not (m.fmr > 0 and m.fnmr > 0):
                continue
            yerr = None
            if np.isfinite(m.ci_low) and np.isfinite(m.ci_high):
                yerr = [[max(m.fnmr - max(m.ci_low, 1e-12), 0)], [max(m.ci_high - m.fnmr, 0)]]
            ax.errorbar([m.fmr], [m.fnmr], yerr=yerr, fmt="o", ms=4, color=colour, capsize=2, lw=1)
            if i == 0:  # the FMR levels are the same for every system: name them once
                ax.annotate(
                    m.label, (m.fmr, m.fnmr), textcoords="offset points", xytext=(4, 4), fontsize=7, color=colour
                )
        if np.any(~np.isnan(x)):
            x_lo = min(x_lo, float(np.nanmin(x)))
        if np.any(~np.isnan(y)):
            y_lo = min(y_lo, float(np.nanmin(y)))
    ax.set_xlim(fmr_min if fmr_min is not None else x_lo, 1.0)
    ax.set_ylim(max(min(y_lo, 0.1) / 2, 1e-6), 1.0)
    ax.set_xlabel("False match rate (FMR)")
    ax.set_ylabel("False non-match rate (FNMR)")
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="major", lw=0.5, alpha=0.6)
    ax.grid(True, which="minor", lw=0.3, alpha=0.3)
    if series:
        ax.legend(loc="lower left", fontsize=8)
    return _save(fig, Path(stem), formats)


def plot_score_histogram(
    edges: np.ndarray,
    genuine_counts: np.ndarray,
    impostor_counts: np.ndarray,
    stem: str | os.PathLike,
    *,
    title: str = "Scores",
    thresholds: dict[str, float] | None = None,
    score_label: str = "similarity",
    formats: Sequence[str] = FORMATS,
    log_density: bool = True,
) -> list[Path]:
    """Genuine and impostor score densities over shared bins; write ``<stem>.png`` / ``.svg``.

    Parameters
    ----------
    edges : numpy.ndarray, shape (b + 1,)
        Bin edges in score units.
    genuine_counts, impostor_counts : numpy.ndarray of int, shape (b,)
        Scores per bin (failed comparisons excluded).
    stem : path-like
    thresholds : dict, optional
        Vertical lines, e.g. ``{"FMR 1e-03": 0.41}``.
    score_label : str
        Axis label, e.g. "similarity" or "distance".
    log_density : bool
        Log y axis, so the tails that set low-FMR thresholds stay visible.

    Returns
    -------
    list of Path
    """
    edges = np.asarray(edges, dtype=np.float64)
    width = np.diff(edges)
    fig = _figure(7.0, 4.5)
    ax = fig.add_subplot()
    for counts, name, colour in ((genuine_counts, "genuine", "tab:green"), (impostor_counts, "impostor", "tab:red")):
        c = np.asarray(counts, dtype=np.float64)
        total = c.sum()
        dens = c / (total * width) if total else c
        ax.stairs(dens, edges, color=colour, label=f"{name} ({int(total):,})", fill=True, alpha=0.35)
        ax.stairs(dens, edges, color=colour, lw=1)
    for i, (name, t) in enumerate((thresholds or {}).items()):
        if np.isfinite(t):
            ax.axvline(t, color="0.3", lw=0.8, ls=(0, (3, 2 + i)))
            ax.annotate(
                name, (t, 1.0), xycoords=("data", "axes fraction"), rotation=90, fontsize=7, va="top", ha="right"
            )
    if log_density:
        ax.set_yscale("log")
    ax.set_xlabel(score_label)
    ax.set_ylabel("density")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, Path(stem), formats)
