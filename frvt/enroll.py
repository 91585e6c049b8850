"""``frvt enroll``: templates for an image list into a template store, on Dask, resumable.

Input: a NIST image list (``<id> <image path> <label> [<identity>]``, paths relative to the list) or a
folder laid out ``<identity>/<image>`` (every image file below it; the id is the path without its
extension). Each Dask worker initialises the implementation once; batches of images go to the
workers and their templates come back to this process, which writes them to the store
(:mod:`frvt.store`) batch by batch. A killed run, started again with the same arguments, makes only
the templates the store does not hold yet.

A failure to enrol is a row like any other: the implementation's return code and its (failed)
template, or ``ParseError`` with the harness's reason when the image cannot be decoded.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from frvt.contract import DEFAULT_IMPLEMENTATION, ImageLabel, ReturnCode, TemplateRole
from frvt.records import ImageEntry
from frvt.store import (
    NOT_MADE,
    StoreError,
    create_store,
    read_store_info,
    write_results,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def folder_entries(root: str | Path) -> list[ImageEntry]:
    """Every image ``<root>/<identity>/.../<name>.<ext>``, sorted; id = relative path without extension."""
    root = Path(root)
    paths = sorted(
        p
        for p in root.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and len(p.relative_to(root).parts) >= 2
    )
    return [
        ImageEntry(
            p.relative_to(root).with_suffix("").as_posix(),
            p,
            p.relative_to(root).as_posix(),
            ImageLabel.FaceUnknown,
            p.relative_to(root).parts[0],
            i + 1,
        )
        for i, p in enumerate(paths)
    ]


def read_entries(source: str | Path) -> list[ImageEntry]:
    """A NIST image list file, or a ``<identity>/<image>`` folder."""
    from frvt.records import read_image_list

    source = Path(source)
    if source.is_dir():
        entries = folder_entries(source)
        if not entries:
            raise ValueError(f"{source}: no images in <identity>/<image> layout ({', '.join(IMAGE_SUFFIXES)})")
        return entries
    if not source.is_file():
        raise ValueError(f"{source}: no such image list or folder")
    return read_image_list(source)


def _enrol_batch(plugin: str, items: list[tuple[int, str, int]], role: int) -> list[tuple[int, int, bytes, float, str]]:
    """On a worker: ``(row, code, template, ms, info)`` for each ``(row, image path, label)``."""
    from frvt.cluster import worker_implementation
    from frvt.driver import DecodeError, decode_image

    impl = worker_implementation(plugin)
    out = []
    for row, path, label in items:
        try:
            image = decode_image(path, ImageLabel(label))
        except DecodeError as exc:
            out.append((row, int(ReturnCode.ParseError), b"", float("nan"), str(exc)))
            continue
        t0 = time.perf_counter()
        try:
            result = impl.create_face_template([image], TemplateRole(role))
            ms = (time.perf_counter() - t0) * 1e3
            out.append((row, int(result.status.code), bytes(result.template), ms, result.status.info))
        except Exception as exc:  # noqa: BLE001 - crossed the contract: a failure of this image, the run goes on
            ms = (time.perf_counter() - t0) * 1e3
            why = f"exception crossed the contract: {type(exc).__name__}: {exc}"
            out.append((row, int(ReturnCode.UnknownError), b"", ms, why))
    return out


@dataclass
class EnrolmentReport:
    """What :func:`enroll` did.

    Attributes
    ----------
    store : Path
    n_images : int
    n_made : int
        Templates made by this run (the rest were in the store already).
    seconds : float
        Wall time of this run's template making.
    failures : list of (id, code name, info)
        Every failure to enrol in the store (this run's and earlier ones').
    workers : int
    """

    store: Path
    n_images: int
    n_made: int
    seconds: float
    failures: list[tuple[str, str, str]] = field(default_factory=list)
    workers: int = 0

    @property
    def images_per_second(self) -> float | None:
        return self.n_made / self.seconds if self.n_made and self.seconds > 0 else None


def enroll(
    source: str | Path,
    store: str | Path,
    *,
    implementation: str = DEFAULT_IMPLEMENTATION,
    config_dir: str | Path | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    role: TemplateRole = TemplateRole.Enrollment_11,
    batch: int = 16,
    progress: bool = True,
    say: Callable[[str], None] = lambda s: None,
) -> EnrolmentReport:
    """Make the templates of ``source`` (list or folder) into ``store``, continuing an existing store.

    Raises StoreError when ``store`` exists but was made for other images or by another
    implementation, ValueError for bad input lists (naming file and line).
    """
    from frvt.cluster import dask_client, register_implementation
    from frvt.contract import load_implementation
    from frvt.settings import resolve_config_dir

    entries = read_entries(source)
    store = Path(store)
    impl = load_implementation(implementation)
    config = resolve_config_dir(impl, config_dir)
    ids = [e.id for e in entries]
    with dask_client(scheduler, workers) as client:
        plugin = register_implementation(client, implementation, str(config))
        n_workers = len(client.scheduler_info()["workers"])
        if not store.exists():
            header, version = client.submit(_describe, plugin, pure=False).result()
            create_store(
                store,
                ids,
                [e.identity for e in entries],
                [e.image for e in entries],
                implementation=implementation,
                implementation_version=version,
                config_dir=str(config),
                role=role.name,
                header=header,
            )
        info = read_store_info(store)
        if info.ids.tolist() != ids:
            raise StoreError(store, f"was made for another image list ({info.n} ids; {source} has {len(ids)})")
        if info.implementation != implementation:
            raise StoreError(store, f"was made by {info.implementation}, not {implementation}")
        header, version = client.submit(_describe, plugin, pure=False).result()
        if header != info.header or version != info.implementation_version:
            raise StoreError(
                store,
                f"holds templates of {info.implementation_version} {info.header}; this "
                f"configuration makes {version} {header} (use another store)",
            )
        todo = np.flatnonzero(info.codes == NOT_MADE)
        if info.n_made:
            say(f"resuming {store}: {info.n_made} templates made, {todo.size} to make")
        n_made, seconds = _run_batches(client, plugin, store, entries, todo, role, batch, progress, n_workers)
        final = read_store_info(store)
    failures = [(final.ids[i], _code_name(int(final.codes[i])), "") for i in np.flatnonzero(final.codes > 0)]
    if failures:
        failures = _with_infos(store, failures)
    return EnrolmentReport(store, final.n, n_made, seconds, failures, n_workers)


def _describe(plugin: str) -> tuple[dict, str]:
    """On a worker: the implementation's template header and version."""
    from frvt.cluster import worker_implementation

    impl = worker_implementation(plugin)
    form = getattr(impl, "vector_form", None)
    form = form() if callable(form) else None
    header = form.header() if form is not None else {"template_format": "opaque"}
    return header, str(getattr(impl, "version", "") or "")


