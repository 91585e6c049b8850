"""Run any Implementation over NIST-style input lists, as NIST's validation harness does.

One row per input, failures included: an image the harness cannot decode gets a row with
``ParseError`` and an empty template; an exception that crosses the contract is caught, recorded
and reported as ``UnknownError`` (and fails validation), and the run goes on.

Processes: ``initialize`` runs once in the parent, before any worker is forked; the parent never
creates a template itself, so runtime thread pools are first created in the children.
"""

from __future__ import annotations

import multiprocessing
import sys
import time
import traceback
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np

from frvt import settings
from frvt.contract import EyePair, Image, ImageLabel, Implementation, ReturnCode, TemplateRole
from frvt.records import ImageEntry, MatchEntry, MatchRow, TemplateRow, write_bytes_atomic


class DecodeError(ValueError):
    """The harness could not turn an image file into pixels."""


def decode_image(path: str | Path, label: ImageLabel = ImageLabel.FaceUnknown) -> Image:
    """Read an image file into a contract :class:`Image`: depth 8 for grey files, else 24 (RGB).

    Raises DecodeError naming the file when it is unreadable, empty or not an image.
    """
    path = Path(path)
    try:
        raw = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise DecodeError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    if raw.size == 0:
        raise DecodeError(f"{path}: file is empty (0 bytes)")
    pixels = cv2.imdecode(raw, cv2.IMREAD_UNCHANGED)
    if pixels is None or pixels.size == 0:
        raise DecodeError(f"{path}: not a decodable image ({raw.size} bytes)")
    if pixels.dtype != np.uint8:
        pixels = cv2.normalize(pixels, None, 0, 255, cv2.NORM_MINMAX).astype(np.uint8)
    if pixels.ndim == 3 and pixels.shape[2] == 1:
        pixels = pixels[:, :, 0]
    if pixels.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if pixels.shape[2] == 4 else cv2.COLOR_BGR2RGB
        pixels = cv2.cvtColor(pixels, code)
    return Image.from_array(pixels, label)


@dataclass
class TemplateOutcome:
    """What one create_face_template call produced, as seen by the harness."""

    row: TemplateRow
    template: bytes
    elapsed_ms: float | None  # None when the implementation was not called
    width: int = 0
    height: int = 0
    info: str = ""
    exception: str | None = None
    decode_error: str | None = None


@dataclass
class MatchOutcome:
    row: MatchRow
    info: str = ""
    exception: str | None = None


def _exception_text(exc: BaseException) -> str:
    return "".join(traceback.format_exception_only(type(exc), exc)).strip()


def create_template(
    impl: Implementation, entry: ImageEntry, role: TemplateRole, clock: Callable[[], float] = time.perf_counter
) -> TemplateOutcome:
    """Decode one image and call ``create_face_template`` on it; never raises."""
    try:
        image = decode_image(entry.path, entry.label)
    except DecodeError as exc:
        row = TemplateRow(entry.id, entry.image, 0, int(ReturnCode.ParseError), EyePair())
        return TemplateOutcome(row, b"", None, info=str(exc), decode_error=str(exc))
    start = clock()
    try:
        result = impl.create_face_template([image], role)
        elapsed = (clock() - start) * 1e3
        template = bytes(result.template)
        code = int(result.status.code)
        info = result.status.info
        eyes = result.eyes[0] if result.eyes else EyePair()
        exception = None
    except BaseException as exc:  # the contract forbids this; record it and go on
        elapsed = (clock() - start) * 1e3
        template, code, info, eyes = b"", int(ReturnCode.UnknownError), "", EyePair()
        exception = _exception_text(exc)
    row = TemplateRow(entry.id, entry.image, len(template), code, eyes)
    return TemplateOutcome(row, template, elapsed, image.width, image.height, info, exception)


def match(impl: Implementation, enroll_id: str, verif_id: str, enroll: bytes, verif: bytes) -> MatchOutcome:
    """Call ``match_templates(verif, enroll)``; never raises."""
    try:
        result = impl.match_templates(verif, enroll)
        score = float(result.similarity)
        return MatchOutcome(MatchRow(enroll_id, verif_id, score, int(result.status.code)), result.status.info)
    except BaseException as exc:
        return MatchOutcome(
            MatchRow(enroll_id, verif_id, -1.0, int(ReturnCode.UnknownError)), exception=_exception_text(exc)
        )


# ---------------------------------------------------------------------------------------------
# Worker processes (fork): the implementation object is inherited from the parent, not pickled.


@dataclass
class _Worker:
    impl: Implementation | None = None
    template_dir: Path | None = None
    cache: dict = field(default_factory=dict)


_WORKER = _Worker()


def _init_worker(impl: Implementation, template_dir: Path) -> None:
    _WORKER.impl, _WORKER.template_dir, _WORKER.cache = impl, template_dir, {}
    limit_threads()


def limit_threads() -> None:
    """Ask OpenCV (and, for code that reads it late, OpenMP/BLAS) for one thread in this process."""
    cv2.setNumThreads(1)
    settings.limit_threads_by_default()


def template_path(template_dir: Path, role: TemplateRole, template_id: str) -> Path:
    sub = "enroll" if role in (TemplateRole.Enrollment_11, TemplateRole.Enrollment_1N) else "verif"
    return template_dir / sub / f"{template_id}.tmpl"


def _template_task(args: tuple[ImageEntry, TemplateRole]) -> TemplateOutcome:
    entry, role = args
    outcome = create_template(_WORKER.impl, entry, role)
    write_bytes_atomic(template_path(_WORKER.template_dir, role, entry.id), outcome.template)
    return outcome


