"""Read dlib's face recognition ResNet (``dlib_face_recognition_resnet_model_v1.dat``) and write it as ONNX.

Only numpy and onnx are needed: dlib itself is not imported. The conversion has two steps:

1. :func:`load_dlib_net` decodes dlib's binary serialisation into a :class:`DlibNet`, a plain
   list of layers from the input to the output, each with its hyper-parameters and numpy weights.
2. :func:`to_onnx` writes that list as an ONNX graph (opset 13) made of Conv, Mul/Add (dlib's
   ``affine`` layers, i.e. frozen batch norm), Relu, MaxPool, AveragePool, Pad + Add (dlib's
   residual ``add_prev``), GlobalAveragePool and MatMul.

dlib's serialisation (``dlib/serialize.h``, ``dlib/float_details.h``, ``dlib/dnn/core.h``,
``dlib/dnn/layers.h``, ``dlib/dnn/tensor.h``):

* an integer is one control byte (low nibble: number of little-endian magnitude bytes that follow,
  bit 7: negative) and then those bytes;
* a float is a pair of integers (mantissa, exponent) meaning ``mantissa * 2**exponent``, with the
  exponents 32000, 32001, 32002 standing for +inf, -inf and NaN;
* a string is its length (an integer) and then its bytes; a bool is the character '0' or '1';
* a tensor is a version integer (2), then (n, k, nr, nc) and then n*k*nr*nc little-endian float32;
  an alias tensor (a view into a layer's parameter tensor) is a version (1) and (n, k, nr, nc);
* a network writes its own version first and then the network beneath it, and only afterwards its
  own layer, so the file holds the loss layer, the version numbers of all layers from the output
  inwards, the input layer, and then each layer's parameters from the input outwards.

The file does not say which wrapper is a ``tag`` and which a ``skip``, nor which tag a residual
``add_prev`` reads: both are fixed by the C++ type of the network. They are taken from the network
definition in dlib's ``examples/dnn_face_recognition_ex.cpp`` (:data:`FACE_RESNET_V1_ARCHITECTURE`),
and every decoded layer is checked against it.

dlib's residual addition (``add_prev_``, ``tt::add``) does not require equal shapes: the output has
the larger size in every dimension and the smaller input is zero-padded at the end (more channels,
bottom rows, right columns). In this model that happens at every down-sampling block (channels
double) and once spatially (a 3x3 block output is added to a 4x4 pooled shortcut).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 13

_FLOAT_IS_INF = 32000
_FLOAT_IS_NINF = 32001
_FLOAT_IS_NAN = 32002


class DlibFormatError(ValueError):
    """The bytes are not a dlib network of the expected kind; the message names the offset."""


# ---------------------------------------------------------------------------------------------
# Primitive decoding


class DlibStream:
    """A cursor over bytes in dlib's serialisation format.

    Parameters
    ----------
    data : bytes
        The serialised bytes.
    pos : int
        Offset of the first byte to read.

    Examples
    --------
    >>> DlibStream(bytes([0x81, 0x05])).read_int()
    -5
    >>> DlibStream(bytes([0x01, 0x03, 0x81, 0x01])).read_float()
    1.5
    """

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = memoryview(data)
        self.pos = pos

    def _take(self, n: int) -> memoryview:
        if n < 0 or self.pos + n > len(self.data):
            raise DlibFormatError(
                f"unexpected end of data: need {n} bytes at offset {self.pos}, have {len(self.data) - self.pos}"
            )
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def at_end(self) -> bool:
        """True when every byte has been read."""
        return self.pos == len(self.data)

    def read_int(self) -> int:
        """One integer: control byte (size in the low nibble, sign in bit 7), then LE magnitude bytes."""
        start = self.pos
        control = self._take(1)[0]
        size = control & 0x0F
        if size > 8 or control & 0x70:
            raise DlibFormatError(f"bad integer control byte 0x{control:02x} at offset {start}")
        value = int.from_bytes(self._take(size), "little")
        return -value if control & 0x80 else value

    def read_float(self) -> float:
        """One float: the integer pair (mantissa, exponent), value mantissa * 2**exponent."""
        mantissa = self.read_int()
        exponent = self.read_int()
        if exponent == _FLOAT_IS_INF:
            return float("inf")
        if exponent == _FLOAT_IS_NINF:
            return float("-inf")
        if exponent == _FLOAT_IS_NAN:
            return float("nan")
        return float(np.ldexp(float(mantissa), exponent))

    def read_string(self) -> str:
        """One string: its length as an integer, then that many bytes."""
        start = self.pos
        size = self.read_int()
        if size < 0:
            raise DlibFormatError(f"negative string length {size} at offset {start}")
        return bytes(self._take(size)).decode("latin-1")

    def peek_string(self) -> str | None:
        """The string at the cursor if the bytes there look like a short printable one, else None."""
        start = self.pos
        try:
            text = self.read_string()
        except DlibFormatError:
            return None
        finally:
            self.pos = start
        if 0 < len(text) <= 64 and all(c.isalnum() or c == "_" for c in text):
            return text
        return None

    def read_bool(self) -> bool:
        """One bool: the character '0' or '1'."""
        start = self.pos
        char = self._take(1)[0]
        if char not in (ord("0"), ord("1")):
            raise DlibFormatError(f"bad bool byte 0x{char:02x} at offset {start}")
        return char == ord("1")

    def read_tensor(self) -> np.ndarray:
        """One tensor: version 2, (n, k, nr, nc), then float32 LE data; returned with shape (n, k, nr, nc)."""
        start = self.pos
        version = self.read_int()
        if version != 2:
            raise DlibFormatError(f"tensor version {version} at offset {start}, expected 2")
        shape = tuple(self.read_int() for _ in range(4))
        if any(d < 0 for d in shape):
            raise DlibFormatError(f"negative tensor shape {shape} at offset {start}")
        count = int(np.prod(shape))
        raw = self._take(4 * count)
        return np.frombuffer(raw, dtype="<f4").astype(np.float32).reshape(shape)

    def read_alias_tensor(self) -> tuple[int, int, int, int]:
        """One alias tensor (a view's shape): version 1, then (n, k, nr, nc)."""
        start = self.pos
        version = self.read_int()
        if version != 1:
            raise DlibFormatError(f"alias tensor version {version} at offset {start}, expected 1")
        return tuple(self.read_int() for _ in range(4))  # type: ignore[return-value]


def encode_int(value: int) -> bytes:
    """dlib's encoding of one integer (the inverse of :meth:`DlibStream.read_int`).

    >>> encode_int(-5).hex()
    '8105'
    """
    magnitude = abs(int(value))
    body = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(body) | (0x80 if value < 0 else 0)]) + body


