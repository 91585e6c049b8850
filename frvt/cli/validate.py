"""``frvt validate``: would NIST accept this implementation?"""

from __future__ import annotations

from pathlib import Path

import typer

from frvt.cli.app import app
from frvt.contract import DEFAULT_IMPLEMENTATION
from frvt.records import ListFormatError
from frvt.validate import DEFAULT_VALIDATION_DIR, ValidationSetupError, validate

_MARK = {"PASS": "PASS", "WARN": "WARN", "FAIL": "FAIL"}


@app.command("validate")
def validate_command(
    implementation: str = typer.Option(
        DEFAULT_IMPLEMENTATION,
        "--implementation",
        "-i",
        help="The implementation as module:attribute (a class or factory).",
    ),
    input_dir: Path = typer.Option(
        DEFAULT_VALIDATION_DIR,
        "--input-dir",
        help="Folder with enroll.txt, verif.txt and match.txt (default: the bundled set).",
    ),
    output_dir: Path = typer.Option(
        Path("frvt-validation"), "--output-dir", "-o", help="Where logs, templates, summary.json and the package go."
    ),
    config_dir: Path = typer.Option(
        None, "--config-dir", help="The implementation's config directory (default: the implementation's own)."
    ),
    workers: int = typer.Option(
        4, "--workers", "-j", min=1, help="Forked worker processes for enrolment, verification and matching."
    ),
    budget_ms: float = typer.Option(
        1000.0, "--budget-ms", min=1.0, help="Per-call create-template budget in ms (NIST's current limit is 1500)."
    ),
    org: str = typer.Option(None, "--org", help="Organisation name for the package file name."),
    seq: int = typer.Option(1, "--seq", min=0, max=999, help="Submission sequence number for the package file name."),
    version: str = typer.Option(
        None, "--version", help="Text for doc/version.txt (default: the implementation's `version`)."
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
    library: Path = typer.Option(
        None,
        "--library",
        help="Validate a NIST 1:1 C++ library (lib/libfrvt_11_<org>_<seq>.so) "
        "instead of a Python implementation; needs --config-dir.",
    ),
    call_timeout: float = typer.Option(
        None,
        "--call-timeout",
        min=0.01,
        help="Seconds one call may take before its worker is killed (default: 30 times the budget).",
    ),
    memory_limit: int = typer.Option(
        None,
        "--memory-limit",
        min=64,
        help="MiB of resident memory a worker may use before it is killed (default: 4096).",
    ),
    resume: bool = typer.Option(
        False, "--resume", help="Finish a run that was stopped, from its journal in the output folder."
    ),
) -> None:
    """Drive an implementation through NIST's 1:1 validation protocol, run the checks, package the result.

    Every call runs in a worker process that can crash, hang or overrun its memory without ending
    the run. Exit status: 0 when no check FAILs, 1 when one does, 2 for unusable input (a malformed
    list line) or a run that cannot start.
    """
    if library is not None:
        from frvt.native import library_spec

        if config_dir is None:
            typer.echo("error: --library needs --config-dir (the folder NIST passes to initialize)", err=True)
            raise typer.Exit(2)
        implementation = library_spec(library)
    try:
        result = validate(
            implementation,
            input_dir,
            output_dir,
            config_dir,
            workers,
            budget_ms,
            org=org,
            seq=seq,
            version=version,
            progress=progress,
            log=lambda text: typer.echo(f"-- {text}", err=True),
            call_timeout_s=call_timeout,
            memory_limit_mib=memory_limit,
            resume=resume,
        )
    except ListFormatError as exc:
        typer.echo(f"error: malformed input list: {exc}", err=True)
        raise typer.Exit(2)
    except ValidationSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    s = result.summary
    typer.echo(f"\n{'check':<27} {'ours':<5} {'NIST':<12} detail")
    for check in s["checks"]:
        typer.echo(f"{check['name']:<27} {_MARK[check['status']]:<5} {check['nist']:<12} {check['detail']}")
    typer.echo("(NIST: what NIST's own validation run does when the rule is broken: fatal, warning, or not checked)")
    peaks = {k: v["peak_rss_mib"] for k, v in s.get("phases", {}).items()}
    if peaks:
        typer.echo("\npeak worker memory (MiB): " + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items()))
    lat = s["latency"]
    if lat.get("n"):
        typer.echo(
            f"\ncreate_face_template (one thread, n={lat['n']}): median {lat['median_ms']:.1f} ms, "
            f"p90 {lat['p90_ms']:.1f}, p99 {lat['p99_ms']:.1f}, max {lat['max_ms']:.1f}; budget {lat['budget_ms']:.0f} ms"
        )
    typer.echo(f"\nverdict: {s['verdict']}   summary: {result.output_dir / 'summary.json'}")
    if s["nist_fatal"]:
        typer.echo(f"NIST's validation would stop on: {', '.join(s['nist_fatal'])}")
    if not s["submittable"]:
        typer.echo(f"NOT SUBMITTABLE: {s['not_submittable_reason']}")
    if result.package:
        typer.echo(f"package: {result.package}")
    if result.failed:
        raise typer.Exit(1)
