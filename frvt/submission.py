"""Build the default implementation as a NIST FRTE 1:1 submission folder.

The folder NIST asks for, relocatable (copy it anywhere; nothing of the Python environment is
used at run time)::

    <out>/lib/libfrvt_11_<org>_<seq>.so   the core library (C++ in implementation/native/)
    <out>/lib/libtvm_runtime.so           TVM's runtime and its FFI, from the installed wheels;
    <out>/lib/libtvm_ffi.so               found through the core library's RPATH ($ORIGIN)
    <out>/config/native.cfg               what the library reads at initialize
    <out>/config/detector/model.so        the compiled detector and embedder (the tuned
    <out>/config/embedder/model.so        Broadwell builds the Python implementation uses)
    <out>/doc/version.txt

The config folder is also a config folder of the Python implementation (``frvt_config.json``,
``metadata.json``, ``model_config.json`` beside the libraries), so ``frvt validate --config-dir
<out>/config`` and ``frvt validate --library <out>/lib/libfrvt_11_<org>_<seq>.so --config-dir
<out>/config`` run the same models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Callable

from frvt import settings

NATIVE_CONFIG = "native.cfg"
RUNTIME_LIBRARIES = (("tvm", "libtvm_runtime.so"), ("tvm_ffi", "libtvm_ffi.so"))


class SubmissionBuildError(RuntimeError):
    """The submission cannot be built (no CMake or compiler, a failed build, a bad name)."""


@dataclass(frozen=True)
class Submission:
    root: Path
    library: Path
    config_dir: Path
    version: str


def _native_source() -> Path:
    """``implementation/native`` beside the ``frvt`` package (repository and installed wheel alike)."""
    return Path(__file__).resolve().parents[1] / "implementation" / "native"


def _package_dir(name: str) -> Path:
    """Folder of an installed package, found without importing it (importing tvm loads its compiler)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SubmissionBuildError(f"the Python package {name!r} is not installed")
    return Path(next(iter(spec.submodule_search_locations)))


def native_settings(config_dir: Path) -> str:
    """The text of ``native.cfg`` for a config folder of the Python implementation."""
    from implementation.config_dir import CONFIG_NAME
    from implementation.detect import FACE_GEOMETRY
    from implementation.model_config import ModelConfig
    from implementation.pipeline import _describe

    settings = json.loads((config_dir / CONFIG_NAME).read_text())
    detector, embedder = config_dir / settings["detector"], config_dir / settings["embedder"]
    detector_meta = json.loads((detector / "metadata.json").read_text())
    embedder_meta = json.loads((embedder / "metadata.json").read_text())
    model = ModelConfig.load(embedder / "model_config.json")
    fingerprint = embedder_meta.get("model_sha256", "")[:8] or "00000000"
    flip = bool(settings.get("flip_average", True))
    lines = [
        "# read by libfrvt_11 at initialize; paths are relative to this folder",
        "format 1",
        f"detector {settings['detector']}/model.so",
        f"detector_shape {' '.join(str(int(v)) for v in detector_meta['input_shape'])}",
        f"embedder {settings['embedder']}/model.so",
        f"embedder_shape {' '.join(str(int(v)) for v in model.input_shape)}",
        f"embedder_layout {model.layout}",
        f"colour_order {model.colour_order.upper()}",
        f"mean {' '.join(repr(float(v)) for v in model.mean)}",
        f"scale {float(model.scale)!r}",
        f"embedding_size {int(model.embedding_size)}",
        f"chip_size {int(model.chip.get('size', 150)) if model.chip else 150}",
        f"flip_average {int(flip)}",
        f"face_box_margin {float(FACE_GEOMETRY.box_margin)!r}",
        f"face_min_eye_distance {float(FACE_GEOMETRY.min_eye_distance)!r}",
        f"face_min_template_fit {float(FACE_GEOMETRY.min_template_fit)!r}",
        f"fingerprint {fingerprint}",
        f"version {_describe(model.name, flip)} (C++)",
    ]
    return "\n".join(lines) + "\n"


