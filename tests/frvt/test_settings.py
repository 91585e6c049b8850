"""frvt.settings: the cache root, the data root, the single-thread environment, config directories."""

from __future__ import annotations

from pathlib import Path

import pytest

from frvt import settings


def test_cache_root_honours_frvt_cache_and_defaults_to_home(monkeypatch, tmp_path):
    monkeypatch.setenv("FRVT_CACHE", str(tmp_path / "c"))
    assert settings.cache_root() == tmp_path / "c"
    monkeypatch.setenv("FRVT_CACHE", "")
    assert settings.cache_root() == Path.home() / ".cache" / "frvt"
    monkeypatch.delenv("FRVT_CACHE")
    assert settings.cache_root() == Path.home() / ".cache" / "frvt"


def test_every_cache_follows_frvt_cache(monkeypatch, tmp_path):
    """The modules that cache things ask settings, so FRVT_CACHE moves all of them."""
    import inspect

    from frvt import lfw
    from frvt.compiler import compile as tvm_compile, tuning
    from frvt.perf.bench import models, run
    from implementation import config_dir

    for module in (lfw, tvm_compile, tuning, models, run, config_dir):
        assert '".cache"' not in inspect.getsource(module), module.__name__


def test_data_root_holds_the_bundled_data():
    root = settings.data_root()
    assert (root / "models" / "retinaface_mnet025.onnx").is_file()
    assert (root / "validation" / "enroll.txt").is_file()
    assert (root / "tuning").is_dir()


def test_data_root_prefers_the_installed_copy(monkeypatch, tmp_path):
    package = tmp_path / "site" / "frvt"
    (package / "data" / "models").mkdir(parents=True)
    monkeypatch.setattr(settings, "_PACKAGE", package)
    monkeypatch.setattr(settings, "SOURCE_ROOT", package.parent)
    assert settings.data_root() == package / "data"
    (package / "data" / "models").rmdir()
    assert settings.data_root() == package.parent / "data"  # named in errors when neither exists


def test_single_thread_env_overrides_the_base_and_keeps_the_rest():
    env = settings.single_thread_env({"OMP_NUM_THREADS": "8", "HOME": "/h"})
    assert env["HOME"] == "/h"
    assert all(env[key] == value for key, value in settings.SINGLE_THREAD_ENV.items())
    assert env["OMP_NUM_THREADS"] == "1" and env["TVM_BIND_THREADS"] == "0"


def test_limit_threads_by_default_keeps_what_the_caller_set(monkeypatch):
    for key in settings.SINGLE_THREAD_ENV:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    settings.limit_threads_by_default()
    import os

    assert os.environ["OMP_NUM_THREADS"] == "3" and os.environ["TVM_NUM_THREADS"] == "1"


class _Builds:
    def __init__(self, path: Path) -> None:
        self.path = path

    def default_config_dir(self) -> Path:
        return self.path


def test_resolve_config_dir_order(tmp_path):
    given, own, scratch = (tmp_path / name for name in ("given", "own", "scratch"))
    given.mkdir()
    own.mkdir()
    assert settings.resolve_config_dir(_Builds(own), given) == given.resolve()
    assert settings.resolve_config_dir(_Builds(own), None) == own.resolve()
    assert settings.resolve_config_dir(object(), None, fallback=lambda: scratch) == scratch
    with pytest.raises(settings.ConfigDirError, match="pass --config-dir"):
        settings.resolve_config_dir(object(), None)
    with pytest.raises(settings.ConfigDirError, match="missing"):
        settings.resolve_config_dir(_Builds(own), tmp_path / "missing")


def test_validate_and_profile_resolve_config_dirs_alike(tmp_path):
    """One resolution, two error types: the run's own."""
    from frvt.perf.profile import ProfileError, _resolve_config_dir
    from frvt.validate import ValidationSetupError, resolve_config_dir

    missing = tmp_path / "missing"
    with pytest.raises(ValidationSetupError, match="does not exist"):
        resolve_config_dir(object(), missing)
    with pytest.raises(ProfileError, match="does not exist"):
        _resolve_config_dir(object(), missing, tmp_path / "scratch")
    assert _resolve_config_dir(object(), None, tmp_path / "scratch") == tmp_path / "scratch"
    assert (tmp_path / "scratch").is_dir()
