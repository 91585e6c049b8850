"""MetaSchedule tuning databases: their files, manifests, discovery, snapshots, pruning and merging.

A database (MetaSchedule ``JSONDatabase``) is a directory holding ``database_workload.json``,
``database_tuning_record.json`` and ``manifest.json``; the manifest names the model sha256 and
target the database was tuned for, and the convolution scheme (``conv_scheme``) its workloads
come from; a build with that database uses that scheme. Committed databases under
``data/tuning/<model-stem>-<target-name>/`` are found automatically by :func:`find_tuned_database`
when the model hash and target match.

No TVM import except to write a manifest (it records TVM's version).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

from frvt.compiler import CompileError
from frvt.compiler.passes import CONV_SCHEMES, LAYOUT_ELEMENTWISE_OPS, WINOGRAD_SETTINGS, onnx_input_spec
from frvt.compiler.targets import target_name
from frvt.settings import data_root


DEFAULT_TUNING_ROOT = data_root() / "tuning"
"""Where committed tuning databases live (``data/tuning/<model-stem>-<target-name>/``)."""


MANIFEST_NAME = "manifest.json"


WORKLOAD_FILE = "database_workload.json"


RECORD_FILE = "database_tuning_record.json"


LEGACY_WINOGRAD_SETTINGS = {"tiles": [[8, 4]], "min_channels": 8}
"""The settings of NHWC-winograd databases whose manifest predates the ``winograd`` field:
F(4x4, 3x3) on every eligible input of at least 8x8."""


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def database_files(database: str | Path) -> tuple[Path, Path]:
    """(workload file, tuning-record file) of a JSON database directory."""
    database = Path(database)
    return database / WORKLOAD_FILE, database / RECORD_FILE


def count_records(database: str | Path | None) -> int:
    """Number of tuning records (measured candidates) in a JSON database directory; 0 if none."""
    if database is None:
        return 0
    records = database_files(database)[1]
    if not records.exists():
        return 0
    with open(records, "rb") as handle:
        return sum(1 for line in handle if line.strip())


def database_digest(database: str | Path | None) -> str:
    """SHA-256 over a database's workload and record files ("" when there is no database)."""
    if database is None:
        return ""
    digest = hashlib.sha256()
    for path in database_files(database):
        if path.exists():
            digest.update(path.read_bytes())
    return digest.hexdigest()


def write_manifest(database: str | Path, onnx_path: str | Path, target: dict, **extra: Any) -> None:
    """Write ``manifest.json`` naming the model and target a database was tuned for."""
    import tvm

    database = Path(database)
    database.mkdir(parents=True, exist_ok=True)
    manifest_path = database / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}
    manifest.update(
        {
            "model": Path(onnx_path).name,
            "model_sha256": file_sha256(onnx_path),
            "target": target,
            "target_name": target_name(target),
            "tvm_version": tvm.__version__,
            "records": count_records(database),
        }
    )
    manifest.update(extra)
    _atomic_write_text(manifest_path, json.dumps(manifest, indent=2, sort_keys=True) + "\n")


