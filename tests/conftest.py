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
