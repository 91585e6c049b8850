"""The CPUID cap: builds ``cpuid_cap.c`` (package data) into a library that, preloaded, shows every library in the process a Broadwell-like CPU."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# --- the CPUID cap: a Broadwell-like CPU for every library in a process ------------------------

CPUID_CAP_ENV = "FRVT_CPUID_CAP"
"""Names the cap library in the measuring process's environment (it is also in ``LD_PRELOAD``)."""

#: The C source of the cap (package data), preloaded into the avx2 group's process. Linux's CPUID
#: faulting makes every CPUID instruction trap; the handler clears the AVX-512, AMX, AVX-VNNI and
#: AVX10 feature bits, so every library that picks kernels from CPUID sees an AVX2 + FMA CPU (the
#: file's header comment says how, and what it leaves alone).
CPUID_CAP_SOURCE = Path(__file__).resolve().with_name("cpuid_cap.c")


def build_cpuid_cap(directory: str | Path, compiler: str = "gcc") -> tuple[Path | None, str]:
    """Compile the CPUID cap library (:data:`CPUID_CAP_SOURCE`) into ``directory``.

    Returns
    -------
    (Path or None, str)
        The shared library, or None with the reason (no compiler, build failure, no CPUID
        faulting on this machine or kernel).
    """
    import shutil

    cc = shutil.which(compiler)
    if cc is None:
        return None, f"no C compiler {compiler!r} on PATH"
    if "cpuid_fault" not in Path("/proc/cpuinfo").read_text(errors="replace"):
        return None, "this CPU or kernel offers no CPUID faulting (no cpuid_fault flag in /proc/cpuinfo)"
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    lib = directory / "libfrvt_cpuid_cap.so"
    build = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", str(lib), str(CPUID_CAP_SOURCE), "-ldl"], capture_output=True, text=True
    )
    if build.returncode != 0:
        return None, f"building the CPUID cap failed: {build.stderr.strip()[:500]}"
    probe = subprocess.run(
        [sys.executable, "-c", _CPUID_CAP_PROBE, str(lib)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LD_PRELOAD=str(lib)),
    )
    if probe.returncode != 0 or probe.stdout.split() != ["1", "0"]:
        return (
            None,
            f"the CPUID cap does not take effect here (probe: {probe.stdout.strip()!r} {probe.stderr.strip()[-300:]!r})",
        )
    return lib, "ok"


# In a process with the cap preloaded: is it active, and does CPUID leaf 7 now deny AVX-512F?
_CPUID_CAP_PROBE = r"""
import ctypes, sys
lib = ctypes.CDLL(sys.argv[1])
import numpy  # numpy reads CPUID at import: its view shows the cap
found = numpy._core._multiarray_umath.__cpu_features__
print(lib.frvt_cpuid_cap_active(), int(bool(found.get("AVX512F"))))
"""


def _cpuid_cap_state() -> dict[str, Any] | None:
    """Counters of the preloaded CPUID cap in this process (None when it is not loaded)."""
    import ctypes

    path = os.environ.get(CPUID_CAP_ENV)
    if not path:
        return None
    try:
        lib = ctypes.CDLL(path)
        return {
            "active": bool(lib.frvt_cpuid_cap_active()),
            "cpuid_traps": int(lib.frvt_cpuid_cap_hits()),
            "leaf7_traps": int(lib.frvt_cpuid_cap_leaf7_hits()),
        }
    except (OSError, AttributeError) as exc:
        return {"active": False, "error": str(exc)}
