"""Build insightface's IResNet-50 (112x112 RGB -> 512-D) as ONNX with random weights.

The ResNet50-like latency reference of ``frvt bench``: the architecture of insightface's ``iresnet.py``
(``IBasicBlock``: BN -> 3x3 conv -> BN -> PReLU -> 3x3 conv (stride s) -> BN, plus a 1x1
conv + BN shortcut when the shape changes; stem 3x3 conv 3->64 + BN + PReLU; head BN -> flatten
-> FC 512*7*7 -> 512 -> BN1d), layers ``(3, 4, 14, 3)``, about 6.3 GMACs (12.6 GFLOPs).
Timing does not depend on weight values, so the weights are random (He-normal convolutions,
batch-norm statistics near identity, residual branches scaled by 0.2 so that activations stay
O(1) and absolute differences between runtimes stay meaningful) from a fixed seed. Built with ``onnx.helper`` and numpy
only (no torch). The file is ~174 MB: it goes to a cache directory, never into the repository.

Usage::

    python scripts/make_iresnet50.py                      # <cache root>/iresnet50_random.onnx
    python scripts/make_iresnet50.py --layers 1 1 1 1 --width 16 --output /tmp/tiny.onnx
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from frvt.settings import cache_root  # noqa: E402

#: Where ``frvt bench`` looks for it (``frvt.perf.bench.models.IRESNET50_PATH``): the cache root
#: (``$FRVT_CACHE``, default ``~/.cache/frvt``).
DEFAULT_OUTPUT = cache_root() / "iresnet50_random.onnx"


class _GraphBuilder:
    """Accumulates ONNX nodes and initialisers with unique names."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def _name(self, prefix: str) -> str:
        self._count += 1
        return f"{prefix}_{self._count}"

    def _const(self, prefix: str, value: np.ndarray) -> str:
        name = self._name(prefix)
        self.initializers.append(numpy_helper.from_array(value.astype(np.float32), name))
        return name

    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int) -> str:
        fan_in = c_in * kernel * kernel
        weight = self.rng.normal(0.0, np.sqrt(2.0 / fan_in), (c_out, c_in, kernel, kernel))
        w = self._const("conv_w", weight)
        y = self._name("conv")
        pad = kernel // 2
        self.nodes.append(
            helper.make_node(
                "Conv",
                [x, w],
                [y],
                kernel_shape=[kernel, kernel],
                strides=[stride, stride],
                pads=[pad, pad, pad, pad],
            )
        )
        return y

    def batch_norm(self, x: str, channels: int, eps: float = 1e-5, gain: float = 1.0) -> str:
        gamma = self._const("bn_gamma", gain * self.rng.uniform(0.8, 1.2, channels))
        beta = self._const("bn_beta", self.rng.normal(0.0, 0.05, channels))
        mean = self._const("bn_mean", self.rng.normal(0.0, 0.05, channels))
        var = self._const("bn_var", self.rng.uniform(0.8, 1.2, channels))
        y = self._name("bn")
        self.nodes.append(helper.make_node("BatchNormalization", [x, gamma, beta, mean, var], [y], epsilon=eps))
        return y

    def prelu(self, x: str, channels: int) -> str:
        slope = self._const("prelu_slope", np.full((channels, 1, 1), 0.25))
        y = self._name("prelu")
        self.nodes.append(helper.make_node("PRelu", [x, slope], [y]))
        return y

    def add(self, a: str, b: str) -> str:
        y = self._name("add")
        self.nodes.append(helper.make_node("Add", [a, b], [y]))
        return y

    def basic_block(self, x: str, c_in: int, planes: int, stride: int) -> str:
        out = self.batch_norm(x, c_in)
        out = self.conv(out, c_in, planes, 3, 1)
        out = self.batch_norm(out, planes)
        out = self.prelu(out, planes)
        out = self.conv(out, planes, planes, 3, stride)
        # A small gain on the residual branch keeps activations O(1) through 24 random blocks
        # (with gain 1 each block doubles the variance and the output reaches ~1e6).
        out = self.batch_norm(out, planes, gain=0.2)
        if stride != 1 or c_in != planes:
            shortcut = self.batch_norm(self.conv(x, c_in, planes, 1, stride), planes)
        else:
            shortcut = x
        return self.add(out, shortcut)


def build_iresnet(
    layers: tuple[int, int, int, int] = (3, 4, 14, 3),
    width: int = 64,
    input_size: int = 112,
    embedding_size: int = 512,
    seed: int = 0,
) -> onnx.ModelProto:
    """IResNet as an ONNX model: input ``"input"`` [1, 3, S, S] -> output ``"embedding"`` [1, E].

    Parameters
    ----------
    layers : tuple of 4 int
        Blocks per stage; ``(3, 4, 14, 3)`` is IResNet-50.
    width : int
        Channels of the first stage (64 in insightface); stages use width * (1, 2, 4, 8).
    input_size : int
        Square input side in pixels (112 in insightface); must be divisible by 16.
    embedding_size : int
        Output dimension (512 in insightface).
    seed : int
        Seed of the random weights.
    """
    g = _GraphBuilder(np.random.default_rng(seed))
    x = g.prelu(g.batch_norm(g.conv("input", 3, width, 3, 1), width), width)
    c_in = width
    for stage, n_blocks in enumerate(layers):
        planes = width * 2**stage
        for block in range(n_blocks):
            x = g.basic_block(x, c_in, planes, 2 if block == 0 else 1)
            c_in = planes
    x = g.batch_norm(x, c_in)
    flat = g._name("flatten")
    g.nodes.append(helper.make_node("Flatten", [x], [flat], axis=1))
    side = input_size // 16
    n_features = c_in * side * side
    fc_w = g._const("fc_w", g.rng.normal(0.0, np.sqrt(1.0 / n_features), (embedding_size, n_features)))
    fc_b = g._const("fc_b", np.zeros(embedding_size))
    fc = g._name("fc")
    g.nodes.append(helper.make_node("Gemm", [flat, fc_w, fc_b], [fc], transB=1))
    # BatchNorm1d on [1, E]: ONNX BatchNormalization takes (N, C, ...), so [1, E] works directly.
    features = g.batch_norm(fc, embedding_size)
    g.nodes.append(helper.make_node("Identity", [features], ["embedding"]))
    graph = helper.make_graph(
        g.nodes,
        "iresnet",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, [1, 3, input_size, input_size])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, [1, embedding_size])],
        initializer=g.initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--layers", type=int, nargs=4, default=(3, 4, 14, 3))
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--input-size", type=int, default=112)
    parser.add_argument("--embedding-size", type=int, default=512)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    model = build_iresnet(tuple(args.layers), args.width, args.input_size, args.embedding_size, args.seed)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.output.with_suffix(".onnx.tmp")
    onnx.save(model, str(tmp))
    tmp.replace(args.output)
    print(f"wrote {args.output} ({args.output.stat().st_size / 1e6:.1f} MB)")


if __name__ == "__main__":
    main()
