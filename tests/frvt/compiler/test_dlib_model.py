"""Tests for frvt.compiler.dlib_model: dlib's serialisation, the zero-padded residual, the ONNX graph."""

from __future__ import annotations

import hashlib
import itertools
import struct
from pathlib import Path

import numpy as np
import pytest

from frvt.compiler.dlib_model import (
    FACE_RESNET_V1_ARCHITECTURE,
    DlibFormatError,
    DlibLayer,
    DlibNet,
    DlibStream,
    add_zero_padded,
    count_macs,
    encode_int,
    layer_output_shapes,
    load_dlib_net,
    parse_dlib_net,
    to_onnx,
)
from implementation.model_config import DLIB_RESNET

REPO = Path(__file__).resolve().parents[3]
DATA = REPO / ".." / "shared" / "data"
COMMITTED_ONNX = REPO / "data" / "models" / "dlib_face_recognition_resnet_model_v1.onnx"


# ---------------------------------------------------------------------------------------------
# Hand-made byte strings, written the way dlib's serialize() writes them


def enc_float(mantissa: int, exponent: int) -> bytes:
    return encode_int(mantissa) + encode_int(exponent)


def enc_string(text: str) -> bytes:
    return encode_int(len(text)) + text.encode()


def enc_tensor(array: np.ndarray, shape: tuple[int, int, int, int]) -> bytes:
    return encode_int(2) + b"".join(encode_int(d) for d in shape) + array.astype("<f4").tobytes()


def enc_alias(shape: tuple[int, int, int, int]) -> bytes:
    return encode_int(1) + b"".join(encode_int(d) for d in shape)


@pytest.mark.parametrize(
    "raw, value",
    [
        (b"\x01\x00", 0),
        (b"\x01\x7f", 127),
        (b"\x01\xff", 255),
        (b"\x02\x00\x01", 256),
        (b"\x02\x34\x12", 0x1234),
        (b"\x81\x05", -5),
        (b"\x81\x1c", -28),
        (b"\x04\xff\xff\xff\x7f", 2**31 - 1),
        (b"\x88" + (2**63).to_bytes(8, "little"), -(2**63)),
    ],
)
def test_read_int_decodes_control_byte_and_little_endian_bytes(raw, value):
    stream = DlibStream(raw)
    assert stream.read_int() == value
    assert stream.at_end()


def test_encode_int_round_trips_and_matches_dlib_byte_layout():
    for value in [0, 1, -1, 255, 256, -256, 65535, 2**31, -(2**40) + 3, 2**63 - 1, -(2**63)]:
        raw = encode_int(value)
        assert raw[0] & 0x0F == len(raw) - 1
        assert bool(raw[0] & 0x80) == (value < 0)
        assert DlibStream(raw).read_int() == value


@pytest.mark.parametrize("raw", [b"", b"\x02\x01", b"\x09" + bytes(9), b"\x41\x00"])
def test_read_int_rejects_truncated_or_malformed_bytes(raw):
    with pytest.raises(DlibFormatError):
        DlibStream(raw).read_int()


def test_read_float_is_mantissa_times_two_to_the_exponent():
    assert DlibStream(enc_float(3, -1)).read_float() == 1.5
    assert DlibStream(enc_float(-5, 2)).read_float() == -20.0
    assert DlibStream(enc_float(0, 0)).read_float() == 0.0
    # The loss margin as stored at offset 19 of dlib's face model file: float32(0.04).
    assert DlibStream(b"\x03\n\xd7\xa3\x81\x1c").read_float() == float(np.float32(0.04))
    assert DlibStream(enc_float(0, 32000)).read_float() == float("inf")
    assert DlibStream(enc_float(0, 32001)).read_float() == float("-inf")
    assert np.isnan(DlibStream(enc_float(0, 32002)).read_float())


def test_read_float_recovers_float32_values_written_like_dlib_float_details():
    for value in np.float32([122.782, 117.001, 104.298, 1e-30, -3.25, 0.6]):
        mantissa, exponent = np.frexp(np.float64(value))
        m, e = int(mantissa * 2**24), int(exponent) - 24  # float: 24 mantissa digits
        while m and m & 0xFF == 0:  # dlib drops zero low bytes
            m, e = m >> 8, e + 8
        assert DlibStream(enc_float(m, e)).read_float() == float(value)


