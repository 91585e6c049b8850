"""The compile driver: ONNX -> Apache TVM (Relax) -> exported shared library with its metadata,
tuned or not, and the build cache.

Never imported on the template path: the runtime side is :mod:`implementation.tvm_runtime`.

Pipeline (:func:`compile_model`)::

    ONNX --from_onnx (weights bound as constants)--> Relax
         --DecomposeOpsForInference, CanonicalizeBindings, [ConvertLayout to NHWC
           (through LAYOUT_ELEMENTWISE_OPS),]
           LegalizeOps, FoldConstant, FuseOps, FuseTIR,
           AttachAttrLayoutFreeBuffers--> fused TIR tasks           (frvt.compiler.passes)
         --MetaSchedule tuning, one thread per measurement--> JSON database
                                                                    (frvt.compiler.tuning)
         --MetaScheduleApplyDatabase, SplitLayoutRewritePreproc, FoldConstant--> scheduled module
         --tvm.compile--> model.so                                  (frvt.compiler.build)
         + metadata.json (+ model_config.json)                      (compile_model)

Weights are "layout free": a tuned convolution may store its weights in a packed layout of its
own choosing; the repacking is split out of the kernel and folded at compile time, so the
exported library carries pre-packed weights and does no repacking per call.

Output directory layout (what :class:`implementation.tvm_runtime.CompiledModel` loads)::

    <output_dir>/model.so           exported Relax VM executable, weights embedded
    <output_dir>/metadata.json      model sha256, input name/shape/layout, preprocessing,
                                    target, TVM version, database and its record count,
                                    trials, compile seconds (see ``compile_model``)
    <output_dir>/model_config.json  the ModelConfig (preprocessing as data), when one was given

Tuning databases and their manifests: :mod:`frvt.compiler.databases`; targets:
:mod:`frvt.compiler.targets`.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from frvt.compiler import CompileError
from frvt.compiler.build import build_module
from frvt.compiler.databases import (
    count_records,
    database_conv_scheme,
    database_digest,
    file_sha256,
    find_tuned_database,
    scheme_settings,
    write_manifest,
)
from frvt.compiler.passes import CONV_SCHEMES, import_onnx, onnx_input_spec, prepare_module
from frvt.compiler.targets import parse_target, target_name
from frvt.compiler.tuning import tune_module
from frvt.settings import cache_root
from implementation.model_config import ModelConfig


METADATA_FORMAT = 1


def _configured_shape(
    model_config: ModelConfig | None, input_shape: tuple[int, ...] | None = None
) -> tuple[int, ...] | None:
    """The static input shape asked for instead of the file's: ``input_shape`` when given, else
    the model config's when it has one, else None."""
    if input_shape is not None:
        return tuple(int(s) for s in input_shape)
    if model_config is not None and all(s > 0 for s in model_config.input_shape):
        return tuple(model_config.input_shape)
    return None


