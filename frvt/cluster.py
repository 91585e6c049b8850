"""Dask for enrolment and scoring: an existing cluster, or a local one on this machine's cores.

Each worker runs one thread (the implementation's contract is single-threaded, and a similarity
block is one BLAS call on one core) and initialises the implementation once, through a worker
plugin, the first time a task needs it.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

from distributed.diagnostics.plugin import WorkerPlugin

from frvt.settings import SINGLE_THREAD_ENV, limit_threads_by_default


@contextlib.contextmanager
def dask_client(scheduler: str | None = None, workers: int | None = None) -> Iterator[distributed.Client]:  # noqa: F821
    """A Dask client: on the cluster at ``scheduler`` (``tcp://host:8786``), or on a local cluster of
    ``workers`` single-threaded worker processes (default: one per core), closed on exit."""
    from distributed import Client, LocalCluster

    if scheduler:
        with Client(scheduler) as client:
            yield client
        return
    n = workers or os.cpu_count() or 1
    with (
        LocalCluster(
            n_workers=n,
            threads_per_worker=1,
            processes=True,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
            env=dict(SINGLE_THREAD_ENV, MALLOC_TRIM_THRESHOLD_="65536"),
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


class ImplementationPlugin(WorkerPlugin):
    """A Dask worker plugin holding one initialised implementation per worker process.

    Parameters
    ----------
    spec : str
        ``module:Attr``.
    config_dir : str
        Passed to ``initialize`` (the same path must exist on every worker).
    """

    def __init__(self, spec: str, config_dir: str) -> None:
        self.spec = spec
        self.config_dir = config_dir
        self.name = f"frvt-implementation:{spec}:{config_dir}"
        self.impl = None
        self.error: str | None = None

    def setup(self, worker=None) -> None:
        from frvt.contract import load_implementation

        limit_threads_by_default()
        try:
            impl = load_implementation(self.spec)
            status = impl.initialize(self.config_dir)
        except Exception as exc:  # noqa: BLE001 - an untrusted implementation: report, do not kill the worker
            self.error = f"{self.spec}: {type(exc).__name__}: {exc}"
            return
        if not status.ok:
            self.error = f"initialize({self.config_dir}) returned {status.code.name}: {status.info}"
            return
        self.impl = impl

    def teardown(self, worker=None) -> None:
        self.impl = None


def worker_implementation(name: str):
    """The implementation the plugin ``name`` initialised in this worker; raises RuntimeError if it failed."""
    from distributed import get_worker

    plugin = get_worker().plugins[name]
    if plugin.impl is None:
        raise RuntimeError(plugin.error or "the implementation was not initialised")
    return plugin.impl


def register_implementation(client, spec: str, config_dir: str) -> str:
    """Install the implementation on every worker (initialised once each); returns the plugin name."""
    plugin = ImplementationPlugin(spec, config_dir)
    client.register_plugin(plugin, name=plugin.name)
    return plugin.name