def _load_template(role: TemplateRole, template_id: str) -> bytes:
    key = (role, template_id)
    if key not in _WORKER.cache:
        _WORKER.cache[key] = template_path(_WORKER.template_dir, role, template_id).read_bytes()
    return _WORKER.cache[key]


def _match_task(pairs: Sequence[MatchEntry]) -> list[MatchOutcome]:
    out = []
    for p in pairs:
        enroll = _load_template(TemplateRole.Enrollment_11, p.enroll_id)
        verif = _load_template(TemplateRole.Verification_11, p.verif_id)
        out.append(match(_WORKER.impl, p.enroll_id, p.verif_id, enroll, verif))
    return out


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return iterable
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit="img" if desc != "match" else "pair", file=sys.stderr)


def _executor(impl: Implementation, template_dir: Path, workers: int) -> ProcessPoolExecutor:
    ctx = multiprocessing.get_context("fork")
    return ProcessPoolExecutor(
        max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(impl, template_dir)
    )


def create_templates(
    impl: Implementation,
    entries: Sequence[ImageEntry],
    role: TemplateRole,
    template_dir: Path,
    workers: int = 4,
    progress: bool = True,
) -> list[TemplateOutcome]:
    """Create (and write) one template per entry with ``workers`` forked processes, in list order."""
    with _executor(impl, template_dir, workers) as pool:
        jobs = pool.map(_template_task, [(e, role) for e in entries], chunksize=1)
        desc = "enrol" if role == TemplateRole.Enrollment_11 else "verif"
        return list(_progress(jobs, len(entries), desc, progress))


def match_all(
    impl: Implementation,
    pairs: Sequence[MatchEntry],
    template_dir: Path,
    workers: int = 4,
    progress: bool = True,
    chunk: int = 256,
) -> list[MatchOutcome]:
    """Compare every pair of match.txt with ``workers`` forked processes, in list order."""
    chunks = [pairs[i : i + chunk] for i in range(0, len(pairs), chunk)]
    out: list[MatchOutcome] = []
    with _executor(impl, template_dir, workers) as pool:
        bar = _progress(None, len(pairs), "match", progress) if progress else None
        for part in pool.map(_match_task, chunks):
            out.extend(part)
            if bar is not None:
                bar.update(len(part))
        if bar is not None:
            bar.close()
    return out


# ---------------------------------------------------------------------------------------------
# Single-process enrolment in a forked child while the parent samples its threads.


@dataclass
class ThreadSample:
    """CPU use of a child process during a run, per thread and in all (dead threads included)."""

    wall_s: float
    cpu_s: float  # the whole process, threads that ended included
    main_cpu_s: float  # the main thread alone
    max_threads: int
    busy_threads: int  # sampled threads that used >= 10% of the CPU time and >= 50 ms
    per_thread_cpu_s: list[float]

    @property
    def utilisation(self) -> float:
        """CPU seconds per wall second: 1.0 means one core busy all the time."""
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def other_threads_cpu_s(self) -> float:
        """CPU seconds spent outside the main thread."""
        return max(0.0, self.cpu_s - self.main_cpu_s)


def _single_process_child(conn, impl: Implementation, entries: Sequence[ImageEntry], role: TemplateRole) -> None:
    limit_threads()
    try:
        outcomes = [create_template(impl, e, role) for e in entries]
        conn.send(outcomes)
    except BaseException as exc:  # pragma: no cover - the harness itself failed
        conn.send(exc)
    finally:
        conn.close()


def single_process_enrolment(
    impl: Implementation,
    entries: Sequence[ImageEntry],
    role: TemplateRole = TemplateRole.Enrollment_11,
    interval_s: float = 0.02,
) -> tuple[list[TemplateOutcome], ThreadSample]:
    """Create templates in one forked child, sequentially, sampling the child's threads.

    A thread counts as busy when it used at least 10% of the child's CPU time and at least 50 ms.
    """
    import psutil

    ctx = multiprocessing.get_context("fork")
    parent_conn, child_conn = ctx.Pipe(duplex=False)
    child = ctx.Process(target=_single_process_child, args=(child_conn, impl, entries, role), daemon=True)
    start = time.perf_counter()
    child.start()
    child_conn.close()
    proc = psutil.Process(child.pid)
    per_thread: dict[int, float] = {}
    max_threads, process_cpu = 0, 0.0
    result = None
    while True:
        try:
            threads = proc.threads()
            times = proc.cpu_times()
            max_threads = max(max_threads, len(threads))
            for t in threads:
                per_thread[t.id] = t.user_time + t.system_time
            process_cpu = times.user + times.system
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
        if parent_conn.poll(interval_s):
            try:
                result = parent_conn.recv()
            except EOFError:
                result = None
            break
        if not child.is_alive():
            break
    wall = time.perf_counter() - start
    child.join(timeout=30)
    if isinstance(result, BaseException):
        raise result
    if result is None:
        raise RuntimeError(f"the single-process enrolment child died (exit code {child.exitcode})")
    cpu = max(process_cpu, sum(per_thread.values()))
    busy = sum(1 for c in per_thread.values() if c >= max(0.05, 0.10 * cpu))
    sample = ThreadSample(
        wall, cpu, per_thread.get(child.pid, 0.0), max_threads, busy, sorted(per_thread.values(), reverse=True)
    )
    return result, sample