# ---------------------------------------------------------------------------------------------
# In-memory description


@dataclass(frozen=True)
class DlibLayer:
    """One layer of a dlib network, in the order data flows (input to output).

    Attributes
    ----------
    kind : str
        ``"con"``, ``"affine"``, ``"relu"``, ``"max_pool"``, ``"avg_pool"``, ``"fc"``,
        ``"tag"`` (remember the current tensor under ``attrs["id"]``), ``"skip"`` (make the
        tensor remembered under ``attrs["id"]`` current again) or ``"add_prev"`` (add the
        tensor remembered under ``attrs["id"]`` to the current one, zero-padding the smaller).
    attrs : dict
        Hyper-parameters: for ``con`` ``num_filters``, ``kernel`` (rows, cols), ``stride``
        (y, x), ``padding`` (y, x); for pools ``kernel`` (0 means the whole input), ``stride``,
        ``padding``; for ``fc`` ``num_outputs``, ``num_inputs``, ``has_bias``; for ``affine``
        ``mode`` (0 per channel, 1 per element); for tags ``id``.
    weights : dict of str to numpy.ndarray
        float32 arrays: ``con`` ``filters`` (num_filters, in_channels, rows, cols) and ``bias``
        (num_filters,); ``affine`` ``gamma`` and ``beta`` (1, channels, 1, 1) for per-channel mode;
        ``fc`` ``weight`` (num_inputs, num_outputs) and optionally ``bias`` (num_outputs,).
    """

    kind: str
    attrs: dict = field(default_factory=dict)
    weights: dict = field(default_factory=dict)

    @property
    def n_params(self) -> int:
        """Number of learned scalars in this layer."""
        return int(sum(w.size for w in self.weights.values()))


