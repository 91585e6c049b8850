"""implementation.model_config: preprocessing as data, one source for the embedder's normalisation."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from frvt import settings
from implementation.model_config import DLIB_RESNET, ModelConfig


def test_dlib_normalisation_is_dlibs_mean_over_256():
    chip = np.arange(150 * 150 * 3, dtype=np.uint32).reshape(150, 150, 3).astype(np.uint8)
    x = DLIB_RESNET.network_input(chip)
    assert x.shape == (150, 150, 3) and x.dtype == np.float32
    expected = (chip[0, 1].astype(np.float64) - [122.782, 117.001, 104.298]) / 256.0
    np.testing.assert_allclose(x[0, 1], expected, rtol=1e-6)


def test_batch_follows_the_layout():
    x = np.random.default_rng(0).random((4, 6, 3), dtype=np.float32)
    nchw = DLIB_RESNET.batch(x)
    assert nchw.shape == (1, 3, 4, 6) and nchw.flags.c_contiguous
    np.testing.assert_array_equal(nchw[0, 2], x[:, :, 2])
    nhwc = ModelConfig("n", input_shape=(1, 4, 6, 3), layout="NHWC").batch(x)
    assert nhwc.shape == (1, 4, 6, 3)


def test_colour_order_and_resize():
    cfg = ModelConfig("bgr", input_shape=(1, 3, 8, 8), colour_order="BGR")
    chip = np.zeros((16, 16, 3), np.uint8)
    chip[..., 0] = 200  # red
    x = cfg.network_input(chip)
    assert x.shape == (8, 8, 3)
    assert x[0, 0, 2] == 200 and x[0, 0, 0] == 0  # red is last in BGR


def test_json_round_trip_and_the_committed_copy(tmp_path):
    path = tmp_path / "m.json"
    DLIB_RESNET.save(path)
    assert ModelConfig.load(path) == DLIB_RESNET
    committed = settings.data_root() / "models" / "dlib_face_recognition_resnet_model_v1.json"
    assert ModelConfig.load(committed) == DLIB_RESNET


def test_unknown_keys_are_ignored_and_input_size_reads_the_layout():
    cfg = ModelConfig.from_json({"name": "x", "input_shape": [1, 112, 96, 3], "layout": "NHWC", "extra": 1})
    assert cfg.input_size == (112, 96)
    with pytest.raises(TypeError):
        ModelConfig.from_json({"input_shape": [1, 3, 4, 4]})  # no name


@pytest.mark.parametrize(
    "config",
    [
        DLIB_RESNET,
        dataclasses.replace(
            DLIB_RESNET,
            colour_order="BGR",
            layout="NHWC",
            input_shape=(1, 150, 150, 3),
            mean=(127.5, 120.1, 99.3),
            scale=1 / 127.5,
        ),
        dataclasses.replace(DLIB_RESNET, input_shape=(1, 3, 112, 112)),  # the chip is resized first
    ],
    ids=["dlib", "bgr-nhwc", "resized"],
)
def test_network_batch_is_the_batch_of_the_network_input_and_its_mirror_image(config):
    rng = np.random.default_rng(0)
    for _ in range(5):
        chip = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
        x = config.network_input(chip)
        np.testing.assert_array_equal(config.network_batch(chip), config.batch(x))
        np.testing.assert_array_equal(config.network_batch(chip, mirror=True), config.batch(x, x[:, ::-1]))
