"""The compiled block passes against the same passes run by numpy on materialised blocks, bit for bit.

The stores are built to put similarities exactly on the steps the passes decide on: key-bin edges
(``0.5 + k / 256`` and ``0.75``), 1 (duplicates, clipped) and 0 (opposites), with failed templates,
genuine pairs and blocks of odd sizes; the steps of each pass are taken from the scores themselves.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from frvt.store import create_store, write_results
from implementation import template as tpl
from validation.allvsall import BlockContext, make_plan
from validation.blockpasses import error_bound_factor
from validation.intervals import SubjectEdgePass
from validation.selection import DigitPass, FineBinsPass, KeepBinsPass, MultiPass, TopBinPass, float_keys
from validation.streaming import BracketPass, HistogramPass

DIM = 16
FINGERPRINT = b"TST1"


def _vectors(n: int, seed: int) -> np.ndarray:
    """Unit vectors: random ones, plus pairs at exact similarities on key-bin edges, duplicates and
    opposites (the quantised dot products of these are exact multiples of 2**41)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, DIM))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    e1 = np.zeros(DIM)
    e1[0] = 1.0
    special = [e1, -e1, e1, e1]
    for k in (0, 1, 2, 64, 96, 127):  # similarity 0.5 + k / 256, cos = k / 128
        c = k / 128
        v = np.zeros(DIM)
        v[0], v[1] = c, math.sqrt(1 - c * c)
        special.append(v)
    x[: len(special)] = special
    return x.astype(np.float32)


def _store(path, n: int, seed: int, failed=(), no_face=()) -> None:
    ids = [f"t{i:04d}" for i in range(n)]
    identities = [f"p{(i * 7919 + seed) % (n // 3):04d}" for i in range(n)]
    create_store(
        path,
        ids,
        identities,
        ids,
        implementation="synthetic",
        implementation_version="test",
        config_dir="",
        role="Enrollment_11",
        header=tpl.VectorForm(FINGERPRINT, DIM).header(),
    )
    x = _vectors(n, seed)
    codes = np.zeros(n)
    codes[list(failed)] = 5
    templates = [tpl.encode(None if i in no_face else v, FINGERPRINT) for i, v in enumerate(x)]
    write_results(path, np.arange(n), codes, templates, np.zeros(n), [""] * n)


@pytest.fixture(scope="module", params=["all-vs-all", "gallery-vs-probe"])
def plan(request, tmp_path_factory):
    d = tmp_path_factory.mktemp("stores")
    _store(d / "g.h5", 150, 1, failed=(20, 77), no_face=(5,))
    if request.param == "all-vs-all":
        return make_plan(d / "g.h5", block=37)
    _store(d / "p.h5", 90, 2, failed=(3,), no_face=(40, 41))
    return make_plan(d / "g.h5", d / "p.h5", block=37)


def _run(plan, reduction, compiled: bool, with_ids: bool = False):
    ctx = BlockContext(plan, compiled=compiled)
    acc = reduction.start()
    for blk in plan.blocks():
        acc = reduction.merge(acc, ctx.run_block(blk, reduction, 1 << 18, with_ids))
    return reduction.finish(acc)


def _impostor_scores(plan) -> np.ndarray:
    ctx = BlockContext(plan, compiled=False)
    parts = []
    for blk in plan.blocks():
        s, owned = ctx.block_scores(*blk)
        m = ctx.impostor_mask(*blk, owned)
        parts.append(s.ravel() if m is None else s[m])
    x = np.concatenate(parts)
    return np.where(np.isnan(x), -np.inf, x).astype(np.float32)


def _same(a, b) -> None:
    if isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and np.array_equal(a, b)
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            _same(x, y)
    else:
        assert type(a) is type(b) and a == b


def test_the_stores_hold_the_steps_the_passes_decide_on(plan):
    x = _impostor_scores(plan)
    assert np.isinf(x).sum() > 0 and (x == 1.0).any() and (x == 0.0).any()
    assert {0.5, 0.75, 0.5 + 127 / 256} <= set(x.tolist())


def test_key_histogram_range_and_failures(plan):
    red = TopBinPass(np.float32, True)
    _same(_run(plan, red, True), _run(plan, red, False))


