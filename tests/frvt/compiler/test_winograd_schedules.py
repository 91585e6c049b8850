"""Hand-written Winograd schedules (``frvt.compiler.conv_schedules.schedule_winograd``): every variant
offered computes the same as the unscheduled function, for F(4x4) and F(2x2) and with the fused
epilogues, and a database of them builds a model that matches ONNX Runtime with the transformed
weights packed outside the call. Real TVM builds, no tuning."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from frvt.compiler import build as tvm_build, conv_schedules, databases, passes, targets, tuning
from onnx_models import run_onnxruntime, save_model
from schedule_checks import assert_variants_compute_the_same

INPUT_SHAPE = (1, 16, 16, 16)


def _model(path: Path) -> Path:
    """conv 3x3 16->16 + bias -> Relu (16x16: F(4x4)) -> max-pool -> conv 3x3 16->32 + bias, plus
    a 1x1 shortcut -> Relu (8x8: F(2x2), with a residual add in its epilogue)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(11)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)
        for name, shape in (
            ("w1", (16, 16, 3, 3)),
            ("b1", (16,)),
            ("w2", (32, 16, 3, 3)),
            ("b2", (32,)),
            ("w3", (32, 16, 1, 1)),
        )
    ]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p1", "w2", "b2"], ["c2"], **conv),
        helper.make_node("Conv", ["p1", "w3"], ["s1"], kernel_shape=[1, 1]),
        helper.make_node("Add", ["c2", "s1"], ["a2"]),
        helper.make_node("Relu", ["a2"], ["output"]),
    ]
    return save_model(path, nodes, {"input": INPUT_SHAPE}, {"output": (1, 32, 8, 8)}, inits, name="winograd")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("winograd_schedules") / "model.onnx")


@pytest.fixture(scope="module")
def tasks(model):
    target = targets.parse_target("broadwell")
    mod = passes.prepare_module(passes.import_onnx(model), target, "NHWC-winograd")
    found = [t for t in tuning.extract_tasks(mod, target) if conv_schedules.winograd_shape(t.dispatched[0])]
    shapes = sorted((s["alpha"], s["p"]) for s in (conv_schedules.winograd_shape(t.dispatched[0]) for t in found))
    assert shapes == [(4, 16), (6, 16)], [t.task_name for t in tuning.extract_tasks(mod, target)]
    return mod, found


def test_tiles_fit_the_tiles_and_the_registers():
    shape = {"alpha": 4, "p": 49, "co": 256, "ci": 256}  # F(2x2) on 14x14: 7 x 7 tiles
    tiles = conv_schedules.winograd_tiles(shape)
    assert tiles and tiles[0] == conv_schedules.WinogradTile(7, 8)
    for t in tiles:
        accumulators = t.pi * t.fi // conv_schedules.VECTOR_LANES
        assert conv_schedules.MIN_ACCUMULATORS <= accumulators <= conv_schedules.MAX_ACCUMULATORS, t
        assert shape["p"] % t.pi == 0 and shape["co"] % t.fi == 0, t
    # output channels that no vector width divides leave nothing to offer
    assert conv_schedules.winograd_tiles(dict(shape, co=12)) == []


def test_every_variant_computes_what_the_unscheduled_function_does(tasks):
    rng = np.random.default_rng(12)
    checked = 0
    for task in tasks[1]:
        func_mod = task.dispatched[0]
        tiles = conv_schedules.winograd_tiles(conv_schedules.winograd_shape(func_mod))
        assert tiles
        checked += assert_variants_compute_the_same(func_mod, tiles, conv_schedules.schedule_winograd, rng)
    assert checked >= 4


def test_seeded_schedules_build_a_model_that_matches_onnxruntime(model, tasks, tmp_path):
    """What ``scripts/tune.py --handwritten`` does for Winograd tasks: the variants written to a
    seed database, timed cold into a database that the model is then built from."""
    import tvm
    from tvm import relax

    mod, wino_tasks = tasks
    target = targets.parse_target("broadwell")
    per_task, errors = conv_schedules.write_seed_database(wino_tasks, target, tmp_path / "seed", limit=1)
    assert errors == [] and set(per_task) == {t.task_name for t in wino_tasks}
    measured = tuning.remeasure_records(wino_tasks, target, tmp_path / "seed", tmp_path / "db", top_k=1)
    assert measured.errors == () and measured.added == len(wino_tasks)
    assert databases.count_records(tmp_path / "db") == len(wino_tasks)
    executable, _ = tvm_build.build_module(mod, target, tmp_path / "db")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = np.random.default_rng(13).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    ours = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(ours, run_onnxruntime(model, {"input": x})[0], rtol=0, atol=1e-4)
