"""NIST-format input lists and output logs, templates on disk, versioned JSON results.

Input lists (paths relative to the list file)::

    enroll.txt / verif.txt   <id> <image path> <label> [<identity>]
    match.txt                <enroll template id> <verif template id>

``label`` is an :class:`frvt.contract.ImageLabel`, by number (``2``) or name (``FaceMugshot``).
The identity used for scoring is the optional fourth column, else the image's parent folder name.

Output logs, one header line then one row per input line, in NIST's column order::

    enroll.log / verif.log   id image templateSizeBytes returnCode isLeftAssigned isRightAssigned xleft yleft xright yright
    match.log                enrollTempl verifTempl simScore returnCode
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from frvt.contract import EyePair, ImageLabel, ReturnCode

TEMPLATE_LOG_HEADER = "id image templateSizeBytes returnCode isLeftAssigned isRightAssigned xleft yleft xright yright"
MATCH_LOG_HEADER = "enrollTempl verifTempl simScore returnCode"


class ListFormatError(ValueError):
    """A malformed line in an input list or log: names the file, the line number and the value."""

    def __init__(self, path: str | Path, line_no: int, message: str):
        self.path, self.line_no = str(path), line_no
        super().__init__(f"{path}:{line_no}: {message}")


@dataclass(frozen=True)
class ImageEntry:
    """One line of enroll.txt / verif.txt."""

    id: str
    path: Path  # absolute
    image: str  # as written in the list
    label: ImageLabel
    identity: str
    line_no: int


@dataclass(frozen=True)
class MatchEntry:
    enroll_id: str
    verif_id: str
    line_no: int


@dataclass(frozen=True)
class TemplateRow:
    """One row of enroll.log / verif.log."""

    id: str
    image: str
    size: int
    code: int
    eyes: EyePair

    def format(self) -> str:
        e = self.eyes
        return (
            f"{self.id} {self.image} {self.size} {int(self.code)} {int(e.is_left_assigned)} "
            f"{int(e.is_right_assigned)} {e.xleft} {e.yleft} {e.xright} {e.yright}"
        )


@dataclass(frozen=True)
class MatchRow:
    """One row of match.log."""

    enroll_id: str
    verif_id: str
    score: float
    code: int

    def format(self) -> str:
        return f"{self.enroll_id} {self.verif_id} {self.score:.9g} {int(self.code)}"


def _parse_label(value: str, path: Path, line_no: int) -> ImageLabel:
    try:
        return ImageLabel(int(value))
    except ValueError:
        pass
    for member in ImageLabel:
        if member.name.lower() == value.lower():
            return member
    raise ListFormatError(path, line_no, f"unknown image label {value!r} (expected 0-7 or a name such as FaceMugshot)")


def _content_lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ListFormatError(path, 0, f"cannot read list: {exc}") from exc
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield line_no, stripped.split()


def read_image_list(path: str | Path) -> list[ImageEntry]:
    """Parse enroll.txt or verif.txt; raises ListFormatError on the first malformed line.

    Image files are not opened here (an unreadable image is a per-row failure, not a list error).
    """
    path = Path(path)
    entries: list[ImageEntry] = []
    seen: dict[str, int] = {}
    for line_no, fields in _content_lines(path):
        if len(fields) not in (3, 4):
            raise ListFormatError(
                path,
                line_no,
                f"expected '<id> <image path> <label> [<identity>]', got {len(fields)} fields: {' '.join(fields)!r}",
            )
        tid, image, label = fields[:3]
        if tid in seen:
            raise ListFormatError(path, line_no, f"duplicate id {tid!r} (first on line {seen[tid]})")
        seen[tid] = line_no
        image_path = (path.parent / image).resolve()
        identity = fields[3] if len(fields) == 4 else image_path.parent.name
        entries.append(ImageEntry(tid, image_path, image, _parse_label(label, path, line_no), identity, line_no))
    return entries


def read_match_list(
    path: str | Path, enroll_ids: set[str] | None = None, verif_ids: set[str] | None = None
) -> list[MatchEntry]:
    """Parse match.txt; ids not found in the given enrolment/verification ids are errors."""
    path = Path(path)
    entries: list[MatchEntry] = []
    for line_no, fields in _content_lines(path):
        if len(fields) != 2:
            raise ListFormatError(
                path,
                line_no,
                f"expected '<enroll template> <verif template>', got {len(fields)} fields: {' '.join(fields)!r}",
            )
        e, v = fields
        if enroll_ids is not None and e not in enroll_ids:
            raise ListFormatError(path, line_no, f"enrolment template {e!r} is not in the enrolment list")
        if verif_ids is not None and v not in verif_ids:
            raise ListFormatError(path, line_no, f"verification template {v!r} is not in the verification list")
        entries.append(MatchEntry(e, v, line_no))
    return entries


def write_template_log(path: str | Path, rows: Iterable[TemplateRow]) -> None:
    write_text_atomic(path, TEMPLATE_LOG_HEADER + "\n" + "".join(r.format() + "\n" for r in rows))


def write_match_log(path: str | Path, rows: Iterable[MatchRow]) -> None:
    write_text_atomic(path, MATCH_LOG_HEADER + "\n" + "".join(r.format() + "\n" for r in rows))


def _check_header(path: Path, lines: list[str], header: str) -> None:
    if not lines or lines[0].split() != header.split():
        got = lines[0] if lines else "(empty file)"
        raise ListFormatError(path, 1, f"expected header {header!r}, got {got!r}")


def _int_field(path: Path, line_no: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ListFormatError(path, line_no, f"{name} {value!r} is not an integer") from None


def _log_rows(path: Path, header: str) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each row of a log after its header; checks the column count."""
    lines = path.read_text().splitlines()
    _check_header(path, lines, header)
    n = len(header.split())
    for line_no, line in enumerate(lines[1:], start=2):
        f = line.split()
        if len(f) != n:
            raise ListFormatError(path, line_no, f"expected {n} columns, got {len(f)}: {line!r}")
        yield line_no, f


def read_template_log(path: str | Path) -> list[TemplateRow]:
    """Parse enroll.log / verif.log (NIST columns); errors name file, line and value."""
    path = Path(path)
    rows = []
    for line_no, f in _log_rows(path, TEMPLATE_LOG_HEADER):
        names = (
            "templateSizeBytes",
            "returnCode",
            "isLeftAssigned",
            "isRightAssigned",
            "xleft",
            "yleft",
            "xright",
            "yright",
        )
        ints = [_int_field(path, line_no, n, v) for n, v in zip(names, f[2:])]
        eyes = EyePair(bool(ints[2]), bool(ints[3]), *ints[4:])
        rows.append(TemplateRow(f[0], f[1], ints[0], ints[1], eyes))
    return rows


def read_match_log(path: str | Path) -> list[MatchRow]:
    """Parse match.log; a non-numeric or non-finite score is an error naming file and line."""
    path = Path(path)
    rows = []
    for line_no, f in _log_rows(path, MATCH_LOG_HEADER):
        try:
            score = float(f[2])
        except ValueError:
            raise ListFormatError(path, line_no, f"simScore {f[2]!r} is not a number") from None
        if not math.isfinite(score):
            raise ListFormatError(path, line_no, f"simScore {f[2]!r} is not finite")
        rows.append(MatchRow(f[0], f[1], score, _int_field(path, line_no, "returnCode", f[3])))
    return rows


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write a file so that a reader never sees it half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    write_bytes_atomic(path, text.encode())


def write_json(path: str | Path, payload: dict) -> None:
    write_text_atomic(path, json.dumps(payload, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(value):
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (ReturnCode, ImageLabel)):
        return int(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