def test_fine_bins_keep_every_score_of_their_bins(plan):
    x = _impostor_scores(plan)
    raw = x.view(np.uint32) >> 16
    fine = np.zeros(1 << 16, bool)
    fine[np.unique(raw[:: max(1, x.size // 40)])] = True
    fine[raw[x == 0.75][0]] = fine[raw[np.isinf(x)][0]] = fine[raw[x == 1.0][0]] = True
    red = FineBinsPass(True, fine)
    compiled = _run(plan, red, True)
    _same(compiled, _run(plan, red, False))
    bits, counts = compiled[4], compiled[5]
    u, c = np.unique(x.view(np.uint32)[fine[raw]], return_counts=True)
    assert np.array_equal(bits, u) and np.array_equal(counts, c)  # every score of the fine bins
    _same(_run(plan, red, True)[:4], _run(plan, TopBinPass(np.float32, True), True))


def test_two_key_bin_passes_in_one_pass_each_flag_their_own_pairs(plan):
    """The first key-bin pass gets its flags with the codes; the second computes its own (other fine
    bins, its own extremes): both equal numpy's."""
    x = _impostor_scores(plan)
    raw = x.view(np.uint32) >> 16
    fine = np.zeros(1 << 16, bool)
    fine[np.unique(raw[:: max(1, x.size // 25)])] = True
    other = np.zeros(1 << 16, bool)
    other[raw[x == 0.5][0] : raw[x == 0.75][0] + 1] = True  # one run of bins
    red = MultiPass([FineBinsPass(True, fine), TopBinPass(np.float32, True), FineBinsPass(True, other)])
    _same(_run(plan, red, True), _run(plan, red, False))


def test_kept_bins_and_radix_digits(plan):
    x = _impostor_scores(plan)
    raw = x.view(np.uint32) >> 16
    wanted = np.zeros(1 << 16, bool)
    wanted[np.unique(raw[:: max(1, x.size // 40)])] = True
    wanted[raw[x == 0.75][0]] = wanted[raw[np.isinf(x)][0]] = True
    red = KeepBinsPass(np.float32, True, wanted)
    _same(np.sort(_run(plan, red, True)), np.sort(_run(plan, red, False)))

    keys = float_keys(x).astype(np.uint64)
    for known, d in ((16, 8), (24, 8)):
        pick = keys[:: max(1, x.size // 30)]
        pick = np.concatenate([pick, keys[np.isinf(x)][:1], keys[x == 0.75][:1], keys[x == 1.0][:1]])
        slots = np.unique(pick >> np.uint64(32 - known))
        red = DigitPass(np.float32, True, slots, known, d, 1 << 18)
        _same(_run(plan, red, True), _run(plan, red, False))


@pytest.mark.parametrize("lo, hi", [(0.75, 0.5 + 127 / 256), (0.5, 0.75), (0.2, 1.0), (-1e30, 0.5)])
def test_eer_bracket(plan, lo, hi):
    red = BracketPass(lo, hi, True)
    _same(_run(plan, red, True), _run(plan, red, False))


def test_subject_edge_counts(plan):
    x = _impostor_scores(plan)
    fin = np.sort(x[np.isfinite(x)])
    edges = np.unique(np.concatenate([fin[:: max(1, fin.size // 300)], [0.5, 0.75, 1.0]])).astype(np.float64)
    subjects = np.unique(np.concatenate([plan.row_subject, plan.col_subject]))
    for e in (edges, edges[-3:], edges[:0]):
        red = SubjectEdgePass(subjects, e, True, 1 << 18)
        _same(_run(plan, red, True, True), _run(plan, red, False, True))


@pytest.mark.parametrize(
    "edges",
    [
        np.linspace(0.0, 1.0, 51),
        np.array([0.3, 0.5, 0.75, 0.75, 0.9]),
        np.array([0.6, 1.0]),
        np.arange(30, 131) * 2.0**-7,  # the plot histogram's: multiples of a power of two, past 1
    ],
)
def test_plot_histogram(plan, edges):
    red = HistogramPass(edges)
    _same(_run(plan, red, True), _run(plan, red, False))


def test_the_error_bound_holds_for_the_float32_product():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((400, 128))
    q = tpl.quantise(x / np.linalg.norm(x, axis=1, keepdims=True))
    approx = q.astype(np.float32) @ q.astype(np.float32).T
    exact = q @ q.T
    bound = error_bound_factor(128) * np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(q, axis=1))
    err = np.abs(approx.astype(np.float64) - exact)
    assert (err <= bound).all()
    assert err.max() > bound.max() / 2**12  # the products are inexact: the bound is doing work


def test_passes_run_together_on_each_tile(plan):
    x = _impostor_scores(plan)
    fin = np.sort(x[np.isfinite(x)])
    edges = np.unique(fin[:: max(1, fin.size // 200)]).astype(np.float64)
    subjects = np.unique(np.concatenate([plan.row_subject, plan.col_subject]))
    red = MultiPass(
        [
            BracketPass(0.5, 0.75, True),
            SubjectEdgePass(subjects, edges, True, 1 << 18),
            HistogramPass(np.linspace(0.0, 1.0, 101)),
        ]
    )
    together = _run(plan, red, True, True)
    _same(together, _run(plan, red, False, True))
    _same(together, [_run(plan, r, True, True) for r in red.reductions])