@dataclass(frozen=True)
class DlibNet:
    """A decoded dlib network.

    Attributes
    ----------
    input_kind : str
        dlib's input layer name, e.g. ``"input_rgb_image_sized"``.
    input_mean : tuple of float
        Mean pixel value (red, green, blue) that dlib subtracts; dlib then divides by 256.
    input_size : tuple of int
        (rows, cols) of the input image.
    layers : tuple of DlibLayer
        Layers in data-flow order, including ``tag``/``skip``/``add_prev`` structure.
    loss : dict
        The loss layer: ``kind`` and its stored settings (``margin``, ``distance_threshold``).
    """

    input_kind: str
    input_mean: tuple[float, float, float]
    input_size: tuple[int, int]
    layers: tuple[DlibLayer, ...]
    loss: dict

    @property
    def n_params(self) -> int:
        """Number of learned scalars (convolutions, biases, affine gamma/beta, fully connected)."""
        return sum(layer.n_params for layer in self.layers)

    @property
    def n_convs(self) -> int:
        """Number of convolution layers."""
        return sum(layer.kind == "con" for layer in self.layers)

    def count(self, kind: str) -> int:
        """Number of layers of one kind (see :attr:`DlibLayer.kind`)."""
        return sum(layer.kind == kind for layer in self.layers)


# ---------------------------------------------------------------------------------------------
# The network type, from dlib's examples/dnn_face_recognition_ex.cpp (input to output)


def _block(n: int, stride: int) -> list[tuple]:
    # block = BN<con<N,3,3,1,1, relu<BN<con<N,3,3,stride,stride, SUBNET>>>>>
    return [("con", n, stride), ("affine",), ("relu",), ("con", n, 1), ("affine",)]


def _ares(n: int) -> list[tuple]:
    # ares = relu<add_prev1<block<N,affine,1,tag1<SUBNET>>>>
    return [("tag", 1), *_block(n, 1), ("add_prev", 1), ("relu",)]


def _ares_down(n: int) -> list[tuple]:
    # ares_down = relu<add_prev2<avg_pool<2,2,2,2,skip1<tag2<block<N,affine,2,tag1<SUBNET>>>>>>>
    return [("tag", 1), *_block(n, 2), ("tag", 2), ("skip", 1), ("avg_pool",), ("add_prev", 2), ("relu",)]


FACE_RESNET_V1_ARCHITECTURE: tuple[tuple, ...] = tuple(
    [("con", 32, 2), ("affine",), ("relu",), ("max_pool",)]
    + _ares(32) * 3  # alevel4
    + _ares_down(64)
    + _ares(64) * 3  # alevel3
    + _ares_down(128)
    + _ares(128) * 2  # alevel2
    + _ares_down(256)
    + _ares(256) * 2  # alevel1
    + _ares_down(256)  # alevel0
    + [("avg_pool",), ("fc", 128)]  # avg_pool_everything, fc_no_bias<128>
)
"""dlib's ``anet_type``, input to output: (kind, ...) where con is (kind, filters, stride),
tag/skip/add_prev are (kind, tag id) and fc is (kind, outputs)."""


# ---------------------------------------------------------------------------------------------
# Layer decoders: each reads one layer's "details" (its string version and fields)


