"""ONNX graph clean-ups applied before TVM's importer sees a model.

* **Weight-only quantisation folded to float32.** A ``DequantizeLinear`` whose inputs are all
  constants (an int8/uint8/int4 weight, its scales and zero points) is evaluated here with numpy
  and replaced by a float32 initializer. This covers per-tensor, per-axis and *blocked*
  quantisation (opset 21 ``block_size``: each run of ``block_size`` elements along ``axis`` shares
  one scale), which TVM 0.27's importer rejects. The result is what the graph computes at run time
  (``(x - zero_point) * scale``, ONNX's definition), so the model's outputs do not change; TVM
  then runs float32 convolutions, as it would for any QDQ model on a CPU without VNNI.
* **Inference-time Dropout removed.** ``Dropout`` is the identity at inference (no
  ``training_mode``, or a constant false one) and its mask output unused; TVM imports it as a
  tuple-valued ``relax.nn.dropout`` that the NHWC layout conversion cannot pass through (e.g.
  OpenCV Zoo's SFace before its last layer). Its consumers read its input instead.
* **Initializers listed as graph inputs** (allowed by older IR versions) are dropped from
  ``graph.input``, so the model has one real input.

Pure numpy + onnx; never touches activations.
"""

from __future__ import annotations

import numpy as np

DEQUANTIZE = "DequantizeLinear"


def dequantize(
    x: np.ndarray, scale: np.ndarray, zero_point: np.ndarray | None, axis: int = 1, block_size: int = 0
) -> np.ndarray:
    """ONNX ``DequantizeLinear``: ``(x - zero_point) * scale`` with per-tensor, per-axis or blocked scales.

    Parameters
    ----------
    x : numpy.ndarray
        Quantised values (any integer type).
    scale : numpy.ndarray
        A scalar (per tensor), shape ``(x.shape[axis],)`` (per axis) or, with ``block_size``,
        ``x``'s shape with ``ceil(x.shape[axis] / block_size)`` at ``axis``.
    zero_point : numpy.ndarray or None
        Same shape as ``scale`` (default 0).
    axis : int
    block_size : int
        0: not blocked.

    Returns
    -------
    numpy.ndarray of float32, shape ``x.shape``

    >>> dequantize(np.array([2, 4, 6, 8], np.int8), np.array([0.5, 2.0], np.float32), None, 0, 2).tolist()
    [1.0, 2.0, 12.0, 16.0]
    """
    x = np.asarray(x)
    scale = np.asarray(scale, dtype=np.float32)
    zp = np.zeros_like(scale, dtype=np.int32) if zero_point is None else np.asarray(zero_point).astype(np.int32)
    axis = axis % max(x.ndim, 1)
    if scale.ndim == 0 or scale.size == 1 and block_size == 0:
        s, z = scale.reshape(()), zp.reshape(())
    elif block_size:
        if scale.ndim != x.ndim:
            raise ValueError(f"blocked scales must have the rank of the input: {scale.shape} for {x.shape}")
        s = np.repeat(scale, block_size, axis=axis).take(np.arange(x.shape[axis]), axis=axis)
        z = np.repeat(zp, block_size, axis=axis).take(np.arange(x.shape[axis]), axis=axis)
    else:
        if scale.shape != (x.shape[axis],):
            raise ValueError(f"per-axis scales must have shape ({x.shape[axis]},), not {scale.shape}")
        shape = [1] * x.ndim
        shape[axis] = x.shape[axis]
        s, z = scale.reshape(shape), zp.reshape(shape)
    return ((x.astype(np.int32) - z).astype(np.float32) * s).astype(np.float32)


def fold_constant_dequantize(model) -> int:
    """Replace every ``DequantizeLinear`` of constants by a float32 initializer, in place.

    Returns the number of nodes folded. Initializers no longer used are removed, and
    initializers listed in ``graph.input`` are dropped from it.
    """
    from onnx import helper, numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {}
    for n in g.node:
        if n.op_type == "Constant" and len(n.output) == 1:
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)

    def value(name):
        if name in inits:
            return numpy_helper.to_array(inits[name])
        return consts.get(name)

    folded = 0
    keep = []
    new_inits = []
    for n in g.node:
        if n.op_type == DEQUANTIZE:
            ins = [value(x) if x else None for x in n.input]
            if ins[0] is not None and ins[1] is not None and (len(ins) < 3 or not n.input[2] or ins[2] is not None):
                attrs = {a.name: helper.get_attribute_value(a) for a in n.attribute}
                w = dequantize(
                    ins[0],
                    ins[1],
                    ins[2] if len(ins) > 2 else None,
                    int(attrs.get("axis", 1)),
                    int(attrs.get("block_size", 0)),
                )
                new_inits.append(numpy_helper.from_array(w, n.output[0]))
                folded += 1
                continue
        keep.append(n)
    if not folded:
        _drop_initializer_inputs(g)
        return 0
    del g.node[:]
    g.node.extend(keep)
    g.initializer.extend(new_inits)
    used = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    for i in [i for i in g.initializer if i.name not in used]:
        g.initializer.remove(i)
    _drop_initializer_inputs(g)
    return folded


def _drop_initializer_inputs(g) -> None:
    names = {i.name for i in g.initializer}
    for i in [i for i in g.input if i.name in names]:
        g.input.remove(i)
    for i in [i for i in g.input if i.name not in names and not any(i.name in n.input for n in g.node)]:
        g.input.remove(i)  # an input nothing reads (e.g. a removed quantised weight)


def drop_inference_dropout(model) -> int:
    """Remove every ``Dropout`` that is the identity at inference, in place; returns how many.

    A Dropout qualifies when its mask output (if any) is read by nothing and its ``training_mode``
    input is absent or a constant false. Consumers (and graph outputs) of its output are rewired to
    its input.
    """
    from onnx import numpy_helper

    g = model.graph
    inits = {i.name: i for i in g.initializer}
    consts = {
        n.output[0]: numpy_helper.to_array(a.t)
        for n in g.node
        if n.op_type == "Constant" and len(n.output) == 1
        for a in n.attribute
        if a.name == "value"
    }
    read = {x for n in g.node for x in n.input} | {o.name for o in g.output}
    rename: dict[str, str] = {}
    keep = []
    for n in g.node:
        if n.op_type == "Dropout":
            mode = n.input[2] if len(n.input) > 2 and n.input[2] else None
            if mode is not None:
                v = numpy_helper.to_array(inits[mode]) if mode in inits else consts.get(mode)
                if v is None or bool(np.asarray(v).reshape(-1)[0]):
                    keep.append(n)
                    continue
            if len(n.output) > 1 and n.output[1] and n.output[1] in read:
                keep.append(n)
                continue
            src = n.input[0]
            rename[n.output[0]] = rename.get(src, src)
            continue
        keep.append(n)
    if not rename:
        return 0
    outputs = {o.name for o in g.output}
    extra = []
    for n in keep:
        for k, x in enumerate(n.input):
            if x in rename:
                n.input[k] = rename[x]
    for old, new in rename.items():
        if old in outputs:  # keep the graph output's name
            from onnx import helper

            extra.append(helper.make_node("Identity", [new], [old]))
    del g.node[:]
    g.node.extend(keep + extra)
    return len(rename)
