"""The demographic block pass on template stores, against the pairwise counter and the loop oracle."""

from __future__ import annotations

import math

import numpy as np
import pytest

from demographic_worlds import oracle, world
from validation.demographic_pass import DemographicPass
from validation.demographics import DemographicCounter


def _blockworld(seed=6):
    """A world with float32 similarities, an unlabelled and a conflicting template, and a second
    attribute with a group of one subject."""
    templates, identity, sex, e, p, same, sim, sid = world(seed=seed, n_subjects=20, per=3)
    n = len(templates)
    mat = np.full((n, n), np.nan, np.float32)
    mat[e, p] = sim
    mat[p, e] = sim  # gallery x probe reads the lower triangle too
    subj_names = sorted(set(identity))
    subject = np.array([subj_names.index(i) for i in identity])
    sex_group = np.array([0 if sex[i] == "F" else 1 for i in identity])
    sex_group[4], sex_group[7] = -1, -2  # unlabelled, conflicting
    other = np.arange(n) % 3
    other[subject == 0] = 3  # a group of one subject
    return mat, subject, np.stack([sex_group, other]), [2, 4], len(subj_names)


def _run_blocks(pas, mat, subject, rows, cols, block, all_vs_all):
    """Blocks counted as workers would; the blocks of one row panel share a worker's accumulator."""
    acc = pas.start()
    for r0 in range(0, rows.size, block):
        worker = pas.start()
        for c0 in range(r0 if all_vs_all else 0, cols.size, block):
            r1, c1 = min(rows.size, r0 + block), min(cols.size, c0 + block)
            s = mat[np.ix_(rows[r0:r1], cols[c0:c1])]
            imp = subject[rows[r0:r1]][:, None] != subject[cols[c0:c1]][None, :]
            if all_vs_all and c0 < r1:
                imp &= np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :]
            worker = pas.add_block(worker, s, r0, r1, c0, c1, None if imp.all() else imp)
        acc = pas.merge(acc, pas.pack(worker))
    return pas.finish(acc)


@pytest.mark.parametrize("block", [5, 16, 1000])
@pytest.mark.parametrize("all_vs_all", [True, False])
def test_block_pass_counts_impostors_like_the_pairwise_counter(block, all_vs_all):
    """The template-store pass (group counts by matrix product, false matches from the few scores
    above the lowest threshold) against DemographicCounter fed every impostor pair, and the loop oracle."""
    mat, subject, groups, n_groups, n_subj = _blockworld()
    n = subject.size
    rows, cols = (np.arange(n), np.arange(n)) if all_vs_all else (np.arange(0, n, 2), np.arange(1, n, 2))
    thr = [0.3, 0.5, 0.99]  # 0.99: no impostor above it
    pas = DemographicPass(thr, groups[:, rows], groups[:, cols], n_groups, subject[rows], n_subj)
    got = _run_blocks(pas, mat, subject, rows, cols, block, all_vs_all)
    ii, jj = np.meshgrid(np.arange(rows.size), np.arange(cols.size), indexing="ij")
    keep = subject[rows][ii] != subject[cols][jj]
    if all_vs_all:
        keep &= ii < jj
    e, p = ii[keep], jj[keep]
    sim = mat[rows[e], cols[p]].astype(np.float64)
    for a, G in enumerate(n_groups):
        # template indices: rows, then columns after them
        tg = np.concatenate([groups[a, rows], groups[a, cols]])
        c = DemographicCounter(thr, tg, G, n_subj)
        c.add_impostors(sim, e, p + rows.size, subject[rows][e])
        np.testing.assert_array_equal(got[a][0], c.imp_n)
        np.testing.assert_array_equal(got[a][1], c.imp_fm)
        assert got[a][0].sum() == keep.sum()
        assert got[a][1][2].sum() == 0
        label = [None if g < 0 else int(g) for g in tg]
        _, _, fm, ni = oracle(sim, e, p + rows.size, np.zeros(e.size, bool), label, 0.5)
        for (ge, gp), count in ni.items():
            assert got[a][0][:, ge * G + gp].sum() == count
            assert got[a][1][1, :, ge * G + gp].sum() == fm[(ge, gp)]


def test_block_pass_refuses_chunks_without_templates():
    pas = DemographicPass([0.5], np.zeros((1, 3), int), np.zeros((1, 3), int), [1], np.zeros(3, int), 1)
    with pytest.raises(TypeError, match="whole blocks"):
        pas.add(pas.start(), np.zeros(3), None)
    with pytest.raises(ValueError, match="finite"):
        DemographicPass([math.nan], np.zeros((1, 3), int), np.zeros((1, 3), int), [1], np.zeros(3, int), 1)