def _read_con(s: DlibStream, version: str) -> DlibLayer:
    if version != "con_4":
        raise DlibFormatError(f"unsupported convolution version {version!r} before offset {s.pos}")
    params = s.read_tensor().reshape(-1)
    num_filters = s.read_int()
    kernel = (s.read_int(), s.read_int())
    stride = (s.read_int(), s.read_int())
    padding = (s.read_int(), s.read_int())
    filters_shape = s.read_alias_tensor()
    bias_shape = s.read_alias_tensor()
    for _ in range(4):  # learning-rate and weight-decay multipliers
        s.read_float()
    n_filter = int(np.prod(filters_shape))
    n_bias = int(np.prod(bias_shape))
    if params.size != n_filter + n_bias or filters_shape[0] != num_filters or n_bias != num_filters:
        raise DlibFormatError(
            f"convolution parameters of size {params.size} do not match filters {filters_shape} "
            f"and bias {bias_shape} before offset {s.pos}"
        )
    return DlibLayer(
        "con",
        {"num_filters": num_filters, "kernel": kernel, "stride": stride, "padding": padding},
        {"filters": params[:n_filter].reshape(filters_shape).copy(), "bias": params[n_filter:].copy()},
    )


def _read_affine(s: DlibStream, version: str) -> DlibLayer:
    if version != "affine_":
        raise DlibFormatError(f"unsupported affine version {version!r} before offset {s.pos}")
    params = s.read_tensor().reshape(-1)
    gamma_shape = s.read_alias_tensor()
    beta_shape = s.read_alias_tensor()
    mode = 0
    if s.pos < len(s.data) and s.data[s.pos] not in (ord("0"), ord("1")):
        mode = s.read_int()  # newer dlib writes the mode (0 CONV_MODE, 1 FC_MODE); older files do not
    n = int(np.prod(gamma_shape))
    if params.size != 2 * n or int(np.prod(beta_shape)) != n:
        raise DlibFormatError(
            f"affine parameters of size {params.size} do not match {gamma_shape} before offset {s.pos}"
        )
    return DlibLayer(
        "affine",
        {"mode": mode},
        {"gamma": params[:n].reshape(gamma_shape).copy(), "beta": params[n:].reshape(beta_shape).copy()},
    )


def _read_pool(s: DlibStream, version: str) -> DlibLayer:
    kind = version[: -len("_2")]
    kernel = (s.read_int(), s.read_int())
    stride = (s.read_int(), s.read_int())
    padding = (s.read_int(), s.read_int())
    return DlibLayer(kind, {"kernel": kernel, "stride": stride, "padding": padding})


def _read_fc(s: DlibStream, version: str) -> DlibLayer:
    if version != "fc_2":
        raise DlibFormatError(f"unsupported fc version {version!r} before offset {s.pos}")
    num_outputs = s.read_int()
    num_inputs = s.read_int()
    params = s.read_tensor().reshape(-1)
    weight_shape = s.read_alias_tensor()
    bias_shape = s.read_alias_tensor()
    bias_mode = s.read_int()  # FC_HAS_BIAS = 0, FC_NO_BIAS = 1
    for _ in range(4):
        s.read_float()
    has_bias = bias_mode == 0
    n_weight = num_inputs * num_outputs
    if params.size != n_weight + (num_outputs if has_bias else 0):
        raise DlibFormatError(f"fc parameters of size {params.size} do not match {weight_shape}/{bias_shape}")
    weights = {"weight": params[:n_weight].reshape(num_inputs, num_outputs).copy()}
    if has_bias:
        weights["bias"] = params[n_weight:].copy()
    return DlibLayer("fc", {"num_outputs": num_outputs, "num_inputs": num_inputs, "has_bias": has_bias}, weights)


