"""Load and run a model compiled by :mod:`frvt.compiler.compile`, on one CPU thread.

The template path imports only this module, and this module imports only TVM's C++ runtime
(``libtvm_runtime.so``, through ``tvm_ffi``): not the ``tvm`` Python package, whose import
pulls in the whole compiler (~1-2 s). The exported library is a Relax VM executable; it is
loaded with ``tvm_ffi.load_module`` and driven through the VM's packed functions
(``vm_load_executable``, ``vm_initialization``, ``main``), as ``tvm.runtime.vm.VirtualMachine``
does. If the runtime library cannot be found this way, the ``tvm`` package is imported instead.

Threads: ``TVM_NUM_THREADS=1`` is put in the environment (unless the caller set it) before the
runtime library is loaded, and the thread pool is configured to one worker
(``runtime.config_threadpool(1, 1)``); inference then runs on the calling thread.

Memory: the input is copied into one 64-byte-aligned tensor allocated at load time (TVM kernels
assume aligned buffers); outputs are copied out to numpy.
"""

from __future__ import annotations

import ctypes
import importlib.util
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frvt.settings import SINGLE_THREAD_ENV

_CPU = 1  # DLPack device type of the CPU
_POOLED_ALLOCATOR = 2


def _runtime_ffi():
    """``tvm_ffi`` with TVM's runtime library loaded and its thread pool set to one thread."""
    for key in ("TVM_NUM_THREADS", "TVM_BIND_THREADS"):  # one thread, not pinned to one core
        os.environ.setdefault(key, SINGLE_THREAD_ENV[key])
    import tvm_ffi

    if tvm_ffi.get_global_func("runtime.config_threadpool", allow_missing=True) is None:
        spec = importlib.util.find_spec("tvm")
        library = Path(spec.origin).parent / "lib" / "libtvm_runtime.so" if spec and spec.origin else None
        if library is not None and library.exists():
            ctypes.CDLL(str(library), mode=ctypes.RTLD_GLOBAL)
        else:  # an unusual install: let the tvm package find and load its runtime
            import tvm  # noqa: F401
    tvm_ffi.get_global_func("runtime.config_threadpool")(1, 1)
    return tvm_ffi


class _VM:
    """The Relax VM of one exported library, driven through its packed functions."""

    def __init__(self, library: Path):
        ffi = _runtime_ffi()
        self.ffi = ffi
        self.module = ffi.load_module(str(library))
        self.vm = self.module["vm_load_executable"]()
        self.vm["vm_initialization"](_CPU, 0, _POOLED_ALLOCATOR)
        self.main = self.vm["main"]
        self.device = ffi.device("cpu", 0)
        self._alloc = ffi.get_global_func("runtime.TVMTensorAllocWithScope")

    def empty(self, shape: tuple[int, ...]):
        """An aligned float32 CPU tensor and a writable numpy view of it."""
        tensor = self._alloc(self.ffi.Shape(tuple(int(s) for s in shape)), self.ffi.dtype("float32"), self.device, None)
        return tensor, np.from_dlpack(tensor)

    def set_instrument(self, instrument) -> None:
        self.vm["set_instrument"](self.ffi.convert(instrument) if instrument is not None else None)


def _flatten_outputs(result) -> list[np.ndarray]:
    """VM result (a tensor or nested tuples of tensors) -> list of numpy copies."""
    if hasattr(result, "__dlpack__"):
        return [np.array(np.from_dlpack(result), copy=True)]
    outputs: list[np.ndarray] = []
    for item in result:
        outputs.extend(_flatten_outputs(item))
    return outputs


def run_library_once(library: str | Path, x: np.ndarray) -> list[np.ndarray]:
    """Run an exported library's ``main`` once on ``x`` (used to record output shapes)."""
    vm = _VM(Path(library))
    tensor, view = vm.empty(x.shape)
    np.copyto(view, x)
    return _flatten_outputs(vm.main(tensor))


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
        Content of ``metadata.json`` (see ``frvt.compiler.compile.compile_model``);
        empty when a bare ``.so`` was loaded.
    load_seconds : float
        Wall time of :meth:`load`.
    """

    input_name: str
    input_shape: tuple[int, ...]
    metadata: dict = field(default_factory=dict)
    load_seconds: float = 0.0
    _vm: _VM | None = field(default=None, repr=False)
    _input: object = field(default=None, repr=False)
    _input_view: np.ndarray | None = field(default=None, repr=False)

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
        vm = _VM(library)
        input_shape = tuple(int(s) for s in metadata.get("input_shape", ()))
        tensor, view = vm.empty(input_shape) if input_shape else (None, None)
        return cls(
            input_name=str(metadata.get("input_name", "input")),
            input_shape=input_shape,
            metadata=metadata,
            load_seconds=time.perf_counter() - start,
            _vm=vm,
            _input=tensor,
            _input_view=view,
        )

    def _feed(self, x: np.ndarray):
        """Copy ``x`` into the aligned input tensor (or a fresh one when the shape is unknown)."""
        if self._input_view is None:
            tensor, view = self._vm.empty(x.shape)
            np.copyto(view, x, casting="same_kind")
            return tensor
        if x.shape != self.input_shape:
            raise ValueError(f"input shape {x.shape} != compiled shape {self.input_shape}")
        np.copyto(self._input_view, x, casting="same_kind")
        return self._input

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
        x = np.asarray(x, dtype=np.float32)
        return _flatten_outputs(self._vm.main(self._feed(x)))

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
        tensor = self._feed(np.asarray(x, dtype=np.float32))
        self._vm.main(tensor)
        totals: dict[str, float] = {}
        calls: dict[str, int] = {}
        started: list[tuple[str, float]] = []

        def instrument(func, func_symbol, before_run, ret_value, *args):
            now = time.perf_counter()
            name = str(func_symbol)
            if before_run:
                started.append((name, now))
            elif started:
                begun_name, begun = started.pop()
                totals[begun_name] = totals.get(begun_name, 0.0) + (now - begun)
                calls[begun_name] = calls.get(begun_name, 0) + 1
            return 0

        self._vm.set_instrument(instrument)
        try:
            for _ in range(repeat):
                self._vm.main(tensor)
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
