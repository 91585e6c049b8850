"""implementation.config_dir: the default implementation's config directory, built from the
bundled models (compiled once and cached, shared with the rest of the suite): its layout, its
key, and a researcher's own compiled embedder in place of ours."""

from __future__ import annotations

import dataclasses
import json

from implementation.config_dir import CONFIG_NAME, DETECTOR_ONNX, EMBEDDER_ONNX, build_config_dir
from implementation.model_config import DLIB_RESNET, ModelConfig


def test_the_default_config_dir_holds_what_initialize_loads(default_config_dir):
    settings = json.loads((default_config_dir / CONFIG_NAME).read_text())
    assert settings["format"] == 1 and settings["flip_average"] is True
    assert settings["detector"] == "detector" and settings["embedder"] == "embedder"
    assert settings["target"] == {"kind": "llvm", "mcpu": "broadwell", "num-cores": 1}
    for name, onnx in (("detector", DETECTOR_ONNX), ("embedder", EMBEDDER_ONNX)):
        model = default_config_dir / name
        assert (model / "model.so").stat().st_size > 0
        assert (model / "model.onnx").read_bytes() == onnx.read_bytes()
        metadata = json.loads((model / "metadata.json").read_text())
        assert metadata["model"] == onnx.name and metadata["target"] == settings["target"]
    # the chip and its mirror image in one call: the embedder compiled for a batch of two (its
    # tuning database for that shape is committed)
    assert ModelConfig.load(default_config_dir / "embedder" / "model_config.json") == dataclasses.replace(
        DLIB_RESNET, input_shape=(2, 3, 150, 150)
    )
    assert json.loads((default_config_dir / "embedder" / "metadata.json").read_text())["input_shape"] == [
        2,
        3,
        150,
        150,
    ]


def test_an_unchanged_setup_is_built_once(default_config_dir):
    stamp = (default_config_dir / CONFIG_NAME).stat().st_mtime_ns
    assert build_config_dir() == default_config_dir
    assert (default_config_dir / CONFIG_NAME).stat().st_mtime_ns == stamp


def test_a_setting_changes_the_key_and_the_directory_is_written_whole(default_config_dir, tmp_path):
    out = build_config_dir(tmp_path / "single-view", flip_average=False)
    settings = json.loads((out / CONFIG_NAME).read_text())
    default = json.loads((default_config_dir / CONFIG_NAME).read_text())
    assert settings["flip_average"] is False and settings["key"] != default["key"]
    same_models = [
        (out / m / "model.so").read_bytes() == (default_config_dir / m / "model.so").read_bytes()
        for m in ("detector", "embedder")
    ]
    # the detector comes from the cache; a single view has no mirror image to batch with the chip,
    # so its embedder is the one compiled for one image, not the default's batch of two
    assert same_models == [True, False]
    assert json.loads((out / "embedder" / "metadata.json").read_text())["input_shape"] == [1, 3, 150, 150]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single-view"]  # no partial directory left


def test_an_embedder_compiled_elsewhere_is_used_as_given(default_config_dir, tmp_path):
    own = tmp_path / "my-embedder"
    own.mkdir()
    for name in ("model.so", "metadata.json"):
        (own / name).write_bytes((default_config_dir / "embedder" / name).read_bytes())
    out = build_config_dir(tmp_path / "cfg", embedder_library=own)
    assert (out / "embedder" / "model.so").read_bytes() == (own / "model.so").read_bytes()
    # no model config beside the library: the one given (the default's) is written
    assert ModelConfig.load(out / "embedder" / "model_config.json") == DLIB_RESNET
    assert not (out / "embedder" / "model.onnx").exists()  # ours is not claimed to be its source
    assert (
        json.loads((out / CONFIG_NAME).read_text())["key"]
        != json.loads((default_config_dir / CONFIG_NAME).read_text())["key"]
    )
