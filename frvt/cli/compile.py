"""``frvt compile``: ONNX -> TVM shared library (+ MetaSchedule tuning) for a CPU target.

The output directory is what the default implementation loads as its embedder::

    <output>/model.so            compiled Relax VM executable, weights embedded
    <output>/metadata.json       model sha256, input, target, TVM version, tuning database, timings
    <output>/model_config.json   preprocessing (input size, mean/scale, colour order, layout,
                                 embedding size): the ``--model-config`` JSON, ModelConfig fields

See :mod:`frvt.compiler.compile` for the pipeline.
"""

from __future__ import annotations

import json
from pathlib import Path

import typer

from frvt.cli.app import app


@app.command("compile")
def compile_command(
    model: Path = typer.Argument(..., exists=True, dir_okay=False, help="ONNX model (one float32 input)."),
    target: str = typer.Option(
        "broadwell",
        "--target",
        "-t",
        help='broadwell | native | a JSON target dict, e.g. \'{"kind": "llvm", "mcpu": "skylake"}\'.',
    ),
    tune: bool = typer.Option(
        False, "--tune", help="Run MetaSchedule tuning first (appends to --database; resumable)."
    ),
    trials: int = typer.Option(2000, "--trials", min=1, help="New tuning trials in this run (with --tune)."),
    database: Path = typer.Option(
        None,
        "--database",
        "-d",
        help="MetaSchedule JSON database directory (default: the committed one matching the model hash and target).",
    ),
    output: Path = typer.Option(
        None, "--output", "-o", help="Output directory (default: <model stem>-<target name>/ here)."
    ),
    model_config: Path = typer.Option(
        None,
        "--model-config",
        exists=True,
        dir_okay=False,
        help="ModelConfig JSON: name, input_name, input_shape, layout, colour_order, mean, scale, embedding_size.",
    ),
    config_dir: Path = typer.Option(
        None,
        "--config-dir",
        help="Also assemble a config directory for the default implementation with this model as "
        "its embedder (and the default detector), for frvt validate / lfw / profile.",
    ),
    flip: bool = typer.Option(
        True,
        "--flip/--no-flip",
        help="With --config-dir: average the embeddings of each face and its mirror image (two embedder "
        "calls per face, the default) or embed the face once.",
    ),
    conv_scheme: str = typer.Option(
        None,
        "--conv-scheme",
        help="How convolutions are computed: NCHW, NHWC (channels innermost, vectorised across "
        "AVX2 lanes) or NHWC-winograd (3x3 stride-1 ones by Winograd F(4x4, 3x3)). "
        "Default: the scheme the database was tuned with, else NCHW.",
    ),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Report the stages."),
) -> None:
    """Compile an ONNX model with Apache TVM for one CPU thread; optionally tune it first.

    Exit status: 0 on success, 1 when import/tuning/compilation fails, 2 for bad arguments.
    """
    from frvt.compiler import CompileError
    from frvt.compiler.compile import compile_model
    from frvt.compiler.targets import parse_target, target_name
    from implementation.model_config import ModelConfig

    try:
        target_dict = parse_target(target)
        config = ModelConfig.load(model_config) if model_config is not None else None
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    out = output if output is not None else Path(f"{model.stem}-{target_name(target_dict)}")
    try:
        metadata = compile_model(
            model,
            target=target_dict,
            output_dir=out,
            model_config=config,
            database=database,
            tune=tune,
            trials=trials,
            conv_scheme=conv_scheme,
            progress=(lambda text: typer.echo(f"-- {text}", err=True)) if progress else False,
        )
    except ValueError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    except CompileError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1)
    tuned = f"tuned, {metadata['database_records']} records" if metadata["tuned"] else "untuned"
    typer.echo(
        f"{out}/model.so  input {metadata['input_name']} {metadata['input_shape']}  "
        f"outputs {metadata['output_shapes']}  target {json.dumps(metadata['target'])}  "
        f"convolutions {metadata['conv_scheme']}  {tuned}  "
        f"{metadata['compile_seconds']:.1f} s"
    )
    if config_dir is not None:
        from implementation.config_dir import build_config_dir
        from implementation.model_config import DLIB_RESNET

        built = build_config_dir(
            config_dir,
            target=target_dict,
            embedder_library=out,
            embedder_config=config or DLIB_RESNET,
            flip_average=flip,
            progress=progress,
        )
        typer.echo(f"config directory {built}: frvt validate --config-dir {built}")
