"""Find and read the results of ``frvt validate``, ``frvt score``, ``frvt profile`` and ``frvt bench``.

A *run* given to ``frvt report`` is a folder or a JSON file. Results are recognised by their
``schema`` field, not by their file name: ``frvt.validate/*`` (``summary.json`` of a validation
run), ``frvt.metrics/*`` (``metrics.json`` of ``frvt score``), ``frvt.demographics/*``
(``demographics.json`` beside it), ``frvt.profile/*`` and ``frvt.bench/*``. A folder is searched
one level deep. Anything else becomes a :class:`Problem`, shown as a marked section in the report.
Unknown fields are ignored and known ones may be missing: the readers only ``get`` what they use.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

KINDS = {
    "frvt.validate": "validate",
    "frvt.metrics": "score",
    "frvt.demographics": "demographics",
    "frvt.profile": "profile",
    "frvt.bench": "bench",
}
KNOWN_VERSIONS = {"validate": {"1"}, "score": {"1"}, "demographics": {"1"}, "profile": {"1"}, "bench": {"1"}}


@dataclass
class Result:
    """One recognised result file: its kind, the document, where it came from."""

    kind: str
    doc: dict
    path: Path
    run: str
    note: str = ""


@dataclass
class Problem:
    """A run (or a file in it) that could not be used, and why."""

    path: str
    reason: str


@dataclass
class Runs:
    """Everything found in the runs, by kind, in the order given."""

    results: list[Result] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def of(self, kind: str) -> list[Result]:
        return [r for r in self.results if r.kind == kind]


def _classify(path: Path, run: str) -> Result | Problem | None:
    """A result file's kind from its schema; None for a JSON file that is not a result."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        return Problem(str(path), f"cannot read it ({exc})")
    except json.JSONDecodeError as exc:
        return Problem(str(path), f"not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})")
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if not isinstance(schema, str) or "/" not in schema:
        return None
    name, version = schema.rsplit("/", 1)
    kind = KINDS.get(name)
    if kind is None:
        return None
    note = (
        ""
        if version in KNOWN_VERSIONS[kind]
        else f"schema {schema} is newer than this report knows; shown as far as understood"
    )
    return Result(kind, doc, path, run, note)


def find_runs(paths: list[str | os.PathLike]) -> Runs:
    """Read every run folder or file; never raises for bad input (see :class:`Problem`)."""
    runs = Runs()
    for p in map(Path, paths):
        run = str(p)
        if not p.exists():
            runs.problems.append(Problem(run, "no such file or folder"))
            continue
        if p.is_file():
            if p.suffix.lower() != ".json":
                runs.problems.append(
                    Problem(
                        run,
                        "not a result file: expected a run folder or a .json written by "
                        "frvt validate, score, profile or bench",
                    )
                )
                continue
            r = _classify(p, run)
            if r is None:
                runs.problems.append(
                    Problem(
                        run,
                        "a JSON file without a known frvt schema (frvt.validate, "
                        "frvt.metrics, frvt.demographics, frvt.profile, frvt.bench)",
                    )
                )
            elif isinstance(r, Problem):
                runs.problems.append(r)
            else:
                runs.results.append(r)
            continue
        found = 0
        candidates = sorted(p.glob("*.json")) + sorted(p.glob("*/*.json"))
        for f in candidates:
            r = _classify(f, run)
            if r is None:
                continue
            if isinstance(r, Problem):
                runs.problems.append(r)
                continue
            runs.results.append(r)
            found += 1
        if not found:
            runs.problems.append(
                Problem(
                    run,
                    "no result of frvt validate (summary.json), frvt score "
                    "(metrics.json), frvt profile or frvt bench (JSON) in this folder",
                )
            )
    return runs
