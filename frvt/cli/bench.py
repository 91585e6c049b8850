"""``frvt bench``: the runtime shoot-out (TVM untuned/tuned, ONNX Runtime, OpenVINO, OpenCV DNN, dlib)."""

from __future__ import annotations

import shlex
from pathlib import Path

import typer

from frvt.perf.bench import GROUPS, RUNTIMES, BenchError, format_markdown, format_table, run_benchmark, save_result
from frvt.cli.app import app


def _split(value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [item.strip() for item in value.split(",") if item.strip()]
    return items or None


def _command_line(
    models, runtimes, groups, repeats, untuned_repeats, warmup, image, json_out, markdown_out, fma, batch=1
) -> str:
    """The command that reproduces this run, every setting spelled out."""
    parts = ["frvt", "bench"]
    for flag, value in (
        ("--models", models),
        ("--runtimes", runtimes),
        ("--groups", groups),
        ("--repeats", repeats),
        ("--untuned-repeats", untuned_repeats),
        ("--warmup", warmup),
        ("--batch", batch if batch != 1 else None),
        ("--image", image),
        ("--json", json_out),
        ("--markdown", markdown_out),
    ):
        if value is not None:
            parts += [flag, shlex.quote(str(value))]
    if not fma:
        parts.append("--no-fma")
    return " ".join(parts)


@app.command("bench")
def bench_command(
    models: str = typer.Option(
        None, "--models", help="Comma-separated: dlib_resnet, retinaface, iresnet50 (default all three) or .onnx paths."
    ),
    runtimes: str = typer.Option(
        None, "--runtimes", help=f"Comma-separated subset of: {', '.join(RUNTIMES)} (default all)."
    ),
    groups: str = typer.Option(
        ",".join(GROUPS),
        "--groups",
        help="ISA groups: avx2 (TVM for Broadwell vs peers capped to AVX2), full (TVM native vs uncapped).",
    ),
    repeats: int = typer.Option(30, "--repeats", min=1, help="Timed calls per runtime."),
    untuned_repeats: int = typer.Option(3, "--untuned-repeats", min=1, help="Timed calls of untuned TVM (slow)."),
    warmup: int = typer.Option(3, "--warmup", min=0, help="Discarded calls per runtime before the timed ones."),
    batch: int = typer.Option(
        1,
        "--batch",
        min=1,
        help="Images per call: every runtime runs the model at this batch (the dlib model: the chip and "
        "its mirror image in turn, as the default implementation embeds them); TVM tuned needs a database "
        "tuned for that shape.",
    ),
    image: Path = typer.Option(
        None, "--image", help="Face photograph the real inputs are made from (default: a MEDS mugshot)."
    ),
    json_out: Path = typer.Option(None, "--json", help="Write the versioned JSON result (schema frvt.bench/1) here."),
    markdown_out: Path = typer.Option(
        None, "--markdown", help="Write the markdown report (e.g. docs/benchmarks.md) here."
    ),
    fma: bool = typer.Option(
        True, "--fma/--no-fma", help="Measure one core's AVX2 FMA peak for the fraction-of-peak column."
    ),
    cache_dir: Path = typer.Option(
        None,
        "--cache-dir",
        help="Root of compiled TVM models (default: compiled/ under $FRVT_CACHE, or ~/.cache/frvt).",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Report each stage on stderr."),
) -> None:
    """Time the same models with every runtime on one thread, interleaved round by round, in one
    fresh process per ISA group; report medians, p90, ratios to TVM tuned, GFLOP/s, the fraction of
    the FMA peak and each runtime's difference from ONNX Runtime.

    Exit status: 0 when the benchmark ran, 2 when it could not.
    """
    command = _command_line(
        models, runtimes, groups, repeats, untuned_repeats, warmup, image, json_out, markdown_out, fma, batch
    )
    report = (lambda message: typer.echo(f"[frvt bench] {message}", err=True)) if progress else None
    try:
        result = run_benchmark(
            models=_split(models),
            runtimes=_split(runtimes),
            groups=_split(groups) or [],
            repeats=repeats,
            untuned_repeats=untuned_repeats,
            warmup=warmup,
            image=image,
            fma=fma,
            cache_dir=cache_dir,
            command=command,
            progress=report,
            batch=batch,
        )
    except BenchError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    typer.echo(format_table(result))
    if json_out is not None:
        typer.echo(f"\njson: {save_result(result, json_out)}")
    if markdown_out is not None:
        markdown_out.parent.mkdir(parents=True, exist_ok=True)
        markdown_out.write_text(format_markdown(result))
        typer.echo(f"markdown: {markdown_out}")
