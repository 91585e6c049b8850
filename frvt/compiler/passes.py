"""ONNX -> Relax -> fused TIR functions: the import and the passes that prepare a module for
tuning and building, and the convolution schemes (NCHW, NHWC, NHWC with Winograd).

:func:`prepare_module` runs before tuning (``scripts/tune.py``) and before building, so the tuned
workloads match what is compiled.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from frvt.compiler import CompileError


CONV_SCHEMES = ("NCHW", "NHWC", "NHWC-winograd")
"""How :func:`prepare_module` computes convolutions: direct in NCHW (TVM's default), direct in
NHWC, or NHWC with the 3x3 stride-1 ones by Winograd (:mod:`frvt.compiler.winograd`)."""


WINOGRAD_SETTINGS = {"tiles": [[16, 4], [8, 2]], "min_channels": 8}
"""Which convolutions "NHWC-winograd" transforms, and with which output tile, for new tuning
databases (a database keeps the settings it was tuned with:
:func:`~frvt.compiler.databases.database_winograd`). ``tiles`` holds (minimum input height and
width, tile m) pairs; the first that fits wins. F(4x4, 3x3) from 16x16 up; F(2x2, 3x3) on 8x8 to
15x15, where F(4x4)'s kernels, 36/9 = 4x the original weights, would each serve only 4 tiles and
the layer would read 4x the bytes (F(2x2): 16/9); smaller inputs stay direct. At batch 1 every
call reads all the weights from memory (tens of MB for the embedder, more than the caches hold),
so the tile trades multiplications against bytes."""


LAYOUT_ELEMENTWISE_OPS = ["relax.nn.leakyrelu"]
"""Elementwise operators that Relax's ``ConvertLayout`` has no layout rule for, and that NHWC
schemes of new tuning databases let the layout pass through (with ``relax.nn.relu``'s rule).
Without a rule ConvertLayout brings the tensor back to NCHW around the operator: RetinaFace's
leaky ReLUs left 14 ``transpose -> leaky_relu -> transpose`` functions between its NHWC
convolutions (``data/tuning/README.md`` has what they cost). With it the activation fuses into
the convolution before it. A database keeps the setting it was tuned with
(:func:`~frvt.compiler.databases.database_layout_elementwise`): the fused functions, hence the
tuned workloads, differ."""


@contextlib.contextmanager
def _layout_rules(op_names: list[str]) -> Iterator[None]:
    """Give each named operator ``relax.nn.relu``'s layout rule while the block runs (only those
    without one; TVM's own rules are never replaced)."""
    import tvm

    rule = tvm.ir.Op.get("relax.nn.relu").get_attr("FRelaxInferLayout")
    added = []
    try:
        for name in op_names:
            try:
                op = tvm.ir.Op.get(name)
            except Exception as exc:
                raise CompileError(f"layout_elementwise: {name!r} is not a Relax operator") from exc
            if op.get_attr("FRelaxInferLayout") is None:
                op.set_attr("FRelaxInferLayout", rule)
                added.append(op)
        yield
    finally:
        for op in added:
            op.reset_attr("FRelaxInferLayout")


def onnx_input_spec(onnx_path: str | Path) -> tuple[str, tuple[int, ...]]:
    """(name, static shape) of the ONNX model's single graph input (initialisers and inputs no node
    reads excluded)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}
    read = {x for n in model.graph.node for x in n.input}
    inputs = [i for i in model.graph.input if i.name not in initializers and i.name in read]
    if len(inputs) != 1:
        raise CompileError(f"{onnx_path}: expected one graph input, found {len(inputs)}")
    dims = inputs[0].type.tensor_type.shape.dim
    shape = tuple(int(d.dim_value) if d.dim_value > 0 else -1 for d in dims)
    return inputs[0].name, shape


def import_onnx(onnx_path: str | Path, input_shape: tuple[int, ...] | None = None):
    """ONNX file -> Relax IRModule with the weights bound as constants.

    Parameters
    ----------
    onnx_path : path
        The model. It must have one float32 input; dynamic dimensions need ``input_shape``.
    input_shape : tuple of int, optional
        Static input shape overriding the file's.
    """
    import onnx
    from tvm.relax.frontend.onnx import from_onnx

    name, shape = onnx_input_spec(onnx_path)
    if input_shape is not None:
        shape = tuple(int(s) for s in input_shape)
    if any(s <= 0 for s in shape):
        raise CompileError(f"{onnx_path}: input {name!r} has a dynamic shape {shape}; give one")
    from frvt.compiler.onnx_fold import drop_inference_dropout, fold_constant_dequantize

    model = onnx.load(str(onnx_path))
    fold_constant_dequantize(model)  # weight-only (also blocked) quantisation -> float32 weights
    drop_inference_dropout(model)  # identity at inference; its tuple output stops the NHWC layout pass
    try:
        return from_onnx(model, shape_dict={name: list(shape)}, keep_params_in_input=False)
    except Exception as exc:  # the frontend raises many types
        raise CompileError(f"TVM's ONNX importer failed on {onnx_path}: {exc}") from exc


def prepare_module(
    mod,
    target: dict,
    conv_scheme: str = "NCHW",
    winograd: dict | None = None,
    layout_elementwise: list[str] | None = None,
):
    """Relax module -> fused TIR functions ready for tuning (the tuning tasks' source).

    The same function runs before tuning (``scripts/tune.py``) and before building, so the
    tuned workloads match what is compiled.

    Parameters
    ----------
    conv_scheme : {"NCHW", "NHWC", "NHWC-winograd"}
        How convolutions are computed (:data:`CONV_SCHEMES`). "NHWC" (kernels "OHWI") converts
        them with Relax's ``ConvertLayout``: the channels, multiples of 8 in these networks,
        become the innermost axis and vectorise across AVX2 lanes, where NCHW vectorises along
        widths such as 17 or 35 that 8 does not divide. Transposes are inserted only where a
        non-convolution operator needs NCHW; the weights are transposed at compile time.
        "NHWC-winograd" also computes the 3x3 stride-1 convolutions by Winograd
        (:mod:`frvt.compiler.winograd`: F(4x4, 3x3) does 4x fewer multiplications, F(2x2, 3x3)
        2.25x; kernels transformed at compile time). The tuned workloads differ between
        schemes, so a database serves the scheme it was tuned with
        (:func:`~frvt.compiler.databases.database_conv_scheme`).
    winograd : dict, optional
        Which convolutions Winograd computes, and the tiles (``make_legalize_conv2d``'s
        arguments); default :data:`WINOGRAD_SETTINGS`. A database serves the settings it was
        tuned with (:func:`~frvt.compiler.databases.database_winograd`).
    layout_elementwise : list of str, optional
        For the NHWC schemes: elementwise operators the layout conversion passes through;
        default :data:`LAYOUT_ELEMENTWISE_OPS`. A database serves the setting it was tuned with
        (:func:`~frvt.compiler.databases.database_layout_elementwise`;
        :func:`~frvt.compiler.databases.scheme_settings` gives both).
    """
    import tvm
    from tvm import relax

    if conv_scheme not in CONV_SCHEMES:
        raise ValueError(f"conv_scheme must be one of {CONV_SCHEMES}, not {conv_scheme!r}")
    layout_passes = []
    legalize_map = None
    if conv_scheme.startswith("NHWC"):
        layout_passes = [
            relax.transform.ConvertLayout({"relax.nn.conv2d": ["NHWC", "OHWI"]}),
            relax.transform.CanonicalizeBindings(),
        ]
    if conv_scheme == "NHWC-winograd":
        from frvt.compiler.winograd import make_legalize_conv2d

        legalize_map = {
            "relax.nn.conv2d": make_legalize_conv2d(**(winograd if winograd is not None else WINOGRAD_SETTINGS))
        }
    seq = tvm.transform.Sequential(
        [
            relax.transform.DecomposeOpsForInference(),
            relax.transform.CanonicalizeBindings(),
            *layout_passes,
            relax.transform.FoldConstant(),
            relax.transform.LegalizeOps(legalize_map),
            relax.transform.AnnotateTIROpPattern(),
            relax.transform.FoldConstant(),
            relax.transform.FuseOps(),
            relax.transform.FuseTIR(),
            relax.transform.DeadCodeElimination(),
            relax.transform.AttachAttrLayoutFreeBuffers(),
        ]
    )
    elementwise = (
        (layout_elementwise if layout_elementwise is not None else LAYOUT_ELEMENTWISE_OPS) if layout_passes else []
    )
    with tvm.target.Target(target), _layout_rules(elementwise):
        return seq(mod)