def _read_details(s: DlibStream) -> DlibLayer:
    start = s.pos
    version = s.read_string()
    if version.startswith("con_"):
        return _read_con(s, version)
    if version.startswith("affine"):
        return _read_affine(s, version)
    if version == "relu_":
        return DlibLayer("relu")
    if version in ("max_pool_2", "avg_pool_2"):
        return _read_pool(s, version)
    if version.startswith("fc_"):
        return _read_fc(s, version)
    if version == "add_prev_":
        return DlibLayer("add_prev")
    raise DlibFormatError(f"unsupported layer {version!r} at offset {start}")


def _skip_layer_state(s: DlibStream, n_tensors: int) -> None:
    """Skip add_layer's bookkeeping: three bools then n_tensors tensors (gradients, cached output)."""
    for _ in range(3):
        s.read_bool()
    for _ in range(n_tensors):
        s.read_tensor()


# ---------------------------------------------------------------------------------------------
# The network


def parse_dlib_net(data: bytes, architecture: tuple[tuple, ...] = FACE_RESNET_V1_ARCHITECTURE) -> DlibNet:
    """Decode a serialised dlib ``loss_metric`` network whose layer sequence is ``architecture``.

    Parameters
    ----------
    data : bytes
        The content of a dlib ``.dat`` network file.
    architecture : tuple of tuple
        The expected layers, input to output (see :data:`FACE_RESNET_V1_ARCHITECTURE`); it names
        the tag/skip wrappers and the tag each ``add_prev`` reads, which the file does not store.

    Returns
    -------
    DlibNet

    Raises
    ------
    DlibFormatError
        If the bytes are not such a network; the message names the offset or the layer.
    """
    s = DlibStream(data)
    loss_version = s.read_int()
    if loss_version != 1:
        raise DlibFormatError(f"loss layer version {loss_version} at offset 0, expected 1")
    loss_kind = s.read_string()
    if loss_kind == "loss_metric_2":
        loss = {"kind": "loss_metric", "margin": s.read_float(), "distance_threshold": s.read_float()}
    elif loss_kind == "loss_metric_":
        loss = {"kind": "loss_metric"}
    else:
        raise DlibFormatError(f"unsupported loss layer {loss_kind!r}; expected loss_metric")

    # Versions from the output inwards: 1 for tag/skip wrappers, 2 for computational layers,
    # until the innermost add_layer whose sub-network is the input layer.
    outer_versions: list[int] = []
    while True:
        version = s.read_int()
        name = s.peek_string()
        if name is not None and name.startswith("input"):
            input_layer_version = version
            break
        if version not in (1, 2):
            raise DlibFormatError(f"unexpected network version {version} before offset {s.pos}")
        outer_versions.append(version)
        if len(outer_versions) > 10_000:
            raise DlibFormatError("no input layer found")

    input_kind = s.read_string()
    if input_kind != "input_rgb_image_sized":
        raise DlibFormatError(f"unsupported input layer {input_kind!r}")
    input_mean = (s.read_float(), s.read_float(), s.read_float())
    input_size = (s.read_int(), s.read_int())
    if input_layer_version not in (2, 3):
        raise DlibFormatError(f"input add_layer version {input_layer_version}, expected 2 or 3")

    # Parameters from the input outwards.
    decoded: list[DlibLayer | None] = [_read_details(s)]
    _skip_layer_state(s, 3)  # x_grad, cached_output, grad_final
    if input_layer_version == 3:
        s.read_int()  # sample expansion factor
    for version in reversed(outer_versions):
        if version == 1:
            decoded.append(None)  # a tag or skip wrapper: nothing stored
            continue
        decoded.append(_read_details(s))
        _skip_layer_state(s, 3)  # x_grad, cached_output, params_grad
    if not s.at_end():
        raise DlibFormatError(f"{len(s.data) - s.pos} unread bytes after offset {s.pos}")

    layers = _match_architecture(decoded, architecture)
    return DlibNet(input_kind, input_mean, input_size, tuple(layers), loss)


