"""``frvt score``: verification metrics (FNMR at FMR with intervals, EER, failures) and DET plots."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from frvt.cli.app import app

_HELP = """Score comparison results: counts, FNMR at FMR 1e-6..1e-1 with intervals, EER, FTE/FTM,
metrics.json and DET / score-histogram plots.

INPUTS are `frvt validate` output directories or HDF5 score files (datasets `genuine`, `impostor`,
optional `genuine_subject`/`impostor_subject`, `genuine_failed`/`impostor_failed`). Plain score
files (one number per line, or .npy/.f32/.f64 binary) go in pairs: --genuine G --impostor I,
repeatable. Give several inputs to compare systems on one DET plot; --label names them in order
(INPUTS first, then the --genuine/--impostor pairs). Exit status 2 on bad input."""


@app.command(help=_HELP)
def score(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Validate output directories or .h5/.hdf5 score files."),
    genuine: Optional[List[Path]] = typer.Option(None, "--genuine", help="Genuine score file (pairs with --impostor)."),
    impostor: Optional[List[Path]] = typer.Option(
        None, "--impostor", help="Impostor score file (pairs with --genuine)."),
    label: Optional[List[str]] = typer.Option(None, "--label", help="System name, once per input, in order."),
    out: Path = typer.Option(Path("out/score"), "--out", "-o", help="Directory for metrics.json and plots."),
    distance: bool = typer.Option(False, "--distance", help="Scores are distances (lower = more alike)."),
    fmr: Optional[List[float]] = typer.Option(None, "--fmr", help="FMR target (repeatable); default 1e-6..1e-1."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Subject bootstrap resamples (0: Clopper-Pearson only)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (recorded in metrics.json)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Interval coverage."),
    min_false_matches: int = typer.Option(
        1, "--min-false-matches", help="An FMR target needs n_impostor >= ceil(this / FMR) to be estimated."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write DET and histogram PNG/SVG."),
) -> None:
    from validation.metrics import FMR_TARGETS, ScoreError
    from validation.score import ScoreInput, format_report, score as run_score

    genuine, impostor, label = genuine or [], impostor or [], label or []
    try:
        if len(genuine) != len(impostor):
            raise ValueError(f"--genuine given {len(genuine)} times and --impostor {len(impostor)} times: give pairs")
        n_inputs = len(inputs or []) + len(genuine)
        if label and len(label) != n_inputs:
            raise ValueError(f"{len(label)} --label for {n_inputs} inputs")
        names = list(label) + [None] * (n_inputs - len(label))
        items = [ScoreInput.from_path(p, names.pop(0)) for p in inputs or []]
        items += [ScoreInput.from_files(g, i, names.pop(0)) for g, i in zip(genuine, impostor)]
        report = run_score(items, out, fmr_targets=tuple(fmr) if fmr else FMR_TARGETS,
                           higher_is_better=False if distance else None, n_resamples=bootstrap, seed=seed,
                           confidence=confidence, min_false_matches=min_false_matches, plots=plots)
    except (ScoreError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(format_report(report))
