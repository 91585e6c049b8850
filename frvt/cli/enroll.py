"""``frvt enroll``: templates for an image list or an ``<identity>/<image>`` folder into a template store."""

from __future__ import annotations

from pathlib import Path

import typer

from frvt.cli.app import app

_HELP = """Make templates for every image of SOURCE (a NIST image list `<id> <image> <label> [<identity>]`
or a folder `<identity>/<image>`) into STORE, an HDF5 template store that `frvt score --all-vs-all`
reads. Runs on Dask: --scheduler tcp://host:8786 for an existing cluster, else a local cluster of
single-threaded workers. Resumable: run the same command again after an interruption and only the
missing templates are made. Exit status 2 on bad input."""


@app.command(help=_HELP)
def enroll(
    source: Path = typer.Argument(..., help="Image list file or <identity>/<image> folder."),
    store: Path = typer.Argument(..., help="Template store (.h5) to create or continue."),
    implementation: str = typer.Option(
        "implementation:FaceVerifier", "--implementation", "-i", help="The implementation, module:Attr."
    ),
    config_dir: Path | None = typer.Option(None, "--config-dir", help="Config directory for initialize."),
    scheduler: str | None = typer.Option(None, "--scheduler", help="Dask scheduler address (tcp://host:8786)."),
    workers: int | None = typer.Option(None, "--workers", "-j", help="Local workers (default: one per core)."),
    batch: int = typer.Option(16, "--batch", help="Images per Dask task."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    from frvt.enroll import enroll as run_enroll
    from frvt.records import ListFormatError
    from frvt.settings import ConfigDirError
    from frvt.store import StoreError

    try:
        report = run_enroll(
            source,
            store,
            implementation=implementation,
            config_dir=config_dir,
            scheduler=scheduler,
            workers=workers,
            batch=batch,
            progress=progress,
            say=lambda s: typer.echo(s, err=True),
        )
    except (StoreError, ListFormatError, ConfigDirError, ValueError, OSError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    rate = report.images_per_second
    typer.echo(
        f"{report.store}: {report.n_images} images, {report.n_made} templates made in this run"
        + (f" in {report.seconds:.1f} s ({rate:.2f} images/s, {report.workers} workers)" if rate else "")
    )
    typer.echo(f"failures to enrol: {len(report.failures)} of {report.n_images}")
    for tid, code, info in report.failures[:20]:
        typer.echo(f"  {tid}: {code} {info}")
    if len(report.failures) > 20:
        typer.echo(f"  ... {len(report.failures) - 20} more (`code` and `info` in the store)")