def _match_architecture(decoded: list[DlibLayer | None], architecture: tuple[tuple, ...]) -> list[DlibLayer]:
    """Check the decoded layers against ``architecture`` and fill in the tag/skip structure."""
    if len(decoded) != len(architecture):
        raise DlibFormatError(f"the file has {len(decoded)} layers, the architecture {len(architecture)}")
    layers = []
    for i, (layer, expected) in enumerate(zip(decoded, architecture)):
        kind = expected[0]
        if kind in ("tag", "skip"):
            if layer is not None:
                raise DlibFormatError(f"layer {i}: expected a {kind} wrapper, found {layer.kind}")
            layers.append(DlibLayer(kind, {"id": expected[1]}))
            continue
        if layer is None or layer.kind != kind:
            found = "a tag/skip wrapper" if layer is None else layer.kind
            raise DlibFormatError(f"layer {i}: expected {kind}, found {found}")
        if kind == "con" and (layer.attrs["num_filters"], layer.attrs["stride"][0]) != expected[1:]:
            raise DlibFormatError(f"layer {i}: convolution {layer.attrs} does not match {expected}")
        if kind == "fc" and layer.attrs["num_outputs"] != expected[1]:
            raise DlibFormatError(f"layer {i}: fc {layer.attrs} does not match {expected}")
        if kind == "add_prev":
            layer = DlibLayer("add_prev", {"id": expected[1]})
        layers.append(layer)
    return layers


def load_dlib_net(path: str | Path) -> DlibNet:
    """Read ``dlib_face_recognition_resnet_model_v1.dat`` (or a network of the same type).

    Parameters
    ----------
    path : str or Path
        The ``.dat`` file.

    Returns
    -------
    DlibNet

    Raises
    ------
    DlibFormatError
        If the file is not such a network.
    """
    return parse_dlib_net(Path(path).read_bytes())


# ---------------------------------------------------------------------------------------------
# Shapes and the zero-padded residual addition


def _pool_output(size: int, window: int, stride: int, pad: int) -> int:
    return 1 + (size + 2 * pad - window) // stride


def layer_output_shapes(net: DlibNet, batch_size: int = 1) -> list[tuple[int, int, int, int]]:
    """The (n, channels, rows, cols) shape after every layer of ``net``, in layer order."""
    current = (batch_size, 3, *net.input_size)
    tags: dict[int, tuple] = {}
    shapes = []
    for layer in net.layers:
        a = layer.attrs
        if layer.kind == "con":
            current = (
                current[0],
                a["num_filters"],
                _pool_output(current[2], a["kernel"][0], a["stride"][0], a["padding"][0]),
                _pool_output(current[3], a["kernel"][1], a["stride"][1], a["padding"][1]),
            )
        elif layer.kind in ("max_pool", "avg_pool"):
            kr = a["kernel"][0] or current[2]
            kc = a["kernel"][1] or current[3]
            current = (
                current[0],
                current[1],
                _pool_output(current[2], kr, a["stride"][0], a["padding"][0]),
                _pool_output(current[3], kc, a["stride"][1], a["padding"][1]),
            )
        elif layer.kind == "fc":
            current = (current[0], a["num_outputs"], 1, 1)
        elif layer.kind == "tag":
            tags[a["id"]] = current
        elif layer.kind == "skip":
            current = tags[a["id"]]
        elif layer.kind == "add_prev":
            current = tuple(max(x, y) for x, y in zip(current, tags[a["id"]]))
        shapes.append(current)
    return shapes


