"""Demographic differentials at one global threshold: FNMR and FMR per group, cross-group FMR,
ratios and inequity summaries, with subject-bootstrap intervals.

The conventions follow NIST's demographic studies of 1:1 verification (NIST IR 8280, and the
summary measures discussed in NIST IR 8429):

* for each target FMR the threshold is set **once, on all impostor comparisons** (the same threshold
  ``frvt score`` reports); every group is then measured at that threshold;
* **FNMR per group**: genuine comparisons whose two templates carry that group;
* **FMR per group**: impostor comparisons whose enrolled and probe templates both carry that
  group (same-group impostors), and the **cross-group matrix** ``fmr[e, p]``: impostors whose
  enrolled template is in group ``e`` and whose probe is in group ``p``;
* **relative rates**: each group's FMR and FNMR over the overall FMR and FNMR (all comparisons of
  the run, labelled or not); **max/min** ratios across groups;
* **Gini coefficient** across the groups' rates, with the small-sample factor ``n / (n - 1)``
  that makes it reach 1 when one of ``n`` groups holds all the error (the form used in the GARBE
  proposal discussed in NIST IR 8429), and **GARBE** = ``alpha * Gini(FMR) + (1 - alpha) * Gini(FNMR)``.

Counts first: everything is computed from per-subject counts (subjects are the enrolled
identities, the bootstrap unit of :mod:`validation.intervals`), accumulated chunk by chunk by
:class:`DemographicCounter`, so 87 million impostors cost one pass and memory proportional to
subjects x groups^2 x thresholds. Intervals: the subjects are resampled with replacement and every
statistic recomputed at the fixed global threshold (percentile intervals); a statistic undefined
in a resample (no comparison, a zero denominator) is left out and the number of valid resamples is
recorded. Max/min ratios and Gini coefficients of resampled rates are biased upwards (sampling
noise alone spreads the groups apart), so their percentile interval can lie above a point value
near 1 (max/min) or 0 (Gini): read such an interval as "no differential beyond the noise".

Labels come from a CSV (:func:`validation.group_labels.read_labels`) keyed by image id or by identity, one column per
attribute. A template with no label, or with two different labels for the same attribute, is
counted and reported, and its comparisons are left out of that attribute's groups (they stay in the
overall rates).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from validation.intervals import clopper_pearson
from validation.metrics import ScoreError, fmr_key
from validation.group_labels import LabelError, Labels, assign_groups
from validation.paired_comparisons import PairedComparisons, hdf5_pairs, validate_pairs

SCHEMA = "frvt.demographics/1"
FEW_GENUINE = 100
"""Below this many genuine comparisons a group's FNMR gets a note."""


# --- counting -------------------------------------------------------------------------------------


