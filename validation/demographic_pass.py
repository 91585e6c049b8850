"""Demographics on template stores: impostors counted by group in one block pass over every
comparison (:mod:`validation.allvsall`), never written."""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import numpy as np

from validation.metrics import ScoreError

if TYPE_CHECKING:
    from validation.demographics import DemographicCounter


# --- template stores: every comparison, never written ---------------------------------------------


class _GroupCounts:
    """One attribute's impostor counts in a :class:`DemographicPass`: sparse parts (flat
    ``subject * cells + cell`` index, comparisons, false matches per threshold) where blocks are
    counted, dense arrays where partial results are merged."""

    def __init__(self, size: int, n_thresholds: int) -> None:
        self.size, self.T = size, n_thresholds
        self.parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        self.n: np.ndarray | None = None
        self.fm: np.ndarray | None = None

    def packed(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The parts as one (index, comparisons, false matches) with unique indices and no zero count."""
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((self.T, 0), np.int64)
        idx = np.concatenate([p[0] for p in self.parts])
        n = np.concatenate([p[1] for p in self.parts])
        fm = np.concatenate([p[2] for p in self.parts], axis=1)
        if len(self.parts) > 1:
            u, inv = np.unique(idx, return_inverse=True)
            n2, fm2 = np.zeros(u.size, np.int64), np.zeros((self.T, u.size), np.int64)
            np.add.at(n2, inv, n)
            np.add.at(fm2, (slice(None), inv), fm)
            idx, n, fm = u, n2, fm2
        keep = n > 0
        return idx[keep], n[keep], fm[:, keep]

    def merge(self, packed) -> None:
        idx, n, fm = packed
        if self.n is None:
            self.n, self.fm = np.zeros(self.size, np.int64), np.zeros((self.T, self.size), np.int64)
        self.n[idx] += n
        self.fm[:, idx] += fm

    def total(self) -> tuple[np.ndarray, np.ndarray]:
        if self.parts:
            self.merge(self.packed())
            self.parts = []
        if self.n is None:
            self.merge(self.packed())
        return self.n, self.fm


class DemographicPass:
    """A block pass of :mod:`validation.allvsall` counting impostor comparisons by group and subject.

    Every block's impostor comparisons are counted where the block is computed: the comparisons
    of each (enrolled subject, cell) (the pair count of a row by column group is one product of the
    block's impostor mask with the columns' one-hot groups, no similarity needed), and the false
    matches at each threshold (only the few similarities at or above the lowest threshold are
    looked at). Counts are indexed by the block's own subjects, so a block costs the same whatever
    the number of subjects of the run. The result equals :meth:`DemographicCounter.add_impostors`
    over the same comparisons, for every attribute at once.

    Parameters
    ----------
    thresholds : sequence of float
        Similarity thresholds (finite), one per FMR target.
    row_group, col_group : numpy.ndarray of int, shape (n_attributes, n_rows) / (n_attributes, n_cols)
        Group of every gallery (row) and probe (column) template per attribute, negative when
        unlabelled or conflicting.
    n_groups : sequence of int
        Groups per attribute.
    row_subject : numpy.ndarray of int
        Subject of every gallery template (the subject of an impostor comparison).
    n_subjects : int
    """

    def __init__(self, thresholds, row_group, col_group, n_groups, row_subject, n_subjects: int) -> None:
        self.thresholds = np.asarray(thresholds, dtype=np.float64)
        if not np.all(np.isfinite(self.thresholds)):
            raise ValueError("thresholds must be finite")
        self.row_group = np.asarray(row_group, dtype=np.int64)
        self.col_group = np.asarray(col_group, dtype=np.int64)
        self.n_groups = [int(g) for g in n_groups]
        self.row_subject = np.asarray(row_subject, dtype=np.int64)
        self.S = int(n_subjects)

    def _cells(self, a: int) -> int:
        return self.n_groups[a] ** 2 + 2

    def start(self):
        return [_GroupCounts(self.S * self._cells(a), self.thresholds.size) for a in range(len(self.n_groups))]

    def add(self, acc, x, ids):
        raise TypeError("DemographicPass needs whole blocks (both templates of each comparison): use add_block")

    def add_block(self, acc, s: np.ndarray, r0: int, r1: int, c0: int, c1: int, impostor: np.ndarray | None):
        """Count one block: similarities ``s`` (r1-r0, c1-c0), NaN = failed; ``impostor`` the
        block's impostor pairs (None: all of them)."""
        subjects, local = np.unique(self.row_subject[r0:r1], return_inverse=True)
        above = s >= self.thresholds.min()
        hit_r, hit_c = np.nonzero(above if impostor is None else above & impostor)
        hit_s = s[hit_r, hit_c].astype(np.float64)
        weights = None if impostor is None else impostor.astype(np.float32)
        for a, counts in enumerate(acc):
            G = self.n_groups[a]
            C = G * G + 2
            size = subjects.size * C
            ge = self.row_group[a, r0:r1]
            gp = self.col_group[a, c0:c1]
            col_class = np.where(gp < 0, G, gp)  # G: unlabelled or conflicting
            if weights is None:
                per_row = np.broadcast_to(np.bincount(col_class, minlength=G + 1), (r1 - r0, G + 1))
            else:
                onehot = np.zeros((c1 - c0, G + 1), np.float32)
                onehot[np.arange(c1 - c0), col_class] = 1
                per_row = np.rint(weights @ onehot).astype(np.int64)  # exact: counts < 2^24
            cell = np.where(
                (ge[:, None] < 0) | (np.arange(G + 1)[None, :] == G),
                G * G + 1,
                ge[:, None] * G + np.arange(G + 1)[None, :],
            )
            flat = (local[:, None] * C + cell).ravel()
            n = np.rint(np.bincount(flat, weights=per_row.ravel(), minlength=size)).astype(np.int64)
            fm = np.zeros((self.thresholds.size, size), np.int64)
            if hit_s.size:
                hc = np.where((ge[hit_r] < 0) | (gp[hit_c] < 0), G * G + 1, ge[hit_r] * G + gp[hit_c])
                hflat = local[hit_r] * C + hc
                for t, thr in enumerate(self.thresholds):
                    fm[t] = np.bincount(hflat[hit_s >= thr], minlength=size)
            counts.parts.append(((subjects[:, None] * C + np.arange(C)).ravel(), n, fm))
        return acc

    def pack(self, acc):
        return [counts.packed() for counts in acc]

    def merge(self, acc, packed):
        for counts, part in zip(acc, packed):
            counts.merge(part)
        return acc

    def finish(self, acc):
        out = []
        for a, counts in enumerate(acc):
            n, fm = counts.total()
            out.append((n.reshape(self.S, self._cells(a)), fm.reshape(fm.shape[0], self.S, self._cells(a))))
        return out


class StorePairs:
    """The comparisons of a template-store run (:mod:`validation.allvsall`) for
    :func:`demographic_differentials`: the genuine ones from the scores already computed, the
    impostors counted by a :class:`DemographicPass` over the similarity blocks (never written).

    Template indices: the gallery's rows, then (gallery x probe) the probe's rows after them.
    """

    def __init__(self, loaded) -> None:
        self.loaded = loaded
        self.source = loaded.impostor
        plan = self.source.plan
        self.plan = plan
        stores = [plan.gallery] if plan.all_vs_all else [plan.gallery, plan.probe]
        self.template_ids = [str(x) for st in stores for x in st.ids]
        self.template_identities = [str(x) for st in stores for x in st.identities]
        self.n_subjects = plan.n_subjects
        self.col_offset = 0 if plan.all_vs_all else plan.gallery.n

    def fill(self, counters: Sequence[DemographicCounter]) -> None:
        """Genuine comparisons added here; impostors by one block pass for every counter."""
        if not counters:
            return
        plan = self.plan
        i, j = plan.genuine_pairs()
        g = np.where(self.loaded.genuine_failed, np.nan, self.loaded.genuine).astype(np.float64)
        if g.size != i.size:
            raise ValueError(f"{g.size} genuine scores for {i.size} genuine pairs")
        for c in counters:
            c.add_genuine(g, i, j + self.col_offset, plan.row_subject[i])
        thr = counters[0].thresholds
        if not thr.size:
            return
        nr = plan.gallery.n
        reduction = DemographicPass(
            thr,
            np.stack([c.template_group[:nr] for c in counters]),
            np.stack([c.template_group[self.col_offset : self.col_offset + plan.probe.n] for c in counters]),
            [c.G for c in counters],
            plan.row_subject,
            plan.n_subjects,
        )
        from validation.selection import run_pass

        for c, (n, fm) in zip(counters, run_pass(self.source, reduction, self.source.chunk_size)):
            c.imp_n += n
            c.imp_fm += fm


def store_pairs(loaded) -> StorePairs:
    """:class:`StorePairs` of a template-store run's :class:`validation.score.LoadedScores`."""
    from validation.allvsall import StoreComparisons

    if not isinstance(loaded.impostor, StoreComparisons):
        raise ScoreError("templates", None, type(loaded.impostor).__name__, "not a template-store comparison source")
    return StorePairs(loaded)
