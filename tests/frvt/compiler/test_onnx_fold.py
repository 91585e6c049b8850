"""Folding constant (also blocked) DequantizeLinear weights: same outputs as ONNX Runtime."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from implementation.align import ARCFACE_TEMPLATE, align, framing_transform
from frvt.compiler.onnx_fold import dequantize, drop_inference_dropout, fold_constant_dequantize

ROOT = Path(__file__).resolve().parents[3]
SFACE = ROOT / "data" / "models" / "face_recognition_sface_2021dec_int8bq.onnx"


def _oracle_dequantize(x, scale, zp, axis, block):
    """Element by element, from ONNX's definition."""
    out = np.zeros(x.shape, np.float32)
    for idx in np.ndindex(x.shape):
        if block:
            j = list(idx)
            j[axis] //= block
            s, z = scale[tuple(j)], zp[tuple(j)]
        elif scale.ndim == 0:
            s, z = scale, zp
        else:
            s, z = scale[idx[axis]], zp[idx[axis]]
        out[idx] = (int(x[idx]) - int(z)) * np.float32(s)
    return out


@pytest.mark.parametrize("axis,block", [(0, 0), (1, 0), (0, 4), (1, 3)])
def test_dequantize_matches_the_definition(axis, block):
    rng = np.random.default_rng(axis * 10 + block)
    x = rng.integers(-128, 127, (8, 7), dtype=np.int8)
    if block:
        shape = list(x.shape)
        shape[axis] = -(-x.shape[axis] // block)
        scale = rng.random(shape).astype(np.float32)
        zp = rng.integers(-5, 5, shape).astype(np.int8)
    else:
        scale = rng.random(x.shape[axis]).astype(np.float32)
        zp = rng.integers(-5, 5, x.shape[axis]).astype(np.int8)
    np.testing.assert_array_equal(dequantize(x, scale, zp, axis, block), _oracle_dequantize(x, scale, zp, axis, block))


def _blocked_model():
    rng = np.random.default_rng(0)
    w = rng.integers(-128, 127, (6, 10), dtype=np.int8)
    s = (rng.random((6, 3)) * 0.1).astype(np.float32)
    z = rng.integers(-3, 3, (6, 3)).astype(np.int8)
    nodes = [
        helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["w"], axis=1, block_size=4),
        helper.make_node("MatMul", ["x", "wT"], ["y"]),
        helper.make_node("Transpose", ["w"], ["wT"], perm=[1, 0]),
    ]
    nodes = [nodes[0], nodes[2], nodes[1]]
    g = helper.make_graph(
        nodes,
        "g",
        [
            helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 10]),
            helper.make_tensor_value_info("wq", TensorProto.INT8, [6, 10]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 6])],
        [numpy_helper.from_array(w, "wq"), numpy_helper.from_array(s, "ws"), numpy_helper.from_array(z, "wz")],
    )
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])


def test_fold_keeps_the_outputs_of_onnx_runtime():
    ort = pytest.importorskip("onnxruntime")
    model = _blocked_model()
    x = np.random.default_rng(1).random((2, 10)).astype(np.float32)
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.input[1]  # ONNX Runtime wants initializers out of the inputs
    want = ort.InferenceSession(stripped.SerializeToString()).run(None, {"x": x})[0]
    assert fold_constant_dequantize(model) == 1
    assert [n.op_type for n in model.graph.node] == ["Transpose", "MatMul"]
    assert [i.name for i in model.graph.input] == ["x"]
    onnx.checker.check_model(model)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-6)