def add_zero_padded(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """dlib's ``tt::add(dest, a, b)`` for tensors of different shapes (the numpy reference).

    Parameters
    ----------
    a, b : numpy.ndarray
        Two (n, k, nr, nc) tensors.

    Returns
    -------
    numpy.ndarray
        Shape ``max(a.shape, b.shape)`` per dimension; each input contributes where its index is
        inside its own shape and zero elsewhere (i.e. it is zero-padded at the end of each axis).
    """
    out_shape = tuple(max(x, y) for x, y in zip(a.shape, b.shape))
    out = np.zeros(out_shape, dtype=np.result_type(a, b))
    out[tuple(slice(0, d) for d in a.shape)] += a
    out[tuple(slice(0, d) for d in b.shape)] += b
    return out


# ---------------------------------------------------------------------------------------------
# ONNX


class _GraphBuilder:
    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._counter = 0

    def name(self, stem: str) -> str:
        self._counter += 1
        return f"{stem}_{self._counter}"

    def constant(self, stem: str, array: np.ndarray) -> str:
        name = self.name(stem)
        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op: str, inputs: list[str], stem: str, output: str | None = None, **attrs) -> str:
        out = output or self.name(stem)
        self.nodes.append(helper.make_node(op, inputs, [out], name=out, **attrs))
        return out


def _pad_to(g: _GraphBuilder, x: str, shape: tuple, target: tuple) -> str:
    if shape == target:
        return x
    pads = [0] * len(shape) + [t - s for s, t in zip(shape, target)]
    return g.node("Pad", [x, g.constant("pads", np.array(pads, dtype=np.int64))], "pad", mode="constant")


def to_onnx(net: DlibNet, batch_size: int = 1) -> onnx.ModelProto:
    """Write ``net`` as an ONNX model.

    Parameters
    ----------
    net : DlibNet
        A decoded network (:func:`load_dlib_net`).
    batch_size : int
        The fixed batch dimension of input and output.

    Returns
    -------
    onnx.ModelProto
        Opset 13. Input ``"input"``: float32 (batch_size, 3, rows, cols), RGB, NCHW, already
        normalised as ``(pixel - net.input_mean) / 256``. Output ``"embedding"``: float32
        (batch_size, fc outputs), dlib's raw descriptor (not unit length).
    """
    g = _GraphBuilder()
    shapes = layer_output_shapes(net, batch_size)
    current, shape = "input", (batch_size, 3, *net.input_size)
    tags: dict[int, tuple[str, tuple]] = {}
    last = len(net.layers) - 1
    for i, layer in enumerate(net.layers):
        a, w = layer.attrs, layer.weights
        out_name = "embedding" if i == last else None
        if layer.kind == "con":
            (py, px), (sy, sx) = a["padding"], a["stride"]
            current = g.node(
                "Conv",
                [current, g.constant("conv_w", w["filters"]), g.constant("conv_b", w["bias"])],
                "conv",
                out_name,
                kernel_shape=list(a["kernel"]),
                strides=[sy, sx],
                pads=[py, px, py, px],
            )
        elif layer.kind == "affine":
            current = g.node("Mul", [current, g.constant("affine_gamma", w["gamma"])], "affine_mul")
            current = g.node("Add", [current, g.constant("affine_beta", w["beta"])], "affine_add", out_name)
        elif layer.kind == "relu":
            current = g.node("Relu", [current], "relu", out_name)
        elif layer.kind in ("max_pool", "avg_pool"):
            (kr, kc), (sy, sx), (py, px) = a["kernel"], a["stride"], a["padding"]
            global_pool = (kr == 0 or kr == shape[2]) and (kc == 0 or kc == shape[3]) and py == px == 0
            if layer.kind == "avg_pool" and (py or px):
                raise DlibFormatError(f"layer {i}: average pooling with padding is not supported")
            op = "MaxPool" if layer.kind == "max_pool" else "AveragePool"
            if global_pool:
                current = g.node("Global" + op, [current], "gpool", out_name)
            else:
                current = g.node(
                    op, [current], "pool", out_name, kernel_shape=[kr, kc], strides=[sy, sx], pads=[py, px, py, px]
                )
        elif layer.kind == "fc":
            flat = g.node("Flatten", [current], "flatten", axis=1)
            weight = g.constant("fc_w", w["weight"])
            if "bias" in w:
                current = g.node("Gemm", [flat, weight, g.constant("fc_b", w["bias"])], "fc", out_name)
            else:
                current = g.node("MatMul", [flat, weight], "fc", out_name)
        elif layer.kind == "tag":
            tags[a["id"]] = (current, shape)
        elif layer.kind == "skip":
            current, _ = tags[a["id"]]
        elif layer.kind == "add_prev":
            other, other_shape = tags[a["id"]]
            target = shapes[i]
            current = g.node(
                "Add",
                [_pad_to(g, current, shape, target), _pad_to(g, other, other_shape, target)],
                "residual_add",
                out_name,
            )
        else:
            raise DlibFormatError(f"layer {i}: unsupported kind {layer.kind!r}")
        shape = shapes[i]

    if current != "embedding":
        g.node("Identity", [current], "out", "embedding")
    out_dims = [batch_size, shape[1]] if net.layers[-1].kind == "fc" else list(shape)
    graph = helper.make_graph(
        g.nodes,
        "dlib_face_recognition_resnet_model_v1",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [batch_size, 3, *net.input_size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, out_dims)],
        initializer=g.initializers,
    )
    model = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET)],
        producer_name="frvt.implementation.dlib_model",  # as in the committed ONNX (its sha256 keys the tuning databases)
        doc_string=(
            "dlib_face_recognition_resnet_model_v1 (dlib, CC0-1.0 weights) converted without dlib. "
            "input: (pixel - mean_rgb)/256, RGB NCHW; output: dlib's raw 128-D descriptor."
        ),
    )
    model.ir_version = 8  # readable by onnxruntime >= 1.10 and TVM's importer
    onnx.checker.check_model(model)
    return model


