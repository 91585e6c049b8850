"""Run an implementation over NIST-style input lists, as NIST's validation driver does, in workers.

One outcome per list line (one per detected person for the multi-person call), failures
included: an image the harness cannot decode gets ``ParseError`` without calling the
implementation; an exception that crosses the contract is caught and recorded as
``UnknownError``; a call that never returns (crash, timeout, memory) is recorded with its cause
(:class:`frvt.worker.CallFailure`) and the run goes on.

Every call runs in a worker process (:mod:`frvt.worker`): the harness process never calls the
implementation. Each phase appends one JSON line per finished input to its journal as soon as it
finishes (templates are written first, atomically); a phase that was cut short (the process tree
was killed) resumes from its journal, and the outcomes come back in list order.

Plugging in an implementation
-----------------------------
Workers build their implementation from an :class:`frvt.contract.ImplementationSpec`: a factory
named ``"module:attribute"`` and keyword arguments, for instance
``ImplementationSpec("mypkg.bridge:NativeLibrary", (("library", "/path/libfrvt_11_org_001.so"),))``.
The spec is pickled to each fresh worker, which calls ``factory(**kwargs)`` and then
``initialize(config_dir)``. A native bridge is therefore an ordinary implementation object; two
optional attributes let it speak for the library it runs:

- ``last_call_seconds`` (float, set by every call): the call's duration as measured around the
  native call. When present, it is the latency the driver records, instead of its own clock
  around the Python call (so the bridge's own overhead is not charged).
- ``library_path`` (str): the core library, ``lib/libfrvt_11_<org>_<seq>.so``; when present,
  ``frvt validate`` packages ``lib/`` for submission.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np

from frvt.contract import EyePair, Image, ImageDescription, Implementation, ReturnCode, TemplateRole
from frvt.records import ImageEntry, MatchEntry, MatchRow, MultiPersonRow, TemplateRow, write_bytes_atomic
from frvt.worker import CallFailure, PhaseStats, WorkerPool, exception_text

TEMPLATE_SUFFIX = ".template"


class DecodeError(ValueError):
    """The harness could not turn an image file into pixels."""


def decode_image(path: str | Path, label: ImageDescription = ImageDescription.FaceUnknown) -> Image:
    """Read an image file (PPM/PGM as NIST's driver does, or anything OpenCV reads) into a contract
    :class:`Image`: depth 8 for grey files, else 24 (RGB).

    Raises DecodeError naming the file when it is unreadable, empty, not an image, or larger than
    NIST's ``uint16`` width and height allow.
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
    if max(pixels.shape[:2]) > 65535:
        raise DecodeError(f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels exceed NIST's 16-bit image size")
    return Image.from_array(pixels, label)


def implementation_attributes(impl: Implementation) -> dict:
    """The optional attributes the harness reports (see :class:`frvt.contract.Implementation`)."""
    out = {}
    for name in ("version", "organization", "library_path", "target"):
        value = getattr(impl, name, None)
        if value is not None:
            try:
                json.dumps(value)
                out[name] = value
            except (TypeError, ValueError):
                out[name] = str(value)
    return out


# ---------------------------------------------------------------------------------------------
# What runs in a worker: one request -> one plain reply (picklable, JSON-able but for bytes).


def _elapsed_ms(impl, start: float) -> float:
    measured = getattr(impl, "last_call_seconds", None)
    if isinstance(measured, (int, float)) and measured >= 0:
        return float(measured) * 1e3
    return (time.perf_counter() - start) * 1e3


def _eye_tuple(e) -> tuple:
    return (
        bool(e.is_left_assigned),
        bool(e.is_right_assigned),
        int(e.xleft),
        int(e.yleft),
        int(e.xright),
        int(e.yright),
    )


def _decode_all(images: Sequence[tuple[str, int]]) -> tuple[list[Image], str | None]:
    """Decode on one thread, as NIST's driver reads its files, leaving the implementation's own
    OpenCV thread setting as it was."""
    decoded = []
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        for path, label in images:
            try:
                decoded.append(decode_image(path, ImageDescription(label)))
            except DecodeError as exc:
                return [], str(exc)
    finally:
        cv2.setNumThreads(previous)
    return decoded, None


def _handle_template(impl, payload: dict) -> dict:
    images, error = _decode_all(payload["images"])
    if error is not None:
        return {
            "code": int(ReturnCode.ParseError),
            "info": error,
            "decode_error": error,
            "template": b"",
            "eyes": [],
            "elapsed_ms": None,
            "sizes": [],
        }
    sizes = [(im.width, im.height) for im in images]
    start = time.perf_counter()
    try:
        result = impl.create_face_template(images, TemplateRole(payload["role"]))
        elapsed = _elapsed_ms(impl, start)
        reply = {
            "code": int(result.status.code),
            "info": str(result.status.info),
            "template": bytes(result.template),
            "eyes": [_eye_tuple(e) for e in result.eyes],
            "exception": None,
        }
    except BaseException as exc:  # the contract forbids this; record it and go on
        elapsed = (time.perf_counter() - start) * 1e3
        reply = {
            "code": int(ReturnCode.UnknownError),
            "info": "",
            "template": b"",
            "eyes": [],
            "exception": exception_text(exc),
            "memory_error": isinstance(exc, MemoryError),
        }
    reply.update(elapsed_ms=elapsed, sizes=sizes, decode_error=None)
    return reply


def _handle_multi(impl, payload: dict) -> dict:
    images, error = _decode_all([(payload["path"], payload["label"])])
    if error is not None:
        return {
            "code": int(ReturnCode.ParseError),
            "info": error,
            "decode_error": error,
            "templates": [],
            "eyes": [],
            "elapsed_ms": None,
            "sizes": [],
        }
    image = images[0]
    call = getattr(impl, "create_face_templates", None)
    if not callable(call):
        return {
            "code": int(ReturnCode.NotImplemented),
            "info": "the implementation has no create_face_templates",
            "templates": [],
            "eyes": [],
            "elapsed_ms": None,
            "sizes": [(image.width, image.height)],
            "decode_error": None,
            "exception": None,
        }
    start = time.perf_counter()
    try:
        result = call(image, TemplateRole(payload["role"]))
        elapsed = _elapsed_ms(impl, start)
        reply = {
            "code": int(result.status.code),
            "info": str(result.status.info),
            "templates": [bytes(t) for t in result.templates],
            "eyes": [_eye_tuple(e) for e in result.eyes],
            "exception": None,
        }
    except BaseException as exc:
        elapsed = (time.perf_counter() - start) * 1e3
        reply = {
            "code": int(ReturnCode.UnknownError),
            "info": "",
            "templates": [],
            "eyes": [],
            "exception": exception_text(exc),
            "memory_error": isinstance(exc, MemoryError),
        }
    reply.update(elapsed_ms=elapsed, sizes=[(image.width, image.height)], decode_error=None)
    return reply


def _handle_match(impl, payload: dict) -> dict:
    start = time.perf_counter()
    try:
        result = impl.match_templates(payload["verif"], payload["enroll"])
        elapsed = _elapsed_ms(impl, start)
        return {
            "code": int(result.status.code),
            "info": str(result.status.info),
            "score": float(result.similarity),
            "exception": None,
            "elapsed_ms": elapsed,
        }
    except BaseException as exc:
        return {
            "code": int(ReturnCode.UnknownError),
            "info": "",
            "score": -1.0,
            "exception": exception_text(exc),
            "elapsed_ms": (time.perf_counter() - start) * 1e3,
            "memory_error": isinstance(exc, MemoryError),
        }


REQUEST_HANDLERS: dict[str, Callable[[Any, Any], dict]] = {
    "template": _handle_template,
    "multi": _handle_multi,
    "match": _handle_match,
}


# ---------------------------------------------------------------------------------------------
# Outcomes, as the harness records them (JSON in the journal; template bytes on disk).


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _failure_fields(reply) -> dict:
    """Common fields of a reply or a CallFailure."""
    if isinstance(reply, CallFailure):
        return {
            "code": reply.code,
            "info": reply.detail,
            "exception": None,
            "failure": reply.to_json(),
            "elapsed_ms": None,
        }
    failure = None
    if reply.get("memory_error"):
        failure = {"cause": "memory", "detail": f"MemoryError inside the call: {reply.get('exception')}"}
    return {
        "code": reply["code"],
        "info": reply.get("info", ""),
        "exception": reply.get("exception"),
        "failure": failure,
        "elapsed_ms": reply.get("elapsed_ms"),
    }


@dataclass
class TemplateOutcome:
    """One list line through ``create_face_template``: one log row per image of the line."""

    id: str
    rows: list[TemplateRow]
    template_sha256: str
    elapsed_ms: float | None  # None when the implementation was not called or did not return
    sizes: list[tuple[int, int]] = field(default_factory=list)  # (width, height) per image
    info: str = ""
    exception: str | None = None
    decode_error: str | None = None
    failure: dict | None = None  # {"cause": crash|timeout|memory, "detail": ...}
    n_images: int = 1
    n_eyes: int = 0

    @property
    def row(self) -> TemplateRow:
        return self.rows[0]

    @property
    def width(self) -> int:
        return self.sizes[0][0] if self.sizes else 0

    @property
    def height(self) -> int:
        return self.sizes[0][1] if self.sizes else 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.format() for r in self.rows]
        return d


@dataclass
class MultiOutcome:
    """One image through the multi-person ``create_face_templates``: one row per template."""

    id: str
    image: str
    code: int
    rows: list[MultiPersonRow]
    template_sha256: list[str]
    elapsed_ms: float | None
    sizes: list[tuple[int, int]] = field(default_factory=list)
    info: str = ""
    exception: str | None = None
    decode_error: str | None = None
    failure: dict | None = None
    n_templates: int = 0
    n_eyes: int = 0

    def to_json(self) -> dict:
        d = asdict(self)
        d["rows"] = [r.format() for r in self.rows]
        return d


@dataclass
class MatchOutcome:
    row: MatchRow
    info: str = ""
    exception: str | None = None
    failure: dict | None = None
    elapsed_ms: float | None = None

    def to_json(self) -> dict:
        return {
            "row": self.row.format(exact=True),
            "info": self.info,
            "exception": self.exception,
            "failure": self.failure,
            "elapsed_ms": self.elapsed_ms,
        }


def _eyes_from(tuples: list) -> list[EyePair]:
    return [EyePair(*t) for t in tuples]


def template_outcome(entry: ImageEntry, reply, template_dir: Path | None) -> TemplateOutcome:
    """The outcome of one enrolment/verification line; writes ``<id>.template`` when asked.

    Rows as NIST's driver writes them: one per image, the template's size and code on each, the
    image's EyePair (zeros when the implementation returned fewer EyePairs than images).
    """
    common = _failure_fields(reply)
    template = b"" if isinstance(reply, CallFailure) else reply.get("template", b"")
    eyes = [] if isinstance(reply, CallFailure) else _eyes_from(reply.get("eyes", []))
    refs = entry.images
    rows = [
        TemplateRow(entry.id, ref.image, len(template), common["code"], eyes[i] if i < len(eyes) else EyePair())
        for i, ref in enumerate(refs)
    ]
    if template_dir is not None:
        write_bytes_atomic(template_dir / f"{entry.id}{TEMPLATE_SUFFIX}", template)
    return TemplateOutcome(
        entry.id,
        rows,
        _sha(template),
        common["elapsed_ms"],
        [] if isinstance(reply, CallFailure) else [tuple(s) for s in reply.get("sizes", [])],
        common["info"],
        common["exception"],
        None if isinstance(reply, CallFailure) else reply.get("decode_error"),
        common["failure"],
        len(refs),
        len(eyes),
    )


def multi_outcome(entry: ImageEntry, reply, template_dir: Path) -> MultiOutcome:
    """The outcome of one multi-person line; writes ``<id>_<i>.template`` for each template."""
    common = _failure_fields(reply)
    templates = [] if isinstance(reply, CallFailure) else reply.get("templates", [])
    eyes = [] if isinstance(reply, CallFailure) else _eyes_from(reply.get("eyes", []))
    rows = []
    for i, t in enumerate(templates):
        write_bytes_atomic(template_dir / f"{entry.id}_{i}{TEMPLATE_SUFFIX}", t)
        rows.append(
            MultiPersonRow(
                entry.id,
                entry.image,
                len(t),
                common["code"],
                len(templates),
                i,
                eyes[i] if i < len(eyes) else EyePair(),
            )
        )
    return MultiOutcome(
        entry.id,
        entry.image,
        common["code"],
        rows,
        [_sha(t) for t in templates],
        common["elapsed_ms"],
        [] if isinstance(reply, CallFailure) else [tuple(s) for s in reply.get("sizes", [])],
        common["info"],
        common["exception"],
        None if isinstance(reply, CallFailure) else reply.get("decode_error"),
        common["failure"],
        len(templates),
        len(eyes),
    )


def match_outcome(entry: MatchEntry, reply) -> MatchOutcome:
    common = _failure_fields(reply)
    score = -1.0 if isinstance(reply, CallFailure) else reply.get("score", -1.0)
    return MatchOutcome(
        MatchRow(entry.enroll_name, entry.verif_name, score, common["code"]),
        common["info"],
        common["exception"],
        common["failure"],
        common["elapsed_ms"],
    )


def _template_from_json(d: dict) -> TemplateOutcome:
    from frvt.records import read_template_log_line

    d = dict(d)
    d["rows"] = [read_template_log_line(r) for r in d["rows"]]
    d["sizes"] = [tuple(s) for s in d.get("sizes", [])]
    return TemplateOutcome(**d)


def _multi_from_json(d: dict) -> MultiOutcome:
    from frvt.records import read_multiperson_log_line

    d = dict(d)
    d["rows"] = [read_multiperson_log_line(r) for r in d["rows"]]
    d["sizes"] = [tuple(s) for s in d.get("sizes", [])]
    return MultiOutcome(**d)


def _match_from_json(d: dict) -> MatchOutcome:
    from frvt.records import read_match_log_line

    return MatchOutcome(
        read_match_log_line(d["row"]), d.get("info", ""), d.get("exception"), d.get("failure"), d.get("elapsed_ms")
    )


# ---------------------------------------------------------------------------------------------
# Journals: one JSON line per finished input, appended and flushed as it finishes.


class Journal:
    """``<phase>.jsonl``: ``{"key": <list index>, "outcome": {...}}`` per line; ``{"done": true}`` last."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.records: dict[int, dict] = {}
        self.done = False
        if path.exists():
            for line in path.read_text().splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:
                    continue  # a line cut by a kill: that input is done again
                if rec.get("done"):
                    self.done = True
                elif "key" in rec:
                    self.records[int(rec["key"])] = rec["outcome"]
        path.parent.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        if path.stat().st_size and not path.read_bytes().endswith(b"\n"):
            os.write(self._fd, b"\n")  # end a line cut by a kill

    def append(self, key: int, outcome: dict) -> None:
        os.write(self._fd, (json.dumps({"key": key, "outcome": outcome}) + "\n").encode())
        self.records[key] = outcome

    def finish(self) -> None:
        os.write(self._fd, b'{"done": true}\n')
        self.done = True

    def close(self) -> None:
        os.close(self._fd)


@dataclass
class PhaseResult:
    outcomes: list
    stats: PhaseStats
    resumed: int = 0  # inputs taken from the journal


def run_phase(
    pool: WorkerPool,
    journal_path: Path,
    items: Sequence[tuple[str, Any]],
    operation: str,
    make_outcome: Callable[[int, Any], Any],
    from_json: Callable[[dict], Any],
    workers: int,
    progress: Callable[[int, int], None] | None = None,
    on_tick: Callable[[WorkerPool], None] | None = None,
) -> PhaseResult:
    """Run one phase: ``items`` are (label, payload) in list order; outcomes come back in list order.

    Inputs already in the journal are not run again.
    """
    journal = Journal(journal_path)
    try:
        resumed = len(journal.records)
        todo = [(i, operation, payload) for i, (_, payload) in enumerate(items) if i not in journal.records]
        done = [resumed]

        def on_result(index: int, reply) -> None:
            outcome = make_outcome(index, reply)
            journal.append(index, outcome.to_json())
            done[0] += 1
            if progress is not None:
                progress(done[0], len(items))

        stats = pool.run(todo, workers, on_result, on_tick) if todo else PhaseStats()
        if not journal.done:
            journal.finish()
        outcomes = [from_json(journal.records[i]) for i in range(len(items))]
        return PhaseResult(outcomes, stats, resumed)
    finally:
        journal.close()


def template_phase(
    pool: WorkerPool,
    journal_path: Path,
    entries: Sequence[ImageEntry],
    role: TemplateRole,
    template_dir: Path | None,
    workers: int,
    **kw,
) -> PhaseResult:
    items = [
        (e.id, {"id": e.id, "images": [(str(r.path), int(r.label)) for r in e.images], "role": int(role)})
        for e in entries
    ]
    return run_phase(
        pool,
        journal_path,
        items,
        "template",
        lambda i, reply: template_outcome(entries[i], reply, template_dir),
        _template_from_json,
        workers,
        **kw,
    )


def multi_phase(
    pool: WorkerPool,
    journal_path: Path,
    entries: Sequence[ImageEntry],
    role: TemplateRole,
    template_dir: Path,
    workers: int = 1,
    **kw,
) -> PhaseResult:
    items = [(e.id, {"id": e.id, "path": str(e.path), "label": int(e.label), "role": int(role)}) for e in entries]
    return run_phase(
        pool,
        journal_path,
        items,
        "multi",
        lambda i, reply: multi_outcome(entries[i], reply, template_dir),
        _multi_from_json,
        workers,
        **kw,
    )


def match_phase(
    pool: WorkerPool, journal_path: Path, pairs: Sequence[MatchEntry], template_dir: Path, workers: int, **kw
) -> PhaseResult:
    cache: dict[str, bytes] = {}

    def load(tid: str) -> bytes:
        if tid not in cache:
            try:
                cache[tid] = (template_dir / f"{tid}{TEMPLATE_SUFFIX}").read_bytes()
            except OSError:
                cache[tid] = b""
        return cache[tid]

    items = [(f"{p.enroll_id}/{p.verif_id}", {"verif": load(p.verif_id), "enroll": load(p.enroll_id)}) for p in pairs]
    return run_phase(
        pool,
        journal_path,
        items,
        "match",
        lambda i, reply: match_outcome(pairs[i], reply),
        _match_from_json,
        workers,
        **kw,
    )