@pytest.mark.skipif(not SFACE.exists(), reason="SFace not extracted (python scripts/extract_sface.py)")
def test_sface_folds_to_the_same_embedding():
    ort = pytest.importorskip("onnxruntime")
    model = onnx.load(str(SFACE))
    ref = onnx.ModelProto()
    ref.CopyFrom(model)
    keep = [i for i in ref.graph.input if i.name == "data"]
    del ref.graph.input[:]
    ref.graph.input.extend(keep)
    x = np.random.default_rng(0).uniform(0, 255, (1, 3, 112, 112)).astype(np.float32)
    want = ort.InferenceSession(ref.SerializeToString()).run(None, {"data": x})[0]
    assert fold_constant_dequantize(model) == 29
    assert not any(n.op_type == "DequantizeLinear" for n in model.graph.node)
    got = ort.InferenceSession(model.SerializeToString()).run(None, {"data": x})[0]
    assert got.shape == (1, 128)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4 * float(np.abs(want).max()))


def _dropout_model(mask_read: bool, training: bool | None):
    nodes = [helper.make_node("Relu", ["x"], ["r"])]
    ins = ["r"]
    inits = []
    if training is not None:
        ins += ["ratio", "mode"]
        inits = [
            numpy_helper.from_array(np.array(0.4, np.float32), "ratio"),
            numpy_helper.from_array(np.array(training), "mode"),
        ]
    nodes.append(helper.make_node("Dropout", ins, ["d", "mask"] if mask_read else ["d"]))
    nodes.append(helper.make_node("Neg", ["d"], ["y"]))
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 3])]
    if mask_read:
        outputs.append(helper.make_tensor_value_info("mask", TensorProto.BOOL, [2, 3]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])], outputs, inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])


def test_inference_dropout_is_removed_and_a_training_one_kept():
    ort = pytest.importorskip("onnxruntime")
    x = np.random.default_rng(2).normal(size=(2, 3)).astype(np.float32)
    for training in (None, False):
        model = _dropout_model(False, training)
        want = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        assert drop_inference_dropout(model) == 1
        assert [n.op_type for n in model.graph.node] == ["Relu", "Neg"]
        onnx.checker.check_model(model)
        np.testing.assert_array_equal(ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0], want)
    assert drop_inference_dropout(_dropout_model(False, True)) == 0  # training mode: not the identity
    assert drop_inference_dropout(_dropout_model(True, None)) == 0  # its mask is read


@pytest.mark.skipif(not SFACE.exists(), reason="SFace not extracted (python scripts/extract_sface.py)")
def test_sface_prepares_with_nhwc_convolutions():
    """SFace's Dropout (a tuple in Relax) stopped the NHWC layout conversion; removed, every
    convolution is NHWC and no dropout is left."""
    pytest.importorskip("tvm")
    from frvt.compiler.compile import import_onnx, parse_target, prepare_module

    mod = prepare_module(import_onnx(SFACE), parse_target("broadwell"), conv_scheme="NHWC")
    text = mod.script()
    assert "dropout" not in text
    nhwc = "T.int64(1), T.int64(56), T.int64(56), T.int64(64))"  # channels innermost
    nchw = "T.int64(1), T.int64(64), T.int64(56), T.int64(56))"
    assert nhwc in text and nchw not in text


def test_arcface_framing():
    # landmarks already on the template (continuous coordinates = pixel index + 0.5): identity
    m = framing_transform(ARCFACE_TEMPLATE + 0.5, 112, {"kind": "arcface", "size": 112})
    np.testing.assert_allclose(m, [[1, 0, 0], [0, 1, 0]], atol=1e-9)
    # twice as large a face, shifted: scale 1/2
    m = framing_transform(2 * ARCFACE_TEMPLATE + 10.5, 112, {"kind": "arcface"})
    np.testing.assert_allclose(m[:, :2], [[0.5, 0], [0, 0.5]], atol=1e-9)
    img = np.zeros((300, 300, 3), np.uint8)
    assert align(img, 2 * ARCFACE_TEMPLATE + 10.5, 112, {"kind": "arcface"}).shape == (112, 112, 3)
    with pytest.raises(ValueError, match="unknown chip kind"):
        framing_transform(ARCFACE_TEMPLATE, 112, {"kind": "mystery"})
    with pytest.raises(ValueError, match="5 \\[x, y\\] pairs"):
        framing_transform(ARCFACE_TEMPLATE, 112, {"points": [[1, 2]]})
