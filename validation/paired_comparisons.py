"""Comparisons with their two templates, the input of :mod:`validation.demographics`: from an
HDF5 score file written with the templates of each comparison, or from a ``frvt validate`` folder."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from validation.group_labels import image_stem
from validation.metrics import ScoreError

if TYPE_CHECKING:
    from validation.demographics import DemographicCounter


# --- reading comparisons with their templates -------------------------------------------------------


@dataclass
class PairedComparisons:
    """Comparisons with the templates on both sides, chunk by chunk.

    ``template_ids`` (image or template names) and ``template_identities`` name the templates;
    ``genuine``/``impostor`` yield ``(similarity, enrol_index, probe_index, subject)`` chunks
    (similarity: higher = more alike, NaN = failed; subject in ``[0, n_subjects)``).
    """

    template_ids: list[str]
    template_identities: list[str] | None
    n_subjects: int
    genuine: object
    impostor: object

    def fill(self, counters: Sequence[DemographicCounter]) -> None:
        """Add every comparison to each counter (one read of the comparisons)."""
        for cls in ("genuine", "impostor"):
            for s, e, p, subj in self.genuine() if cls == "genuine" else self.impostor():
                for c in counters:
                    (c.add_genuine if cls == "genuine" else c.add_impostors)(s, e, p, subj)


PAIR_DATASETS = ("genuine_enrol", "genuine_probe", "impostor_enrol", "impostor_probe")


def write_pair_templates(
    path: str | os.PathLike, templates: Sequence[str], identities: Sequence[str] | None = None
) -> None:
    """Add ``templates`` (and ``template_identity``) to an HDF5 score file written by :class:`HDF5PairWriter`."""
    import h5py

    with h5py.File(path, "a") as f:
        for name, values in (("templates", templates), ("template_identity", identities)):
            if values is None:
                continue
            if name in f:
                del f[name]
            f.create_dataset(
                name, data=np.array([str(v).encode() for v in values], dtype=object), dtype=h5py.string_dtype()
            )


class HDF5PairWriter:
    """An :class:`validation.score_sources.HDF5ScoreWriter` that also stores each comparison's two templates.

    ``append(cls, scores, subjects, enrol, probe, failed=None)``; the template names go in with
    :func:`write_pair_templates` (or ``templates=`` here, written on close).
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        templates: Sequence[str] | None = None,
        identities: Sequence[str] | None = None,
        with_failed: bool = True,
        **kwargs,
    ) -> None:
        from validation.score_sources import HDF5ScoreWriter

        self.path = Path(path)
        self._w = HDF5ScoreWriter(path, with_subjects=True, with_failed=with_failed, **kwargs)
        self._templates, self._identities = templates, identities
        for name in PAIR_DATASETS:
            self._w._f.create_dataset(name, shape=(0,), maxshape=(None,), dtype="int32", chunks=(1 << 18,))

    def append(self, cls: str, scores, subjects, enrol, probe, failed=None) -> None:
        self._w.append(cls, scores, subjects=subjects, failed=failed)
        n = np.asarray(scores).size
        for side, a in (("enrol", enrol), ("probe", probe)):
            a = np.asarray(a, dtype=np.int32).reshape(-1)
            if a.size != n:
                raise ValueError(f"{cls}_{side} has {a.size} values for {n} scores")
            d = self._w._f[f"{cls}_{side}"]
            n0 = d.shape[0]
            d.resize((n0 + n,))
            d[n0:] = a

    def close(self) -> None:
        self._w.close()
        if self._templates is not None:
            write_pair_templates(self.path, self._templates, self._identities)

    def __enter__(self) -> "HDF5PairWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def hdf5_pairs(path: str | os.PathLike, higher_is_better: bool = True, chunk_size: int = 1 << 20) -> PairedComparisons:
    """Paired comparisons from an HDF5 score file with template indices.

    Besides the datasets of :mod:`validation.score`'s HDF5 layout the file needs ``templates``
    (one name per template, strings), optional ``template_identity`` (strings), and integer
    ``genuine_enrol``, ``genuine_probe``, ``impostor_enrol``, ``impostor_probe`` (template indices,
    one per score). The subject of a comparison is its enrolled template's identity.
    """
    import h5py

    p = Path(path)
    try:
        f = h5py.File(p, "r")
    except OSError as exc:
        raise ScoreError(str(p), None, str(p), f"not a readable HDF5 file ({exc})") from None
    with f:
        missing = [d for d in ("templates",) + PAIR_DATASETS if d not in f]
        if missing:
            raise ScoreError(
                str(p),
                None,
                ", ".join(missing),
                "demographics need the templates of each comparison: datasets missing "
                "(score a template store with --all-vs-all instead, or write them with "
                "validation.allvsall.materialise(..., with_templates=True))",
            )
        ids = [x.decode() if isinstance(x, bytes) else str(x) for x in f["templates"][:]]
        idents = None
        if "template_identity" in f:
            idents = [x.decode() if isinstance(x, bytes) else str(x) for x in f["template_identity"][:]]
        n_fail = {cls: f"{cls}_failed" in f for cls in ("genuine", "impostor")}
        for cls in ("genuine", "impostor"):
            for side in ("enrol", "probe"):
                if f[f"{cls}_{side}"].shape != f[cls].shape:
                    raise ScoreError(
                        f"{p}:{cls}_{side}",
                        None,
                        str(f[f"{cls}_{side}"].shape),
                        f"must have the shape of {cls} {f[cls].shape}",
                    )
    subj_names = idents if idents is not None else ids
    uniq, subject_of = np.unique(np.array(subj_names), return_inverse=True)
    sign = 1.0 if higher_is_better else -1.0
    n_t = len(ids)

    def reader(cls):
        def gen():
            with h5py.File(p, "r") as f:
                d, e, q = f[cls], f[f"{cls}_enrol"], f[f"{cls}_probe"]
                fd = f[f"{cls}_failed"] if n_fail[cls] else None
                for start in range(0, d.shape[0], chunk_size):
                    s = sign * d[start : start + chunk_size].astype(np.float64)
                    ei = e[start : start + chunk_size].astype(np.int64)
                    pi = q[start : start + chunk_size].astype(np.int64)
                    bad = (ei < 0) | (ei >= n_t) | (pi < 0) | (pi >= n_t)
                    if bad.any():
                        i = int(np.flatnonzero(bad)[0])
                        raise ScoreError(
                            f"{p}:{cls}_enrol/probe",
                            start + i,
                            f"{ei[i]}, {pi[i]}",
                            f"template index outside [0, {n_t})",
                        )
                    if fd is not None:
                        s[fd[start : start + chunk_size].astype(bool)] = np.nan
                    yield s, ei, pi, subject_of[ei]

        return gen

    return PairedComparisons(ids, idents, int(uniq.size), reader("genuine"), reader("impostor"))


