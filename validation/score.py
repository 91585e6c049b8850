"""The library behind ``frvt score``: read comparison scores, compute the metrics, write results.

Inputs (one :class:`ScoreInput` per system; several are compared on one DET plot):

* **the output directory of** ``frvt validate``: ``validation/match.log`` (header
  ``enrollTempl verifTempl simScore returnCode``; ``extra/match_exact.log``, the same rows with
  every score at full precision, is read instead when present), ``validation/enroll.log`` and
  ``validation/verif.log`` (header ``id image templateSizeBytes returnCode isLeftEyeAssigned
  isRightEyeAssigned xleft yleft xright yright``; the older ``isLeftAssigned isRightAssigned`` is
  read too), and the input lists copied to ``lists/enroll.txt``
  and ``lists/verif.txt`` (``<id> <image path> <label> [<identity>]``; the identity is the fourth
  column, else the name of the image's parent folder). A template name in ``match.log`` is a list
  id (``e0001``), or an id with an extension (``e0001.template``). A comparison is genuine when both
  templates have the same identity. It *failed* when its return code is non-zero or either template's
  creation failed (non-zero code in its log); a failed comparison is a non-match at every threshold
  (NIST). Failure to enrol (enrolment and verification templates) and failure to match are
  reported separately. The subject of a comparison, for the bootstrap, is the enrolled identity.
* **plain score files**, ``--genuine FILE --impostor FILE``: text with one number per line, or a
  binary file (``.npy``; ``.f32``/``.bin``/``.raw`` headerless float32; ``.f64`` float64). Binary
  impostor files are streamed, never loaded whole.
* **an HDF5 score file** (``.h5``/``.hdf5``, written e.g. by
  :class:`validation.score_sources.HDF5ScoreWriter`): 1-D datasets ``genuine`` and ``impostor``
  (float32 or float64); optional ``genuine_subject`` and ``impostor_subject`` (one integer or string
  id per score, both or neither; they enable the subject bootstrap); optional boolean
  ``genuine_failed`` / ``impostor_failed`` (failed comparisons); optional attribute ``direction``
  (``"similarity"`` or ``"distance"``). Impostors are streamed in chunks, so ~87 M scores (all LFW
  pairs) or a billion work in bounded memory.

Bad input (a non-numeric, NaN or infinite score, a missing column, an unknown template) raises
:class:`ScoreFileError` naming the file, the line and the value; nothing is dropped silently.

``metrics.json`` (schema ``frvt.metrics/1``): the top level describes the first (or only) system and
``systems`` lists every system in input order with the same fields; see :func:`system_metrics`.
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from frvt.perf.machine import git_revision
from frvt.records import ListFormatError, read_image_list, read_match_log, read_template_log
from validation.intervals import BootstrapInterval, bootstrap_companion, clopper_pearson, subject_bootstrap
from validation.metrics import (
    FMR_TARGETS,
    FailureCount,
    MetricWarning,
    ScoreError,
    fmr_key,
    required_impostors,
)
from validation.score_sources import (
    ArrayScores,
    HDF5Scores,
    ScoreFileError,
    ScoreSource,
    open_scores,
    source_from_array,
)
from validation.streaming import (
    HistogramPass,
    StreamingEvaluation,
    evaluate,
    histogram,
    histogram_from_selection,
)

SCHEMA = "frvt.metrics/1"
BINARY_EXTENSIONS = (".npy", ".f32", ".bin", ".raw", ".f64")
HDF5_EXTENSIONS = (".h5", ".hdf5")

__all__ = [
    "SCHEMA",
    "ScoreError",
    "ScoreFileError",
    "ScoreInput",
    "LoadedScores",
    "SystemResult",
    "ScoreReport",
    "read_score_text",
    "read_validate_output",
    "load_input",
    "score",
    "evaluate_system",
    "system_metrics",
    "write_plots",
    "metrics_document",
    "format_report",
]


# --- reading ----------------------------------------------------------------------------------------


def read_score_text(path: str | os.PathLike) -> np.ndarray:
    """Scores from a text file with one number per line.

    Returns
    -------
    numpy.ndarray of float64, shape (n,)

    Raises
    ------
    ScoreFileError
        An empty line, a line that is not one number, a NaN or infinite value: file, line, value.
    """
    p = Path(path)
    parts = []
    line0 = 0
    with open(p, "rb") as fh:
        while True:
            lines = fh.readlines(1 << 22)
            if not lines:
                break
            try:
                a = np.array(lines, dtype=np.float64)
            except ValueError:
                for j, raw in enumerate(lines):
                    text = raw.decode("utf-8", "replace").strip()
                    if not text:
                        raise ScoreFileError(
                            str(p), line0 + j + 1, text, "empty line, expected one number", "line"
                        ) from None
                    try:
                        float(raw)
                    except ValueError:
                        raise ScoreFileError(str(p), line0 + j + 1, text, "not a number", "line") from None
                raise
            bad = ~np.isfinite(a)
            if bad.any():
                j = int(np.flatnonzero(bad)[0])
                raise ScoreFileError(
                    str(p), line0 + j + 1, lines[j].decode("utf-8", "replace").strip(), "score is not finite", "line"
                )
            parts.append(a)
            line0 += len(lines)
    return np.concatenate(parts) if parts else np.zeros(0)


def _nist_file(read, path: Path, *args):
    """``read(path, *args)`` with a NIST list or log reader of :mod:`frvt.records`; its
    :class:`~frvt.records.ListFormatError` becomes a :class:`ScoreFileError` naming file, line and text."""
    if not path.is_file():
        raise ScoreFileError(str(path), None, str(path), "file missing")
    try:
        return read(path, *args)
    except ListFormatError as exc:
        reason = str(exc)[len(f"{exc.path}:{exc.line_no}: ") :]
        lines = path.read_text(errors="replace").splitlines()
        text = lines[exc.line_no - 1].strip() if 0 < exc.line_no <= len(lines) else ""
        reason = reason.removesuffix(f": {text!r}")  # the line is the value shown
        raise ScoreFileError(str(path), exc.line_no or None, text, reason, "line") from None


def _read_list(path: Path) -> dict[str, str]:
    """Template id -> identity from a NIST list (``<id> <image> <label> [<identity>]``)."""
    return {entry.id: entry.identity for entry in _nist_file(read_image_list, path)}


def _read_template_log(path: Path, ids: dict[str, str]) -> dict[str, int]:
    """Template id -> return code from ``enroll.log`` / ``verif.log``; every list id must appear once."""
    codes: dict[str, int] = {}
    for no, row in enumerate(_nist_file(read_template_log, path), start=2):
        if row.id not in ids:
            raise ScoreFileError(str(path), no, row.id, "template id not in the input list", "line")
        if row.id in codes:
            raise ScoreFileError(str(path), no, row.id, "duplicate template id", "line")
        codes[row.id] = row.code
    missing = [t for t in ids if t not in codes]
    if missing:
        raise ScoreFileError(str(path), None, missing[0], f"{len(missing)} list template(s) have no log row")
    return codes


def _resolve(name: str, ids: dict[str, str]) -> str | None:
    if name in ids:
        return name
    stem = Path(name).stem
    return stem if stem in ids else None


@dataclass
class LoadedScores:
    """Scores of one system, ready for :func:`validation.streaming.evaluate`.

    ``genuine`` (in memory, caller's units), ``genuine_failed`` (bool), ``impostor`` (a source; NaN
    marks failures), optional subject ids, and for a validate directory the failure counts.
    """

    genuine: np.ndarray
    genuine_failed: np.ndarray
    impostor: ScoreSource
    genuine_subject: np.ndarray | None = None
    impostor_subject: ScoreSource | None = None
    failures: dict[str, FailureCount] | None = None
    higher_is_better: bool = True
    n_comparisons_failed: int = 0


def read_validate_output(directory: str | os.PathLike) -> LoadedScores:
    """Genuine and impostor comparisons from an ``frvt validate`` output directory.

    Parameters
    ----------
    directory : path-like
        Holds ``validation/{enroll,verif,match}.log`` and ``lists/{enroll,verif}.txt``.

    Returns
    -------
    LoadedScores
        Similarities (NIST's 1:1 API returns similarities), subjects = enrolled identities,
        ``failures`` with ``enroll``, ``verif`` (failure to enrol) and ``match`` (failure to match).

    Raises
    ------
    ScoreFileError
        Missing file or column, bad header, unknown template, non-numeric or non-finite score.
    """
    d = Path(directory)
    enroll_ids = _read_list(d / "lists" / "enroll.txt")
    verif_ids = _read_list(d / "lists" / "verif.txt")
    enroll_codes = _read_template_log(d / "validation" / "enroll.log", enroll_ids)
    verif_codes = _read_template_log(d / "validation" / "verif.log", verif_ids)
    # NIST's match.log prints 6 significant digits; frvt validate also keeps every score exactly
    exact = d / "extra" / "match_exact.log"
    match_log = exact if exact.is_file() else d / "validation" / "match.log"
    scores, failed, same, subject, match_codes = [], [], [], [], []
    for no, row in enumerate(_nist_file(read_match_log, match_log), start=2):
        e = _resolve(row.enroll_id, enroll_ids)
        if e is None:
            raise ScoreFileError(str(match_log), no, row.enroll_id, "unknown enrolment template", "line")
        v = _resolve(row.verif_id, verif_ids)
        if v is None:
            raise ScoreFileError(str(match_log), no, row.verif_id, "unknown verification template", "line")
        s, code = row.score, row.code
        match_codes.append(code)
        scores.append(s)
        failed.append(code != 0 or enroll_codes[e] != 0 or verif_codes[v] != 0)
        same.append(enroll_ids[e] == verif_ids[v])
        subject.append(enroll_ids[e])
    s = np.array(scores, dtype=np.float64)
    f = np.array(failed, dtype=bool)
    g = np.array(same, dtype=bool)
    subj = np.array(subject, dtype=str)
    imp = s[~g].copy()
    imp[f[~g]] = np.nan
    failures = {
        "enroll": FailureCount(sum(c != 0 for c in enroll_codes.values()), len(enroll_codes)),
        "verif": FailureCount(sum(c != 0 for c in verif_codes.values()), len(verif_codes)),
        "match": FailureCount(sum(c != 0 for c in match_codes), len(match_codes)),
    }
    return LoadedScores(
        s[g],
        f[g],
        ArrayScores(imp, f"{match_log} (impostor)"),
        subj[g],
        ArrayScores(subj[~g], "impostor_subject"),
        failures,
        True,
        int(f.sum()),
    )


def _read_hdf5(path: Path, higher_is_better: bool | None) -> LoadedScores:
    import h5py

    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise ScoreFileError(str(path), None, str(path), f"not a readable HDF5 file ({exc})") from None
    with fh as f:
        names = set(f.keys())
        direction = f.attrs.get("direction")
    if isinstance(direction, bytes):
        direction = direction.decode()
    for need in ("genuine", "impostor"):
        if need not in names:
            raise ScoreFileError(str(path), None, need, "dataset missing")
    if ("genuine_subject" in names) != ("impostor_subject" in names):
        raise ScoreFileError(
            str(path), None, "genuine_subject/impostor_subject", "give both subject datasets or neither"
        )
    if direction is not None and direction not in ("similarity", "distance"):
        raise ScoreFileError(str(path), None, direction, "attribute 'direction' must be 'similarity' or 'distance'")
    hib = True if higher_is_better is None else higher_is_better
    if direction is not None:
        if higher_is_better is not None and (direction == "similarity") != higher_is_better:
            raise ScoreFileError(
                str(path), None, direction, "the file's score direction contradicts the one requested (--distance)"
            )
        hib = direction == "similarity"
    gsrc = HDF5Scores(path, "genuine", "genuine_failed" if "genuine_failed" in names else None)
    g = np.concatenate([c for _, c in gsrc.chunks()] or [np.zeros(0)]).astype(np.float64)
    gf = np.isnan(g)
    imp = HDF5Scores(path, "impostor", "impostor_failed" if "impostor_failed" in names else None)
    gs = isub = None
    if "genuine_subject" in names:
        gs = np.concatenate(
            [c for _, c in HDF5Scores(path, "genuine_subject", validate=False).chunks()]
            or [np.zeros(0, dtype=np.int64)]
        )
        if gs.size != g.size:
            raise ScoreFileError(f"{path}:genuine_subject", None, str(gs.size), f"expected {g.size} ids")
        isub = HDF5Scores(path, "impostor_subject", validate=False)
        if len(isub) != len(imp):
            raise ScoreFileError(f"{path}:impostor_subject", None, str(len(isub)), f"expected {len(imp)} ids")
    return LoadedScores(g, gf, imp, gs, isub, None, hib, int(gf.sum()))


def _read_scores_file(path: Path) -> tuple[np.ndarray | None, ScoreSource | None]:
    if not path.is_file():
        raise ScoreFileError(str(path), None, str(path), "file missing")
    if path.suffix.lower() in BINARY_EXTENSIONS:
        return None, open_scores(path)
    return read_score_text(path), None


@dataclass(frozen=True)
class ScoreInput:
    """One system to score: a validate directory, an HDF5 file, or a genuine/impostor file pair.

    Use :meth:`from_path` or :meth:`from_files`.
    """

    label: str
    kind: str  # "validate", "hdf5", "files" or "templates"
    paths: tuple[Path, ...]
    loader: Callable[[], "LoadedScores"] | None = field(default=None, compare=False, repr=False)

    @classmethod
    def from_path(cls, path: str | os.PathLike, label: str | None = None) -> "ScoreInput":
        """A validate output directory or an HDF5 score file."""
        p = Path(path)
        if p.is_dir():
            return cls(label or p.resolve().name, "validate", (p,))
        if p.suffix.lower() in HDF5_EXTENSIONS:
            return cls(label or p.stem, "hdf5", (p,))
        if not p.exists():
            raise ScoreFileError(str(p), None, str(p), "no such file or directory")
        raise ScoreFileError(
            str(p),
            None,
            str(p),
            "expected a validate output directory or an .h5/.hdf5 file "
            "(plain score files go with --genuine/--impostor)",
        )

    @classmethod
    def from_files(
        cls, genuine: str | os.PathLike, impostor: str | os.PathLike, label: str | None = None
    ) -> "ScoreInput":
        """A pair of plain score files (text, one number per line, or binary)."""
        g, i = Path(genuine), Path(impostor)
        return cls(label or g.stem, "files", (g, i))

    def describe(self) -> str:
        return f"{self.kind}: " + ", ".join(str(p) for p in self.paths)


def load_input(inp: ScoreInput, higher_is_better: bool | None = None) -> LoadedScores:
    """Read one input (validated; see the module docstring). ``None`` direction: the file's or similarity."""
    if inp.loader is not None:  # e.g. comparisons computed from template stores (validation.allvsall)
        return inp.loader()
    if inp.kind == "validate":
        loaded = read_validate_output(inp.paths[0])
        if higher_is_better is False:
            raise ScoreError(
                str(inp.paths[0]), None, "distance", "frvt validate writes similarities (NIST's API); drop --distance"
            )
        return loaded
    if inp.kind == "hdf5":
        return _read_hdf5(inp.paths[0], higher_is_better)
    hib = True if higher_is_better is None else higher_is_better
    g_text, g_src = _read_scores_file(inp.paths[0])
    g = g_text if g_text is not None else np.concatenate([c for _, c in g_src.chunks()] or [np.zeros(0)])
    i_text, i_src = _read_scores_file(inp.paths[1])
    imp = i_src if i_src is not None else source_from_array(i_text, higher_is_better=hib, name=str(inp.paths[1]))
    g = np.asarray(g, dtype=np.float64)
    return LoadedScores(g, np.zeros(g.size, dtype=bool), imp, None, None, None, hib, 0)


# --- computing --------------------------------------------------------------------------------------


@dataclass
class SystemResult:
    """One system's evaluation, bootstrap, histogram and metrics dict."""

    input: ScoreInput
    loaded: LoadedScores
    evaluation: StreamingEvaluation
    bootstrap: dict[float, BootstrapInterval] | None
    metrics: dict
    histogram: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None  # edges, genuine, impostor


@dataclass
class ScoreReport:
    """What :func:`score` returns: the metrics written, the files, the systems, the warnings."""

    metrics: dict
    metrics_path: Path
    plot_paths: list[Path]
    systems: list[SystemResult]
    warnings: list[str] = field(default_factory=list)


def _num(x) -> float | None:
    """A JSON number, or null for NaN/inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def system_metrics(
    inp: ScoreInput,
    loaded: LoadedScores,
    ev: StreamingEvaluation,
    boot: dict[float, BootstrapInterval] | None,
    confidence: float,
) -> dict:
    """The metrics dict of one system (the fields of ``metrics.json``).

    Keys: ``label``, ``source``, ``direction``, ``decision_rule``, ``n_genuine``, ``n_impostor``
    (failed comparisons included), ``n_genuine_failed``, ``n_impostor_failed``, ``failures``
    (``enroll``/``verif``/``match``: ``n_failed``, ``n_attempts``, ``rate``; null for score files),
    ``eer``, ``eer_threshold``, ``eer_detail`` (counts at that threshold), ``fnmr_at_fmr`` (key
    ``"1e-06"`` ... -> ``fnmr``, ``threshold``, ``ci_low``, ``ci_high``, ``ci_method``,
    ``false_non_matches``, ``n_genuine``, ``false_matches``, ``n_impostor``, ``fmr``,
    ``fmr_ci_low``, ``fmr_ci_high``, ``allowed_false_matches``, ``required_impostors``,
    ``estimable``, ``reason``), ``bootstrap`` (``n_resamples``, ``seed``, ``confidence``,
    ``n_subjects``, ``method``; null when no subject ids), ``det`` (``threshold``, ``fmr``,
    ``fnmr``, ``false_matches``, ``false_non_matches`` at exact operating points). Rates are
    fractions; unavailable numbers are null.
    """
    hib = ev.higher_is_better
    fnmr_at = {}
    for f, p in ev.operating_points.items():
        entry = {
            "fnmr": _num(p.fnmr),
            "threshold": _num(p.threshold),
            "ci_low": None,
            "ci_high": None,
            "ci_method": None,
            "false_non_matches": p.false_non_matches,
            "n_genuine": p.n_genuine,
            "false_matches": p.false_matches,
            "n_impostor": p.n_impostor,
            "fmr": _num(p.fmr),
            "fmr_ci_low": None,
            "fmr_ci_high": None,
            "allowed_false_matches": p.allowed_false_matches,
            "required_impostors": required_impostors(f, ev.min_false_matches),
            "estimable": p.estimable,
            "reason": p.reason,
        }
        if p.estimable:
            flo, fhi = clopper_pearson(p.false_matches, p.n_impostor, confidence)
            entry["fmr_ci_low"], entry["fmr_ci_high"] = _num(flo), _num(fhi)
            b = boot.get(f) if boot else None
            if b is not None:
                entry.update(bootstrap_valid=b.n_valid, bootstrap_clipped=b.n_clipped)
            if b is not None and math.isfinite(b.ci_low):
                entry.update(
                    ci_low=_num(b.ci_low),
                    ci_high=_num(b.ci_high),
                    ci_method=f"subject bootstrap percentile ({b.n_resamples} resamples, seed {b.seed})",
                )
            else:
                lo, hi = clopper_pearson(p.false_non_matches, p.n_genuine, confidence)
                why = (
                    ""
                    if b is None
                    else (
                        f"; bootstrap unusable: {b.n_resamples - b.n_valid} of "
                        f"{b.n_resamples} resamples could not estimate it"
                    )
                )
                entry.update(ci_low=_num(lo), ci_high=_num(hi), ci_method=f"clopper-pearson (threshold fixed){why}")
        fnmr_at[fmr_key(f)] = entry
    e = ev.eer
    det = ev.det
    boot_info = None
    if boot:
        any_b = next(iter(boot.values()))
        boot_info = {
            "n_resamples": any_b.n_resamples,
            "seed": any_b.seed,
            "confidence": any_b.confidence,
            "n_subjects": any_b.n_subjects,
            "method": any_b.method,
            "unit": "subject (identity); an impostor comparison belongs to its enrolled subject",
        }
    return {
        "label": inp.label,
        "source": {"kind": inp.kind, "paths": [str(p) for p in inp.paths]},
        "direction": "similarity" if hib else "distance",
        "decision_rule": "match if score >= threshold" if hib else "match if distance <= threshold",
        "n_genuine": ev.n_genuine,
        "n_impostor": ev.n_impostor,
        "n_genuine_failed": ev.n_genuine_failed,
        "n_impostor_failed": ev.n_impostor_failed,
        "failures": None
        if loaded.failures is None
        else {
            k: {"n_failed": v.n_failed, "n_attempts": v.n_attempts, "rate": _num(v.rate)}
            for k, v in loaded.failures.items()
        },
        "eer": _num(e.eer),
        "eer_threshold": _num(e.threshold),
        "eer_detail": {
            "fmr": _num(e.fmr),
            "fnmr": _num(e.fnmr),
            "false_matches": e.false_matches,
            "false_non_matches": e.false_non_matches,
        },
        "fnmr_at_fmr": fnmr_at,
        "bootstrap": boot_info,
        "det": {
            "threshold": [_num(t) for t in det.threshold],
            "fmr": [_num(x) for x in det.fmr],
            "fnmr": [_num(x) for x in det.fnmr],
            "false_matches": det.false_matches.tolist(),
            "false_non_matches": det.false_non_matches.tolist(),
        },
    }


def _histogram_edges(genuine: np.ndarray, sel, hib: bool, bins: int = 100):
    """Edges over the finite genuine and impostor scores (caller's units), and the finite genuine
    scores in those units; None when there is no finite score.

    The edges are the multiples of a power of two ``w`` (the smallest with at most ``bins`` bins
    over the scores' range, so between ``bins / 2`` and ``bins + 1`` bins) from the last one at or
    below the lowest score to the first one above the highest: exact in float64, and on the float32
    grid, so that with ``w >= 2**-8`` every key bin of a similarity in [0, 1] (the top 16 bits of its
    float32) lies within one histogram bin and the all-vs-all passes count it from its key bin."""
    g = genuine[np.isfinite(genuine)]
    g_user = g if hib else -g
    ends = [float(x) if hib else -float(x) for x in (sel.finite_min, sel.finite_max) if math.isfinite(x)]
    if g_user.size:
        ends += [float(g_user.min()), float(g_user.max())]
    if not ends:
        return None
    lo, hi = min(ends), max(ends)
    w = 2.0 ** math.ceil(math.log2((hi - lo) / bins)) if hi > lo else 1.0
    first = math.floor(lo / w)
    return np.arange(first, math.floor(hi / w) + 2, dtype=np.float64) * w, g_user


def _histogram(loaded: LoadedScores, ev: StreamingEvaluation, impostor_counts=None):
    """Genuine and impostor counts over 100 shared bins in the caller's units (one more pass, unless
    ``impostor_counts``, the :class:`validation.streaming.HistogramPass` result or the counts from the
    key bins, is given)."""
    made = _histogram_edges(ev.genuine, ev.selection, ev.higher_is_better)
    if made is None:
        return None
    edges, g_user = made
    gc, _ = np.histogram(g_user, bins=edges)
    ic, _ = impostor_counts if impostor_counts is not None else histogram(loaded.impostor, edges)
    return edges, gc, ic


def _companions(loaded: LoadedScores, want_boot: bool, plots: bool):
    """The passes that follow the order statistics (bootstrap counts, plot histogram), for
    :func:`validation.streaming.evaluate` to run in one pass with the EER's; and where each result goes."""
    boot = (
        bootstrap_companion(loaded.genuine_subject, loaded.impostor_subject, higher_is_better=loaded.higher_is_better)
        if want_boot
        else None
    )
    made: dict = {}

    def make(sel, ops, genuine):
        passes, ids = boot(sel, ops, genuine) if boot is not None else ([], None)
        if passes:
            made["bootstrap"] = (0, passes[0])
        if plots:
            e = _histogram_edges(genuine, sel, loaded.higher_is_better)
            known = histogram_from_selection(sel, e[0]) if e is not None and loaded.higher_is_better else None
            if known is not None:  # the key bins decide every count: no pass
                made["histogram_counts"] = known
            elif e is not None:
                made["histogram"] = (len(passes), e[0])
                passes = [*passes, HistogramPass(e[0])]
        return passes, ids

    return make, made


def score(
    inputs: Sequence[ScoreInput],
    out_dir: str | os.PathLike,
    *,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    higher_is_better: bool | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    min_false_matches: int = 1,
    plots: bool = True,
    formats: Sequence[str] = ("png", "svg"),
) -> ScoreReport:
    """Score one or more systems; write ``metrics.json`` and the figures to ``out_dir``.

    Parameters
    ----------
    inputs : sequence of ScoreInput
        The systems, in the order they appear in tables and plots (the first is the top level of
        ``metrics.json``).
    out_dir : path-like
        Created if needed.
    fmr_targets : sequence of float
        FMR levels for FNMR (default 1e-6 ... 1e-1).
    higher_is_better : bool or None
        False for distances; None: similarities, or the HDF5 file's ``direction`` attribute.
    n_resamples : int
        Subject bootstrap resamples (0 disables it; used only where subject ids exist).
    seed : int
        Bootstrap seed (recorded).
    confidence : float
        Interval coverage.
    min_false_matches : int
        A target is estimable when it allows at least this many false matches
        (``n_impostor >= ceil(min_false_matches / FMR)``).
    plots : bool
        Write ``det.png/.svg`` and ``hist_<label>.png/.svg``.
    formats : sequence of str

    Returns
    -------
    ScoreReport

    Raises
    ------
    ScoreError / ScoreFileError
        Bad input, naming file, line (or index) and value.
    """
    _check_inputs(inputs)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MetricWarning)
        systems = [
            evaluate_system(
                inp,
                higher_is_better=higher_is_better,
                fmr_targets=fmr_targets,
                n_resamples=n_resamples,
                seed=seed,
                confidence=confidence,
                min_false_matches=min_false_matches,
                histogram=plots,
            )
            for inp in inputs
        ]
    messages = _warning_messages(caught)
    plot_paths = write_plots(systems, out, confidence, formats) if plots else []
    doc = metrics_document(systems, fmr_targets, confidence, min_false_matches, plot_paths, messages)
    path = out / "metrics.json"
    path.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n")
    return ScoreReport(doc, path, plot_paths, systems, messages)


def _check_inputs(inputs: Sequence[ScoreInput]) -> None:
    """At least one system, and distinct labels (they name the plots and the table rows)."""
    if not inputs:
        raise ValueError("nothing to score: give a validate directory, an HDF5 file or --genuine/--impostor")
    labels = [i.label for i in inputs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, got {labels}")


def evaluate_system(
    inp: ScoreInput,
    *,
    higher_is_better: bool | None = None,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    min_false_matches: int = 1,
    histogram: bool = True,
) -> SystemResult:
    """One system: load its scores, evaluate them (exact, streamed), bootstrap the intervals
    (where subject ids exist and ``n_resamples`` > 0), the metrics dict and, with ``histogram``,
    the score histogram for the plots. Parameters as in :func:`score`."""
    loaded = load_input(inp, higher_is_better)
    want_boot = n_resamples > 0 and loaded.genuine_subject is not None
    companions, made = _companions(loaded, want_boot, histogram)
    ev = evaluate(
        loaded.genuine,
        loaded.impostor,
        fmr_targets,
        genuine_failed=loaded.genuine_failed,
        higher_is_better=loaded.higher_is_better,
        min_false_matches=min_false_matches,
        target_windows=want_boot,
        companions=companions,
    )
    boot = None
    if want_boot:
        k, counts_pass = made.get("bootstrap", (None, None))
        boot = subject_bootstrap(
            ev,
            loaded.genuine_subject,
            loaded.impostor,
            loaded.impostor_subject,
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
            precomputed=(counts_pass, ev.companions[k]) if k is not None else None,
        )
    m = system_metrics(inp, loaded, ev, boot, confidence)
    k = made.get("histogram", (None,))[0]
    counts = ev.companions[k] if k is not None else made.get("histogram_counts")
    hist = _histogram(loaded, ev, counts) if histogram else None
    return SystemResult(inp, loaded, ev, boot, m, hist)


def _warning_messages(caught: Sequence[warnings.WarningMessage]) -> list[str]:
    """``"Category: message"`` of each caught warning, once each, in order."""
    messages: list[str] = []
    for w in caught:
        text = f"{w.category.__name__}: {w.message}"
        if text not in messages:
            messages.append(text)
    return messages


def write_plots(
    systems: Sequence[SystemResult], out: Path, confidence: float, formats: Sequence[str] = ("png", "svg")
) -> list[Path]:
    """The DET plot of every system (``det.*``) and one score histogram per system
    (``hist_<label>.*``) in ``out``; returns the files written."""
    from validation.plots import DETSeries, OperatingMark, plot_det, plot_score_histogram

    plot_paths: list[Path] = []
    series = []
    for s in systems:
        det = s.evaluation.det
        lo, hi = (
            clopper_pearson(det.false_non_matches, max(det.n_genuine, 0), confidence) if det.n_genuine else (None, None)
        )
        marks = [
            OperatingMark(
                k,
                v["fmr"] if v["fmr"] is not None else math.nan,
                v["fnmr"],
                v["ci_low"] if v["ci_low"] is not None else math.nan,
                v["ci_high"] if v["ci_high"] is not None else math.nan,
            )
            for k, v in s.metrics["fnmr_at_fmr"].items()
            if v["estimable"]
        ]
        series.append(
            DETSeries(s.input.label, det.fmr, det.fnmr, lo, hi, marks, s.evaluation.n_genuine, s.evaluation.n_impostor)
        )
    title = "DET (band: Clopper-Pearson at each threshold; bars: interval of FNMR at FMR)"
    plot_paths += plot_det(series, out / "det", title=title, formats=formats)
    for s in systems:
        if s.histogram is None:
            continue
        edges, gc, ic = s.histogram
        th = {f"FMR {k}": v["threshold"] for k, v in s.metrics["fnmr_at_fmr"].items() if v["threshold"] is not None}
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in s.input.label)
        plot_paths += plot_score_histogram(
            edges,
            gc,
            ic,
            out / f"hist_{safe}",
            title=f"Scores: {s.input.label}",
            thresholds=th,
            formats=formats,
            score_label=s.metrics["direction"],
        )
    return plot_paths


def metrics_document(
    systems: Sequence[SystemResult],
    fmr_targets: Sequence[float],
    confidence: float,
    min_false_matches: int,
    plot_paths: Sequence[Path],
    messages: Sequence[str],
) -> dict:
    """The content of ``metrics.json`` (schema :data:`SCHEMA`): the tool and versions, the
    conventions, the first system's metrics at the top level, every system under ``systems``,
    the plots' file names and the warnings."""
    import validation

    first = dict(systems[0].metrics)
    return {
        "schema": SCHEMA,
        "created_by": {
            "tool": "frvt score",
            "frvt_version": getattr(validation, "__version__", None) or _version(),
            "git_revision": git_revision(),
            "numpy": np.__version__,
        },
        "confidence": confidence,
        "fmr_targets": [fmr_key(f) for f in fmr_targets],
        "min_false_matches": min_false_matches,
        "conventions": {
            "rates": "fmr = false_matches / n_impostor; fnmr = false_non_matches / n_genuine (fractions)",
            "ties": "a score equal to the threshold is a match",
            "failures": "a failed comparison is a non-match at every threshold and stays in both denominators",
            "fnmr_at_fmr_threshold": "lowest threshold with false_matches <= floor(FMR * n_impostor)",
            "estimable": "n_impostor >= ceil(min_false_matches / FMR), else null",
            "eer": "linear interpolation between the two operating points around FMR = FNMR",
        },
        **first,
        "systems": [s.metrics for s in systems],
        "plots": [str(p.name) for p in plot_paths],
        "warnings": list(messages),
    }


def _version() -> str | None:
    try:
        from importlib.metadata import version

        return version("frvt")
    except Exception:  # not installed
        return None


# --- the table ----------------------------------------------------------------------------------------


def _pct(x: float | None, digits: int = 3) -> str:
    return "-" if x is None else f"{100 * x:.{digits}g}%"


def format_report(report: ScoreReport) -> str:
    """The table ``frvt score`` prints: counts, failures, EER, FNMR at each FMR with its interval."""
    lines = []
    conf = report.metrics["confidence"]
    for s in report.systems:
        m = s.metrics
        lines.append(f"== {m['label']}  ({s.input.describe()})")
        lines.append(f"   {m['direction']}, {m['decision_rule']}")
        lines.append(
            f"   genuine comparisons {m['n_genuine']:,} (failed {m['n_genuine_failed']:,}), "
            f"impostor comparisons {m['n_impostor']:,} (failed {m['n_impostor_failed']:,})"
        )
        if m["failures"]:
            f = {k: f"{v['n_failed']:,}/{v['n_attempts']:,} = {_pct(v['rate'])}" for k, v in m["failures"].items()}
            lines.append(
                f"   FTE: enrolment templates {f['enroll']}, verification templates {f['verif']}; "
                f"FTM (comparisons with a non-success code): {f.get('match', 'not counted')}"
            )
        if m["eer"] is None:
            lines.append("   EER: not defined (see warnings)")
        else:
            d = m["eer_detail"]
            lines.append(
                f"   EER {_pct(m['eer'], 4)} at threshold {m['eer_threshold']:.6g} "
                f"(false matches {d['false_matches']:,}/{m['n_impostor']:,}, "
                f"false non-matches {d['false_non_matches']:,}/{m['n_genuine']:,})"
            )
        interval = f"{conf:.0%} interval"
        head = f"   {'FMR':>7}  {'threshold':>11}  {'false matches':>22}  {'FNMR':>9}  {interval:>21}  method"
        lines.append(head)
        for key, v in m["fnmr_at_fmr"].items():
            if not v["estimable"]:
                lines.append(f"   {key:>7}  {'-':>11}  not estimable: {v['reason']}")
                continue
            fm = f"{v['false_matches']:,}/{v['n_impostor']:,}"
            ci = f"[{_pct(v['ci_low'])}, {_pct(v['ci_high'])}]"
            lines.append(
                f"   {key:>7}  {v['threshold']:>11.6g}  {fm:>22}  {_pct(v['fnmr'], 4):>9}  {ci:>21}  {v['ci_method']}"
            )
        lines.append("")
    figures = f" and {len(report.plot_paths)} figures" if report.plot_paths else ""
    lines.append(f"wrote {report.metrics_path}{figures}")
    others = [w for w in report.warnings if "is not estimable" not in w]  # those are in the table
    if others:
        lines += ["", "warnings:"] + [f"  {w}" for w in others]
    return "\n".join(lines)