# ---------------------------------------------------------------------------------------------
# Provenance and the one-call conversion


def count_macs(net: DlibNet, batch_size: int = 1) -> int:
    """Multiply-accumulates of the convolutions and the fully connected layer for one batch."""
    shapes = layer_output_shapes(net, batch_size)
    macs = 0
    for layer, out in zip(net.layers, shapes):
        if layer.kind == "con":
            macs += int(np.prod(out)) * int(np.prod(layer.weights["filters"].shape[1:]))
        elif layer.kind == "fc":
            macs += batch_size * layer.weights["weight"].size
    return macs


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert(dat_path: str | Path, onnx_path: str | Path) -> dict:
    """Convert a dlib face ResNet ``.dat`` file to ONNX, writing ``onnx_path`` atomically.

    Parameters
    ----------
    dat_path : str or Path
        dlib's ``dlib_face_recognition_resnet_model_v1.dat``.
    onnx_path : str or Path
        Where to write the ONNX model (written to a temporary file, then renamed).

    Returns
    -------
    dict
        Provenance: ``source`` (file name), ``source_bytes``, ``source_sha256``, ``onnx_bytes``,
        ``onnx_sha256``, ``opset``, ``n_params``, ``n_convs``, ``n_layers`` (computational
        layers, without tag/skip), ``gmacs`` and ``gflops`` (per image, convolutions + fc),
        ``input_mean``, ``input_size``, ``embedding_size`` and ``loss``.
    """
    source = Path(dat_path).read_bytes()
    net = parse_dlib_net(source)
    blob = to_onnx(net).SerializeToString()
    _write_atomically(Path(onnx_path), blob)
    macs = count_macs(net)
    return {
        "source": Path(dat_path).name,
        "source_bytes": len(source),
        "source_sha256": _sha256(source),
        "onnx_bytes": len(blob),
        "onnx_sha256": _sha256(blob),
        "opset": OPSET,
        "n_params": net.n_params,
        "n_convs": net.n_convs,
        "n_layers": sum(layer.kind not in ("tag", "skip") for layer in net.layers),
        "gmacs": macs / 1e9,
        "gflops": 2 * macs / 1e9,
        "input_mean": list(net.input_mean),
        "input_size": list(net.input_size),
        "embedding_size": layer_output_shapes(net)[-1][1],
        "loss": net.loss,
    }
