"""The models of the shoot-out: built-in specs, names, MAC counts; shared constants (runtimes, ISA groups, caps)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from frvt import settings

SCHEMA = "frvt.bench/1"
REPO_ROOT = settings.SOURCE_ROOT
MODELS_DIR = settings.data_root() / "models"
DEFAULT_IMAGE = settings.data_root() / "validation" / "images" / "meds" / "S001" / "S001-01-t10_01.jpg"
IRESNET50_PATH = settings.cache_root() / "iresnet50_random.onnx"

RUNTIMES = ("tvm-untuned", "tvm-tuned", "onnxruntime", "openvino", "opencv", "dlib")
"""Runtime names, in the order rows are reported."""
GROUPS = ("avx2", "full")
"""ISA groups; see the module docstring."""
REFERENCE_RUNTIME = "onnxruntime"
RATIO_RUNTIME = "tvm-tuned"

#: One thread everywhere, set before anything is imported in the measuring process.
#: ``TVM_BIND_THREADS=0``: TVM's ``runtime.config_threadpool(1, 1)`` otherwise pins the calling
#: thread to CPU 0 (and every process it starts inherits that), while no other runtime pins.
THREAD_ENV = settings.SINGLE_THREAD_ENV
#: The ISA caps of the avx2 group (removed from the environment of the full group).
AVX2_CAPS = {
    "ONEDNN_MAX_CPU_ISA": "AVX2",
    "DNNL_MAX_CPU_ISA": "AVX2",
    "OPENCV_CPU_DISABLE": "AVX512-SKX",
    "OPENBLAS_CORETYPE": "Haswell",
}
GROUP_TARGET = {"avx2": "broadwell", "full": "native"}

# OpenCV's CpuFeatures enum (the Python bindings of OpenCV 5 do not export these names).
_CV_CPU_AVX2 = 11
_CV_CPU_AVX512_SKX = 256

# IResNet-50 (insightface) input convention: RGB, (pixel - 127.5) / 127.5.
_IRESNET_MEAN, _IRESNET_SCALE = 127.5, 1.0 / 127.5


class BenchError(RuntimeError):
    """The benchmark could not run: unknown model or runtime name, missing file, a measuring
    process that failed. The message names the cause."""


# --- models ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelSpec:
    """A model in the shoot-out.

    ``kind`` says how a real input is made: ``"dlib"`` (the default embedder: an aligned 150x150
    face chip, normalised as ``implementation.model_config.DLIB_RESNET``), ``"detector"``
    (RetinaFace: a letterboxed image), ``"iresnet"`` (the chip resized to the input size,
    (pixel - 127.5) / 127.5) or ``"generic"`` (seeded standard-normal noise).
    """

    name: str
    path: Path
    kind: str = "generic"


def builtin_models() -> dict[str, ModelSpec]:
    """The three built-in models, by name: ``dlib_resnet``, ``retinaface``, ``iresnet50``."""
    return {
        "dlib_resnet": ModelSpec("dlib_resnet", MODELS_DIR / "dlib_face_recognition_resnet_model_v1.onnx", "dlib"),
        "retinaface": ModelSpec("retinaface", MODELS_DIR / "retinaface_mnet025.onnx", "detector"),
        "iresnet50": ModelSpec("iresnet50", IRESNET50_PATH, "iresnet"),
    }


def resolve_models(models: Sequence[str | ModelSpec] | None) -> list[ModelSpec]:
    """Model names or ``.onnx`` paths -> specs (default: the three built-in models).

    A path is a ``generic`` model named after its file stem. ``iresnet50`` is built with
    ``scripts/make_iresnet50.py`` when its file is missing (~1 min, ~174 MB in the cache root).

    Raises
    ------
    BenchError
        An unknown name, a missing file, or a failed IResNet-50 build.
    """
    known = builtin_models()
    specs: list[ModelSpec] = []
    for item in models if models else list(known):
        if isinstance(item, ModelSpec):
            spec = item
        elif item in known:
            spec = known[item]
        elif str(item).endswith(".onnx"):
            spec = ModelSpec(Path(item).stem, Path(item).resolve(), "generic")
        else:
            raise BenchError(f"unknown model {item!r}: use {', '.join(known)} or a path to an .onnx file")
        if spec.kind == "iresnet" and not spec.path.exists():
            _build_iresnet50(spec.path)
        if not spec.path.is_file():
            raise BenchError(f"model file {spec.path} does not exist")
        specs.append(spec)
    names = [s.name for s in specs]
    if len(set(names)) != len(names):
        raise BenchError(f"model names repeat: {names}")
    return specs


def _build_iresnet50(path: Path) -> None:
    script = REPO_ROOT / "scripts" / "make_iresnet50.py"
    proc = subprocess.run([sys.executable, str(script), "--output", str(path)], capture_output=True, text=True)
    if proc.returncode != 0 or not path.exists():
        raise BenchError(f"building IResNet-50 with {script} failed: {proc.stderr.strip()[-500:]}")


def model_weight_bytes(onnx_path: str | Path) -> int:
    """Bytes of the model's weights as the file stores them (its initialisers): what any runtime
    reads at least once per call at batch 1."""
    import onnx

    model = onnx.load(str(onnx_path))
    return int(sum(onnx.numpy_helper.to_array(init).nbytes for init in model.graph.initializer))


def model_macs(onnx_path: str | Path) -> dict[str, int]:
    """Multiply-accumulates of one inference, counted from the ONNX graph.

    Counts Conv (output elements x input channels per group x kernel area), Gemm (M x N x K) and
    MatMul (batch x M x N x K); other operators (pooling, normalisation, activations, additions)
    are not counted. Shapes come from ONNX shape inference, so the graph needs static shapes.

    Parameters
    ----------
    onnx_path : path
        The model.

    Returns
    -------
    dict
        ``{"Conv": int, "Gemm": int, "MatMul": int, "total": int}``; FLOPs are 2 x MACs.

    Raises
    ------
    BenchError
        A counted operator whose shapes shape inference could not determine.
    """
    import onnx
    from onnx import shape_inference

    model = shape_inference.infer_shapes(onnx.load(str(onnx_path)))
    graph = model.graph
    shapes: dict[str, tuple[int, ...]] = {}
    for info in list(graph.input) + list(graph.value_info) + list(graph.output):
        dims = info.type.tensor_type.shape.dim
        shapes[info.name] = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims)
    for init in graph.initializer:
        shapes[init.name] = tuple(int(d) for d in init.dims)

    def shape(name: str, node) -> tuple[int, ...]:
        s = shapes.get(name)
        if s is None or any(d <= 0 for d in s):
            raise BenchError(f"{onnx_path}: no static shape for {name!r} of {node.op_type} node {node.name!r}")
        return s

    counts = {"Conv": 0, "Gemm": 0, "MatMul": 0}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Conv":
            out = shape(node.output[0], node)
            weight = shape(node.input[1], node)  # (C_out, C_in / group, kh, kw)
            counts["Conv"] += int(np.prod(out, dtype=np.int64)) * int(np.prod(weight[1:], dtype=np.int64))
        elif node.op_type == "Gemm":
            a, b = shape(node.input[0], node), shape(node.input[1], node)
            m, k = (a[1], a[0]) if attrs.get("transA", 0) else (a[0], a[1])
            n = b[0] if attrs.get("transB", 0) else b[1]
            counts["Gemm"] += m * n * k
        elif node.op_type == "MatMul":
            a, b = shape(node.input[0], node), shape(node.input[1], node)
            out = shape(node.output[0], node)
            k = a[-1]
            counts["MatMul"] += int(np.prod(out, dtype=np.int64)) * k
    counts["total"] = sum(counts.values())
    return counts
