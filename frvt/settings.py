"""Where frvt keeps things and how it runs code: one source for each setting.

- :func:`cache_root`: compiled models, config directories, LFW templates, tuning logs
  (``$FRVT_CACHE``, default ``~/.cache/frvt``).
- :func:`data_root`: the bundled models, tuning databases and validation set, in the repository
  (``data/``) or inside an installed wheel (``frvt/data/``).
- :data:`SINGLE_THREAD_ENV`, :func:`single_thread_env` and :func:`single_thread_environment`: the
  environment that keeps numpy, OpenCV, OpenMP and TVM on one thread.
- :func:`resolve_config_dir`: the config directory an implementation is initialised with.

Reading a setting never creates a directory and never imports a heavy library.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: Thread counts for every runtime a template may touch, plus ``TVM_BIND_THREADS=0``: TVM's
#: ``runtime.config_threadpool(1, 1)`` otherwise pins the calling thread to CPU 0 (and every process
#: it starts inherits that), while no other runtime pins.
SINGLE_THREAD_ENV: Mapping[str, str] = {
    "OMP_NUM_THREADS": "1",
    "TVM_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "TVM_BIND_THREADS": "0",
}

_PACKAGE = Path(__file__).resolve().parent
#: The directory that holds the ``frvt`` package: the repository root in a source checkout
#: (where ``scripts/`` and ``.git`` are), ``site-packages`` in an installed wheel.
SOURCE_ROOT = _PACKAGE.parent


def cache_root() -> Path:
    """Root of frvt's caches: ``$FRVT_CACHE`` when set (and not empty), else ``~/.cache/frvt``."""
    value = os.environ.get("FRVT_CACHE")
    return Path(value).expanduser() if value else Path.home() / ".cache" / "frvt"


def data_root() -> Path:
    """The bundled data (``models/``, ``tuning/``, ``validation/``).

    An installed wheel carries them as ``frvt/data``; a source checkout has them in ``data/`` beside
    the ``frvt`` package. The first that exists wins; the checkout's path is returned otherwise, so
    error messages name where the data were expected.
    """
    for candidate in (_PACKAGE / "data", SOURCE_ROOT / "data"):
        if (candidate / "models").is_dir():
            return candidate
    return SOURCE_ROOT / "data"


def single_thread_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with :data:`SINGLE_THREAD_ENV` applied over it."""
    return {**(os.environ if base is None else base), **SINGLE_THREAD_ENV}


def limit_threads_by_default() -> None:
    """Put :data:`SINGLE_THREAD_ENV` into this process's environment where the caller set nothing."""
    for key, value in SINGLE_THREAD_ENV.items():
        os.environ.setdefault(key, value)


@contextlib.contextmanager
def single_thread_environment() -> Iterator[None]:
    """Put :data:`SINGLE_THREAD_ENV` into this process's environment while the block runs (for the
    child processes it starts: TVM's builders and runners), then restore what was there."""
    saved = {key: os.environ.get(key) for key in SINGLE_THREAD_ENV}
    os.environ.update(SINGLE_THREAD_ENV)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class ConfigDirError(ValueError):
    """No usable config directory; the message names the path or what to pass."""


def resolve_config_dir(
    impl: Any, config_dir: str | os.PathLike | None, fallback: Callable[[], Path] | None = None
) -> Path:
    """The config directory to initialise ``impl`` with, resolved to an absolute path.

    In order: ``config_dir`` when given (it must be a directory), else the implementation's own
    ``default_config_dir()`` when it has one (it may build it: the default implementation compiles
    its models once), else ``fallback()`` when given.

    Raises
    ------
    ConfigDirError
        ``config_dir`` is not a directory, or there is nothing to fall back to.
    """
    if config_dir is not None:
        path = Path(config_dir)
        if not path.is_dir():
            raise ConfigDirError(f"config directory {path} does not exist")
        return path.resolve()
    builder = getattr(impl, "default_config_dir", None)
    if callable(builder):
        return Path(builder()).resolve()
    if fallback is not None:
        return fallback()
    raise ConfigDirError("this implementation has no default config directory: pass --config-dir")
