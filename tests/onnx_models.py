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


TINY_INPUT_SHAPE = (1, 3, 16, 16)


def _tiny_config():
    from implementation.model_config import ModelConfig

    return ModelConfig(name="tiny", input_shape=TINY_INPUT_SHAPE, mean=(1.0, 2.0, 3.0), scale=0.5, embedding_size=10)


#: The tiny model's preprocessing, saved beside it when compiled.
TINY_CONFIG = _tiny_config()


def write_tiny_model(path: Path, seed: int = 0) -> Path:
    """A tiny float32 model with one input ``input`` of :data:`TINY_INPUT_SHAPE` and one output
    ``embedding`` (1, 10): conv 3x3 (3->8, bias) -> relu -> flatten -> gemm (8*16*16 -> 10)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.3, (8, 3, 3, 3)).astype(np.float32), "conv_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 8).astype(np.float32), "conv_b"),
        numpy_helper.from_array(rng.normal(0, 0.05, (10, 8 * 16 * 16)).astype(np.float32), "fc_w"),
        numpy_helper.from_array(rng.normal(0, 0.1, 10).astype(np.float32), "fc_b"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["c"], kernel_shape=[3, 3], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("Flatten", ["r"], ["f"], axis=1),
        helper.make_node("Gemm", ["f", "fc_w", "fc_b"], ["embedding"], transB=1),
    ]
    return save_model(path, nodes, {"input": TINY_INPUT_SHAPE}, {"embedding": (1, 10)}, inits, name="tiny")
