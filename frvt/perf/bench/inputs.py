"""The network inputs of the shoot-out: a real face (detected, aligned, normalised) or seeded noise; ONNX Runtime's reference session."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from frvt.perf.bench.models import _IRESNET_MEAN, _IRESNET_SCALE, DEFAULT_IMAGE, BenchError, ModelSpec, builtin_models

# --- inputs ---------------------------------------------------------------------------------


def _input_shape(onnx_path: Path) -> tuple[str, tuple[int, ...]]:
    from frvt.compiler.passes import onnx_input_spec

    name, shape = onnx_input_spec(onnx_path)
    if any(s <= 0 for s in shape):
        raise BenchError(f"{onnx_path}: input {name!r} has a dynamic shape {shape}")
    return name, tuple(shape)


def onnxruntime_session(model: Path | str | bytes, *, profile_prefix: str | None = None):
    """The ONNX Runtime reference every comparison here uses: the default CPU execution provider
    (MLAS kernels) on one thread, sequential. ``model`` is a file or serialised bytes;
    ``profile_prefix`` turns ONNX Runtime's per-node profiler on, writing there."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    if profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def _read_rgb(image: Path) -> np.ndarray | None:
    import cv2

    bgr = cv2.imread(str(image), cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _face_chip(rgb: np.ndarray) -> np.ndarray | None:
    """The dlib-framed 150x150 RGB chip of the main face, found by RetinaFace run with ONNX Runtime."""
    from implementation.align import align
    from implementation.detect import RetinaFaceDetector, select_face

    detector_path = builtin_models()["retinaface"].path
    session = onnxruntime_session(detector_path)
    name, shape = _input_shape(detector_path)
    detector = RetinaFaceDetector(lambda x: session.run(None, {name: x}), input_size=shape[2:4])
    face = select_face(detector.detect(rgb), rgb.shape)
    return None if face is None else align(rgb, face.landmarks)


def batched_onnx(onnx_path: Path, batch: int, out: Path) -> Path:
    """A copy of the model whose inputs and outputs have ``batch`` as their first dimension (for
    the runtimes that read the file's static shapes); the weights and operators are unchanged."""
    import onnx

    model = onnx.load(str(onnx_path))
    initializers = {t.name for t in model.graph.initializer}
    for value in [v for v in model.graph.input if v.name not in initializers] + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if not dims:
            raise BenchError(f"{onnx_path}: {value.name!r} has no shape to batch")
        dims[0].Clear()
        dims[0].dim_value = batch
    del model.graph.value_info[:]  # intermediate shapes are re-inferred
    onnx.save(model, str(out))
    return out


def make_inputs(
    spec: ModelSpec, image: str | Path | None = None, seed: int = 0, batch: int = 1
) -> tuple[dict[str, np.ndarray], str]:
    """A real input for a model, made the way the pipeline makes it.

    Parameters
    ----------
    spec : ModelSpec
        The model; ``spec.kind`` picks the recipe (see :class:`ModelSpec`).
    image : path, optional
        A face photograph (default: the first MEDS mugshot of ``data/validation``).
    seed : int
        Seed of the noise used for ``generic`` models, or when the image is missing or has no face.
    batch : int
        Images per call. The dlib model gets the chip and its mirror image in turn, as the default
        implementation embeds them in one call; the other models get copies of their input.

    Returns
    -------
    (dict, str)
        ``{"x": float32 network input}`` plus, for the dlib model, ``"chip"`` (uint8 (150, 150, 3)
        RGB, what dlib's own implementation is given); and a description of where they came from.
    """
    if batch < 1:
        raise BenchError(f"batch must be >= 1, got {batch}")
    inputs, described = _one_input(spec, image, seed)
    if batch == 1:
        return inputs, described
    x = inputs["x"]
    if spec.kind == "dlib":
        from implementation.model_config import DLIB_RESNET as cfg

        views = cfg.network_batch(inputs["chip"], mirror=True)
        inputs["x"] = np.ascontiguousarray(views[np.arange(batch) % 2])
        return inputs, f"{described}; batch of {batch}: the chip and its mirror image in turn"
    inputs["x"] = np.ascontiguousarray(np.concatenate([x] * batch))
    return inputs, f"{described}; batch of {batch} copies"


def _one_input(spec: ModelSpec, image: str | Path | None, seed: int) -> tuple[dict[str, np.ndarray], str]:
    """:func:`make_inputs` at the model file's own shape."""
    _, shape = _input_shape(spec.path)
    image = Path(image) if image is not None else DEFAULT_IMAGE
    rgb = _read_rgb(image) if spec.kind != "generic" and image.is_file() else None
    if spec.kind == "detector" and rgb is not None:
        from implementation.detect import RetinaFaceDetector

        x, _ = RetinaFaceDetector(lambda x: (), input_size=shape[2:4]).preprocess(rgb)
        return {"x": x}, f"{image.name} letterboxed to {shape[3]}x{shape[2]} (implementation.detect)"
    chip = _face_chip(rgb) if rgb is not None and spec.kind in ("dlib", "iresnet") else None
    if chip is not None and spec.kind == "dlib":
        from implementation.model_config import DLIB_RESNET as cfg

        return (
            {"x": cfg.batch(cfg.network_input(chip)), "chip": np.ascontiguousarray(chip)},
            f"{image.name}: RetinaFace (ONNX Runtime) + implementation.align chip 150x150, DLIB_RESNET normalisation",
        )
    if chip is not None and spec.kind == "iresnet":
        import cv2

        resized = cv2.resize(chip, (shape[3], shape[2]), interpolation=cv2.INTER_AREA)
        x = (resized.astype(np.float32) - _IRESNET_MEAN) * np.float32(_IRESNET_SCALE)
        return (
            {"x": np.ascontiguousarray(x.transpose(2, 0, 1)[None])},
            f"{image.name}: the 150x150 chip resized to {shape[3]}x{shape[2]}, (pixel - 127.5) / 127.5",
        )
    rng = np.random.default_rng(seed)
    inputs = {"x": rng.standard_normal(shape).astype(np.float32)}
    why = "a generic model" if spec.kind == "generic" else f"no face found in {image}"
    if spec.kind == "dlib":
        inputs["chip"] = rng.integers(0, 256, (shape[2], shape[3], 3), dtype=np.uint8)
        from implementation.model_config import DLIB_RESNET as cfg

        inputs["x"] = cfg.batch(cfg.network_input(inputs["chip"]))
    return inputs, f"seeded noise (seed {seed}): {why}"
