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
(INPUTS first, then the --genuine/--impostor pairs). Exit status 2 on bad input.

Template stores (`frvt enroll`): --all-vs-all STORE scores every pair of its templates, --gallery G
--probe P every gallery x probe pair, exactly and without writing any score: blocks of similarities
are computed and reduced on Dask workers (--scheduler tcp://host:8786, else a local cluster;
--workers 0 runs in this process). FMR targets default to 1e-8..1e-1 here.

--demographics LABELS.csv: FNMR and FMR per group at the global thresholds, cross-group FMR,
ratios and Gini with subject-bootstrap intervals (demographics.json); on template stores the
impostors are counted by group in one more pass over the blocks, never written."""


@app.command(help=_HELP)
def score(
    inputs: Optional[List[Path]] = typer.Argument(None, help="Validate output directories or .h5/.hdf5 score files."),
    genuine: Optional[List[Path]] = typer.Option(None, "--genuine", help="Genuine score file (pairs with --impostor)."),
    impostor: Optional[List[Path]] = typer.Option(
        None, "--impostor", help="Impostor score file (pairs with --genuine)."
    ),
    label: Optional[List[str]] = typer.Option(None, "--label", help="System name, once per input, in order."),
    out: Path = typer.Option(Path("out/score"), "--out", "-o", help="Directory for metrics.json and plots."),
    distance: bool = typer.Option(False, "--distance", help="Scores are distances (lower = more alike)."),
    fmr: Optional[List[float]] = typer.Option(None, "--fmr", help="FMR target (repeatable); default 1e-6..1e-1."),
    bootstrap: int = typer.Option(1000, "--bootstrap", help="Subject bootstrap resamples (0: Clopper-Pearson only)."),
    seed: int = typer.Option(0, "--seed", help="Bootstrap seed (recorded in metrics.json)."),
    confidence: float = typer.Option(0.95, "--confidence", help="Interval coverage."),
    min_false_matches: int = typer.Option(
        1, "--min-false-matches", help="An FMR target needs n_impostor >= ceil(this / FMR) to be estimated."
    ),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Write DET and histogram PNG/SVG."),
    all_vs_all: Optional[Path] = typer.Option(
        None, "--all-vs-all", help="Template store: every pair of its templates."
    ),
    gallery: Optional[Path] = typer.Option(
        None, "--gallery", help="Template store of enrolled templates (with --probe)."
    ),
    probe: Optional[Path] = typer.Option(None, "--probe", help="Template store of probe templates (with --gallery)."),
    scheduler: Optional[str] = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://host:8786)."),
    workers: Optional[int] = typer.Option(
        None, "--workers", "-j", help="Local Dask workers (default: one per core; 0: no Dask)."
    ),
    # validation.allvsall.DEFAULT_BLOCK (not imported here: it loads Dask)
    block: int = typer.Option(4096, "--block", help="Templates per block side."),
    pairwise: bool = typer.Option(
        False,
        "--pairwise",
        help="Call match_templates for every pair even when the templates declare a vector similarity.",
    ),
    demographics: Optional[Path] = typer.Option(
        None,
        "--demographics",
        help="Labels CSV (key column + one column per attribute): FNMR and FMR per group, "
        "cross-group FMR, ratios and Gini at the global thresholds; writes demographics.json.",
    ),
    demographics_key: Optional[str] = typer.Option(
        None,
        "--demographics-key",
        help="The labels' key column (default: the first); named identity/subject/"
        "name/person: keyed by identity, else by image id.",
    ),
) -> None:
    from validation.metrics import FMR_TARGETS, ScoreError
    from validation.score import ScoreInput, format_report, score as run_score

    genuine, impostor, label = genuine or [], impostor or [], label or []
    labels = None
    if all_vs_all is not None or gallery is not None or probe is not None:
        _score_stores(
            all_vs_all,
            gallery,
            probe,
            inputs,
            genuine,
            label,
            out,
            fmr,
            bootstrap,
            seed,
            confidence,
            min_false_matches,
            plots,
            scheduler,
            workers,
            block,
            pairwise,
            demographics,
            demographics_key,
        )
        return
    try:
        if demographics is not None:
            from validation.group_labels import read_labels

            labels = read_labels(demographics, demographics_key)
        if len(genuine) != len(impostor):
            raise ValueError(f"--genuine given {len(genuine)} times and --impostor {len(impostor)} times: give pairs")
        n_inputs = len(inputs or []) + len(genuine)
        if label and len(label) != n_inputs:
            raise ValueError(f"{len(label)} --label for {n_inputs} inputs")
        names = list(label) + [None] * (n_inputs - len(label))
        items = [ScoreInput.from_path(p, names.pop(0)) for p in inputs or []]
        items += [ScoreInput.from_files(g, i, names.pop(0)) for g, i in zip(genuine, impostor)]
        report = run_score(
            items,
            out,
            fmr_targets=tuple(fmr) if fmr else FMR_TARGETS,
            higher_is_better=False if distance else None,
            n_resamples=bootstrap,
            seed=seed,
            confidence=confidence,
            min_false_matches=min_false_matches,
            plots=plots,
        )
    except (ScoreError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(format_report(report))
    if labels is not None:
        from validation.demographics import format_all, score_demographics

        try:
            doc, path = score_demographics(report, labels, out, n_resamples=bootstrap, seed=seed, confidence=confidence)
        except (ScoreError, ValueError, OSError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        typer.echo(format_all(doc))
        typer.echo(f"wrote {path}")


def _score_stores(
    all_vs_all,
    gallery,
    probe,
    inputs,
    genuine,
    label,
    out,
    fmr,
    bootstrap,
    seed,
    confidence,
    min_false_matches,
    plots,
    scheduler,
    workers,
    block,
    pairwise,
    demographics=None,
    demographics_key=None,
) -> None:
    from frvt.store import StoreError
    from validation.allvsall import score_stores
    from validation.metrics import FMR_TARGETS, ScoreError
    from validation.score import format_report

    found: dict = {}

    def differentials(report) -> None:
        from validation.demographics import score_demographics

        found["demographics"] = score_demographics(
            report, found["labels"], out, n_resamples=bootstrap, seed=seed, confidence=confidence
        )

    try:
        if demographics is not None:
            from validation.group_labels import read_labels

            found["labels"] = read_labels(demographics, demographics_key)
        if inputs or genuine:
            raise ValueError("template stores are scored on their own: drop the other inputs")
        if all_vs_all is not None and (gallery is not None or probe is not None):
            raise ValueError("give --all-vs-all STORE, or --gallery and --probe, not both")
        if all_vs_all is None and (gallery is None or probe is None):
            raise ValueError("--gallery and --probe go together")
        if len(label) > 1:
            raise ValueError(f"{len(label)} --label for one system")
        report, timings = score_stores(
            all_vs_all or gallery,
            probe,
            out,
            label=label[0] if label else None,
            scheduler=scheduler,
            workers=workers,
            block=block,
            force_pairwise=pairwise,
            progress=True,
            after_scoring=differentials if demographics is not None else None,
            fmr_targets=tuple(fmr) if fmr else (1e-8, 1e-7, *FMR_TARGETS),
            n_resamples=bootstrap,
            seed=seed,
            confidence=confidence,
            min_false_matches=min_false_matches,
            plots=plots,
        )
    except (StoreError, ScoreError, ValueError, OSError, RuntimeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(format_report(report))
    if "demographics" in found:
        from validation.demographics import format_all

        doc, path = found["demographics"]
        typer.echo(format_all(doc))
        typer.echo(f"wrote {path}")
    for t in timings:
        typer.echo(
            f"pass {t['pass']}: {t['comparisons']:,} comparisons in {t['seconds']:.1f} s "
            f"({t['comparisons_per_second']:.3g}/s)"
        )