class DemographicCounter:
    """Per-subject counts of comparisons and errors by group, at fixed similarity thresholds.

    The reducer every scoring path feeds: call :meth:`add_genuine` and :meth:`add_impostors` with
    chunks of comparisons (any order, any chunking; the result depends only on the multiset), then
    :func:`summarise`.

    Parameters
    ----------
    thresholds : sequence of float
        Similarity thresholds (a comparison with similarity ``>= t`` is a match), one per FMR target.
    template_group : numpy.ndarray of int, shape (n_templates,)
        Group index per template, or a negative code (unlabelled / conflicting).
    n_groups : int
    n_subjects : int
        Subject ids passed to the ``add_*`` calls lie in ``[0, n_subjects)``.
    """

    def __init__(self, thresholds: Sequence[float], template_group: np.ndarray, n_groups: int, n_subjects: int) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        self.template_group = np.asarray(template_group, dtype=np.int64)
        self.G = int(n_groups)
        self.S = int(n_subjects)
        T = self.thresholds.size
        # cell layout: group cells 0..G*G-1 (impostor: enrolled*G + probe; genuine: g*G + g),
        # then "mixed" (the two templates in different labelled groups; genuine only),
        # then "unlabelled" (either side unlabelled or conflicting)
        self.n_cells = self.G * self.G + 2
        self.gen_n = np.zeros((self.S, self.n_cells), dtype=np.int64)
        self.gen_fnm = np.zeros((T, self.S, self.n_cells), dtype=np.int64)
        self.imp_n = np.zeros((self.S, self.n_cells), dtype=np.int64)
        self.imp_fm = np.zeros((T, self.S, self.n_cells), dtype=np.int64)

    def _cells(self, enrol: np.ndarray, probe: np.ndarray) -> np.ndarray:
        ge = self.template_group[enrol]
        gp = self.template_group[probe]
        cell = ge * self.G + gp
        cell[(ge < 0) | (gp < 0)] = self.G * self.G + 1
        return cell

    def _add(self, n, err, sim, enrol, probe, subject, genuine: bool) -> None:
        sim = np.asarray(sim, dtype=np.float64)
        if sim.size == 0:
            return
        cell = self._cells(np.asarray(enrol, dtype=np.int64), np.asarray(probe, dtype=np.int64))
        if genuine:
            diag = np.arange(self.G) * (self.G + 1)
            is_group = cell < self.G * self.G
            off = is_group & ~np.isin(cell, diag)
            cell[off] = self.G * self.G
        subject = np.asarray(subject, dtype=np.int64)
        flat = subject * self.n_cells + cell
        size = self.S * self.n_cells
        n += np.bincount(flat, minlength=size).reshape(n.shape)
        sim = np.where(np.isnan(sim), -np.inf, sim)
        for t, thr in enumerate(self.thresholds):
            hit = sim < thr if genuine else sim >= thr
            err[t] += np.bincount(flat[hit], minlength=size).reshape(n.shape)

    def add_genuine(self, similarity, enrol, probe, subject) -> None:
        """Genuine comparisons: similarities (NaN or -inf = failed), template indices, subject ids."""
        self._add(self.gen_n, self.gen_fnm, similarity, enrol, probe, subject, True)

    def add_impostors(self, similarity, enrol, probe, subject) -> None:
        """Impostor comparisons: similarities (NaN or -inf = failed), template indices, enrolled subject ids."""
        self._add(self.imp_n, self.imp_fm, similarity, enrol, probe, subject, False)

    def add_block(
        self,
        similarity: np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        subject: np.ndarray,
        owned: np.ndarray | None = None,
    ) -> None:
        """A block of an all-vs-all or gallery-vs-probe comparison, as the block is computed.

        Parameters
        ----------
        similarity : numpy.ndarray, shape (r, c)
            Similarities of templates ``rows`` (enrolled) against ``cols`` (probe); NaN = failed.
        rows, cols : numpy.ndarray of int, shapes (r,), (c,)
            Template indices (into ``template_group``) of the block's rows and columns.
        subject : numpy.ndarray of int, shape (n_templates,)
            Subject of every template; a pair is genuine when the two subjects are equal.
        owned : numpy.ndarray of bool, shape (r, c), optional
            The pairs this block counts (e.g. ``i < j`` on the diagonal blocks of all-vs-all).
        """
        rows = np.asarray(rows, dtype=np.int64)
        cols = np.asarray(cols, dtype=np.int64)
        subject = np.asarray(subject, dtype=np.int64)
        s = np.asarray(similarity)
        m = np.ones(s.shape, bool) if owned is None else np.asarray(owned, bool)
        same = subject[rows][:, None] == subject[cols][None, :]
        e = np.broadcast_to(rows[:, None], s.shape)
        p = np.broadcast_to(cols[None, :], s.shape)
        for gen, mask in ((True, m & same), (False, m & ~same)):
            if mask.any():
                add = self.add_genuine if gen else self.add_impostors
                add(s[mask], e[mask], p[mask], subject[e[mask]])

    def merge(self, other: "DemographicCounter") -> "DemographicCounter":
        """Add another counter's counts (same thresholds, groups and subjects): partial results of workers."""
        if other.gen_n.shape != self.gen_n.shape or not np.array_equal(other.thresholds, self.thresholds):
            raise ValueError("counters differ in thresholds, groups or subjects")
        for name in ("gen_n", "gen_fnm", "imp_n", "imp_fm"):
            getattr(self, name).__iadd__(getattr(other, name))
        return self


# --- statistics -----------------------------------------------------------------------------------