def _code_name(code: int) -> str:
    try:
        return ReturnCode(code).name
    except ValueError:
        return f"code {code}"


def _with_infos(store: Path, failures):
    import h5py

    with h5py.File(store, "r") as f:
        ids = f["id"][:]
        pos = {(x.decode() if isinstance(x, bytes) else x): i for i, x in enumerate(ids)}
        infos = f["info"]
        out = []
        for i, c, _ in failures:
            v = infos[pos[i]]
            out.append((i, c, v.decode() if isinstance(v, bytes) else str(v)))
        return out


def _run_batches(
    client,
    plugin: str,
    store: Path,
    entries: Sequence[ImageEntry],
    todo: np.ndarray,
    role: TemplateRole,
    batch: int,
    progress: bool,
    n_workers: int,
) -> tuple[int, float]:
    from distributed import as_completed
    from tqdm import tqdm

    if not todo.size:
        return 0, 0.0
    batches = [todo[i : i + batch] for i in range(0, todo.size, batch)]
    in_flight = max(4 * n_workers, 4)
    t0 = time.perf_counter()
    bar = tqdm(total=int(todo.size), unit="img", desc="enroll", disable=not progress, smoothing=0.05)
    pending: list = []
    flush_every = 4
    made = 0
    queue = iter(batches)

    def submit_next() -> bool:
        rows = next(queue, None)
        if rows is None:
            return False
        items = [(int(r), str(entries[r].path), int(entries[r].label)) for r in rows]
        ac.add(client.submit(_enrol_batch, plugin, items, int(role), pure=False))
        return True

    ac = as_completed()
    for _ in range(in_flight):
        if not submit_next():
            break
    try:
        for fut in ac:
            results = fut.result()
            fut.release()
            submit_next()
            pending.extend(results)
            bar.update(len(results))
            if len(pending) >= flush_every * batch:
                made += _flush(store, pending)
                pending = []
    finally:
        if pending:
            made += _flush(store, pending)
        bar.close()
    return made, time.perf_counter() - t0


def _flush(store: Path, results: list) -> int:
    rows = np.array([r[0] for r in results])
    write_results(
        store,
        rows,
        np.array([r[1] for r in results]),
        [r[2] for r in results],
        np.array([r[3] for r in results]),
        [r[4] for r in results],
    )
    return len(results)
