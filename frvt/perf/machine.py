"""What a measurement ran on: the machine, the library versions, the git revision; versioned JSON;
and the single-core AVX2 FMA peak used to scale timings to another CPU.

Nothing here imports TVM, OpenCV or onnxruntime: versions come from the installed distributions'
metadata, so asking for them is cheap and has no side effects (no thread pools started).
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import os
import platform
import shutil
import statistics
import subprocess
import tempfile
import time
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from frvt.settings import SOURCE_ROOT

#: Instruction-set flags (as /proc/cpuinfo spells them) that matter for the kernels we run.
ISA_FLAGS = (
    "sse4_2",
    "avx",
    "avx2",
    "fma",
    "f16c",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "avx_vnni",
    "amx_tile",
    "amx_int8",
)

#: Distribution names whose versions go into every result (first installed name of each group).
PACKAGES = {
    "numpy": ("numpy",),
    "opencv": ("opencv-python-headless", "opencv-python", "opencv-contrib-python-headless"),
    "tvm": ("apache-tvm", "tvm"),
    "tvm_ffi": ("apache-tvm-ffi",),
    "onnxruntime": ("onnxruntime",),
}

REPO_ROOT = SOURCE_ROOT


def _cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor block of /proc/cpuinfo as a dict (empty when unavailable)."""
    info: dict[str, str] = {}
    try:
        text = Path(path).read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if not line.strip():
            if info:
                break
            continue
        key, sep, value = line.partition(":")
        if sep:
            info[key.strip()] = value.strip()
    return info