def gini(x: np.ndarray) -> np.ndarray:
    """Gini coefficient of non-negative rates along the last axis, with the factor ``n / (n - 1)``.

    0 when all groups have the same rate, 1 when one group holds all the error. NaN for fewer than
    two groups or all rates zero.

    >>> float(gini(np.array([0.0, 0.0, 1.0])))
    1.0
    >>> float(gini(np.array([0.2, 0.2])))
    0.0
    """
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[-1]
    if n < 2:
        return np.full(x.shape[:-1], np.nan)
    total = np.abs(x[..., :, None] - x[..., None, :]).sum(axis=(-1, -2))
    mean = x.mean(axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mean > 0, total / (2 * n * n * np.where(mean > 0, mean, 1)) * n / (n - 1), np.nan)


def _ratio(a, b):
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(b > 0, a / np.where(b > 0, b, 1), np.nan)


def _stats(gen_n, gen_fnm, imp_n, imp_fm, tot_gen, tot_fnm, tot_imp, tot_fm, G: int, alpha: float) -> dict:
    """Every statistic from summed counts; arrays carry leading axes (resamples, thresholds)."""
    diag = np.arange(G) * (G + 1)
    gn = gen_n[..., diag]
    gf = gen_fnm[..., diag]
    inn = imp_n[..., : G * G]
    ifm = imp_fm[..., : G * G]
    fnmr = _ratio(gf, gn)
    fmr_matrix = _ratio(ifm, inn)
    fmr_matrix = fmr_matrix.reshape(fmr_matrix.shape[:-1] + (G, G))
    fmr = fmr_matrix[..., np.arange(G), np.arange(G)]
    fmr_all = _ratio(tot_fm, tot_imp)[..., None]
    fnmr_all = _ratio(tot_fnm, tot_gen)[..., None]
    rel_fmr = _ratio(fmr, fmr_all)
    rel_fnmr = _ratio(fnmr, fnmr_all)
    with np.errstate(invalid="ignore"):

        def maxmin(r):
            ok = np.all(np.isfinite(r), axis=-1) & (r.shape[-1] >= 2)
            mx, mn = np.max(np.where(ok[..., None], r, 0), axis=-1), np.min(np.where(ok[..., None], r, 0), axis=-1)
            return np.where(ok & (mn > 0), mx / np.where(mn > 0, mn, 1), np.nan)

        def gini_ok(r):
            ok = np.all(np.isfinite(r), axis=-1)
            return np.where(ok, gini(np.where(np.isfinite(r), r, 0)), np.nan)

        g_fmr, g_fnmr = gini_ok(fmr), gini_ok(fnmr)
    return {
        "fnmr": fnmr,
        "fmr": fmr,
        "fmr_matrix": fmr_matrix,
        "fmr_overall": fmr_all[..., 0],
        "fnmr_overall": fnmr_all[..., 0],
        "fmr_relative": rel_fmr,
        "fnmr_relative": rel_fnmr,
        "fmr_max_min": maxmin(fmr),
        "fnmr_max_min": maxmin(fnmr),
        "gini_fmr": g_fmr,
        "gini_fnmr": g_fnmr,
        "garbe": alpha * g_fmr + (1 - alpha) * g_fnmr,
    }


def _num(x) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def _tolist(a):
    a = np.asarray(a, dtype=np.float64)
    if a.ndim == 0:
        return _num(a)
    return [_tolist(v) for v in a]


@dataclass
class AttributeResult:
    """One attribute's differentials (see :func:`summarise`); ``doc`` is its JSON form."""

    attribute: str
    groups: list[str]
    doc: dict
    notes: list[str] = field(default_factory=list)


