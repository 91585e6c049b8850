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
) -> None:
    """Drive an implementation through NIST's 1:1 validation protocol, run the checks, package the result.

    Exit status: 0 when no check FAILs, 1 when one does, 2 for unusable input (a malformed list line).
    """
    if library is not None:
        from frvt.native import library_spec

        if config_dir is None:
            typer.echo("error: --library needs --config-dir (the folder NIST passes to initialize)", err=True)
            raise typer.Exit(2)
        try:
            implementation = library_spec(library)
        except ImportError:
            typer.echo(
                "error: --library needs the isolated-worker driver, which this version does not have yet", err=True
            )
            raise typer.Exit(2) from None
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
        )
    except ListFormatError as exc:
        typer.echo(f"error: malformed input list: {exc}", err=True)
        raise typer.Exit(2)
    except ValidationSetupError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    s = result.summary
    typer.echo(f"\n{'check':<28} {'status':<6} detail")
    for check in s["checks"]:
        typer.echo(f"{check['name']:<28} {_MARK[check['status']]:<6} {check['detail']}")
    lat = s["latency"]
    if lat.get("n"):
        typer.echo(
            f"\ncreate_face_template (one thread, n={lat['n']}): median {lat['median_ms']:.1f} ms, "
            f"p90 {lat['p90_ms']:.1f}, p99 {lat['p99_ms']:.1f}, max {lat['max_ms']:.1f}; budget {lat['budget_ms']:.0f} ms"
        )
    typer.echo(f"\nverdict: {s['verdict']}   summary: {result.output_dir / 'summary.json'}")
    if result.package:
        typer.echo(f"package: {result.package}")
    if result.failed:
        raise typer.Exit(1)
