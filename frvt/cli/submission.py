"""``frvt submission build``: the default implementation as a NIST 1:1 submission folder."""

from __future__ import annotations

from pathlib import Path

import typer

from frvt.cli.app import app
from frvt.submission import SubmissionBuildError, build_submission

submission_app = typer.Typer(
    help="Build the default implementation as a NIST FRTE 1:1 C++ submission.", no_args_is_help=True
)
app.add_typer(submission_app, name="submission")


@submission_app.command("build")
def build_command(
    output_dir: Path = typer.Option(
        Path("frvt-submission"), "--output-dir", "-o", help="The submission folder to write (lib/, config/, doc/)."
    ),
    org: str = typer.Option(
        "frvt", "--org", help="Organisation in the library name libfrvt_11_<org>_<seq>.so (lower case)."
    ),
    seq: int = typer.Option(1, "--seq", min=0, max=999, help="Submission sequence number (three digits in the name)."),
    config_dir: Path = typer.Option(
        None, "--config-dir", help="Config folder of the Python implementation to ship (default: the default one)."
    ),
) -> None:
    """Compile the C++ library with CMake and assemble lib/, config/ and doc/version.txt.

    The folder is relocatable: the library finds TVM's runtime beside it and its models in the
    config folder NIST passes to initialize. Check it with
    `frvt validate --library OUT/lib/libfrvt_11_<org>_<seq>.so --config-dir OUT/config`.
    """
    try:
        result = build_submission(
            output_dir, org=org, seq=seq, config_dir=config_dir, log=lambda text: typer.echo(f"-- {text}", err=True)
        )
    except SubmissionBuildError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(f"library: {result.library}")
    typer.echo(f"config:  {result.config_dir}")
    typer.echo(f"version: {result.version}")
