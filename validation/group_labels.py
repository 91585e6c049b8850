"""Demographic labels: a CSV keyed by image id or by identity, one column per attribute, and the
group of each template of a run (:mod:`validation.demographics` measures the groups).

A template with no label, or with two different labels for the same attribute, gets
``UNLABELLED`` or ``CONFLICT`` and is counted and reported, never silently dropped.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from validation.metrics import ScoreError

UNLABELLED = -1
CONFLICT = -2
IDENTITY_COLUMNS = ("identity", "subject", "name", "person")


class LabelError(ScoreError):
    """A labels file that cannot be used: names the file, the line and the value."""


# ---------------------------------------------------------------------------------------


def image_stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base.rsplit(".", 1)[0] if "." in base else base


@dataclass
class Labels:
    """Demographic labels read from a CSV.

    Attributes
    ----------
    path : str
    key : str
        The key column's name.
    key_kind : str
        ``"identity"`` (keys are identities) or ``"image"`` (keys are image or template ids,
        compared without folder and extension).
    attributes : list of str
        The other columns, in file order.
    values : dict
        ``values[attribute][key]`` -> the group (a string), or None when the file gives the key two
        different values for that attribute (a conflict).
    conflicts : dict
        ``conflicts[attribute]`` -> sorted keys with two or more different values.
    n_rows : int
    empty : dict
        ``empty[attribute]`` -> how many rows leave the attribute blank.
    """

    path: str
    key: str
    key_kind: str
    attributes: list[str]
    values: dict[str, dict[str, str | None]]
    conflicts: dict[str, list[str]]
    n_rows: int
    empty: dict[str, int]

    def groups(self, attribute: str) -> list[str]:
        """The attribute's groups, sorted."""
        return sorted({v for v in self.values[attribute].values() if v is not None})


def read_labels(path: str | os.PathLike, key: str | None = None, key_kind: str | None = None) -> Labels:
    """Read a labels CSV: a header, a key column, one column per attribute.

    Parameters
    ----------
    path : path-like
    key : str, optional
        The key column (default: the first column).
    key_kind : {"image", "identity"}, optional
        Default: ``"identity"`` when the key column is named identity/subject/name/person, else
        ``"image"``.

    Raises
    ------
    LabelError
        Missing file, no header, the key column absent (the columns found are named), no
        attribute column, a row with the wrong number of fields.
    """
    p = Path(path)
    if not p.is_file():
        raise LabelError(str(p), None, str(p), "labels file missing")
    with open(p, newline="", encoding="utf-8-sig", errors="replace") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if not header or not any(h.strip() for h in header):
            raise LabelError(str(p), 1, "", "expected a header row naming the key and attribute columns", "line")
        header = [h.strip() for h in header]
        key = header[0] if key is None else key
        if key not in header:
            raise LabelError(
                str(p), 1, ",".join(header), f"no key column {key!r} (columns: {', '.join(header)})", "line"
            )
        if len(set(header)) != len(header):
            raise LabelError(str(p), 1, ",".join(header), "duplicate column names", "line")
        k = header.index(key)
        attrs = [h for i, h in enumerate(header) if i != k]
        if not attrs:
            raise LabelError(str(p), 1, ",".join(header), "no attribute column besides the key", "line")
        if key_kind is None:
            key_kind = "identity" if key.lower() in IDENTITY_COLUMNS else "image"
        if key_kind not in ("image", "identity"):
            raise ValueError(f"key_kind must be 'image' or 'identity', not {key_kind!r}")
        values: dict[str, dict[str, str | None]] = {a: {} for a in attrs}
        conflicts: dict[str, set[str]] = {a: set() for a in attrs}
        empty = {a: 0 for a in attrs}
        n = 0
        for no, row in enumerate(reader, 2):
            if not row or not any(c.strip() for c in row):
                continue
            if len(row) != len(header):
                raise LabelError(str(p), no, ",".join(row), f"expected {len(header)} fields, found {len(row)}", "line")
            raw_key = row[k].strip()
            if not raw_key:
                raise LabelError(str(p), no, ",".join(row), f"empty {key!r}", "line")
            kk = raw_key if key_kind == "identity" else image_stem(raw_key)
            n += 1
            for i, a in enumerate(header):
                if i == k:
                    continue
                v = row[i].strip()
                if not v:
                    empty[a] += 1
                    continue
                old = values[a].get(kk, v)
                if kk in values[a] and old != v:
                    values[a][kk] = None
                    conflicts[a].add(kk)
                elif kk not in conflicts[a]:
                    values[a][kk] = v
    return Labels(str(p), key, key_kind, attrs, values, {a: sorted(c) for a, c in conflicts.items()}, n, empty)


@dataclass
class TemplateGroups:
    """Each template's group for one attribute, and what could not be labelled.

    ``group[i]`` is an index into ``groups``, ``UNLABELLED`` (-1) or ``CONFLICT`` (-2).
    """

    attribute: str
    groups: list[str]
    group: np.ndarray
    unlabelled: list[str]
    conflicting: list[str]
    unused_keys: int


def assign_groups(
    labels: Labels, attribute: str, template_ids: Sequence[str], template_identities: Sequence[str] | None
) -> TemplateGroups:
    """Map templates to groups of ``attribute`` by image id or identity (see :class:`Labels`)."""
    if labels.key_kind == "identity":
        if template_identities is None:
            raise LabelError(
                labels.path,
                None,
                labels.key,
                "labels are keyed by identity but the run has no identities for its templates",
            )
        keys = list(template_identities)
    else:
        keys = [image_stem(t) for t in template_ids]
    vals = labels.values[attribute]
    groups = labels.groups(attribute)
    index = {g: i for i, g in enumerate(groups)}
    out = np.full(len(keys), UNLABELLED, dtype=np.int64)
    unlabelled, conflicting = [], []
    for i, kk in enumerate(keys):
        if kk not in vals:
            unlabelled.append(template_ids[i])
        elif vals[kk] is None:
            out[i] = CONFLICT
            conflicting.append(template_ids[i])
        else:
            out[i] = index[vals[kk]]
    used = set(keys)
    unused = sum(1 for kk in vals if kk not in used) + sum(
        1 for kk in labels.conflicts[attribute] if kk not in used and kk not in vals
    )
    return TemplateGroups(attribute, groups, out, unlabelled, conflicting, unused)