def _package_version(names: tuple[str, ...]) -> str | None:
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def git_revision(repo: str | Path = REPO_ROOT) -> str | None:
    """The commit the repository is at (40 hex digits), or None outside a git checkout.

    Only reads: ``git rev-parse HEAD``.
    """
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run([git, "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    rev = out.stdout.strip()
    return rev if out.returncode == 0 and len(rev) == 40 else None


def git_dirty(repo: str | Path = REPO_ROOT) -> bool | None:
    """True when tracked files differ from the commit (so the revision alone does not name the code).

    None outside a git checkout. Uses ``git --no-optional-locks status``, which never writes the index.
    """
    git = shutil.which("git")
    if git is None:
        return None
    try:
        out = subprocess.run(
            [git, "--no-optional-locks", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def machine_info() -> dict[str, Any]:
    """The machine and software a measurement ran on, JSON-serialisable.

    Returns
    -------
    dict
        ``cpu_model`` (from /proc/cpuinfo, else ``platform.processor()``), ``cpu_mhz`` (as the
        kernel reports it, may be nominal in a VM), ``hypervisor`` (bool: running in a VM),
        ``isa`` ({flag: bool} for :data:`ISA_FLAGS`), ``logical_cores``, ``physical_cores``
        (None when unknown), ``usable_cores`` (this process's CPU affinity), ``memory_bytes``,
        ``os``, ``python``, ``versions`` ({numpy, opencv, tvm, tvm_ffi, onnxruntime}: version
        string or None), ``git_revision`` and ``git_dirty``.
    """
    cpu = _cpuinfo()
    flags = set(cpu.get("flags", "").split())
    try:
        import psutil

        physical = psutil.cpu_count(logical=False)
        memory = int(psutil.virtual_memory().total)
    except ImportError:  # psutil is a dependency, but machine_info must never fail
        physical, memory = None, None
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        usable = os.cpu_count()
    mhz = cpu.get("cpu MHz")
    return {
        "cpu_model": cpu.get("model name") or platform.processor() or None,
        "cpu_mhz": float(mhz) if mhz else None,
        "hypervisor": "hypervisor" in flags,
        "isa": {f: f in flags for f in ISA_FLAGS},
        "logical_cores": os.cpu_count(),
        "physical_cores": physical,
        "usable_cores": usable,
        "memory_bytes": memory,
        "os": platform.platform(),
        "python": platform.python_version(),
        "versions": {key: _package_version(names) for key, names in PACKAGES.items()},
        "git_revision": git_revision(),
        "git_dirty": git_dirty(),
    }


def versioned(schema: str, payload: dict[str, Any], machine: dict[str, Any] | None = None) -> dict[str, Any]:
    """Wrap a result as versioned JSON: ``{"schema", "created", "machine", **payload}``.

    Parameters
    ----------
    schema : str
        Name and version of the payload's layout, e.g. ``"frvt.profile/1"``; bump it when a field
        changes meaning.
    payload : dict
        The result; must not use the keys ``schema``, ``created`` or ``machine``.
    machine : dict, optional
        From :func:`machine_info`, when the caller already has it (e.g. from the process that
        measured); computed here otherwise.

    Returns
    -------
    dict
        ``created`` is the UTC time in ISO 8601 with seconds.

    Raises
    ------
    ValueError
        When the schema is empty or the payload uses a reserved key.
    """
    if not schema:
        raise ValueError("schema must name the layout, e.g. 'frvt.profile/1'")
    clash = {"schema", "created", "machine"} & payload.keys()
    if clash:
        raise ValueError(f"payload uses reserved key(s) {sorted(clash)}")
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return {
        "schema": schema,
        "created": created,
        "machine": machine if machine is not None else machine_info(),
        **payload,
    }


# --- single-core AVX2 FMA throughput ----------------------------------------------------------

#: FLOPs per cycle of one core with two 256-bit FMA units: 2 units x 8 floats x 2 (mul + add).
AVX2_FLOPS_PER_CYCLE = 32

_FMA_KERNEL = r"""
#include <immintrin.h>
#include <stdint.h>

/* 12 independent accumulator chains: enough to hide a 4-5 cycle FMA latency on two ports.
   Without -ffast-math the compiler may not merge or reorder them. Returns a checksum so the
   work cannot be optimised away. Each iteration is 12 FMAs x 8 floats x 2 FLOPs = 192 FLOPs. */
float fma_loop(int64_t iterations) {
    __m256 a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
    __m256 c0 = _mm256_set1_ps(0.0f), c1 = _mm256_set1_ps(0.1f), c2 = _mm256_set1_ps(0.2f),
           c3 = _mm256_set1_ps(0.3f), c4 = _mm256_set1_ps(0.4f), c5 = _mm256_set1_ps(0.5f),
           c6 = _mm256_set1_ps(0.6f), c7 = _mm256_set1_ps(0.7f), c8 = _mm256_set1_ps(0.8f),
           c9 = _mm256_set1_ps(0.9f), c10 = _mm256_set1_ps(1.0f), c11 = _mm256_set1_ps(1.1f);
    for (int64_t i = 0; i < iterations; ++i) {
        c0 = _mm256_fmadd_ps(c0, a, b);  c1 = _mm256_fmadd_ps(c1, a, b);
        c2 = _mm256_fmadd_ps(c2, a, b);  c3 = _mm256_fmadd_ps(c3, a, b);
        c4 = _mm256_fmadd_ps(c4, a, b);  c5 = _mm256_fmadd_ps(c5, a, b);
        c6 = _mm256_fmadd_ps(c6, a, b);  c7 = _mm256_fmadd_ps(c7, a, b);
        c8 = _mm256_fmadd_ps(c8, a, b);  c9 = _mm256_fmadd_ps(c9, a, b);
        c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
    }
    __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                             _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
    s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
    float out[8];
    _mm256_storeu_ps(out, s);
    return out[0] + out[1] + out[2] + out[3] + out[4] + out[5] + out[6] + out[7];
}
"""
_FLOPS_PER_ITERATION = 12 * 8 * 2


class FmaPeakUnavailable(RuntimeError):
    """The FMA kernel could not be built or run here (no C compiler, no AVX2/FMA)."""


def measure_fma_peak(
    seconds_per_repeat: float = 0.2,
    repeats: int = 7,
    clock: Callable[[], float] = time.thread_time,
    compiler: str = "gcc",
) -> dict[str, Any]:
    """Measure this core's single-precision AVX2 FMA throughput with a C kernel built now.

    The kernel (12 independent chains of ``_mm256_fmadd_ps``, compiled with
    ``gcc -O3 -mavx2 -mfma`` into a temporary directory and called through ctypes) runs on the
    calling thread only. It uses AVX2 and FMA only, never AVX-512, so the number is comparable to
    what code compiled for Broadwell can reach here.

    Parameters
    ----------
    seconds_per_repeat : float
        Rough duration of each timed repeat (the iteration count is calibrated once).
    repeats : int
        Timed repeats; the best is the peak (other load on the machine only slows a repeat down).
    clock : callable returning float seconds
        CPU time of the calling thread by default (``time.thread_time``): on a shared machine
        the wall clock also counts the time the thread waited for a core, which is not what
        the core can do.
    compiler : str
        The C compiler to call.

    Returns
    -------
    dict
        ``peak_gflops`` (best repeat, GFLOP/s, single precision, one thread), ``median_gflops``,
        ``repeats_gflops`` (list), ``flops_per_call``, ``iterations``, ``implied_ghz`` (the peak
        divided by 32 FLOPs/cycle: the clock this core would need with two 256-bit FMA units),
        ``kernel`` (a description).

    Raises
    ------
    FmaPeakUnavailable
        When the compiler is missing, the build fails, or the CPU lacks AVX2/FMA.
    """
    flags = set(_cpuinfo().get("flags", "").split())
    if flags and not {"avx2", "fma"} <= flags:
        raise FmaPeakUnavailable("this CPU lacks AVX2 or FMA")
    cc = shutil.which(compiler)
    if cc is None:
        raise FmaPeakUnavailable(f"no C compiler {compiler!r} on PATH")
    with tempfile.TemporaryDirectory(prefix="frvt_fma_") as tmp:
        src, lib = Path(tmp) / "fma.c", Path(tmp) / "libfma.so"
        src.write_text(_FMA_KERNEL)
        build = subprocess.run(
            [cc, "-O3", "-mavx2", "-mfma", "-shared", "-fPIC", "-o", str(lib), str(src)], capture_output=True, text=True
        )
        if build.returncode != 0:
            raise FmaPeakUnavailable(f"building the FMA kernel failed: {build.stderr.strip()[:500]}")
        kernel = ctypes.CDLL(str(lib))
        kernel.fma_loop.argtypes = [ctypes.c_int64]
        kernel.fma_loop.restype = ctypes.c_float
        # calibrate: grow the iteration count until one call takes a measurable time
        iterations = 1 << 16
        while True:
            t0 = clock()
            kernel.fma_loop(iterations)
            elapsed = clock() - t0
            if elapsed >= 0.02 or iterations >= 1 << 34:
                break
            iterations *= 4
        iterations = max(1, int(iterations * seconds_per_repeat / max(elapsed, 1e-9)))
        gflops = []
        for _ in range(repeats):
            t0 = clock()
            kernel.fma_loop(iterations)
            elapsed = clock() - t0
            gflops.append(iterations * _FLOPS_PER_ITERATION / elapsed / 1e9)
        del kernel
    peak = max(gflops)
    return {
        "peak_gflops": peak,
        "median_gflops": statistics.median(gflops),
        "repeats_gflops": gflops,
        "flops_per_call": iterations * _FLOPS_PER_ITERATION,
        "iterations": iterations,
        "implied_ghz": peak / AVX2_FLOPS_PER_CYCLE,
        "kernel": f"12 chains of _mm256_fmadd_ps, {compiler} -O3 -mavx2 -mfma, one thread",
    }


# --- single-core memory read bandwidth ---------------------------------------------------------


def measure_read_bandwidth(
    megabytes: float = 256.0,
    repeats: int = 5,
    clock: Callable[[], float] = time.thread_time,
) -> dict[str, Any]:
    """Measure how fast one thread reads memory that no cache holds (GB/s).

    Sums a ``megabytes`` float32 array with numpy (a vectorised streaming read, far larger than
    the caches) ``repeats`` times; the best repeat is the bandwidth. At batch 1 a network reads
    all its weights at every call, and between two calls of a layer the other layers' weights
    have evicted its own: ``weight bytes / bandwidth`` is a floor on a call's time that no
    schedule removes (see ``weight_bytes`` in a compiled model's metadata).

    Returns
    -------
    dict
        ``read_gbps`` (best repeat), ``median_gbps``, ``repeats_gbps`` (list), ``megabytes``.
    """
    import numpy as np

    data = np.ones(int(megabytes * 1e6 / 4), dtype=np.float32)
    data.sum()  # touch every page once
    gbps = []
    for _ in range(repeats):
        t0 = clock()
        data.sum()
        gbps.append(data.nbytes / max(clock() - t0, 1e-9) / 1e9)
    return {
        "read_gbps": max(gbps),
        "median_gbps": statistics.median(gbps),
        "repeats_gbps": gbps,
        "megabytes": megabytes,
    }
