"""Load and run a model compiled by :mod:`implementation.compile`, on one CPU thread.

The template path imports only this module: TVM's runtime and Relax VM, no compiler passes
(TVM's ``python/tvm/runtime/vm.py``). Loading is cheap (``tvm.runtime.load_module`` of the
exported library) and happens once.

Threads: the TVM thread pool is set to one worker (``runtime.config_threadpool(1, 1)``, and
``TVM_NUM_THREADS=1`` is put in the environment before TVM is first imported by this module if
the caller has not set it). Inference then runs on the calling thread.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


def _import_tvm_runtime():
    """Import TVM's runtime with its thread pool capped at one thread."""
    os.environ.setdefault("TVM_NUM_THREADS", "1")
    import tvm  # pylint: disable=import-outside-toplevel
    from tvm.runtime.vm import VirtualMachine  # pylint: disable=import-outside-toplevel

    # config_threadpool pins the calling process to one CPU (sched_setaffinity); forked NIST-style
    # workers would then all share that core. Keep the one-thread pool, restore the affinity.
    affinity = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    tvm.get_global_func("runtime.config_threadpool")(1, 1)
    if affinity is not None:
        os.sched_setaffinity(0, affinity)
    return tvm, VirtualMachine


def _load_vm(library: Path):
    tvm, VirtualMachine = _import_tvm_runtime()
    lib = tvm.runtime.load_module(str(library))
    device = tvm.cpu(0)
    return tvm, VirtualMachine(lib, device), device


def _flatten_outputs(result) -> list[np.ndarray]:
    if hasattr(result, "numpy"):
        return [result.numpy()]
    outputs: list[np.ndarray] = []
    for item in result:
        outputs.extend(_flatten_outputs(item))
    return outputs


def run_library_once(library: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """Run an exported library's ``main`` once on ``x`` (used to record output shapes)."""
    tvm, vm, device = _load_vm(Path(library))
    return _flatten_outputs(vm["main"](tvm.runtime.tensor(x, device)))


@dataclass(frozen=True)
class OperatorTime:
    """Time spent in one compiled operator (a fused TIR function or a VM builtin)."""

    name: str
    time_us: float
    """Total microseconds per call of the model (summed over the operator's invocations)."""
    percent: float
    """Share of the summed operator time, 0..100."""
    calls: int = 1
    """Invocations per model call."""


@dataclass
class CompiledModel:
    """A loaded compiled model: ``model(x) -> list of outputs``, one thread.

    Attributes
    ----------
    input_name : str
        Name of the ONNX input.
    input_shape : tuple of int
        Static input shape, e.g. ``(1, 3, 150, 150)``.
    metadata : dict
        Content of ``metadata.json`` (see ``implementation.compile.compile_model``);
        empty when a bare ``.so`` was loaded.
    load_seconds : float
        Wall time of :meth:`load`.
    """

    input_name: str
    input_shape: tuple[int, ...]
    metadata: dict = field(default_factory=dict)
    load_seconds: float = 0.0
    _tvm: object = field(default=None, repr=False)
    _vm: object = field(default=None, repr=False)
    _device: object = field(default=None, repr=False)
    _main: object = field(default=None, repr=False)

    @classmethod
    def load(cls, path: str | Path) -> "CompiledModel":
        """Load ``model.so`` from a compiled-model directory or a ``.so`` path.

        Raises
        ------
        FileNotFoundError
            No library at ``path``.
        """
        start = time.perf_counter()
        path = Path(path)
        directory, library = (path, path / "model.so") if path.is_dir() else (path.parent, path)
        if not library.exists():
            raise FileNotFoundError(f"no compiled library at {library}")
        metadata_path = directory / "metadata.json"
        metadata = json.loads(metadata_path.read_text()) if metadata_path.exists() else {}
        tvm, vm, device = _load_vm(library)
        return cls(
            input_name=str(metadata.get("input_name", "input")),
            input_shape=tuple(int(s) for s in metadata.get("input_shape", ())),
            metadata=metadata,
            load_seconds=time.perf_counter() - start,
            _tvm=tvm,
            _vm=vm,
            _device=device,
            _main=vm["main"],
        )

    def __call__(self, x: np.ndarray) -> list[np.ndarray]:
        """Run the model.

        Parameters
        ----------
        x : ndarray, float32, shape ``input_shape``
            The preprocessed input (e.g. NCHW ``(1, 3, 150, 150)``).

        Returns
        -------
        list of ndarray
            The model outputs in ONNX output order (float32).

        Raises
        ------
        ValueError
            ``x`` has the wrong shape.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        if self.input_shape and x.shape != self.input_shape:
            raise ValueError(f"input shape {x.shape} != compiled shape {self.input_shape}")
        return _flatten_outputs(self._main(self._tvm.runtime.tensor(x, self._device)))

    def profile(self, x: np.ndarray, repeat: int = 10) -> list[OperatorTime]:
        """Per-operator time of one call, averaged over ``repeat`` calls (after one warm-up).

        Times every VM call instruction (compiled TIR kernels and VM builtins such as
        allocation) with ``time.perf_counter`` through the Relax VM's instrument hook.

        Parameters
        ----------
        x : ndarray
            An input as for ``__call__``.
        repeat : int
            Timed calls to average over.

        Returns
        -------
        list of OperatorTime
            Sorted by time, slowest first; ``percent`` sums to 100 over the list.
        """
        x = np.ascontiguousarray(x, dtype=np.float32)
        tensor = self._tvm.runtime.tensor(x, self._device)
        self._main(tensor)
        totals: dict[str, float] = {}
        calls: dict[str, int] = {}
        started: list[tuple[str, float]] = []

        def instrument(func, func_symbol, before_run, ret_value, *args):  # noqa: ARG001
            now = time.perf_counter()
            name = str(func_symbol)
            if before_run:
                started.append((name, now))
            elif started:
                begun_name, begun = started.pop()
                totals[begun_name] = totals.get(begun_name, 0.0) + (now - begun)
                calls[begun_name] = calls.get(begun_name, 0) + 1
            return 0

        self._vm.set_instrument(self._tvm.runtime.convert(instrument))
        try:
            for _ in range(repeat):
                self._main(tensor)
        finally:
            self._vm.set_instrument(None)
        total = sum(totals.values()) or 1.0
        rows = [
            OperatorTime(
                name=name,
                time_us=seconds / repeat * 1e6,
                percent=100.0 * seconds / total,
                calls=max(1, calls[name] // repeat),
            )
            for name, seconds in totals.items()
        ]
        return sorted(rows, key=lambda row: row.time_us, reverse=True)
