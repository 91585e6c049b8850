"""Hand-written NHWC convolution schedules (``frvt.compiler.conv_schedules``): every variant offered
computes the same as the unscheduled function, and a database of them builds a model that matches
ONNX Runtime with the weights packed outside the call. Real TVM builds, no tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frvt.compiler import build as tvm_build, databases, passes, targets, tuning
from frvt.compiler import conv_schedules
from onnx_models import run_onnxruntime, save_model
from schedule_checks import assert_variants_compute_the_same

INPUT_SHAPE = (1, 16, 8, 8)


def _model(path: Path) -> Path:
    """conv 3x3 16->32 + bias -> Relu -> conv 3x3 32->32 stride 2 + bias -> + residual (avg-pooled) -> Relu:
    the embedder's pattern of fused epilogues."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(7)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)
        for name, shape in (("w1", (32, 16, 3, 3)), ("w2", (32, 32, 3, 3)), ("b1", (32,)), ("b2", (32,)))
    ]
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["c2"], strides=[2, 2], **conv),
        helper.make_node("AveragePool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Add", ["c2", "p1"], ["s2"]),
        helper.make_node("Relu", ["s2"], ["output"]),
    ]
    return save_model(path, nodes, {"input": INPUT_SHAPE}, {"output": (1, 32, 4, 4)}, inits, name="convs")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("conv_schedules") / "model.onnx")


@pytest.fixture(scope="module")
def tasks(model):
    target = targets.parse_target("broadwell")
    mod = passes.prepare_module(passes.import_onnx(model), target, "NHWC")
    found = [t for t in tuning.extract_tasks(mod, target) if conv_schedules.conv_shape(t.dispatched[0])]
    assert len(found) == 2, [t.task_name for t in tuning.extract_tasks(mod, target)]
    return mod, found


def test_tiles_fit_the_output_and_the_registers():
    shape = {"n": 1, "h": 4, "w": 4, "oc": 256, "kh": 3, "kw": 3, "ic": 256}
    tiles = conv_schedules.candidate_tiles(shape)
    assert tiles and {t.order for t in tiles} == set(conv_schedules.ORDERS)
    for t in tiles:
        accumulators = t.yi * t.xi * t.fi // conv_schedules.VECTOR_LANES
        assert conv_schedules.MIN_ACCUMULATORS <= accumulators <= conv_schedules.MAX_ACCUMULATORS, t
        assert shape["h"] % t.yi == 0 and shape["w"] % t.xi == 0 and shape["oc"] % t.fi == 0, t
        assert t.yi * t.xi >= 2, t  # a weight vector serves at least two pixels
    # a prime output width (17) and a single pixel leave nothing to offer: the search keeps them
    assert conv_schedules.candidate_tiles(dict(shape, h=17, w=17, oc=64)) == []
    assert conv_schedules.candidate_tiles(dict(shape, h=1, w=1)) == []
    # a batch: the same tiles, the images inside each block of output channels
    assert conv_schedules.candidate_tiles(dict(shape, n=2)) == tiles
    pointwise = conv_schedules.candidate_tiles(dict(shape, kh=1, kw=1))  # one reduction order is enough
    assert pointwise and {t.order for t in pointwise} == {conv_schedules.ORDERS[0]}


@pytest.mark.parametrize("batch", [1, 2])
def test_every_variant_computes_what_the_unscheduled_function_does(model, tasks, batch):
    """Each variant built alone (its weight repacking kept inside the function) against the
    unscheduled function on the same random arguments; also for a batch of two images (the
    chip and its mirror in one call)."""
    if batch == 1:
        conv_tasks = tasks[1]
    else:
        spec = targets.parse_target("broadwell")
        mod = passes.prepare_module(passes.import_onnx(model, (batch, *INPUT_SHAPE[1:])), spec, "NHWC")
        conv_tasks = [t for t in tuning.extract_tasks(mod, spec) if conv_schedules.conv_shape(t.dispatched[0])]
        assert [conv_schedules.conv_shape(t.dispatched[0])["n"] for t in conv_tasks] == [batch, batch]
    rng = np.random.default_rng(8)
    checked = 0
    for task in conv_tasks:
        func_mod = task.dispatched[0]
        shape = conv_schedules.conv_shape(func_mod)
        tiles = conv_schedules.candidate_tiles(shape)
        assert tiles, shape
        checked += assert_variants_compute_the_same(func_mod, tiles, conv_schedules.schedule_direct_conv, rng)
    assert checked >= 4


def test_seeded_schedules_are_measured_and_build_a_model_that_matches_onnxruntime(model, tasks, tmp_path):
    """What ``scripts/tune.py --handwritten`` does: the variants written to a seed database, timed by
    ``remeasure_records`` (cold, as the in-use databases) into a database
    that the model is then built from."""
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    mod, conv_tasks = tasks
    target = targets.parse_target("broadwell")
    per_task, errors = conv_schedules.write_seed_database(conv_tasks, target, tmp_path / "seed", limit=1)
    assert errors == []
    assert set(per_task) == {t.task_name for t in conv_tasks}
    written = sum(per_task.values())
    assert written == databases.count_records(tmp_path / "seed") == 2 * len(conv_schedules.ORDERS)
    measured = tuning.remeasure_records(
        conv_tasks, target, tmp_path / "seed", tmp_path / "db", top_k=len(conv_schedules.ORDERS), cache_flush=True
    )
    assert measured.errors == () and measured.added == written and measured.transferred == 0
    records = (tmp_path / "db" / databases.RECORD_FILE).read_text().splitlines()
    assert all(0 < json.loads(line)[1][1][0] < 1.0 for line in records)  # real times, not the seed's 1 s
    with tvm.target.Target(target), ms.database.JSONDatabase(work_dir=str(tmp_path / "db"), allow_missing=False):
        applied = relax.transform.MetaScheduleApplyDatabase()(mod)
    scheduled = [
        gv.name_hint
        for gv, func in applied.functions.items()
        if func.attrs is not None and func.attrs.get("tirx.is_scheduled")
    ]
    assert len(scheduled) == 2, scheduled
    executable, _ = tvm_build.build_module(mod, target, tmp_path / "db")
    vm = relax.VirtualMachine(executable, tvm.cpu())
    x = np.random.default_rng(9).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    ours = vm["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(ours, run_onnxruntime(model, {"input": x})[0], rtol=0, atol=1e-4)
