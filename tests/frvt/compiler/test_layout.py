"""The NHWC schemes' layout conversion through elementwise operators Relax has no layout rule for
(``frvt.compiler.passes.LAYOUT_ELEMENTWISE_OPS``: RetinaFace's leaky ReLU). Builds are untuned:
correctness does not depend on tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frvt.compiler import build as tvm_build, compile as tvm_compile, databases, passes, targets, tuning
from implementation.tvm_runtime import CompiledModel
from onnx_models import run_onnxruntime, save_model

INPUT_SHAPE = (1, 8, 12, 12)


def _model(path: Path) -> Path:
    """conv 3x3 8->16 -> LeakyRelu(0.1) -> conv 3x3 16->8 stride 2 -> LeakyRelu(0.2): RetinaFace's pattern."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(3)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name)
        for name, shape in (("w1", (16, 8, 3, 3)), ("w2", (8, 16, 3, 3)))
    ]
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1"))
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("LeakyRelu", ["c1"], ["r1"], alpha=0.1),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], **conv),
        helper.make_node("LeakyRelu", ["c2"], ["output"], alpha=0.2),
    ]
    return save_model(path, nodes, {"input": INPUT_SHAPE}, {"output": (1, 8, 6, 6)}, inits, name="leaky")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("layout") / "model.onnx")


def _function_names(model: Path, **settings) -> list[str]:
    target = targets.parse_target("broadwell")
    mod = passes.prepare_module(passes.import_onnx(model), target, "NHWC", **settings)
    return [gv.name_hint for gv in mod.functions]


def _leaky_rule():
    import tvm

    return tvm.ir.Op.get("relax.nn.leakyrelu").get_attr("FRelaxInferLayout")


def test_leaky_relu_fuses_into_the_nhwc_convolution_instead_of_transposes(model):
    names = _function_names(model)  # default: LAYOUT_ELEMENTWISE_OPS
    assert not [n for n in names if "leaky" in n and "transpose" in n], names
    assert [n for n in names if "conv2d" in n and "leaky" in n], names  # the activation is the conv's epilogue
    assert _leaky_rule() is None  # the rule is TVM's global state: lent for the pass, then taken back
    legacy = _function_names(model, layout_elementwise=[])  # databases from before the setting
    assert [n for n in legacy if "transpose" in n and "leaky" in n], legacy


def test_an_unknown_operator_is_refused_by_name(model):
    with pytest.raises(tvm_compile.CompileError, match="relax.nn.no_such_op"):
        _function_names(model, layout_elementwise=["relax.nn.no_such_op"])
    assert _leaky_rule() is None


def test_databases_keep_the_layout_setting_they_were_tuned_with(model, tmp_path):
    target = targets.parse_target("broadwell")
    assert databases.database_layout_elementwise(None) == passes.LAYOUT_ELEMENTWISE_OPS
    legacy = tmp_path / "legacy"  # an NHWC manifest with records from before the field
    databases.write_manifest(legacy, model, target, conv_scheme="NHWC")
    (legacy / databases.RECORD_FILE).write_text(json.dumps([0, [[], [0.001], {}, []]]) + "\n")
    assert databases.database_layout_elementwise(legacy) == []
    assert databases.scheme_settings(legacy, "NHWC") == {"layout_elementwise": []}
    recorded = tmp_path / "recorded"
    databases.write_manifest(
        recorded, model, target, conv_scheme="NHWC-winograd", **databases.scheme_settings(recorded, "NHWC-winograd")
    )
    manifest = databases.read_manifest(recorded)
    assert manifest["layout_elementwise"] == passes.LAYOUT_ELEMENTWISE_OPS
    assert manifest["winograd"] == passes.WINOGRAD_SETTINGS
    assert databases.scheme_settings(recorded, "NCHW") == {}
    keys = {tvm_compile.cache_key(model, "broadwell", database=d, conv_scheme="NHWC") for d in (legacy, recorded)}
    assert len(keys) == 2  # the setting is part of the compiled artefact's key


def test_nhwc_build_through_leaky_relu_matches_onnxruntime(model, tmp_path):
    metadata = tvm_compile.compile_model(model, output_dir=tmp_path / "out", progress=False, conv_scheme="NHWC")
    assert metadata["layout_elementwise"] == passes.LAYOUT_ELEMENTWISE_OPS
    x = np.random.default_rng(4).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    reference = run_onnxruntime(model, {"input": x})[0]
    ours = CompiledModel.load(tmp_path / "out")(x)[0]
    assert (reference < 0).any()  # the negative slope is exercised
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_schedules_tuned_before_the_setting_carry_over_to_the_fused_functions(model, tmp_path):
    """A real (one-trial) MetaSchedule run on the legacy functions (conv -> transpose, leaky ReLU in
    NCHW), then remeasure_records into a database for the new ones (conv + leaky ReLU): the tuned
    convolution schedules are applied to the new functions as anchor traces and measured."""
    target = targets.parse_target("broadwell")
    legacy_db = tmp_path / "legacy"
    legacy = passes.prepare_module(passes.import_onnx(model), target, "NHWC", layout_elementwise=[])
    tuning.tune_module(
        legacy,
        target,
        legacy_db,
        trials=1,
        trials_per_iter=1,
        op_names=["conv2d_add"],
        scheduler="round-robin",
        search_threads=1,
        population_size=8,
        genetic_iters=1,
        seed=0,
    )
    assert databases.count_records(legacy_db) >= 1
    new = passes.prepare_module(passes.import_onnx(model), target, "NHWC")
    tasks = tuning.select_tasks(tuning.extract_tasks(new, target), ["conv2d_add"])
    fused = [task for task in tasks if "leaky" in task.task_name]
    assert len(fused) == 1, [task.task_name for task in tasks]  # the first conv, its bias and its leaky ReLU
    result = tuning.remeasure_records(fused, target, legacy_db, tmp_path / "new", top_k=1, cache_flush=False)
    assert result.added >= 1 and result.transferred == result.added, result.errors
    assert databases.count_records(tmp_path / "new") == result.added
    # the transferred records are found for the new functions when building, and the build is right
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    with tvm.target.Target(target), ms.database.JSONDatabase(work_dir=str(tmp_path / "new"), allow_missing=False):
        applied = relax.transform.MetaScheduleApplyDatabase()(new)
    scheduled = [
        gv.name_hint
        for gv, func in applied.functions.items()
        if "leaky" in gv.name_hint and func.attrs is not None and func.attrs.get("tirx.is_scheduled")
    ]
    assert len(scheduled) == len(fused) == result.added, scheduled  # every fused function got its schedule
    executable, _ = tvm_build.build_module(new, target, tmp_path / "new")
    x = np.random.default_rng(5).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    ours = relax.VirtualMachine(executable, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(ours, run_onnxruntime(model, {"input": x})[0], rtol=0, atol=1e-4)
