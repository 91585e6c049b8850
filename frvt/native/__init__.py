"""Run a NIST FRTE 1:1 C++ library (``libfrvt_11_<org>_<seq>.so``) as an frvt implementation.

:class:`NativeLibrary` is an ordinary implementation of :mod:`frvt.contract`: the validation
harness runs it in its worker processes like any Python implementation, so a library that
crashes, hangs or leaks is recorded and the run goes on. Underneath, a small C++ bridge
(``bridge.cpp``, built on first use with the machine's C++ compiler and cached under the cache
root) loads the library with ``dlopen``, makes its implementation with NIST's factory
``FRVT_11::Interface::getImplementation()``, builds NIST's structs and calls the library as NIST's
driver does. Each call is timed inside the bridge, around the library's own call only
(``last_call_seconds``), so the bridge's and Python's overhead is not charged to the library.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

from frvt import settings
from frvt.contract import EyePair, Image, MatchResult, ReturnCode, ReturnStatus, TemplateResult, TemplateRole

BRIDGE_SOURCE = Path(__file__).with_name("bridge.cpp")
LIBRARY_NAME = re.compile(r"^libfrvt_11_([a-z0-9]+)_(\d{3})\.so$")
#: NIST's current versions: structs 3.1, API 6.0 (its driver refuses any other).
EXPECTED_VERSIONS = (3, 1, 6, 0)
_EXCEPTION_CROSSED = -1
_INFO_CAPACITY = 4096


class BridgeBuildError(RuntimeError):
    """The bridge could not be compiled (no C++ compiler, or it failed): the message says which."""


def _abi_include() -> Path:
    """The folder holding ``frvt11_abi.h``: ``implementation/native/include`` beside the ``frvt``
    package (in the repository and in an installed wheel alike)."""
    return Path(__file__).resolve().parents[2] / "implementation" / "native" / "include"


def compiler() -> str:
    """The C++ compiler to build with: ``$CXX``, else ``g++``, else ``c++``; BridgeBuildError if none."""
    for name in (os.environ.get("CXX"), "g++", "c++", "clang++"):
        if name and shutil.which(name):
            return name
    raise BridgeBuildError("no C++ compiler found (install g++, or set CXX)")


def build_bridge(cache_root: str | Path | None = None) -> Path:
    """Compile the bridge once per (source, header, compiler) and return the cached ``.so``.

    Raises
    ------
    BridgeBuildError
        No compiler, or compilation failed (the compiler's output is in the message).
    """
    cxx = compiler()
    header = _abi_include() / "frvt11_abi.h"
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True, check=False).stdout
    key = hashlib.sha256(BRIDGE_SOURCE.read_bytes() + header.read_bytes() + version.encode()).hexdigest()[:16]
    out = Path(cache_root or settings.cache_root()) / "native" / f"frvt_bridge-{key}.so"
    if out.exists():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    command = [
        cxx,
        "-std=c++17",
        "-O2",
        "-fPIC",
        "-shared",
        f"-I{header.parent}",
        str(BRIDGE_SOURCE),
        "-o",
        str(partial),
        "-ldl",
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        partial.unlink(missing_ok=True)
        raise BridgeBuildError(f"building the bridge failed ({' '.join(command)}):\n{done.stderr.strip()}")
    os.replace(partial, out)
    return out


def _bind(bridge: ctypes.CDLL) -> ctypes.CDLL:
    p, i, d = ctypes.c_void_p, ctypes.c_int, ctypes.c_double
    ip, cp = ctypes.POINTER(ctypes.c_int), ctypes.c_char_p
    signatures = {
        "frvt_bridge_open": (p, [cp, cp, i]),
        "frvt_bridge_versions": (None, [p, ip]),
        "frvt_bridge_initialize": (i, [p, cp]),
        "frvt_bridge_create_template": (i, [p, i, ip, ip, ip, ip, ctypes.POINTER(p), i]),
        "frvt_bridge_create_templates": (i, [p, i, i, i, i, p, i]),
        "frvt_bridge_match": (i, [p, cp, i, cp, i, ctypes.POINTER(d)]),
        "frvt_bridge_seconds": (d, [p]),
        "frvt_bridge_threads": (i, [p]),
        "frvt_bridge_info": (i, [p, cp, i]),
        "frvt_bridge_template_count": (i, [p]),
        "frvt_bridge_template_size": (i, [p, i]),
        "frvt_bridge_template_copy": (None, [p, i, cp]),
        "frvt_bridge_eye_count": (i, [p]),
        "frvt_bridge_eyes_copy": (None, [p, ip]),
        "frvt_bridge_close": (None, [p]),
    }
    for name, (restype, argtypes) in signatures.items():
        function = getattr(bridge, name)
        function.restype, function.argtypes = restype, argtypes
    return bridge


def library_name_problem(path: str | Path) -> str | None:
    """What is wrong with a core library's file name for NIST, or None when it is right.

    NIST's rule: ``libfrvt_11_<org>_<seq>.so``, ``<org>`` lower-case letters and digits, ``<seq>``
    three digits.

    >>> library_name_problem("lib/libfrvt_11_acme_001.so") is None
    True
    >>> library_name_problem("lib/libacme.so")
    "'libacme.so' is not named libfrvt_11_<org>_<seq>.so (lower-case org, three-digit seq)"
    """
    name = Path(path).name
    if LIBRARY_NAME.match(name):
        return None
    return f"'{name}' is not named libfrvt_11_<org>_<seq>.so (lower-case org, three-digit seq)"


class NativeLibrary:
    """A NIST 1:1 C++ library behind frvt's implementation contract.

    Parameters
    ----------
    library : path
        The core library, ``libfrvt_11_<org>_<seq>.so`` (its dependencies beside it, found
        through its RPATH, as in NIST's ``lib/``).

    Attributes
    ----------
    last_call_seconds : float
        Duration of the last call, measured around the library's own call inside the bridge.
    last_thread_count : int
        Threads of this process right after the last call (1 for a single-threaded library).
    library_path : Path
    organization, seq : str
        From the library's file name (None when the name is not NIST's).
    versions : tuple of int
        The library's (structs major, minor, API major, minor) symbols; -1 where one is missing.
    """

    def __init__(self, library: str | Path) -> None:
        self.library_path = Path(library).resolve()
        match = LIBRARY_NAME.match(self.library_path.name)
        self.organization, self.seq = (match.group(1), match.group(2)) if match else (None, None)
        self.version = f"{self.library_path.name}"
        self.last_call_seconds = 0.0
        self.last_thread_count = 0
        self.versions: tuple[int, ...] = ()
        self._bridge: ctypes.CDLL | None = None
        self._handle = None
        self._open_error: str | None = None

    # -- set-up -------------------------------------------------------------------------------
    def _open(self) -> None:
        if self._handle is not None or self._open_error is not None:
            return
        if not self.library_path.is_file():
            self._open_error = f"no library at {self.library_path}"
            return
        self._bridge = _bind(ctypes.CDLL(str(build_bridge())))
        error = ctypes.create_string_buffer(_INFO_CAPACITY)
        handle = self._bridge.frvt_bridge_open(str(self.library_path).encode(), error, _INFO_CAPACITY)
        if not handle:
            self._open_error = f"{self.library_path.name}: {error.value.decode(errors='replace')}"
            return
        self._handle = handle
        versions = (ctypes.c_int * 4)()
        self._bridge.frvt_bridge_versions(handle, versions)
        self.versions = tuple(versions)

    def _info(self) -> str:
        buffer = ctypes.create_string_buffer(_INFO_CAPACITY)
        self._bridge.frvt_bridge_info(self._handle, buffer, _INFO_CAPACITY)
        return buffer.value.decode(errors="replace")

    def _after_call(self, code: int) -> ReturnStatus:
        """The call's status; a C++ exception that crossed the interface is raised as one."""
        self.last_call_seconds = float(self._bridge.frvt_bridge_seconds(self._handle))
        self.last_thread_count = int(self._bridge.frvt_bridge_threads(self._handle))
        info = self._info()
        if code == _EXCEPTION_CROSSED:
            raise RuntimeError(info)
        try:
            return ReturnStatus(ReturnCode(code), info)
        except ValueError:
            return ReturnStatus(ReturnCode.UnknownError, f"return code {code} is not one of NIST's; {info}")

    def initialize(self, config_dir: str) -> ReturnStatus:
        """Load the library, check its version symbols, call its ``initialize(configDir)``."""
        name_problem = library_name_problem(self.library_path)
        if name_problem is not None:  # NIST's run stops at its first step for this
            return ReturnStatus(ReturnCode.ConfigError, f"NIST would not find the core library: {name_problem}")
        self._open()
        if self._open_error is not None:
            return ReturnStatus(ReturnCode.ConfigError, self._open_error)
        if self.versions != EXPECTED_VERSIONS:
            structs, api = f"{self.versions[0]}.{self.versions[1]}", f"{self.versions[2]}.{self.versions[3]}"
            return ReturnStatus(
                ReturnCode.ConfigError,
                f"{self.library_path.name} was compiled with structs {structs} and API {api}; "
                "NIST's driver requires structs 3.1 and API 6.0 (-1: symbol missing)",
            )
        return self._after_call(self._bridge.frvt_bridge_initialize(self._handle, str(config_dir).encode()))

    # -- calls --------------------------------------------------------------------------------
    def _results(self) -> tuple[list[bytes], list[EyePair]]:
        b, h = self._bridge, self._handle
        templates = []
        for index in range(b.frvt_bridge_template_count(h)):
            buffer = ctypes.create_string_buffer(max(1, b.frvt_bridge_template_size(h, index)))
            b.frvt_bridge_template_copy(h, index, buffer)
            templates.append(buffer.raw[: b.frvt_bridge_template_size(h, index)])
        n_eyes = b.frvt_bridge_eye_count(h)
        rows = (ctypes.c_int * (6 * max(n_eyes, 1)))()
        b.frvt_bridge_eyes_copy(h, rows)
        eyes = [EyePair(bool(rows[6 * k]), bool(rows[6 * k + 1]), *rows[6 * k + 2 : 6 * k + 6]) for k in range(n_eyes)]
        return templates, eyes

    def _not_ready(self) -> ReturnStatus | None:
        if self._handle is None:
            return ReturnStatus(ReturnCode.ConfigError, self._open_error or "initialize was not called")
        return None

    def create_face_template(self, images: Sequence[Image], role: TemplateRole) -> TemplateResult:
        """NIST's ``createFaceTemplate(faces, role, templ, eyes)``: one person, one or more images."""
        problem = self._not_ready()
        if problem is not None:
            return TemplateResult(problem, b"", [])
        n = len(images)
        ints = lambda values: (ctypes.c_int * max(n, 1))(*values)  # noqa: E731
        buffers = [ctypes.create_string_buffer(bytes(image.data), len(image.data)) for image in images]
        pointers = (ctypes.c_void_p * max(n, 1))(*[ctypes.cast(buf, ctypes.c_void_p) for buf in buffers])
        code = self._bridge.frvt_bridge_create_template(
            self._handle,
            n,
            ints(im.width for im in images),
            ints(im.height for im in images),
            ints(im.depth for im in images),
            ints(int(im.description) for im in images),
            pointers,
            int(role),
        )
        status = self._after_call(code)
        templates, eyes = self._results()
        return TemplateResult(status, templates[0] if templates else b"", eyes)

    def create_face_templates(self, image: Image, role: TemplateRole):
        """NIST's ``createFaceTemplate(image, role, templs, eyes)``: every person in one image."""
        try:
            from frvt.contract import MultiTemplateResult
        except ImportError:  # a contract without the multi-person form
            from types import SimpleNamespace as MultiTemplateResult

        problem = self._not_ready()
        if problem is not None:
            return MultiTemplateResult(status=problem, templates=[], eyes=[])
        buffer = ctypes.create_string_buffer(bytes(image.data), len(image.data))
        code = self._bridge.frvt_bridge_create_templates(
            self._handle,
            image.width,
            image.height,
            image.depth,
            int(image.description),
            ctypes.cast(buffer, ctypes.c_void_p),
            int(role),
        )
        status = self._after_call(code)
        templates, eyes = self._results()
        return MultiTemplateResult(status=status, templates=templates, eyes=eyes)

    def match_templates(self, verif_template: bytes, enroll_template: bytes) -> MatchResult:
        """NIST's ``matchTemplates(verifTemplate, enrollTemplate, score)``."""
        problem = self._not_ready()
        if problem is not None:
            return MatchResult(problem, -1.0)
        score = ctypes.c_double(-1.0)
        code = self._bridge.frvt_bridge_match(
            self._handle,
            bytes(verif_template),
            len(verif_template),
            bytes(enroll_template),
            len(enroll_template),
            ctypes.byref(score),
        )
        return MatchResult(self._after_call(code), float(score.value))


def library_spec(library: str | Path):
    """The harness's picklable description of ``NativeLibrary(library)``, for its worker processes."""
    from frvt.contract import ImplementationSpec

    return ImplementationSpec("frvt.native:NativeLibrary", (("library", str(Path(library).resolve())),))