def build_library(build_dir: Path, org: str, seq: int, log: Callable[[str], None] = lambda _: None) -> Path:
    """Configure and build ``libfrvt_11_<org>_<seq>.so`` with CMake; returns the built library."""
    for tool in ("cmake",):
        if shutil.which(tool) is None:
            raise SubmissionBuildError(f"{tool} is not installed (the README names the system packages)")
    source = _native_source()
    command = [
        "cmake",
        "-S",
        str(source),
        "-B",
        str(build_dir),
        f"-DFRVT_ORG={org}",
        f"-DFRVT_SEQ={seq:03d}",
        f"-DTVM_FFI_ROOT={_package_dir('tvm_ffi')}",
        f"-DTVM_ROOT={_package_dir('tvm')}",
        "-DCMAKE_BUILD_TYPE=Release",
    ]
    for step in (command, ["cmake", "--build", str(build_dir), "--target", "frvt_11", "-j", "2"]):
        log(" ".join(step))
        done = subprocess.run(step, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise SubmissionBuildError(f"{' '.join(step)} failed:\n{(done.stdout + done.stderr).strip()[-4000:]}")
    library = build_dir / f"libfrvt_11_{org}_{seq:03d}.so"
    if not library.exists():
        raise SubmissionBuildError(f"the build did not produce {library}")
    return library


def build_submission(
    output_dir: str | Path,
    *,
    org: str = "frvt",
    seq: int = 1,
    config_dir: str | Path | None = None,
    build_dir: str | Path | None = None,
    log: Callable[[str], None] = lambda _: None,
) -> Submission:
    """Build the submission folder (see the module docstring); returns where its parts are.

    Parameters
    ----------
    output_dir : path
        Created or replaced (its ``lib/``, ``config/`` and ``doc/``).
    org, seq : the library's name, ``libfrvt_11_<org>_<seq>.so`` (org: lower-case letters and digits).
    config_dir : path, optional
        A config folder of the Python implementation to ship; default: the default one (compiled
        with TVM on first use, cached).
    build_dir : path, optional
        CMake's build folder (default: under the cache root, keyed by the sources).

    Raises
    ------
    SubmissionBuildError
    """
    if not re.fullmatch(r"[a-z0-9]+", org):
        raise SubmissionBuildError(f"org {org!r} must be lower-case letters and digits (NIST's library name)")
    if not 0 <= seq <= 999:
        raise SubmissionBuildError(f"seq {seq} must be 0..999 (three digits in the library name)")
    from implementation.config_dir import build_config_dir

    source_config = Path(config_dir) if config_dir is not None else build_config_dir(progress=log)
    if build_dir is None:
        digest = hashlib.sha256(
            str(_native_source().resolve()).encode()
        )  # CMake ties a build folder to one source folder
        for path in sorted(_native_source().rglob("*")):
            if path.is_file():
                digest.update(path.name.encode() + path.read_bytes())
        build_dir = settings.cache_root() / "native" / f"build-{digest.hexdigest()[:16]}"
    library = build_library(Path(build_dir), org, seq, log)

    out = Path(output_dir)
    for part in ("lib", "config", "doc"):
        if (out / part).exists():
            shutil.rmtree(out / part)
    (out / "lib").mkdir(parents=True)
    shutil.copy2(library, out / "lib" / library.name)
    for package, name in RUNTIME_LIBRARIES:
        shutil.copy2(_package_dir(package) / "lib" / name, out / "lib" / name)
    shutil.copytree(source_config, out / "config", ignore=shutil.ignore_patterns("*.onnx", ".*"))
    text = native_settings(out / "config")
    (out / "config" / NATIVE_CONFIG).write_text(text)
    version = next(line.split(" ", 1)[1] for line in text.splitlines() if line.startswith("version "))
    (out / "doc").mkdir()
    (out / "doc" / "version.txt").write_text(version + "\n")
    log(f"wrote {out}")
    return Submission(out, out / "lib" / library.name, out / "config", version)
