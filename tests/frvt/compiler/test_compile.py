"""frvt.compiler.compile, the compile driver, on a tiny ONNX model: build and export, metadata,
the build cache, the convolution scheme, ``frvt compile``."""

from __future__ import annotations

import json

import numpy as np
import pytest

from frvt.compiler import compile as tvm_compile, databases, targets
from implementation.model_config import ModelConfig
from implementation.tvm_runtime import CompiledModel
from onnx_models import TINY_CONFIG, TINY_INPUT_SHAPE, run_onnxruntime, write_tiny_model

INPUT_SHAPE = TINY_INPUT_SHAPE


def test_cache_key_depends_on_target_model_database_and_config(tiny_model, tmp_path):
    broadwell = tvm_compile.cache_key(tiny_model, "broadwell")
    assert broadwell == tvm_compile.cache_key(tiny_model, {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1})
    assert broadwell != tvm_compile.cache_key(tiny_model, '{"kind": "llvm", "mcpu": "skylake"}')
    other = write_tiny_model(tmp_path / "other.onnx", seed=1)
    assert broadwell != tvm_compile.cache_key(other, "broadwell")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", model_config=TINY_CONFIG)
    database = tmp_path / "db"
    database.mkdir()
    (database / databases.RECORD_FILE).write_text("[0, [[], [0.001], {}, []]]\n")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", database)
    assert broadwell == tvm_compile.cache_key(tiny_model, "broadwell", conv_scheme="NCHW")
    assert broadwell != tvm_compile.cache_key(tiny_model, "broadwell", conv_scheme="NHWC")


# ------------------------------------------------------------------------------- compile + run


def test_nhwc_convolutions_match_onnxruntime_and_are_recorded(tiny_model, tmp_path):
    """The NHWC build computes the convolution in another layout; the model's input and
    outputs are unchanged."""
    metadata = tvm_compile.compile_model(
        tiny_model, target="broadwell", output_dir=tmp_path / "nhwc", progress=False, conv_scheme="NHWC"
    )
    assert metadata["conv_scheme"] == "NHWC"
    x = np.random.default_rng(4).normal(0, 1, INPUT_SHAPE).astype(np.float32)
    ours = CompiledModel.load(tmp_path / "nhwc")(x)
    np.testing.assert_allclose(ours[0], run_onnxruntime(tiny_model, {"input": x})[0], rtol=0, atol=1e-4)


def test_tuning_another_scheme_into_a_database_is_refused(tiny_model, tmp_path):
    """One database, one scheme: its manifest would otherwise name only the last one tuned."""
    database = tmp_path / "db"
    databases.write_manifest(database, tiny_model, targets.parse_target("broadwell"), conv_scheme="NHWC")
    (database / databases.RECORD_FILE).write_text(json.dumps([0, [[], [0.001], {"kind": "llvm"}, []]]) + "\n")
    with pytest.raises(ValueError, match="NHWC records"):
        tvm_compile.compile_model(
            tiny_model,
            output_dir=tmp_path / "x",
            progress=False,
            database=database,
            tune=True,
            conv_scheme="NHWC-winograd",
        )


def test_unknown_conv_scheme_is_an_error_naming_it(tiny_model, tmp_path):
    with pytest.raises(ValueError, match="HWCN"):
        tvm_compile.compile_model(tiny_model, output_dir=tmp_path / "x", progress=False, conv_scheme="HWCN")
    assert not (tmp_path / "x").exists()


def test_metadata_and_output_directory(tiny_compiled, tiny_model):
    import tvm

    out, metadata = tiny_compiled
    assert sorted(p.name for p in out.iterdir()) == ["metadata.json", "model.so", "model_config.json"]
    on_disk = json.loads((out / "metadata.json").read_text())
    assert on_disk == metadata
    assert metadata["model_sha256"] == databases.file_sha256(tiny_model)
    assert metadata["input_name"] == "input" and metadata["input_shape"] == list(INPUT_SHAPE)
    assert metadata["output_shapes"] == [[1, 10]]
    assert metadata["target"] == {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}
    assert metadata["tvm_version"] == tvm.__version__
    assert metadata["tuned"] is False and metadata["database"] is None and metadata["database_records"] == 0
    assert metadata["conv_scheme"] == "NCHW" and metadata["winograd"] is None
    # the weights one call reads: the conv's 8x3x3x3 + 8 and the FC's 10x2048 + 10 float32
    assert metadata["weight_bytes"] == 4 * (8 * 3 * 3 * 3 + 8 + 10 * 8 * 16 * 16 + 10)
    assert metadata["preprocessing"]["mean"] == [1.0, 2.0, 3.0]
    assert ModelConfig.load(out / "model_config.json") == TINY_CONFIG
    assert CompiledModel.load(out).metadata == metadata


def test_ensure_compiled_builds_once_per_key(tiny_model, tmp_path):
    first = tvm_compile.ensure_compiled(tiny_model, "broadwell", tmp_path)
    stamp = (first / "model.so").stat().st_mtime_ns
    again = tvm_compile.ensure_compiled(tiny_model, "broadwell", tmp_path)
    assert again == first and (again / "model.so").stat().st_mtime_ns == stamp
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no staging left behind


# ------------------------------------------------------------------------------------------ CLI


def test_cli_compile_writes_a_loadable_directory(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli.app import app

    config = tmp_path / "config.json"
    TINY_CONFIG.save(config)
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app, ["compile", str(tiny_model), "--output", str(out), "--model-config", str(config), "--no-progress"]
    )
    assert result.exit_code == 0, result.output
    assert "model.so" in result.output and "untuned" in result.output
    assert CompiledModel.load(out)(np.zeros(INPUT_SHAPE, np.float32))[0].shape == (1, 10)


def test_cli_compile_bad_target_exits_2(tiny_model, tmp_path):
    from typer.testing import CliRunner

    from frvt.cli.app import app

    result = CliRunner().invoke(
        app, ["compile", str(tiny_model), "--target", "pentium", "--output", str(tmp_path / "o")]
    )
    assert result.exit_code == 2
    assert "pentium" in result.output
