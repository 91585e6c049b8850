"""``frvt profile``: per-call latency against the budget, explained."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

import typer

from frvt.cli.app import app
from frvt.contract import DEFAULT_IMPLEMENTATION
from frvt.perf.profile import (
    ProfileError,
    compare_profiles,
    format_comparison,
    format_profile,
    load_profile,
    plot_latency_histogram,
    profile_implementation,
    save_profile,
)


@app.command("profile")
def profile_command(
    implementation: str = typer.Option(
        DEFAULT_IMPLEMENTATION,
        "--implementation",
        "-i",
        help="The implementation as module:attribute (a class or factory).",
    ),
    config_dir: Path = typer.Option(
        None, "--config-dir", help="The implementation's config directory (default: its own)."
    ),
    images: Path = typer.Option(
        None,
        "--images",
        help="A folder of images, or of NIST lists enroll.txt/verif.txt (default: the bundled validation set).",
    ),
    budget_ms: float = typer.Option(
        1000.0, "--budget-ms", min=0.001, help="Per-call create-template budget in ms (NIST's current limit is 1500)."
    ),
    statistic: str = typer.Option(
        "median",
        "--statistic",
        help="Which statistic of the per-call times gates the verdict: median, p90, p99, max, mean.",
    ),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Warm-up calls, discarded."),
    repeats: int = typer.Option(1, "--repeats", min=1, help="Passes over the images."),
    max_matches: int = typer.Option(1000, "--max-matches", min=0, help="Most match_templates calls timed."),
    json_out: Path = typer.Option(None, "--json", help="Write the versioned JSON result here."),
    plot: Path = typer.Option(None, "--plot", help="Write a latency histogram (PNG) here."),
    fma: bool = typer.Option(
        True, "--fma/--no-fma", help="Measure this core's AVX2 FMA peak for the E5-2630 v4 estimate."
    ),
    compare: Optional[Tuple[Path, Path]] = typer.Option(
        None,
        "--compare",
        metavar="A.json B.json",
        help="Compare two saved profiles (B / A per stage) instead of running.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Time create_face_template and match_templates per call on one thread in a fresh process, after
    initialize, against the budget; break the time into stages and operators; estimate NIST's CPU.

    Exit status: 0 when the verdict is PASS, 1 when FAIL, 2 for unusable input or a failed run.
    """
    try:
        if compare:
            a, b = (load_profile(p) for p in compare)
            typer.echo(format_comparison(compare_profiles(a, b), compare[0].name, compare[1].name))
            return
        result = profile_implementation(
            implementation,
            config_dir,
            images,
            budget_ms,
            warmup=warmup,
            repeats=repeats,
            max_matches=max_matches,
            verdict_statistic=statistic,
            fma=fma,
            progress=progress,
        )
    except ProfileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(format_profile(result))
    if json_out is not None:
        typer.echo(f"\njson: {save_profile(result, json_out)}")
    if plot is not None:
        typer.echo(f"plot: {plot_latency_histogram(result, plot)}")
    if result["verdict"] != "PASS":
        raise typer.Exit(1)
