"""Small ONNX models written by tests, and ONNX Runtime on one thread as their reference."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np


def save_model(
    path: Path,
    nodes: Sequence,
    inputs: Mapping[str, Sequence[int]],
    outputs: Mapping[str, Sequence[int]],
    initializers: Sequence,
    name: str = "test",
) -> Path:
    """Write float32 graph ``nodes`` (opset 13, IR version 8) to ``path`` after ONNX's checker."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        list(nodes),
        name,
        [helper.make_tensor_value_info(key, TensorProto.FLOAT, list(shape)) for key, shape in inputs.items()],
        [helper.make_tensor_value_info(key, TensorProto.FLOAT, list(shape)) for key, shape in outputs.items()],
        initializer=list(initializers),
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


def run_onnxruntime(model: Path, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """All outputs of ``model`` from ONNX Runtime's CPU provider on one thread (skips without it)."""
    import pytest

    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return session.run(None, dict(feeds))
