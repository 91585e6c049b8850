"""A researcher's own ONNX embedder: `frvt compile --config-dir` gives a config the default implementation loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from onnx import helper, numpy_helper
from typer.testing import CliRunner

from frvt.cli import app
from frvt.contract import ReturnCode, TemplateRole
from frvt.driver import decode_image
from implementation import FaceVerifier
from implementation.model_config import ModelConfig
from onnx_models import save_model

MEDS = Path(__file__).resolve().parents[2] / "data" / "validation" / "images" / "meds"


def tiny_embedder(path: Path, size: int = 112, dim: int = 16) -> None:
    """Conv 3x3 stride 4 -> ReLU -> global average pool -> Gemm: a real (random-weight) embedder."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(0, 0.1, (8, 3, 3, 3)).astype(np.float32), "w")
    fc = numpy_helper.from_array(rng.normal(0, 0.3, (8, dim)).astype(np.float32), "fc")
    nodes = [
        helper.make_node("Conv", ["data", "w"], ["c"], strides=[4, 4], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["p"]),
        helper.make_node("Flatten", ["p"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["emb"]),
    ]
    save_model(path, nodes, {"data": (1, 3, size, size)}, {"emb": (1, dim)}, [w, fc], name="tiny")


def test_compile_own_embedder_into_a_config_the_default_implementation_runs(tmp_path, default_config_dir):
    tiny_embedder(tmp_path / "mine.onnx")
    cfg = ModelConfig(
        name="mine",
        input_name="data",
        input_shape=(1, 3, 112, 112),
        mean=(127.5, 127.5, 127.5),
        scale=1 / 128,
        embedding_size=16,
        chip={"kind": "dlib", "size": 150},
    )
    cfg.save(tmp_path / "mine.json")
    result = CliRunner().invoke(
        app,
        [
            "compile",
            str(tmp_path / "mine.onnx"),
            "--model-config",
            str(tmp_path / "mine.json"),
            "-o",
            str(tmp_path / "compiled"),
            "--config-dir",
            str(tmp_path / "config"),
            "--no-flip",
            "--no-progress",
        ],
    )
    assert result.exit_code == 0, result.output
    fv = FaceVerifier()
    assert fv.initialize(str(tmp_path / "config")).ok
    assert "mine (TVM, single view)" in fv.version
    a = fv.create_face_template([decode_image(MEDS / "S001/S001-01-t10_01.jpg")], TemplateRole.Enrollment_11)
    b = fv.create_face_template([decode_image(MEDS / "S001/S001-02-t10_01.jpg")], TemplateRole.Enrollment_11)
    assert a.status.code == ReturnCode.Success and len(a.template) == 16 + 4 * 16 + 4
    m = fv.match_templates(a.template, b.template)
    assert m.status.ok and 0.0 <= m.similarity <= 1.0
    # a template of the default (dlib) model is foreign to this one
    default = FaceVerifier()
    default.initialize(str(default_config_dir))
    other = default.create_face_template([decode_image(MEDS / "S001/S001-01-t10_01.jpg")], TemplateRole.Enrollment_11)
    assert fv.match_templates(other.template, a.template).status.code == ReturnCode.TemplateFormatError