def test_read_string_and_bool():
    stream = DlibStream(enc_string("con_4") + b"10")
    assert stream.peek_string() == "con_4"
    assert stream.read_string() == "con_4"
    assert stream.read_bool() is True
    assert stream.read_bool() is False
    with pytest.raises(DlibFormatError):
        DlibStream(b"x").read_bool()


def test_read_tensor_gives_nkrc_float32_little_endian():
    raw = encode_int(2) + b"".join(encode_int(d) for d in (1, 2, 1, 2)) + struct.pack("<4f", 1.0, -2.0, 0.5, 3.0)
    stream = DlibStream(raw)
    tensor = stream.read_tensor()
    assert tensor.dtype == np.float32
    assert tensor.shape == (1, 2, 1, 2)
    np.testing.assert_array_equal(tensor[0, :, 0, :], [[1.0, -2.0], [0.5, 3.0]])
    assert stream.at_end()


def test_read_tensor_rejects_wrong_version_and_short_data():
    with pytest.raises(DlibFormatError, match="version"):
        DlibStream(encode_int(1) + b"".join(encode_int(d) for d in (1, 1, 1, 1)) + bytes(4)).read_tensor()
    with pytest.raises(DlibFormatError, match="end of data"):
        DlibStream(encode_int(2) + b"".join(encode_int(d) for d in (1, 1, 1, 2)) + bytes(4)).read_tensor()


# ---------------------------------------------------------------------------------------------
# The zero-padded residual addition


def dlib_add_loop(src1: np.ndarray, src2: np.ndarray) -> np.ndarray:
    """dlib's cpu tt::add(dest, src1, src2) bounds-checked loop, transcribed literally."""
    dest = np.empty(tuple(max(a, b) for a, b in zip(src1.shape, src2.shape)), dtype=np.float32)
    for idx in itertools.product(*(range(d) for d in dest.shape)):
        v1 = src1[idx] if all(i < d for i, d in zip(idx, src1.shape)) else 0.0
        v2 = src2[idx] if all(i < d for i, d in zip(idx, src2.shape)) else 0.0
        dest[idx] = v1 + v2
    return dest


@pytest.mark.parametrize(
    "shape1, shape2",
    [((1, 2, 3, 3), (1, 4, 3, 3)), ((1, 4, 3, 3), (1, 4, 4, 4)), ((1, 3, 4, 2), (1, 2, 3, 5)), ((1, 2, 2, 2),) * 2],
)
def test_add_zero_padded_matches_dlib_loop(shape1, shape2):
    rng = np.random.default_rng(1)
    a = rng.normal(size=shape1).astype(np.float32)
    b = rng.normal(size=shape2).astype(np.float32)
    np.testing.assert_array_equal(add_zero_padded(a, b), dlib_add_loop(a, b))