def summarise(
    counter: DemographicCounter,
    fmr_targets: Sequence[float],
    groups: Sequence[str],
    *,
    attribute: str = "group",
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.5,
    user_thresholds: Sequence[float] | None = None,
) -> AttributeResult:
    """Point estimates, intervals and notes from a filled :class:`DemographicCounter`.

    Returns
    -------
    AttributeResult
        ``doc`` holds, per FMR key (``"1e-05"``...): ``threshold``, ``overall`` (fmr, fnmr and
        counts), ``groups`` (per group: ``n_genuine``, ``false_non_matches``, ``fnmr``,
        ``fnmr_relative``, ``n_impostor`` and ``false_matches`` of same-group impostors, ``fmr``,
        ``fmr_relative``, ``n_subjects``, each rate with ``ci``, and ``notes``), ``fmr_matrix``
        (enrolled group x probe group: ``fmr``, ``false_matches``, ``n_impostor``, ``ci_low``,
        ``ci_high``), ``summary`` (``fmr_max_min``, ``fnmr_max_min``, ``gini_fmr``, ``gini_fnmr``,
        ``garbe``, each ``value``, ``ci_low``, ``ci_high``, ``n_valid``).
    """
    c = counter
    G = c.G
    tot = dict(
        tot_gen=c.gen_n.sum(),
        tot_fnm=c.gen_fnm.sum(axis=(1, 2)),
        tot_imp=c.imp_n.sum(),
        tot_fm=c.imp_fm.sum(axis=(1, 2)),
    )
    point = _stats(
        c.gen_n.sum(0)[None, None],
        c.gen_fnm.sum(1)[None],
        c.imp_n.sum(0)[None, None],
        c.imp_fm.sum(1)[None],
        np.reshape(tot["tot_gen"], (1, 1)),
        tot["tot_fnm"][None],
        np.reshape(tot["tot_imp"], (1, 1)),
        tot["tot_fm"][None],
        G,
        alpha,
    )
    # subjects that contributed anything
    active = (c.gen_n.sum(1) + c.imp_n.sum(1)) > 0
    S_act = int(active.sum())
    boot = None
    if n_resamples > 0 and S_act > 0:
        rng = np.random.default_rng(seed)
        idx = np.flatnonzero(active)
        W = rng.multinomial(S_act, np.full(S_act, 1.0 / S_act), size=n_resamples).astype(np.float64)  # (R, S)
        gn = W @ c.gen_n[idx]  # (R, C)
        im = W @ c.imp_n[idx]
        gf = np.einsum("rs,tsc->rtc", W, c.gen_fnm[:, idx])  # (R, T, C)
        fm = np.einsum("rs,tsc->rtc", W, c.imp_fm[:, idx])
        boot = _stats(
            gn[:, None], gf, im[:, None], fm, gn.sum(1)[:, None], gf.sum(2), im.sum(1)[:, None], fm.sum(2), G, alpha
        )
    assert point["fnmr"].shape == (1, len(fmr_targets), G)
    lo_q, hi_q = (1 - confidence) / 2, 1 - (1 - confidence) / 2

    def interval(name, t, *where):
        if boot is None:
            return None, None, 0
        v = boot[name][(slice(None), t) + where]
        v = v[np.isfinite(v)]
        if v.size < max(1, int(math.ceil(confidence * n_resamples))):
            return None, None, int(v.size)
        return _num(np.quantile(v, lo_q)), _num(np.quantile(v, hi_q)), int(v.size)

    subj_gen = c.gen_n[:, : G * G][:, np.arange(G) * (G + 1)] > 0
    subj_imp = c.imp_n[:, : G * G][:, np.arange(G) * (G + 1)] > 0
    n_subj = (subj_gen | subj_imp).sum(0)
    per_fmr = {}
    notes_all: list[str] = []
    for t, f in enumerate(fmr_targets):
        key = fmr_key(f)
        need = int(math.ceil(1 / f))
        gdoc = {}
        for g, name in enumerate(groups):
            d = g * (G + 1)
            ng, nfnm = int(c.gen_n[:, d].sum()), int(c.gen_fnm[t, :, d].sum())
            ni, nfm = int(c.imp_n[:, d].sum()), int(c.imp_fm[t, :, d].sum())
            notes = []
            if ng == 0 and ni == 0:
                notes.append("no comparison in this group")
            if ni and ni < need:
                notes.append(
                    f"{ni:,} same-group impostor comparisons, fewer than the {need:,} needed to "
                    f"estimate FMR {key}: its FMR is a count, not an estimate of that level"
                )
            if ni and nfm == 0:
                hi_cp = clopper_pearson(0, ni, confidence)[1]
                notes.append(
                    f"no false match among {ni:,} same-group impostors (FMR 0, upper {confidence:.0%} "
                    f"bound {hi_cp:.2g}): its ratios are 0 or undefined"
                )
            if 0 < ng < FEW_GENUINE:
                notes.append(f"only {ng} genuine comparisons: its FNMR is coarse")
            if n_subj[g] == 1:
                notes.append("one subject: the subject bootstrap cannot vary this group")
            entry = {
                "n_subjects": int(n_subj[g]),
                "n_genuine": ng,
                "false_non_matches": nfnm,
                "fnmr": _num(point["fnmr"][0, t, g]) if ng else None,
                "n_impostor": ni,
                "false_matches": nfm,
                "fmr": _num(point["fmr"][0, t, g]) if ni else None,
                "fmr_relative": _num(point["fmr_relative"][0, t, g]),
                "fnmr_relative": _num(point["fnmr_relative"][0, t, g]),
                "notes": notes,
            }
            for stat in ("fnmr", "fmr", "fmr_relative", "fnmr_relative"):
                lo, hi, nv = interval(stat, t, g)
                entry[f"{stat}_ci"] = [lo, hi]
            gdoc[name] = entry
            notes_all += [f"FMR {key}, {attribute}={name}: {n}" for n in notes]
        mat = []
        for e in range(G):
            row = []
            for p in range(G):
                cell = e * G + p
                ni, nfm = int(c.imp_n[:, cell].sum()), int(c.imp_fm[t, :, cell].sum())
                lo, hi, _ = interval("fmr_matrix", t, e, p)
                row.append(
                    {
                        "fmr": _num(point["fmr_matrix"][0, t, e, p]) if ni else None,
                        "false_matches": nfm,
                        "n_impostor": ni,
                        "ci_low": lo,
                        "ci_high": hi,
                    }
                )
            mat.append(row)
        summary = {}
        for stat in ("fmr_max_min", "fnmr_max_min", "gini_fmr", "gini_fnmr", "garbe"):
            lo, hi, nv = interval(stat, t)
            summary[stat] = {"value": _num(point[stat][0, t]), "ci_low": lo, "ci_high": hi, "n_valid": nv}
        ov_fnm, ov_fm = int(tot["tot_fnm"][t]), int(tot["tot_fm"][t])
        per_fmr[key] = {
            "threshold": None if user_thresholds is None else _num(user_thresholds[t]),
            "threshold_similarity": _num(c.thresholds[t]),
            "overall": {
                "fmr": _num(point["fmr_overall"][0, t]),
                "false_matches": ov_fm,
                "n_impostor": int(tot["tot_imp"]),
                "fnmr": _num(point["fnmr_overall"][0, t]),
                "false_non_matches": ov_fnm,
                "n_genuine": int(tot["tot_gen"]),
            },
            "groups": gdoc,
            "fmr_matrix": mat,
            "summary": summary,
        }
    unl = G * G + 1
    doc = {
        "attribute": attribute,
        "groups": list(groups),
        "excluded": {
            "genuine_unlabelled": int(c.gen_n[:, unl].sum()),
            "genuine_mixed_groups": int(c.gen_n[:, G * G].sum()),
            "impostor_unlabelled": int(c.imp_n[:, unl].sum()),
        },
        "n_subjects": S_act,
        "bootstrap": None
        if boot is None
        else {
            "n_resamples": n_resamples,
            "seed": seed,
            "confidence": confidence,
            "unit": "subject (enrolled identity), threshold fixed at the global one",
            "method": "percentile",
        },
        "garbe_alpha": alpha,
        "fmr": per_fmr,
    }
    return AttributeResult(attribute, list(groups), doc, notes_all)


