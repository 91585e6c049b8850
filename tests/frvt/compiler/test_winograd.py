"""frvt.compiler.winograd: the transform algebra against direct correlation (numpy), which
convolutions the NHWC-winograd scheme transforms, and a compiled model against ONNX Runtime.
Builds are untuned (default schedules): correctness does not depend on tuning."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from frvt.compiler import compile as tvm_compile, databases, passes, targets, tuning
from frvt.compiler import winograd
from implementation.tvm_runtime import CompiledModel
from onnx_models import run_onnxruntime, save_model

INPUT_SHAPE = (1, 8, 16, 16)


@pytest.mark.parametrize("m", [2, 4])
def test_transforms_compute_a_3x3_correlation(m):
    """Y = A^T [(G g G^T) * (B^T d B)] A is the valid correlation of an (m+2)^2 tile with g."""
    A, B, G = winograd.transform_matrices(m)
    rng = np.random.default_rng(m)
    d = rng.normal(size=(m + 2, m + 2))
    g = rng.normal(size=(3, 3))
    y = A.T @ ((G @ g @ G.T) * (B.T @ d @ B)) @ A
    direct = np.array([[np.sum(d[i : i + 3, j : j + 3] * g) for j in range(m)] for i in range(m)])
    np.testing.assert_allclose(y, direct, atol=1e-9)


def test_kernel_pack_is_g_w_gt_per_channel_pair():
    rng = np.random.default_rng(0)
    weight = rng.normal(size=(5, 3, 3, 4)).astype(np.float32)  # OHWI: CO=5, CI=4
    packed = winograd.kernel_pack_numpy(weight, 4)
    _, _, G = winograd.transform_matrices(4)
    assert packed.shape == (6, 6, 4, 5) and packed.dtype == np.float32
    co, ci = 3, 2
    np.testing.assert_allclose(
        packed[:, :, ci, co], G @ weight[co, :, :, ci].astype(np.float64) @ G.T, rtol=1e-5, atol=1e-6
    )


def _model(path: Path) -> Path:
    """conv 3x3 8->16 stride 1 on 16x16 (Winograd F(4x4)) -> relu -> conv 3x3 16->16 stride 2
    (direct) -> relu -> conv 3x3 16->16 stride 1 on 8x8 (Winograd F(2x2)) -> relu -> conv 3x3
    16->8 stride 2 (direct) -> conv 3x3 8->8 stride 1 on 4x4 (too small: direct)."""
    from onnx import helper, numpy_helper

    rng = np.random.default_rng(1)
    shapes = {"w1": (16, 8, 3, 3), "w2": (16, 16, 3, 3), "w3": (16, 16, 3, 3), "w4": (8, 16, 3, 3), "w5": (8, 8, 3, 3)}
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.2, shape).astype(np.float32), name) for name, shape in shapes.items()
    ]
    inits.append(numpy_helper.from_array(rng.normal(0, 0.1, 16).astype(np.float32), "b1"))
    conv = {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]}
    nodes = [
        helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], **conv),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], strides=[2, 2], **conv),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Conv", ["r2", "w3"], ["c3"], **conv),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("Conv", ["r3", "w4"], ["c4"], strides=[2, 2], **conv),
        helper.make_node("Conv", ["c4", "w5"], ["output"], **conv),
    ]
    return save_model(path, nodes, {"input": INPUT_SHAPE}, {"output": (1, 8, 4, 4)}, inits, name="winograd")


@pytest.fixture(scope="module")
def model(tmp_path_factory) -> Path:
    return _model(tmp_path_factory.mktemp("winograd") / "model.onnx")


def test_only_eligible_convolutions_are_transformed(model):
    target = targets.parse_target("broadwell")
    mod = passes.prepare_module(passes.import_onnx(model), target, "NHWC-winograd")
    names = [task.task_name for task in tuning.extract_tasks(mod, target)]
    convolutions = [name for name in names if "conv2d" in name]
    assert len(convolutions) == 5, names
    winograd = sorted(name.split("winograd_nhwc_")[1][:2] for name in convolutions if "winograd" in name)
    assert winograd == ["f2", "f4"], names  # F(4x4) on 16x16, F(2x2) on 8x8; stride 2 and 4x4 stay direct
    legacy = passes.prepare_module(
        passes.import_onnx(model), target, "NHWC-winograd", databases.LEGACY_WINOGRAD_SETTINGS
    )
    names = [task.task_name for task in tuning.extract_tasks(legacy, target)]
    assert sorted(n.split("winograd_nhwc_")[1][:2] for n in names if "winograd" in n) == ["f4", "f4"], names


def test_databases_keep_the_winograd_settings_they_were_tuned_with(model, tmp_path):
    target = targets.parse_target("broadwell")
    assert databases.database_winograd(None) == passes.WINOGRAD_SETTINGS
    legacy = tmp_path / "legacy"  # an NHWC-winograd manifest from before the field
    databases.write_manifest(legacy, model, target, conv_scheme="NHWC-winograd")
    (legacy / databases.RECORD_FILE).write_text(json.dumps([0, [[], [0.001], {}, []]]) + "\n")
    assert databases.database_winograd(legacy) == databases.LEGACY_WINOGRAD_SETTINGS
    recorded = tmp_path / "recorded"
    databases.write_manifest(
        recorded, model, target, conv_scheme="NHWC-winograd", winograd={"tiles": [[4, 2]], "min_channels": 4}
    )
    assert databases.database_winograd(recorded) == {"tiles": [[4, 2]], "min_channels": 4}
    keys = {
        tvm_compile.cache_key(model, "broadwell", database=d, conv_scheme="NHWC-winograd") for d in (legacy, recorded)
    }
    assert len(keys) == 2  # the settings are part of the compiled artefact's key


def test_winograd_tiles_other_than_2_or_4_are_refused():
    with pytest.raises(ValueError, match="2 or 4"):
        winograd.make_legalize_conv2d(tiles=[[8, 6]], min_channels=8)


def test_winograd_build_matches_onnxruntime(model, tmp_path):
    metadata = tvm_compile.compile_model(
        model, output_dir=tmp_path / "out", progress=False, conv_scheme="NHWC-winograd"
    )
    assert metadata["conv_scheme"] == "NHWC-winograd" and metadata["winograd"] == passes.WINOGRAD_SETTINGS
    # packed kernels: F(4x4) 6x6 per 3x3 kernel (16x8), F(2x2) 4x4 (16x16); the rest as they are
    direct = 16 * 16 * 9 + 8 * 16 * 9 + 8 * 8 * 9
    assert metadata["weight_bytes"] == 4 * (16 * 8 * 36 + 16 * 16 * 16 + direct + 16)
    x = np.random.default_rng(2).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    reference = run_onnxruntime(model, {"input": x})[0]
    ours = CompiledModel.load(tmp_path / "out")(x)[0]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
