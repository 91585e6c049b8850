"""Building the C++ library and its test-only companions once per test session."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NATIVE = ROOT / "implementation" / "native"


def require_toolchain() -> None:
    """Skip unless CMake and a C++ compiler are installed (the README names them)."""
    missing = [tool for tool in ("cmake", "g++") if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed")


def build_ops_library(build_dir: Path) -> Path:
    """``libfrvt_native_ops.so``: the C++ resampling operations behind a C interface (tests only)."""
    require_toolchain()
    from frvt.submission import _package_dir

    configure = [
        "cmake",
        "-S",
        str(NATIVE),
        "-B",
        str(build_dir),
        f"-DTVM_FFI_ROOT={_package_dir('tvm_ffi')}",
        f"-DTVM_ROOT={_package_dir('tvm')}",
    ]
    subprocess.run(configure, check=True, capture_output=True)
    subprocess.run(["cmake", "--build", str(build_dir), "--target", "frvt_native_ops"], check=True, capture_output=True)
    return build_dir / "libfrvt_native_ops.so"


def build_submission_for_tests(out: Path, config_dir: Path):
    """The default implementation's submission folder (lib/, config/, doc/), built with CMake."""
    require_toolchain()
    from frvt.submission import build_submission

    return build_submission(out, org="frvt", seq=1, config_dir=config_dir)


_RUN_NATIVE = r"""
import os, pickle, sys
from frvt.contract import TemplateRole
from frvt.driver import decode_image
from frvt.native import NativeLibrary
library, config, files, out = sys.argv[1:5]
images = {f: decode_image(f) for f in files.split(os.pathsep)}  # decoded first: OpenCV has threads of its own
threads_before = len(os.listdir("/proc/self/task"))
lib = NativeLibrary(library)
status = lib.initialize(config)
result = {"init": (int(status.code), status.info, lib.last_call_seconds), "templates": {}, "multi": {}}
for f, image in images.items():
    for repeat in range(2):
        r = lib.create_face_template([image], TemplateRole.Enrollment_11)
        result["templates"].setdefault(f, []).append((int(r.status.code), r.template, [tuple(vars(e).values()) for e in r.eyes]))
    m = lib.create_face_templates(image, TemplateRole.Verification_11)
    result["multi"][f] = (int(m.status.code), m.templates, [tuple(vars(e).values()) for e in m.eyes])
first = result["templates"][files.split(os.pathsep)[0]][0][1]
for f, runs in result["templates"].items():
    m = lib.match_templates(runs[0][1], first)
    result.setdefault("matches", {})[f] = (int(m.status.code), m.similarity)
result["threads"] = (threads_before, len(os.listdir("/proc/self/task")), lib.last_thread_count)
result["maps"] = open("/proc/self/maps").read()
pickle.dump(result, open(out, "wb"))
"""


def run_native(library: Path, config_dir: Path, files: list[Path], out: Path) -> dict:
    """Templates of ``files`` from the C++ library in a fresh process (two calls each, and the
    multi-person form), with its thread counts and memory map."""
    import os
    import pickle
    import sys

    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    subprocess.run(
        [sys.executable, "-c", _RUN_NATIVE, str(library), str(config_dir), os.pathsep.join(map(str, files)), str(out)],
        check=True,
        env=env,
        cwd=str(out.parent),
    )
    return pickle.loads(out.read_bytes())


FAULTY_SOURCE = ROOT / "tests" / "frvt" / "native_libs" / "faulty.cpp"


def build_faulty_library(
    out_dir: Path, fault: str = "none", name: str = "libfrvt_11_faulty_001.so", hardcoded_config: Path | None = None
) -> Path:
    """Compile ``faulty.cpp`` with one fault into ``out_dir/lib/name`` (the layout NIST asks for)."""
    require_toolchain()
    lib = out_dir / "lib"
    lib.mkdir(parents=True, exist_ok=True)
    command = [
        "g++",
        "-std=c++17",
        "-O1",
        "-fPIC",
        "-shared",
        f"-DFAULT={fault}",
        f"-I{NATIVE / 'include'}",
        str(FAULTY_SOURCE),
        "-o",
        str(lib / name),
        "-pthread",
    ]
    if hardcoded_config is not None:
        command.append(f'-DHARDCODED_CONFIG="{hardcoded_config}"')
    subprocess.run(command, check=True, capture_output=True)
    return lib / name