# --- the whole computation ----------------------------------------------------------------------------


def demographic_differentials(
    pairs: PairedComparisons,
    labels: Labels,
    similarity_thresholds: Sequence[float],
    fmr_targets: Sequence[float],
    *,
    user_thresholds: Sequence[float] | None = None,
    attributes: Iterable[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.5,
) -> dict:
    """Differentials for every attribute of ``labels`` at the global thresholds (one pass over the pairs).

    Parameters
    ----------
    pairs : PairedComparisons or StorePairs
    labels : Labels
    similarity_thresholds : sequence of float
        The global thresholds on the similarity scale, one per FMR target (NaN: target not
        estimable on all impostors; its group numbers are then left out).
    fmr_targets : sequence of float
    user_thresholds : sequence of float, optional
        The same thresholds in the input's own units, for the record.

    Returns
    -------
    dict
        The ``demographics.json`` document (schema ``frvt.demographics/1``).
    """
    attrs = list(labels.attributes if attributes is None else attributes)
    for a in attrs:
        if a not in labels.attributes:
            raise LabelError(
                labels.path, 1, a, f"no attribute column {a!r} (columns: {', '.join(labels.attributes)})", "line"
            )
    keep = [i for i, t in enumerate(similarity_thresholds) if math.isfinite(t)]
    targets = [fmr_targets[i] for i in keep]
    thr = [similarity_thresholds[i] for i in keep]
    uthr = None if user_thresholds is None else [user_thresholds[i] for i in keep]
    assigned = {a: assign_groups(labels, a, pairs.template_ids, pairs.template_identities) for a in attrs}
    counters = {a: DemographicCounter(thr, assigned[a].group, len(assigned[a].groups), pairs.n_subjects) for a in attrs}
    pairs.fill([counters[a] for a in attrs])
    out = {
        "schema": SCHEMA,
        "labels": {"path": labels.path, "key": labels.key, "key_kind": labels.key_kind, "n_rows": labels.n_rows},
        "fmr_targets": [fmr_key(f) for f in fmr_targets],
        "not_estimable_overall": [fmr_key(f) for i, f in enumerate(fmr_targets) if i not in keep],
        "attributes": {},
    }
    for a in attrs:
        tg = assigned[a]
        r = summarise(
            counters[a],
            targets,
            tg.groups,
            attribute=a,
            n_resamples=n_resamples,
            seed=seed,
            confidence=confidence,
            alpha=alpha,
            user_thresholds=uthr,
        )
        empty_groups = (
            [
                g
                for g, e in r.doc["fmr"][next(iter(r.doc["fmr"]))]["groups"].items()
                if e["n_genuine"] == 0 and e["n_impostor"] == 0
            ]
            if r.doc["fmr"]
            else []
        )
        r.doc["labels"] = {
            "templates": len(pairs.template_ids),
            "unlabelled_templates": len(tg.unlabelled),
            "unlabelled_examples": tg.unlabelled[:10],
            "conflicting_templates": len(tg.conflicting),
            "conflicting_examples": tg.conflicting[:10],
            "conflicting_keys": len(labels.conflicts[a]),
            "keys_not_in_run": tg.unused_keys,
            "blank_values": labels.empty[a],
            "empty_groups": empty_groups,
        }
        r.doc["notes"] = r.notes
        out["attributes"][a] = r.doc
    return out


def format_demographics(doc: dict) -> str:
    """The table ``frvt score --demographics`` prints."""

    def pct(x, d=3):
        return "-" if x is None else f"{100 * x:.{d}g}%"

    def ci(pair):
        return "" if not pair or pair[0] is None else f" [{pct(pair[0])}, {pct(pair[1])}]"

    lines = []
    for a, r in doc["attributes"].items():
        lab = r["labels"]
        lines.append(f"== demographics: {a} (groups {', '.join(r['groups']) or 'none'})")
        lines.append(
            f"   templates {lab['templates']:,}: unlabelled {lab['unlabelled_templates']:,}, conflicting "
            f"{lab['conflicting_templates']:,}; labels for ids not in the run {lab['keys_not_in_run']:,}"
        )
        ex = r["excluded"]
        lines.append(
            f"   left out of the groups: genuine unlabelled {ex['genuine_unlabelled']:,}, genuine across "
            f"groups {ex['genuine_mixed_groups']:,}, impostor unlabelled {ex['impostor_unlabelled']:,}"
        )
        if lab["empty_groups"]:
            lines.append(f"   groups with no comparison: {', '.join(lab['empty_groups'])}")
        for key, e in r["fmr"].items():
            thr = e["threshold"] if e["threshold"] is not None else e["threshold_similarity"]
            o = e["overall"]
            lines.append(f"   FMR {key}: threshold {thr:.6g} (overall FMR {pct(o['fmr'])}, FNMR {pct(o['fnmr'])})")
            for g, v in e["groups"].items():
                lines.append(
                    f"     {g:>12}: FNMR {pct(v['fnmr'])}{ci(v['fnmr_ci'])} ({v['false_non_matches']:,}/"
                    f"{v['n_genuine']:,}), FMR {pct(v['fmr'])}{ci(v['fmr_ci'])} ({v['false_matches']:,}/"
                    f"{v['n_impostor']:,}), x{_fmt(v['fmr_relative'])} FMR, x{_fmt(v['fnmr_relative'])} FNMR"
                )
            names = r["groups"]
            for i, row in enumerate(e["fmr_matrix"]):
                for j, cell in enumerate(row):
                    if i != j:
                        lines.append(
                            f"     {names[i]} enrolled x {names[j]} probe: FMR {pct(cell['fmr'])}"
                            f"{ci([cell['ci_low'], cell['ci_high']])} ({cell['false_matches']:,}/"
                            f"{cell['n_impostor']:,})"
                        )
            s = e["summary"]
            parts = []
            for k, label in (
                ("fmr_max_min", "FMR max/min"),
                ("fnmr_max_min", "FNMR max/min"),
                ("gini_fmr", "Gini FMR"),
                ("gini_fnmr", "Gini FNMR"),
                ("garbe", "GARBE"),
            ):
                v = s[k]
                iv = "" if v["ci_low"] is None else f" [{_fmt(v['ci_low'])}, {_fmt(v['ci_high'])}]"
                parts.append(f"{label} {_fmt(v['value'])}{iv}")
            lines.append("     " + "; ".join(parts))
        for n in r["notes"]:
            lines.append(f"   note: {n}")
        lines.append("")
    return "\n".join(lines)


def _fmt(x) -> str:
    return "-" if x is None else f"{x:.3g}"


# --- with frvt score ----------------------------------------------------------------------------------


def pairs_for_input(inp, higher_is_better: bool = True) -> PairedComparisons:
    """The paired comparisons behind a :class:`validation.score.ScoreInput`.

    Raises
    ------
    ScoreError
        Plain score files: they carry no templates to label.
    """
    if inp.kind == "validate":
        return validate_pairs(inp.paths[0])
    if inp.kind == "hdf5":
        return hdf5_pairs(inp.paths[0], higher_is_better)
    raise ScoreError(
        str(inp.paths[0]),
        None,
        inp.label,
        "plain score files carry no templates: demographics need "
        "a validate output directory or an HDF5 score file with template indices",
    )


def score_demographics(
    report,
    labels: Labels,
    out_dir: str | os.PathLike,
    *,
    attributes: Iterable[str] | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    confidence: float = 0.95,
    alpha: float = 0.5,
) -> tuple[dict, Path]:
    """Differentials of every system of a :class:`validation.score.ScoreReport`; writes ``demographics.json``.

    The thresholds are the report's FNMR-at-FMR thresholds (set on all impostors of each system).
    A system whose input has no templates gets an ``error`` entry instead of numbers.
    """
    import json

    out = {"schema": SCHEMA, "systems": []}
    for s in report.systems:
        hib = s.evaluation.higher_is_better
        targets = list(s.evaluation.operating_points)
        user = [
            s.evaluation.operating_points[f].threshold if s.evaluation.operating_points[f].estimable else math.nan
            for f in targets
        ]
        sim = [t if hib else -t for t in user]
        try:
            from validation.demographic_pass import store_pairs

            pairs = store_pairs(s.loaded) if s.input.kind == "templates" else pairs_for_input(s.input, hib)
            doc = demographic_differentials(
                pairs,
                labels,
                sim,
                targets,
                user_thresholds=user,
                attributes=attributes,
                n_resamples=n_resamples,
                seed=seed,
                confidence=confidence,
                alpha=alpha,
            )
        except ScoreError as exc:
            doc = {"schema": SCHEMA, "error": str(exc)}
        doc["label"] = s.input.label
        out["systems"].append(doc)
    path = Path(out_dir) / "demographics.json"
    path.write_text(json.dumps(out, indent=1, allow_nan=False) + "\n")
    return out, path


def format_all(doc: dict) -> str:
    """:func:`format_demographics` for each system of a ``demographics.json``."""
    parts = []
    for s in doc["systems"]:
        if "error" in s:
            parts.append(f"== demographics of {s['label']}: not computed: {s['error']}\n")
        else:
            parts.append(f"== demographics of {s['label']}\n" + format_demographics(s))
    return "\n".join(parts)
