"""Assemble the implementation's config directory: compiled detector and embedder, their ONNX.

Layout (what :meth:`implementation.pipeline.FaceVerifier.initialize` reads)::

    <config>/frvt_config.json      {"format": 1, "detector": "detector", "embedder": "embedder", ...}
    <config>/detector/model.so     compiled RetinaFace (+ metadata.json, model.onnx)
    <config>/embedder/model.so     compiled embedder (+ metadata.json, model_config.json, model.onnx)

Building compiles with TVM (minutes, once; the committed tuning databases are applied when the
model hash and target match) and is never done on the template path: ``initialize`` only loads.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Callable

from frvt.settings import cache_root, data_root
from implementation.model_config import DLIB_RESNET, ModelConfig

MODELS = data_root() / "models"
DETECTOR_ONNX = MODELS / "retinaface_mnet025.onnx"
EMBEDDER_ONNX = MODELS / "dlib_face_recognition_resnet_model_v1.onnx"
CONFIG_FORMAT = 1
CONFIG_NAME = "frvt_config.json"


def build_config_dir(
    output_dir: str | Path | None = None,
    *,
    target: str | dict = "broadwell",
    embedder_onnx: str | Path = EMBEDDER_ONNX,
    embedder_config: ModelConfig = DLIB_RESNET,
    detector_onnx: str | Path = DETECTOR_ONNX,
    embedder_library: str | Path | None = None,
    flip_average: bool = True,
    flip_in_one_call: bool | None = None,
    progress: bool | Callable[[str], None] = False,
) -> Path:
    """Build (or find) a config directory for ``FaceVerifier``; returns its path.

    Parameters
    ----------
    output_dir : path, optional
        Where to put it. Default: ``~/.cache/frvt/config/<key>`` (``FRVT_CACHE`` overrides the
        root), keyed by both compiled models, so an unchanged setup is built once.
    target : str or dict
        TVM target for both models (``"broadwell"``, ``"native"`` or a JSON dict).
    embedder_onnx, embedder_config : the face embedder and how to feed it (a researcher's own
        model plugs in here).
    embedder_library : path, optional
        An already compiled embedder directory (from ``frvt compile``) to use instead of compiling.
    flip_average : bool
        Embed each chip and its mirror image and average the two (the default).
    flip_in_one_call : bool, optional
        Compile the embedder for a batch of two, so that the chip and its mirror image go through
        it in one call (its weights read once). Default: when a committed tuning database for
        that shape and target exists (:func:`frvt.compiler.databases.find_tuned_database`), as
        for the default embedder; an untuned batch of two would be slower than two tuned calls.
    """
    from frvt.compiler.compile import ensure_compiled

    cache = cache_root() / "compiled"
    detector_dir = ensure_compiled(detector_onnx, target, cache, progress=progress)
    batch_of_two = (2, *embedder_config.input_shape[1:])
    if flip_in_one_call is None:
        from frvt.compiler.databases import find_tuned_database
        from frvt.compiler.targets import parse_target

        flip_in_one_call = (
            embedder_library is None
            and find_tuned_database(embedder_onnx, parse_target(target), input_shape=batch_of_two) is not None
        )
    if flip_average and flip_in_one_call:
        embedder_config = dataclasses.replace(embedder_config, input_shape=batch_of_two)
    if embedder_library is None:
        embedder_dir = ensure_compiled(embedder_onnx, target, cache, model_config=embedder_config, progress=progress)
    else:
        embedder_dir = Path(embedder_library)
    settings = {
        "format": CONFIG_FORMAT,
        "detector": "detector",
        "embedder": "embedder",
        "flip_average": flip_average,
        "target": json.loads((detector_dir / "metadata.json").read_text()).get("target"),
    }
    key = hashlib.sha256(
        json.dumps([str(detector_dir), str(embedder_dir), settings], sort_keys=True).encode()
    ).hexdigest()[:16]
    out = Path(output_dir) if output_dir is not None else cache_root() / "config" / key
    if (out / CONFIG_NAME).exists() and json.loads((out / CONFIG_NAME).read_text()).get("key") == key:
        return out
    tmp = out.with_name(f".{out.name}.{os.getpid()}.partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    shutil.copytree(detector_dir, tmp / "detector")
    shutil.copy2(detector_onnx, tmp / "detector" / "model.onnx")
    shutil.copytree(embedder_dir, tmp / "embedder")
    if not (tmp / "embedder" / "model_config.json").exists():
        embedder_config.save(tmp / "embedder" / "model_config.json")
    if embedder_library is None:
        shutil.copy2(embedder_onnx, tmp / "embedder" / "model.onnx")
    (tmp / CONFIG_NAME).write_text(json.dumps(dict(settings, key=key), indent=2) + "\n")
    if out.exists():
        shutil.rmtree(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return out
