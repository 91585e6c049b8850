"""validation.plots: files are written, are real PNG/SVG, and are reproducible."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.image import imread

from validation import plots as P


def _series(label, shift, n=200):
    fmr = np.geomspace(1e-6, 1, n)
    fnmr = np.clip(0.5 * fmr ** (0.15 * shift), 0, 1)
    fnmr[-3:] = 0.0  # zero rates cannot go on a log axis: must not break the plot
    marks = [
        P.OperatingMark("1e-03", 1e-3, 0.5 * 1e-3 ** (0.15 * shift), 0.01, 0.2),
        P.OperatingMark("1e-06", 1e-6, float("nan")),
    ]  # an unestimable point is skipped
    return P.DETSeries(label, fmr, fnmr, fnmr * 0.8, np.minimum(fnmr * 1.2, 1), marks, 1000, 10**6)


def test_det_png_and_svg(tmp_path):
    paths = P.plot_det(
        [_series("a", 1), _series("b", 2), P.DETSeries("empty", np.zeros(0), np.zeros(0))], tmp_path / "sub" / "det"
    )
    assert [p.name for p in paths] == ["det.png", "det.svg"]
    img = imread(paths[0])
    assert img.ndim == 3 and img.shape[0] > 400 and img.shape[1] > 400
    assert img[..., :3].std() > 0.05  # not a blank canvas
    svg = paths[1].read_text()
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
    assert "False match rate" in svg and "1e-03" in svg


def test_svg_is_reproducible(tmp_path):
    a = P.plot_det([_series("a", 1)], tmp_path / "a", formats=("svg",))[0].read_bytes()
    b = P.plot_det([_series("a", 1)], tmp_path / "b", formats=("svg",))[0].read_bytes()
    assert a == b


def test_histogram(tmp_path):
    edges = np.linspace(-1, 1, 51)
    rng = np.random.default_rng(0)
    g, _ = np.histogram(rng.normal(0.5, 0.1, 1000), edges)
    i, _ = np.histogram(rng.normal(0.0, 0.2, 100_000), edges)
    paths = P.plot_score_histogram(edges, g, i, tmp_path / "h", thresholds={"FMR 1e-03": 0.6, "x": float("nan")})
    assert imread(paths[0]).shape[0] > 300
    assert "FMR 1e-03" in paths[1].read_text()
    with pytest.raises(ValueError, match="format"):
        P.plot_score_histogram(edges, g, i, tmp_path / "h2", formats=("gif",))
