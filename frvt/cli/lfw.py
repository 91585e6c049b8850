"""``frvt lfw``: the LFW View-2 research benchmark."""

from __future__ import annotations

from pathlib import Path

import typer

from frvt.cli.app import app
from frvt.contract import DEFAULT_IMPLEMENTATION
from frvt.records import write_json

DEFAULT_LFW = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "lfw"


@app.command("lfw")
def lfw_command(
    data_dir: Path = typer.Option(DEFAULT_LFW, "--data-dir", help="LFW folder with pairs.txt and lfw-deepfunneled/."),
    implementation: str = typer.Option(DEFAULT_IMPLEMENTATION, "--implementation", "-i", help="module:attribute"),
    config_dir: Path = typer.Option(
        None, "--config-dir", help="The implementation's config directory (default: its own)."
    ),
    cache_dir: Path = typer.Option(None, "--cache-dir", help="Where templates are kept; a killed run resumes from it."),
    workers: int = typer.Option(2, "--workers", "-j", min=1, help="Forked worker processes creating templates."),
    all_images: bool = typer.Option(
        False, "--all-images", help="Make templates for all 13,233 images, not only those in pairs.txt."
    ),
    store: Path = typer.Option(
        None,
        "--store",
        help="Template store of lfw-deepfunneled (frvt enroll): its templates, implementation and config; none made.",
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the result as JSON here."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """LFW View-2 protocol (10 folds): mean accuracy +/- std, TAR at FAR=1e-3, failures to enrol."""
    from frvt.lfw import run_lfw

    if not (data_dir / "pairs.txt").exists():
        typer.echo(f"error: no pairs.txt in {data_dir}", err=True)
        raise typer.Exit(2)
    try:
        r = run_lfw(
            data_dir,
            implementation,
            config_dir,
            cache_dir,
            workers,
            all_images,
            progress,
            say=lambda s: typer.echo(f"-- {s}", err=True),
            store=store,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    except RuntimeError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    typer.echo(f"LFW View-2 ({r['n_genuine']} genuine + {r['n_impostor']} impostor pairs, 10 folds)")
    typer.echo(f"  mean accuracy      {r['mean_accuracy']:.4f} +/- {r['std_accuracy']:.4f}")
    typer.echo(f"  TAR at FAR=1e-3    {r['tar_at_far_1e-3']:.4f}  (over {r['n_impostor']} impostor pairs)")
    typer.echo(
        f"  failures to enrol  {r['failures_to_enrol_count']} of {r['n_images']} images ({r['failures_to_enrol']:.4%})"
    )
    if r["images_per_second"]:
        typer.echo(
            f"  speed              {r['images_per_second']:.2f} images/s with {r['workers']} workers; "
            f"median create_face_template {r['create_template_median_ms']:.1f} ms"
        )
    if json_out:
        write_json(json_out, r)
        typer.echo(f"  wrote {json_out}")