def read_manifest(database: str | Path | None) -> dict:
    """A database's ``manifest.json`` ({} when there is none or it does not parse)."""
    if database is None:
        return {}
    try:
        return json.loads((Path(database) / MANIFEST_NAME).read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def database_conv_scheme(database: str | Path | None) -> str:
    """The convolution scheme a database was tuned with (its manifest's ``conv_scheme``).

    Databases without the field predate the option and were tuned in NCHW.
    """
    scheme = read_manifest(database).get("conv_scheme", "NCHW")
    if scheme not in CONV_SCHEMES:
        raise CompileError(f"{Path(database) / MANIFEST_NAME}: unknown conv_scheme {scheme!r}")
    return scheme


def database_winograd(database: str | Path | None) -> dict:
    """The Winograd settings a database was tuned with (its manifest's ``winograd``).

    NHWC-winograd manifests without the field predate it (:data:`LEGACY_WINOGRAD_SETTINGS`);
    no database, or one not yet tuned in NHWC-winograd, gets :data:`~frvt.compiler.passes.WINOGRAD_SETTINGS`.
    """
    manifest = read_manifest(database)
    if "winograd" in manifest:
        return manifest["winograd"]
    if manifest.get("conv_scheme") == "NHWC-winograd" and count_records(database) > 0:
        return LEGACY_WINOGRAD_SETTINGS
    return WINOGRAD_SETTINGS


def database_layout_elementwise(database: str | Path | None) -> list[str]:
    """The elementwise operators a database's layout conversion passed through (its manifest's
    ``layout_elementwise``).

    NHWC or NHWC-winograd manifests with records but without the field predate it: none. No
    database, or one not yet tuned, gets :data:`~frvt.compiler.passes.LAYOUT_ELEMENTWISE_OPS`.
    """
    manifest = read_manifest(database)
    if "layout_elementwise" in manifest:
        return list(manifest["layout_elementwise"])
    if manifest.get("conv_scheme", "NCHW") != "NCHW" and count_records(database) > 0:
        return []
    return list(LAYOUT_ELEMENTWISE_OPS)


def scheme_settings(database: str | Path | None, scheme: str) -> dict:
    """The settings besides the scheme that :func:`~frvt.compiler.passes.prepare_module` takes from a
    database, and that its manifest records: ``winograd`` and ``layout_elementwise``, where the
    scheme uses them."""
    settings: dict = {}
    if scheme.startswith("NHWC"):
        settings["layout_elementwise"] = database_layout_elementwise(database)
    if scheme == "NHWC-winograd":
        settings["winograd"] = database_winograd(database)
    return settings


def find_tuned_database(
    onnx_path: str | Path,
    target: dict,
    roots: tuple[Path, ...] = (DEFAULT_TUNING_ROOT,),
    input_shape: tuple[int, ...] | None = None,
) -> Path | None:
    """A committed database tuned for this model file, target and input shape, or None.

    A database matches when its ``manifest.json`` has the model's SHA-256, the same
    ``target_name`` (``mcpu``) as ``target`` and the same ``input_shape`` (a manifest without one
    was tuned at the model file's own input shape; ``input_shape`` None asks for that shape),
    and it holds records: the tuned functions of another shape (say, a batch of two) are other
    workloads. When several match (say, a database for another convolution scheme still being
    tuned beside the one in use), the one named ``<model-stem>-<target-name>`` wins, then the
    one with the most records.
    """
    sha = file_sha256(onnx_path)
    name = target_name(target)
    canonical = f"{Path(onnx_path).stem}-{name}"
    own_shape = list(onnx_input_spec(onnx_path)[1])
    wanted = list(input_shape) if input_shape is not None else own_shape
    matches = []
    for root in roots:
        if not Path(root).is_dir():
            continue
        for manifest_path in sorted(Path(root).glob(f"*/{MANIFEST_NAME}")):
            try:
                manifest = json.loads(manifest_path.read_text())
            except (OSError, json.JSONDecodeError):
                continue
            if (
                manifest.get("model_sha256") == sha
                and manifest.get("target_name") == name
                and list(manifest.get("input_shape", own_shape)) == wanted
            ):
                n_records = count_records(manifest_path.parent)
                if n_records > 0:
                    matches.append((manifest_path.parent.name != canonical, -n_records, manifest_path.parent))
    return min(matches, key=lambda match: match[:2])[2] if matches else None


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def drop_records(database: str | Path, workload_hashes: set[str]) -> int:
    """Delete the records of the given workloads (by :func:`~frvt.compiler.tuning.workload_hash`)
    from a database.

    The workload lines stay (records of other workloads point at them by index). Used before
    re-tuning tasks in another measurement mode (``scripts/tune.py --reset``).

    Returns
    -------
    int
        Records deleted.
    """
    workloads_path, records_path = database_files(database)
    if not records_path.exists():
        return 0
    dropped_indices = {
        i for i, line in enumerate(_complete_lines(workloads_path)) if json.loads(line)[0] in workload_hashes
    }
    kept, dropped = [], 0
    for line in _complete_lines(records_path):
        if json.loads(line)[0] in dropped_indices:
            dropped += 1
        else:
            kept.append(line)
    _atomic_write_text(records_path, "".join(line + "\n" for line in kept))
    return dropped


def database_cold_tasks(database: str | Path | None) -> dict[str, str]:
    """``{task name: workload hash}`` of the tasks whose records were measured cold (manifest)."""
    return dict(read_manifest(database).get("cold_tasks", {}))


def _complete_lines(path: Path) -> list[str]:
    """The lines of a database file that parse as JSON (a last line may still be being written)."""
    lines = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            json.loads(line)
        except json.JSONDecodeError:
            continue
        lines.append(line)
    return lines


def snapshot_database(database: str | Path, out: str | Path) -> int:
    """Copy a JSON database's two files to ``out`` (created), dropping a last line still being
    written (a tuning run may be appending right now), and its manifest (the convolution scheme
    and Winograd settings a build from the snapshot must use); returns the records copied."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for source in database_files(database):
        (out / source.name).write_text("".join(line + "\n" for line in _complete_lines(source)))
    manifest = Path(database) / MANIFEST_NAME
    if manifest.exists():
        shutil.copyfile(manifest, out / MANIFEST_NAME)
    return count_records(out)


def prune_database(database: str | Path, keep_per_workload: int = 8) -> tuple[int, int]:
    """Keep only the fastest ``keep_per_workload`` records of each workload (in place, atomic).

    Records that failed (no run time) are dropped. Keeping several per workload lets a later
    tuning session seed its search from them; applying the database uses only the best one.

    Returns
    -------
    (int, int)
        Records before and after.
    """
    records_path = database_files(database)[1]
    if not records_path.exists():
        return 0, 0
    by_workload: dict[int, list[tuple[float, str]]] = {}
    n_before = 0
    for line in records_path.read_text().splitlines():
        if not line.strip():
            continue
        n_before += 1
        workload_index, record = json.loads(line)
        run_secs = record[1]
        if not run_secs:
            continue
        mean = sum(float(s) for s in run_secs) / len(run_secs)
        if mean >= 1e9:  # MetaSchedule stores 1e10 for failed runs
            continue
        by_workload.setdefault(workload_index, []).append((mean, line))
    kept = []
    for workload_index in sorted(by_workload):
        kept.extend(line for _, line in sorted(by_workload[workload_index])[:keep_per_workload])
    _atomic_write_text(records_path, "".join(line + "\n" for line in kept))
    return n_before, len(kept)


def merge_database(source: str | Path, destination: str | Path) -> int:
    """Append ``source``'s workloads and records to ``destination`` (created when missing).

    Workloads already in ``destination`` (the same line of ``database_workload.json``, which
    holds the structural hash and the function) are not duplicated; the records are renumbered
    to point at them. Used to seed a database for a new convolution scheme with the records of
    the functions both schemes share (everything but the convolutions that change). Partial
    last lines of a database being written are skipped.

    Returns
    -------
    int
        Records appended.
    """
    destination = Path(destination)
    destination.mkdir(parents=True, exist_ok=True)
    src_workloads, src_records = database_files(source)
    dst_workloads, dst_records = database_files(destination)
    workloads = _complete_lines(dst_workloads)
    index = {line: i for i, line in enumerate(workloads)}
    remap = {}
    for i, line in enumerate(_complete_lines(src_workloads)):
        if line not in index:
            index[line] = len(workloads)
            workloads.append(line)
        remap[i] = index[line]
    appended = []
    for line in _complete_lines(src_records):
        workload_index, record = json.loads(line)
        if workload_index in remap:
            appended.append(json.dumps([remap[workload_index], record]))
    _atomic_write_text(dst_workloads, "".join(line + "\n" for line in workloads))
    records = _complete_lines(dst_records) + appended
    _atomic_write_text(dst_records, "".join(line + "\n" for line in records))
    return len(appended)