def compile_model(
    onnx_path: str | Path,
    *,
    target: str | dict = "broadwell",
    output_dir: str | Path,
    model_config: ModelConfig | None = None,
    database: str | Path | None = None,
    tune: bool = False,
    trials: int = 2000,
    max_trials_per_task: int | None = None,
    progress: bool | Callable[[str], None] = True,
    auto_database: bool = True,
    conv_scheme: str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> dict:
    """Compile an ONNX model for a CPU target and export it with its metadata.

    Parameters
    ----------
    onnx_path : path
        ONNX model with one static-shape float32 input.
    target : str or dict
        ``"broadwell"``, ``"native"``, a JSON string or a dict (see :func:`parse_target`).
    output_dir : path
        Receives ``model.so``, ``metadata.json`` and, if ``model_config`` is given,
        ``model_config.json``. Written atomically (a temporary directory renamed into place).
    model_config : ModelConfig, optional
        Preprocessing and embedding description saved next to the library.
    database : path, optional
        MetaSchedule JSON database directory. Default: a committed database whose manifest
        matches the model hash and target (:func:`find_tuned_database`), else none when not
        tuning, else an error.
    tune : bool
        Run MetaSchedule first, appending to ``database`` (``trials`` new measurements).
    trials, max_trials_per_task : int
        Tuning budget of this call (only with ``tune``).
    progress : bool or callable
        True: report stages to stderr via tqdm; a callable receives stage messages.
    auto_database : bool
        Look for a committed database when ``database`` is None (False: compile untuned).
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}, optional
        How convolutions are computed (:func:`prepare_module`). Default: the scheme the
        database was tuned with (:func:`database_conv_scheme`), NCHW without a database.
    input_shape : tuple of int, optional
        Compile for this static input shape instead of the file's (say, a batch of two); it
        overrides ``model_config.input_shape``.

    Returns
    -------
    dict
        The metadata written to ``metadata.json``: ``format``, ``model`` (file name),
        ``model_sha256``, ``input_name``, ``input_shape``, ``layout``, ``conv_scheme``,
        ``winograd`` (the settings, None for other schemes), ``layout_elementwise`` (operators
        the NHWC layout passed through), ``output_shapes``,
        ``preprocessing`` (the ModelConfig dict or None), ``target``, ``tvm_version``,
        ``database`` (path or None), ``database_records``, ``database_sha256``, ``tuned``,
        ``trials``, ``weight_bytes`` (the constants one call reads, as packed: Winograd kernels
        are 16/9 or 36/9 times the original weights), ``compile_seconds``, ``library``.

    Raises
    ------
    CompileError
        Import, tuning or compilation failed.
    ValueError
        Bad target or arguments.
    """
    import numpy as np
    import tvm

    report = _progress_reporter(progress)
    start = time.perf_counter()
    onnx_path = Path(onnx_path)
    target_dict = parse_target(target)
    input_name, file_shape = onnx_input_spec(onnx_path)
    input_shape = _configured_shape(model_config, input_shape) or file_shape
    if database is None and auto_database:
        database = find_tuned_database(onnx_path, target_dict, input_shape=input_shape)
        if database is not None:
            report(f"using tuned database {database} ({count_records(database)} records)")
    if tune and database is None:
        raise ValueError("tuning needs a database directory (--database DIR)")
    scheme = resolve_conv_scheme(conv_scheme, database, tune, report)

    report(f"importing {onnx_path.name} (input {input_name} {list(input_shape)})")
    mod = import_onnx(onnx_path, input_shape)
    report(f"preparing for {json.dumps(target_dict)}, convolutions {scheme}")
    settings = scheme_settings(database, scheme)
    mod = prepare_module(mod, target_dict, scheme, **settings)
    if tune:
        report(f"tuning {trials} trials into {database}")
        n_records = tune_module(mod, target_dict, database, trials=trials, max_trials_per_task=max_trials_per_task)
        write_manifest(database, onnx_path, target_dict, conv_scheme=scheme, input_shape=list(input_shape), **settings)
        report(f"database has {n_records} records")
    report("compiling")
    try:
        executable, weight_bytes = build_module(mod, target_dict, database)
    except Exception as exc:
        raise CompileError(f"TVM failed to compile {onnx_path}: {exc}") from exc

    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output_dir.name}.", dir=output_dir.parent))
    try:
        report("exporting")
        executable.export_library(str(staging / "model.so"))
        output_shapes = _output_shapes(staging / "model.so", input_shape, np)
        metadata = {
            "format": METADATA_FORMAT,
            "model": onnx_path.name,
            "model_sha256": file_sha256(onnx_path),
            "input_name": input_name,
            "input_shape": list(input_shape),
            "layout": model_config.layout if model_config is not None else "NCHW",
            "conv_scheme": scheme,
            "winograd": settings.get("winograd"),
            "layout_elementwise": settings.get("layout_elementwise", []),
            "output_shapes": output_shapes,
            "preprocessing": model_config.to_json() if model_config is not None else None,
            "target": target_dict,
            "tvm_version": tvm.__version__,
            "database": str(database) if database is not None else None,
            "database_records": count_records(database),
            "database_sha256": database_digest(database),
            "tuned": count_records(database) > 0,
            "trials": trials if tune else 0,
            "weight_bytes": weight_bytes,
            "compile_seconds": round(time.perf_counter() - start, 3),
            "library": "model.so",
        }
        metadata = json.loads(json.dumps(metadata))  # what a reader of the file gets
        (staging / "metadata.json").write_text(json.dumps(metadata, indent=2) + "\n")
        if model_config is not None:
            model_config.save(staging / "model_config.json")
        staging.chmod(0o755)  # mkdtemp makes it private
        if output_dir.exists():
            shutil.rmtree(output_dir)
        staging.rename(output_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    report(f"wrote {output_dir} in {metadata['compile_seconds']:.1f} s")
    return metadata


def resolve_conv_scheme(
    conv_scheme: str | None, database: str | Path | None, tune: bool, report: Callable[[str], None]
) -> str:
    """The requested scheme, else the database's; says so when they disagree.

    Raises
    ------
    ValueError
        An unknown scheme, or tuning one scheme into a database that holds another's records
        (its manifest names a single scheme).
    """
    tuned_scheme = database_conv_scheme(database)
    if conv_scheme is None:
        return tuned_scheme
    if conv_scheme not in CONV_SCHEMES:
        raise ValueError(f"conv_scheme must be one of {CONV_SCHEMES}, not {conv_scheme!r}")
    if conv_scheme == tuned_scheme or count_records(database) == 0:
        return conv_scheme
    if tune:
        raise ValueError(f"{database} holds {tuned_scheme} records; tune {conv_scheme} into a new directory")
    report(
        f"warning: {database} was tuned with {tuned_scheme} convolutions; their schedules do "
        f"not apply to {conv_scheme} ones, which compile untuned"
    )
    return conv_scheme


def _output_shapes(library: Path, input_shape: tuple[int, ...], np) -> list[list[int]]:
    """Run the exported library once on zeros to record its output shapes."""
    from implementation.tvm_runtime import run_library_once

    outputs = run_library_once(library, np.zeros(input_shape, dtype=np.float32))
    return [list(o.shape) for o in outputs]


def _progress_reporter(progress: bool | Callable[[str], None]) -> Callable[[str], None]:
    if callable(progress):
        return progress
    if progress:
        from tqdm import tqdm

        return lambda message: tqdm.write(f"[frvt compile] {message}")
    return lambda message: None


def cache_key(
    onnx_path: str | Path,
    target: str | dict,
    database: str | Path | None = None,
    model_config: ModelConfig | None = None,
    conv_scheme: str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> str:
    """Hex key of a compiled artefact: model sha256 + target + TVM version + database content
    + convolution scheme (+ the model config saved beside it)."""
    import tvm

    payload = {
        "model_sha256": file_sha256(onnx_path),
        "target": parse_target(target),
        "tvm_version": tvm.__version__,
        "database_sha256": database_digest(database),
        "format": METADATA_FORMAT,
    }
    scheme = conv_scheme or database_conv_scheme(database)
    if scheme != "NCHW":  # keys of NCHW builds are unchanged since the option came
        payload["conv_scheme"] = scheme
        settings = scheme_settings(database, scheme)
        if "winograd" in settings:
            payload["winograd"] = settings["winograd"]
        if settings.get("layout_elementwise"):  # keys of builds without it are unchanged
            payload["layout_elementwise"] = settings["layout_elementwise"]
    if model_config is not None:
        payload["model_config"] = model_config.to_json()
    if input_shape is not None:  # keys of builds at the file's or the config's shape are unchanged
        payload["input_shape"] = [int(s) for s in input_shape]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:24]


def ensure_compiled(
    onnx_path: str | Path,
    target: str | dict = "broadwell",
    cache_dir: str | Path | None = None,
    database: str | Path | None = None,
    model_config: ModelConfig | None = None,
    progress: bool | Callable[[str], None] = False,
    auto_database: bool = True,
    conv_scheme: str | None = None,
    input_shape: tuple[int, ...] | None = None,
) -> Path:
    """Directory of a compiled model for (model, target, TVM, database); built once.

    Parameters
    ----------
    onnx_path : path
        The model.
    target : str or dict
        See :func:`parse_target`.
    cache_dir : path, optional
        Root of the cache (default ``<cache root>/compiled``, see :func:`frvt.settings.cache_root`).
        The artefact lives in ``<cache_dir>/<model-stem>-<target-name>-<key>/``; a concurrent or
        killed build never leaves a half-written directory (atomic rename).
    database : path, optional
        Tuning database; default: the committed one for this model hash and target, if any.
    model_config : ModelConfig, optional
        Saved beside the library.
    auto_database : bool
        Use the committed database for this model hash and target when ``database`` is None
        (False: an untuned build).
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}, optional
        See :func:`compile_model` (default: the database's).
    input_shape : tuple of int, optional
        See :func:`compile_model`.

    Returns
    -------
    Path
        Directory holding ``model.so`` and ``metadata.json``.
    """
    onnx_path = Path(onnx_path)
    target_dict = parse_target(target)
    if database is None and auto_database:
        database = find_tuned_database(onnx_path, target_dict, input_shape=_configured_shape(model_config, input_shape))
    cache_dir = Path(cache_dir) if cache_dir is not None else cache_root() / "compiled"
    key = cache_key(onnx_path, target_dict, database, model_config, conv_scheme, input_shape)
    out = cache_dir / f"{onnx_path.stem}-{target_name(target_dict)}-{key}"
    if (out / "metadata.json").exists() and (out / "model.so").exists():
        return out
    compile_model(
        onnx_path,
        target=target_dict,
        output_dir=out,
        model_config=model_config,
        database=database,
        progress=progress,
        auto_database=False,
        conv_scheme=conv_scheme,
        input_shape=input_shape,
    )
    return out
