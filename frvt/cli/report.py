"""``frvt report``: one self-contained HTML page from result folders and files."""

from __future__ import annotations

from pathlib import Path
from typing import List

import typer

from frvt.cli.app import app

_HELP = """One self-contained HTML page (figures inlined, nothing fetched at view time) from the results
of frvt validate (output folder), frvt score (output folder: metrics.json, demographics.json),
frvt profile --json and frvt bench --json (files or folders holding them). Several score runs
are overlaid on one DET plot. An input that is not a result is listed in a marked Problems
section; exit status 2 only when no input could be used."""


@app.command(help=_HELP)
def report(
    runs: List[Path] = typer.Argument(..., help="Run folders or result JSON files."),
    out: Path = typer.Option(Path("report.html"), "--out", "-o", help="The HTML file to write."),
    title: str = typer.Option("frvt report", "--title", help="Page title."),
) -> None:
    from frvt.report import build_report

    try:
        path, found = build_report(runs, out, title)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    kinds = ", ".join(f"{r.kind} ({r.path})" for r in found.results) or "none"
    typer.echo(f"read: {kinds}")
    for p in found.problems:
        typer.echo(f"not used: {p.path}: {p.reason}", err=True)
    typer.echo(f"wrote {path}")
    if not found.results:
        raise typer.Exit(2)