def validate_pairs(directory: str | os.PathLike) -> PairedComparisons:
    """Paired comparisons from an ``frvt validate`` output directory (lists, logs, ``match.log``).

    Template ids are the list ids with their image file names as aliases: a label keyed by image
    matches either. Identities as in :func:`validation.score.read_validate_output`.
    """
    from frvt.records import read_image_list, read_match_log, read_template_log
    from validation.score import _nist_file, _resolve

    d = Path(directory)
    entries = {side: _nist_file(read_image_list, d / "lists" / f"{side}.txt") for side in ("enroll", "verif")}
    lists = {side: {e.id: e.identity for e in entries[side]} for side in entries}
    codes = {}
    for side in ("enroll", "verif"):
        for row in _nist_file(read_template_log, d / "validation" / f"{side}.log"):
            codes[(side, row.id)] = row.code
    names, idents, index = [], [], {}
    for side in ("enroll", "verif"):
        for e in entries[side]:
            index[(side, e.id)] = len(names)
            names.append(image_stem(e.image))
            idents.append(e.identity)
    match_log = d / "validation" / "match.log"
    rows = {"genuine": ([], [], [], []), "impostor": ([], [], [], [])}
    for no, row in enumerate(_nist_file(read_match_log, match_log), start=2):
        e, v = _resolve(row.enroll_id, lists["enroll"]), _resolve(row.verif_id, lists["verif"])
        if e is None or v is None:
            raise ScoreError(
                str(match_log), no, row.enroll_id if e is None else row.verif_id, "unknown template", "line"
            )
        failed = row.code != 0 or codes.get(("enroll", e), 0) != 0 or codes.get(("verif", v), 0) != 0
        cls = "genuine" if lists["enroll"][e] == lists["verif"][v] else "impostor"
        r = rows[cls]
        r[0].append(math.nan if failed else row.score)
        r[1].append(index[("enroll", e)])
        r[2].append(index[("verif", v)])
        r[3].append(lists["enroll"][e])
    uniq = sorted(set(idents))
    sid = {u: i for i, u in enumerate(uniq)}

    def chunks(cls):
        r = rows[cls]

        def gen():
            if r[0]:
                yield (
                    np.array(r[0], dtype=np.float64),
                    np.array(r[1]),
                    np.array(r[2]),
                    np.array([sid[x] for x in r[3]], dtype=np.int64),
                )

        return gen

    return PairedComparisons(names, idents, len(uniq), chunks("genuine"), chunks("impostor"))
