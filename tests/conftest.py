"""Shared fixtures: where the real data lives, and the default implementation's config directory."""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data beside the repository; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"{SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def default_config_dir() -> Path:
    """The default implementation's config directory, compiled by TVM once and cached (~1 min)."""
    from implementation.config_dir import build_config_dir

    return build_config_dir()


@pytest.fixture(scope="session")
def face_verifier(default_config_dir):
    from implementation import FaceVerifier

    fv = FaceVerifier()
    status = fv.initialize(str(default_config_dir))
    assert status.ok, status
    return fv


@pytest.fixture(scope="session")
def retinaface_ort():
    """RetinaFace through ONNX Runtime on one thread: the reference ``forward`` for detector tests."""
    ort = pytest.importorskip("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    model = ROOT / "data" / "models" / "retinaface_mnet025.onnx"
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"input": x})


@pytest.fixture(scope="session")
def native_submission(tmp_path_factory, default_config_dir):
    """The default implementation built as a NIST submission folder (C++, CMake); skips without a toolchain."""
    from native_build import build_submission_for_tests

    return build_submission_for_tests(tmp_path_factory.mktemp("submission") / "frvt-submission", default_config_dir)


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A tiny ONNX model (conv, relu, gemm; ``onnx_models.write_tiny_model``)."""
    from onnx_models import write_tiny_model

    return write_tiny_model(tmp_path_factory.mktemp("onnx") / "tiny.onnx")


@pytest.fixture(scope="session")
def tiny_compiled(tiny_model, tmp_path_factory) -> tuple[Path, dict]:
    """The tiny model compiled untuned for Broadwell with ``onnx_models.TINY_CONFIG``: (directory, metadata)."""
    from frvt.compiler.compile import compile_model
    from onnx_models import TINY_CONFIG

    out = tmp_path_factory.mktemp("compiled") / "tiny-broadwell"
    return out, compile_model(tiny_model, target="broadwell", output_dir=out, model_config=TINY_CONFIG, progress=False)
