"""NIST-format input lists and output logs, templates on disk, versioned JSON results.

Input lists, as NIST's 1:1 driver reads them (tokens separated by spaces)::

    enroll.txt, verif.txt, short_enroll.txt, verif_multiperson.txt
                             <id> <image> <label>
    enroll_multiface.txt     <id> <image 1> <label 1> <image 2> <label 2> ...
    match.txt                <enroll template> <verif template>      (e.g. ``1.template 2.template``)

``label`` is NIST's lowercase name (``faceunknown``, ``faceiso``, ``facemugshot``,
``facephotojournalism``, ``facewild``, ``irisunknown``, ``irisnir``, ``iriswild``). Stricter and
wider than NIST's driver (which maps an unknown label to FaceUnknown without a word): a number
0-7 or a name in any case is accepted, anything else is an error naming file and line. Our
extension: one more token after the (image, label) pairs is the subject's identity, used for
scoring; without it the identity is the image's parent folder name. A template name in match.txt
may carry NIST's ``.template`` suffix or not. An image path is taken relative to the list's folder,
else (NIST's lists, written for its driver's working directory) relative to the folder above it.

Output logs, one header line then one row per image (per detected person for the multi-person
log), in NIST's column order, written as NIST's driver writes them (C++ stream defaults: booleans
as 0/1, scores with 6 significant digits)::

    enroll.log, verif.log    id image templateSizeBytes returnCode isLeftEyeAssigned isRightEyeAssigned xleft yleft xright yright
    verif_multiperson.log    id image templateSizeBytes returnCode numDetections detectionIndex isLeftEyeAssigned ...
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

from frvt.contract import EyePair, ImageDescription, ReturnCode

TEMPLATE_LOG_HEADER = (
    "id image templateSizeBytes returnCode isLeftEyeAssigned isRightEyeAssigned xleft yleft xright yright"
)
MULTIPERSON_LOG_HEADER = (
    "id image templateSizeBytes returnCode numDetections detectionIndex isLeftEyeAssigned "
    "isRightEyeAssigned xleft yleft xright yright"
)
MATCH_LOG_HEADER = "enrollTempl verifTempl simScore returnCode"
#: The header earlier versions of frvt wrote; still read.
_OLD_TEMPLATE_LOG_HEADER = (
    "id image templateSizeBytes returnCode isLeftAssigned isRightAssigned xleft yleft xright yright"
)
TEMPLATE_SUFFIX = ".template"

#: NIST's label names (``mapStringToImgLabel`` of its driver).
LABEL_NAMES = {d.name.lower(): d for d in ImageDescription}


class ListFormatError(ValueError):
    """A malformed line in an input list or log: names the file, the line number and the value."""

    def __init__(self, path: str | Path, line_no: int, message: str):
        self.path, self.line_no = str(path), line_no
        super().__init__(f"{path}:{line_no}: {message}")


@dataclass(frozen=True)
class ImageRef:
    """One (image, label) pair of a list line."""

    path: Path  # resolved
    image: str  # as written in the list
    label: ImageDescription
    label_text: str = ""  # as written in the list

    @property
    def label_token(self) -> str:
        return self.label_text or self.label.name.lower()


@dataclass(frozen=True)
class ImageEntry:
    """One line of an image list: a template id and its image(s).

    ``path``, ``image`` and ``label`` are the first image's; ``more`` holds the further images of
    a multi-image (one subject, several images) line.
    """

    id: str
    path: Path
    image: str
    label: ImageDescription
    identity: str
    line_no: int
    more: tuple[ImageRef, ...] = ()
    label_text: str = ""
    identity_given: bool = False

    @property
    def images(self) -> tuple[ImageRef, ...]:
        return (ImageRef(self.path, self.image, self.label, self.label_text),) + self.more

    def format(self) -> str:
        """The list line, as NIST writes it (plus the identity when the list gave one)."""
        parts = [self.id] + [t for ref in self.images for t in (ref.image, ref.label_token)]
        return " ".join(parts + ([self.identity] if self.identity_given else []))


@dataclass(frozen=True)
class MatchEntry:
    """One line of a match list; ``enroll``/``verif`` are the names as written."""

    enroll_id: str
    verif_id: str
    line_no: int
    enroll: str = ""
    verif: str = ""

    @property
    def enroll_name(self) -> str:
        return self.enroll or self.enroll_id

    @property
    def verif_name(self) -> str:
        return self.verif or self.verif_id

    def format(self) -> str:
        return f"{self.enroll_name} {self.verif_name}"


def format_score(score: float) -> str:
    """A double as a C++ ``ostream`` prints it by default (``%g``, 6 significant digits)."""
    return "%.6g" % score


@dataclass(frozen=True)
class TemplateRow:
    """One row of enroll.log / verif.log (one per image of the list line)."""

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
class MultiPersonRow:
    """One row of verif_multiperson.log: one detected person, template ``<id>_<index>``."""

    id: str  # the list id; the row's first column is ``<id>_<index>``
    image: str
    size: int
    code: int
    n_detections: int
    index: int
    eyes: EyePair

    @property
    def template_id(self) -> str:
        return f"{self.id}_{self.index}"

    def format(self) -> str:
        e = self.eyes
        return (
            f"{self.template_id} {self.image} {self.size} {int(self.code)} {self.n_detections} {self.index} "
            f"{int(e.is_left_assigned)} {int(e.is_right_assigned)} {e.xleft} {e.yleft} {e.xright} {e.yright}"
        )


@dataclass(frozen=True)
class MatchRow:
    """One row of match.log; ``enroll_id``/``verif_id`` are written as the match list names them."""

    enroll_id: str
    verif_id: str
    score: float
    code: int

    def format(self, exact: bool = False) -> str:
        score = repr(float(self.score)) if exact else format_score(self.score)
        return f"{self.enroll_id} {self.verif_id} {score} {int(self.code)}"


def _parse_label(value: str, path: Path, line_no: int) -> ImageDescription:
    if value.lower() in LABEL_NAMES:
        return LABEL_NAMES[value.lower()]
    try:
        return ImageDescription(int(value))
    except ValueError:
        pass
    raise ListFormatError(
        path, line_no, f"unknown image label {value!r} (expected one of {', '.join(LABEL_NAMES)} or 0-7)"
    )


def _content_lines(path: Path) -> Iterable[tuple[int, list[str]]]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ListFormatError(path, 0, f"cannot read list: {exc}") from exc
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield line_no, stripped.split()


def _resolve_image(list_path: Path, image: str) -> Path:
    """The list's folder first, then the folder above it (NIST's driver runs there), then as given."""
    p = Path(image)
    if p.is_absolute():
        return p
    candidates = [list_path.parent / p, list_path.parent.parent / p, Path.cwd() / p]
    for c in candidates:
        if c.exists():
            return c.resolve()
    return (list_path.parent / p).resolve()


def template_id(name: str) -> str:
    """``1.template`` -> ``1``; a name without the suffix is returned as it is."""
    return (
        name[: -len(TEMPLATE_SUFFIX)] if name.endswith(TEMPLATE_SUFFIX) and len(name) > len(TEMPLATE_SUFFIX) else name
    )


def read_image_list(path: str | Path, single_image: bool = False) -> list[ImageEntry]:
    """Parse an image list; raises ListFormatError on the first malformed line.

    ``single_image``: every line must hold exactly one image (NIST's multi-person list).
    Image files are not opened here (an unreadable image is a per-row failure, not a list error).
    """
    path = Path(path)
    entries: list[ImageEntry] = []
    seen: dict[str, int] = {}
    for line_no, fields in _content_lines(path):
        if len(fields) < 3:
            raise ListFormatError(
                path,
                line_no,
                f"expected '<id> <image> <label> [<image> <label> ...] [<identity>]', "
                f"got {len(fields)} fields: {' '.join(fields)!r}",
            )
        tid = fields[0]
        identity_given = len(fields) % 2 == 0
        pairs = fields[1:-1] if identity_given else fields[1:]
        if single_image and len(pairs) != 2:
            raise ListFormatError(
                path, line_no, f"expected one image per line here, got {len(pairs) // 2}: {' '.join(fields)!r}"
            )
        if tid in seen:
            raise ListFormatError(path, line_no, f"duplicate id {tid!r} (first on line {seen[tid]})")
        if tid.endswith(TEMPLATE_SUFFIX):
            raise ListFormatError(
                path,
                line_no,
                f"id {tid!r} ends with {TEMPLATE_SUFFIX!r}: the template file would be named {tid}{TEMPLATE_SUFFIX}",
            )
        seen[tid] = line_no
        refs = [
            ImageRef(_resolve_image(path, image), image, _parse_label(label, path, line_no), label)
            for image, label in zip(pairs[0::2], pairs[1::2])
        ]
        identity = fields[-1] if identity_given else refs[0].path.parent.name
        first = refs[0]
        entries.append(
            ImageEntry(
                tid,
                first.path,
                first.image,
                first.label,
                identity,
                line_no,
                tuple(refs[1:]),
                first.label_text,
                identity_given,
            )
        )
    return entries


def read_match_list(
    path: str | Path, enroll_ids: set[str] | None = None, verif_ids: set[str] | None = None
) -> list[MatchEntry]:
    """Parse match.txt; names may carry NIST's ``.template`` suffix. Ids not found in the given
    enrolment/verification ids are errors naming file and line."""
    path = Path(path)
    entries: list[MatchEntry] = []
    for line_no, fields in _content_lines(path):
        if len(fields) != 2:
            raise ListFormatError(
                path,
                line_no,
                f"expected '<enroll template> <verif template>', got {len(fields)} fields: {' '.join(fields)!r}",
            )
        e, v = (template_id(f) for f in fields)
        if enroll_ids is not None and e not in enroll_ids:
            raise ListFormatError(path, line_no, f"enrolment template {fields[0]!r} is not in the enrolment list")
        if verif_ids is not None and v not in verif_ids:
            raise ListFormatError(path, line_no, f"verification template {fields[1]!r} is not in the verification list")
        entries.append(MatchEntry(e, v, line_no, fields[0], fields[1]))
    return entries


def write_image_list(path: str | Path, entries: Iterable[ImageEntry]) -> None:
    write_text_atomic(path, "".join(e.format() + "\n" for e in entries))


def write_match_list(path: str | Path, entries: Iterable[MatchEntry]) -> None:
    write_text_atomic(path, "".join(e.format() + "\n" for e in entries))


def write_template_log(path: str | Path, rows: Iterable[TemplateRow]) -> None:
    write_text_atomic(path, TEMPLATE_LOG_HEADER + "\n" + "".join(r.format() + "\n" for r in rows))


def write_multiperson_log(path: str | Path, rows: Iterable[MultiPersonRow]) -> None:
    write_text_atomic(path, MULTIPERSON_LOG_HEADER + "\n" + "".join(r.format() + "\n" for r in rows))


def write_match_log(path: str | Path, rows: Iterable[MatchRow], exact: bool = False) -> None:
    """NIST's match.log; ``exact`` writes every score with full (round-trip) precision instead."""
    write_text_atomic(path, MATCH_LOG_HEADER + "\n" + "".join(r.format(exact) + "\n" for r in rows))


def _check_header(path: Path, lines: list[str], *headers: str) -> None:
    if not lines or lines[0].split() not in [h.split() for h in headers]:
        got = lines[0] if lines else "(empty file)"
        raise ListFormatError(path, 1, f"expected header {headers[0]!r}, got {got!r}")


def _int_field(path: Path, line_no: int, name: str, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise ListFormatError(path, line_no, f"{name} {value!r} is not an integer") from None


def _log_rows(path: Path, *headers: str) -> Iterable[tuple[int, list[str]]]:
    """(line number, fields) of each row of a log after its header; checks the column count."""
    lines = path.read_text().splitlines()
    _check_header(path, lines, *headers)
    n = len(headers[0].split())
    for line_no, line in enumerate(lines[1:], start=2):
        f = line.split()
        if len(f) != n:
            raise ListFormatError(path, line_no, f"expected {n} columns, got {len(f)}: {line!r}")
        yield line_no, f


def _eyes(path: Path, line_no: int, f: list[str]) -> EyePair:
    names = ("isLeftEyeAssigned", "isRightEyeAssigned", "xleft", "yleft", "xright", "yright")
    v = [_int_field(path, line_no, n, x) for n, x in zip(names, f)]
    return EyePair(bool(v[0]), bool(v[1]), *v[2:])


def read_template_log(path: str | Path) -> list[TemplateRow]:
    """Parse enroll.log / verif.log (NIST columns); errors name file, line and value."""
    path = Path(path)
    rows = []
    for line_no, f in _log_rows(path, TEMPLATE_LOG_HEADER, _OLD_TEMPLATE_LOG_HEADER):
        size, code = (_int_field(path, line_no, n, v) for n, v in zip(("templateSizeBytes", "returnCode"), f[2:4]))
        rows.append(TemplateRow(f[0], f[1], size, code, _eyes(path, line_no, f[4:])))
    return rows


def read_multiperson_log(path: str | Path) -> list[MultiPersonRow]:
    """Parse verif_multiperson.log; the first column must be ``<id>_<detectionIndex>``."""
    path = Path(path)
    rows = []
    for line_no, f in _log_rows(path, MULTIPERSON_LOG_HEADER):
        size, code, n, index = (
            _int_field(path, line_no, name, v)
            for name, v in zip(("templateSizeBytes", "returnCode", "numDetections", "detectionIndex"), f[2:6])
        )
        suffix = f"_{index}"
        if not f[0].endswith(suffix):
            raise ListFormatError(path, line_no, f"id {f[0]!r} does not end with _{index} (detectionIndex)")
        rows.append(MultiPersonRow(f[0][: -len(suffix)], f[1], size, code, n, index, _eyes(path, line_no, f[6:])))
    return rows


def read_template_log_line(line: str) -> TemplateRow:
    """One row of enroll.log / verif.log, as :meth:`TemplateRow.format` writes it."""
    f = line.split()
    return TemplateRow(f[0], f[1], int(f[2]), int(f[3]), EyePair(bool(int(f[4])), bool(int(f[5])), *map(int, f[6:10])))


def read_multiperson_log_line(line: str) -> MultiPersonRow:
    """One row of verif_multiperson.log, as :meth:`MultiPersonRow.format` writes it."""
    f = line.split()
    index = int(f[5])
    return MultiPersonRow(
        f[0][: -len(f"_{index}")],
        f[1],
        int(f[2]),
        int(f[3]),
        int(f[4]),
        index,
        EyePair(bool(int(f[6])), bool(int(f[7])), *map(int, f[8:12])),
    )


def read_match_log_line(line: str) -> MatchRow:
    """One row of match.log, as :meth:`MatchRow.format` writes it."""
    e, v, score, code = line.split()
    return MatchRow(e, v, float(score), int(code))


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
    if isinstance(value, (ReturnCode, ImageDescription)):
        return int(value)
    raise TypeError(f"cannot serialise {type(value).__name__} to JSON")