def conv2d_reference(x: np.ndarray, w: np.ndarray, bias: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """Cross-correlation (dlib's and cuDNN's convolution) with loops over output pixels."""
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    f, _, kr, kc = w.shape
    rows = 1 + (x.shape[2] - kr) // stride
    cols = 1 + (x.shape[3] - kc) // stride
    out = np.zeros((x.shape[0], f, rows, cols), dtype=np.float64)
    for r in range(rows):
        for c in range(cols):
            window = x[:, :, r * stride : r * stride + kr, c * stride : c * stride + kc]
            out[:, :, r, c] = np.einsum("nkij,fkij->nf", window, w) + bias
    return out


def test_onnx_residual_zero_pads_channels_and_rows_as_dlib_does():
    ort = pytest.importorskip("onnxruntime")
    rng = np.random.default_rng(2)
    filters = rng.normal(size=(4, 3, 3, 3)).astype(np.float32)
    bias = rng.normal(size=4).astype(np.float32)
    gamma = rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    beta = rng.normal(size=(1, 4, 1, 1)).astype(np.float32)
    # input (3, 9, 9) -> tag1 -> conv 3x3 stride 2 -> (4, 4, 4) -> affine -> add_prev1 -> (4, 9, 9) -> relu
    # The shortcut is padded with a channel, the block output with 5 rows and 5 columns.
    net = DlibNet(
        input_kind="input_rgb_image_sized",
        input_mean=(0.0, 0.0, 0.0),
        input_size=(9, 9),
        layers=(
            DlibLayer("tag", {"id": 1}),
            DlibLayer(
                "con",
                {"num_filters": 4, "kernel": (3, 3), "stride": (2, 2), "padding": (0, 0)},
                {"filters": filters, "bias": bias},
            ),
            DlibLayer("affine", {"mode": 0}, {"gamma": gamma, "beta": beta}),
            DlibLayer("add_prev", {"id": 1}),
            DlibLayer("relu"),
        ),
        loss={"kind": "loss_metric"},
    )
    assert layer_output_shapes(net)[-1] == (1, 4, 9, 9)
    model = to_onnx(net)
    assert sum(node.op_type == "Pad" for node in model.graph.node) == 2
    x = rng.normal(size=(1, 3, 9, 9)).astype(np.float32)
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    got = session.run(["embedding"], {"input": x})[0]
    block = conv2d_reference(x, filters, bias, stride=2, pad=0) * gamma + beta
    want = np.maximum(dlib_add_loop(block.astype(np.float32), x), 0)
    assert got.shape == (1, 4, 9, 9)
    np.testing.assert_allclose(got, want, atol=1e-5)
    assert np.all(got[0, 3, 4:, 4:] == 0)  # outside both inputs: padding from both sides


# ---------------------------------------------------------------------------------------------
# A hand-made network file


def tiny_net_bytes(filters: np.ndarray, bias: np.ndarray, weight: np.ndarray) -> bytes:
    """relu<fc_no_bias<2, add_prev1<relu<con<2,1,1,1,1, tag1<input>>>>>> wrapped in loss_metric, as dlib writes it."""
    state = b"100" + enc_tensor(np.zeros(0), (0, 0, 0, 0)) * 3  # three bools, three empty tensors
    head = encode_int(1) + enc_string("loss_metric_2") + enc_float(0xA3D70A, -28) + enc_float(0x99999A, -24)
    # versions from the outside in: fc(2) add_prev(2) con(2) tag(1), then the input's add_layer (3)
    versions = b"".join(encode_int(v) for v in (2, 2, 2, 1, 3))
    input_layer = enc_string("input_rgb_image_sized") + enc_float(1, 0) * 3 + encode_int(4) + encode_int(4)
    # then each layer's details and state from the input outwards; the input's add_layer (relu)
    # also stores its sample expansion factor (version 3)
    relu = enc_string("relu_") + state + encode_int(1)
    multipliers = enc_float(1, 0) * 4
    con = (
        enc_string("con_4")
        + enc_tensor(np.concatenate([filters.ravel(), bias]), (1, filters.size + 2, 1, 1))
        + b"".join(encode_int(v) for v in (2, 1, 1, 1, 1, 0, 0))
        + enc_alias(filters.shape)
        + enc_alias((1, 2, 1, 1))
        + multipliers
        + state
    )
    add_prev = enc_string("add_prev_") + state
    fc = (
        enc_string("fc_2")
        + encode_int(2)
        + encode_int(48)
        + enc_tensor(weight, (48, 2, 1, 1))
        + enc_alias((48, 2, 1, 1))
        + enc_alias((0, 0, 0, 0))
        + encode_int(1)  # FC_NO_BIAS
        + multipliers
        + state
    )
    return head + versions + input_layer + relu + con + add_prev + fc


TINY_ARCHITECTURE = (("relu",), ("tag", 1), ("con", 2, 1), ("add_prev", 1), ("fc", 2))


def test_parse_hand_made_network_file():
    rng = np.random.default_rng(3)
    filters = rng.normal(size=(2, 3, 1, 1)).astype(np.float32)
    bias = rng.normal(size=2).astype(np.float32)
    weight = rng.normal(size=(48, 2)).astype(np.float32)
    net = parse_dlib_net(tiny_net_bytes(filters, bias, weight), TINY_ARCHITECTURE)
    assert [layer.kind for layer in net.layers] == ["relu", "tag", "con", "add_prev", "fc"]
    assert net.input_size == (4, 4) and net.input_mean == (1.0, 1.0, 1.0)
    assert net.loss["margin"] == float(np.float32(0.04)) and net.loss["distance_threshold"] == float(np.float32(0.6))
    np.testing.assert_array_equal(net.layers[2].weights["filters"], filters)
    np.testing.assert_array_equal(net.layers[2].weights["bias"], bias)
    np.testing.assert_array_equal(net.layers[4].weights["weight"], weight)
    assert net.layers[4].attrs["has_bias"] is False
    assert net.layers[3].attrs == {"id": 1}
    assert net.n_params == 6 + 2 + 96
    assert layer_output_shapes(net)[3:] == [(1, 3, 4, 4), (1, 2, 1, 1)]  # relu'd input (3 ch) + conv (2 ch)


def test_parse_rejects_truncated_file_and_wrong_architecture():
    rng = np.random.default_rng(4)
    data = tiny_net_bytes(
        rng.normal(size=(2, 3, 1, 1)).astype(np.float32), np.zeros(2, np.float32), np.zeros((48, 2), np.float32)
    )
    with pytest.raises(DlibFormatError):
        parse_dlib_net(data[:-5], TINY_ARCHITECTURE)
    with pytest.raises(DlibFormatError, match="layer 1"):
        parse_dlib_net(data, (("relu",), ("relu",), ("con", 2, 1), ("add_prev", 1), ("fc", 2)))
    with pytest.raises(DlibFormatError, match="does not match"):
        parse_dlib_net(data, (("relu",), ("tag", 1), ("con", 8, 1), ("add_prev", 1), ("fc", 2)))
    with pytest.raises(DlibFormatError):
        parse_dlib_net(data, FACE_RESNET_V1_ARCHITECTURE)


# ---------------------------------------------------------------------------------------------
# The real model


@pytest.fixture(scope="module")
def dat_path() -> Path:
    face_recognition_models = pytest.importorskip("face_recognition_models")
    path = Path(face_recognition_models.face_recognition_model_location())
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


@pytest.fixture(scope="module")
def net(dat_path) -> DlibNet:
    return load_dlib_net(dat_path)


@pytest.fixture(scope="module")
def onnx_bytes(net) -> bytes:
    return to_onnx(net).SerializeToString()


def test_real_model_layer_counts(net):
    assert net.n_convs == 29
    assert net.n_params == 5_614_592
    counts = {kind: net.count(kind) for kind in ("affine", "relu", "max_pool", "avg_pool", "add_prev", "fc", "tag")}
    assert counts == {"affine": 29, "relu": 29, "max_pool": 1, "avg_pool": 5, "add_prev": 14, "fc": 1, "tag": 18}
    assert net.input_size == (150, 150)
    np.testing.assert_allclose(net.input_mean, DLIB_RESNET.mean, atol=1e-4)
    assert net.loss["distance_threshold"] == pytest.approx(0.6)
    assert layer_output_shapes(net)[-1] == (1, 128, 1, 1)
    assert count_macs(net) == 270_854_144
    first = net.layers[0]
    assert first.weights["filters"].shape == (32, 3, 7, 7) and first.attrs["stride"] == (2, 2)


def test_real_model_residuals_include_spatial_zero_padding(net):
    shapes = layer_output_shapes(net)
    mismatched = []
    tags = {}
    for layer, shape, before in zip(net.layers, shapes, [(1, 3, 150, 150)] + shapes[:-1]):
        if layer.kind == "tag":
            tags[layer.attrs["id"]] = shape
        if layer.kind == "add_prev" and before != tags[layer.attrs["id"]]:
            mismatched.append((before, tags[layer.attrs["id"]], shape))
    # (pooled shortcut, block output tagged tag2, sum) at the four down-sampling blocks
    assert mismatched == [
        ((1, 32, 17, 17), (1, 64, 17, 17), (1, 64, 17, 17)),
        ((1, 64, 8, 8), (1, 128, 8, 8), (1, 128, 8, 8)),
        ((1, 128, 4, 4), (1, 256, 3, 3), (1, 256, 4, 4)),
        ((1, 256, 2, 2), (1, 256, 1, 1), (1, 256, 2, 2)),
    ]


def test_onnx_graph_interface_and_ops(onnx_bytes):
    onnx = pytest.importorskip("onnx")
    model = onnx.load_from_string(onnx_bytes)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["embedding"]
    dims = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == list(DLIB_RESNET.input_shape)
    assert [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim] == [1, 128]
    ops = {node.op_type for node in model.graph.node}
    assert ops <= {
        "Conv",
        "Mul",
        "Add",
        "Relu",
        "MaxPool",
        "AveragePool",
        "Pad",
        "GlobalAveragePool",
        "Flatten",
        "MatMul",
    }
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 29


def test_committed_onnx_is_what_the_converter_writes(onnx_bytes):
    if not COMMITTED_ONNX.is_file():
        pytest.skip(f"{COMMITTED_ONNX} not generated yet (python scripts/convert_dlib_model.py)")
    assert hashlib.sha256(COMMITTED_ONNX.read_bytes()).hexdigest() == hashlib.sha256(onnx_bytes).hexdigest()


def face_images(n_each: int) -> list[Path]:
    meds = sorted((DATA / "meds").glob("*/*.jpg"))[:n_each]
    lfw = sorted((DATA / "lfw" / "lfw-deepfunneled").glob("*/*.jpg"))[::500][:n_each]
    return meds + lfw


def normalise(chip: np.ndarray) -> np.ndarray:
    """The embedder's input as the pipeline makes it (one source: ``DLIB_RESNET``)."""
    return DLIB_RESNET.batch(DLIB_RESNET.network_input(chip))


def test_onnx_descriptors_equal_dlib_on_real_faces(dat_path, onnx_bytes):
    dlib = pytest.importorskip("dlib")
    ort = pytest.importorskip("onnxruntime")
    import face_recognition_models

    paths = face_images(3)
    if not paths:
        pytest.skip(f"no face images under {DATA}")
    detector = dlib.get_frontal_face_detector()
    predictor = dlib.shape_predictor(face_recognition_models.pose_predictor_five_point_model_location())
    reference = dlib.face_recognition_model_v1(str(dat_path))
    session = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"])
    n_compared = 0
    for path in paths:
        img = dlib.load_rgb_image(str(path))
        faces = detector(img, 1)
        if len(faces) == 0:
            continue
        chip = np.asarray(dlib.get_face_chip(img, predictor(img, faces[0]), size=150, padding=0.25))
        want = np.asarray(reference.compute_face_descriptor(chip), dtype=np.float32)
        got = session.run(["embedding"], {"input": normalise(chip)})[0][0]
        assert np.max(np.abs(got - want)) < 1e-4, path.name
        n_compared += 1
    assert n_compared >= 3


def test_tvm_relax_matches_onnxruntime(onnx_bytes):
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    tvm = pytest.importorskip("tvm")
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx

    mod = from_onnx(onnx.load_from_string(onnx_bytes))
    executable = tvm.compile(mod, target=tvm.target.Target({"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}))
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = np.random.default_rng(5).uniform(-0.5, 0.5, size=DLIB_RESNET.input_shape).astype(np.float32)
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    want = ort.InferenceSession(onnx_bytes, providers=["CPUExecutionProvider"]).run(["embedding"], {"input": x})[0]
    assert got.shape == (1, 128)
    assert np.max(np.abs(got - want)) < 1e-4


def test_default_tuned_embedder_matches_onnxruntime(default_config_dir):
    """The embedder the default implementation runs: built with the committed tuning database
    for its input shape (a batch of two: the chip and its mirror image) and that database's
    convolution scheme (NHWC-winograd transforms the inputs and kernels, so its rounding differs
    from a direct convolution's); each image's embedding must still agree with ONNX Runtime's
    within 1e-4."""
    import json

    ort = pytest.importorskip("onnxruntime")
    from frvt.compiler import databases
    from implementation.tvm_runtime import CompiledModel

    embedder = default_config_dir / "embedder"
    metadata = json.loads((embedder / "metadata.json").read_text())
    onnx_path = embedder / "model.onnx"
    shape = tuple(metadata["input_shape"])
    database = databases.find_tuned_database(onnx_path, metadata["target"], input_shape=shape)
    assert metadata["tuned"] and database is not None and Path(metadata["database"]).name == database.name
    # (artefacts compiled before the field existed were NCHW, and NCHW keys did not change)
    assert metadata.get("conv_scheme", "NCHW") == databases.database_conv_scheme(database)
    x = np.random.default_rng(6).uniform(-1.5, 1.5, size=shape).astype(np.float32)
    got = CompiledModel.load(embedder)(x)[0]
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(["embedding"], {"input": image[None]})[0] for image in x])
    assert got.shape == want.shape and np.max(np.abs(got - want)) < 1e-4
