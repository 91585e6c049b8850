"""The passes of the exact metrics over one block of vector similarities, compiled, without score arrays.

A block of ``cosine-q24`` similarities (:func:`implementation.template.similarity_matrix`) is exact:
an integer dot product of quantised embeddings, computed in float64, rounded once to float32. Here
a block is computed in strips of rows that stay in cache, each as a **float32** matrix product
(twice the float64 rate) that is only an approximation, with a rigorous bound on its error; one
compiled loop per pass then takes every comparison of the strip once. Every decision a pass makes
about a similarity (its key bin, whether it is kept, which bracket or edge interval it falls in) is
a non-decreasing step function of the similarity, and the similarity is a non-decreasing function
of the dot product, so when both ends of the interval ``approximation +- bound`` give the same
decision, that decision is the one the exact similarity gives. Only the comparisons whose interval
straddles a step (a few per thousand), and those whose exact value a pass keeps, get their exact
dot product (float64, exact in any order). The result of each pass is the packed partial its
numpy ``add`` gives on the same scores, bit for bit.

The bound: with ``u = 2**-24``, inputs rounded to float32 (relative error ``u`` each) and any
float32 evaluation order of the ``d`` products and their sum (what every BLAS ``sgemm`` does),
``|computed - exact| <= ((2u + u**2) + gamma_d (1 + u)**2) * sum_k |qa_k qb_k|``, ``gamma_d = d u /
(1 - d u)``, and ``sum_k |qa_k qb_k| <= |qa| |qb|`` (Cauchy-Schwarz); we use 1.01 times that.
"""

from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from implementation import template as tpl
from validation.intervals import SubjectEdgePass
from validation.streaming import (
    BracketPass,
    DigitPass,
    HistogramPass,
    KeepBinsPass,
    MultiPass,
    TopBinPass,
    _Counts,
    float_keys,
    keys_to_float,
)

TILE_ROWS, TILE_COLS = 256, 512
"""A block is taken in tiles of 256 x 512 pairs: the tile's float32 products (512 KiB) and the
columns' embeddings (256 KiB) stay in the core's L2 cache while a pass's loop reads them."""

_SCALE = 2.0 ** (-2 * tpl.QUANTUM_BITS)
_SLACK = 2.0**-50
"""Covers the float64 roundings of ``(dot * 2**-48 + 1) * 0.5`` (each below 2**-53 near 1)."""
_NEG_INF32 = np.float32(-np.inf)


def error_bound_factor(dim: int) -> float:
    """``c`` such that ``|sgemm - exact dot| <= c |qa| |qb|`` for quantised rows of ``dim`` values."""
    u = 2.0**-24
    gamma = dim * u / (1 - dim * u)
    return 1.01 * ((2 * u + u * u) + gamma * (1 + u) ** 2)


def supports(vector_form, reduction) -> bool:
    """Whether this module computes ``reduction`` on blocks of ``vector_form``'s similarity."""
    if isinstance(reduction, MultiPass):
        return bool(reduction.reductions) and all(supports(vector_form, r) for r in reduction.reductions)
    return (
        isinstance(vector_form, tpl.VectorForm)
        and vector_form.similarity == tpl.SIMILARITY
        and type(reduction) in _KERNELS
        and bool(getattr(reduction, "higher_is_better", True))
        and np.dtype(getattr(reduction, "dtype", np.float32)) == np.float32
    )


# --- scalar helpers (inlined) ----------------------------------------------------------------------


@intrinsic
def _float32_bits(typingctx, x):
    """The bits of a float32 as a uint32 (an LLVM bitcast)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return types.uint32(types.float32), codegen


@njit(inline="always", cache=True)
def _bits(s):
    """Raw bits of a float32 as an int64."""
    return np.int64(_float32_bits(s))


@njit(inline="always", cache=True)
def _key(s):
    """Order-preserving uint32 key of a float32 (:func:`validation.streaming.float_keys`), as int64."""
    b = _bits(s)
    if b & 0x80000000:
        return (~b) & 0xFFFFFFFF
    return b | 0x80000000


@njit(inline="always", cache=True)
def _sim32(dot):
    """:func:`implementation.template.similarity_matrix` of one exact dot product."""
    s = dot * _SCALE
    s = s + 1.0
    s = s * 0.5
    if s < 0.0:
        s = 0.0
    if s > 1.0:
        s = 1.0
    return np.float32(s)


@njit(cache=True, fastmath={"reassoc", "contract"})
def _exact_dot(qa, i, qb, j):
    """The dot product of row ``i`` of ``qa`` and row ``j`` of ``qb``: an integer below 2**53 whose
    every partial sum is one too, so it is exact in float64 in any order (reassociation and fused
    multiply-adds allowed: vector instructions)."""
    acc = 0.0
    for k in range(qa.shape[1]):
        acc += np.float64(qa[i, k]) * np.float64(qb[j, k])
    return acc


@njit(inline="always", cache=True)
def _exact(qa, i, qb, j):
    """The exact similarity of row ``i`` of ``qa`` and row ``j`` of ``qb``."""
    return _sim32(_exact_dot(qa, i, qb, j))


@njit(inline="always", cache=True)
def _bounds(a, e):
    """float32 lower and upper bounds of the similarity whose dot product lies in ``a +- e``: the
    steps of :func:`_sim32` on both ends, widened by the float64 roundings (``a`` is not NaN)."""
    x = (a * _SCALE + 1.0) * 0.5
    d = e * (0.5 * _SCALE) + _SLACK
    return np.float32(min(max(x - d, 0.0), 1.0)), np.float32(min(max(x + d, 0.0), 1.0))


@njit(inline="always", cache=True)
def _count_below(edges, x):
    """Number of ``edges`` strictly below ``x`` (``searchsorted(edges, x, 'left')``)."""
    lo, hi = 0, edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] < x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always", cache=True)
def _count_at_or_below(edges, x):
    """``searchsorted(edges, x, 'right')``."""
    lo, hi = 0, edges.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if edges[mid] <= x:
            lo = mid + 1
        else:
            hi = mid
    return lo


@njit(inline="always", cache=True)
def _first_col(all_vs_all, gi, gj0):
    """First column of the strip's row ``gi`` that the block owns (``i < j`` in all-vs-all)."""
    if all_vs_all:
        first = gi + 1 - gj0
        return first if first > 0 else 0
    return 0


# --- one kernel per pass -----------------------------------------------------------------------------
# Common arguments: approx (rows, cols) float32 products of the strip, NaN where the pair is not an
# impostor comparison of two made templates (genuine, or failed: those are counted apart); qa, qb the
# quantised rows of the strip and the block's columns (float64); ca = c |qa| per row, nb = |qb| per
# column (the bound on the product's error is ca[i] nb[j]); gi0, gj0 the global index of the first row
# and column; all_vs_all (the block owns the pairs i < j).


_GRID = 1 << 18
"""Cells of [0, 1] for finding a similarity among sorted edges: a few edges per cell at most."""


def _edge_grid(red, edges: np.ndarray) -> np.ndarray:
    """``grid[g]``: edges ``e`` with ``floor(e * _GRID) < g``, all strictly below any ``x`` with
    ``floor(x * _GRID) = g`` (both products rounded alike, so the order holds). Kept on the pass
    object: a worker holds one copy of it for every block of the pass."""
    grid = getattr(red, "_edge_grid", None)
    if grid is None:
        cell = np.floor(np.clip(edges * _GRID, -1.0, _GRID + 1.0)).astype(np.int64)
        grid = np.searchsorted(cell, np.arange(_GRID + 1), side="left").astype(np.int64)
        red._edge_grid = grid
    return grid


@njit(inline="always", cache=True)
def _n_below(edges, grid, x):
    """``searchsorted(edges, x, 'left')`` for ``0 <= x <= 1``: edges strictly below ``x``."""
    k = grid[int(x * _GRID)]
    while k < edges.shape[0] and edges[k] < x:
        k += 1
    return k


@njit(inline="always", cache=True)
def _n_at_or_below(edges, grid, x):
    """``searchsorted(edges, x, 'right')`` for ``0 <= x <= 1``."""
    k = grid[int(x * _GRID)]
    while k < edges.shape[0] and edges[k] <= x:
        k += 1
    return k


@njit(cache=True)
def _top_bins(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, bin_lo, bin_hi, e_max, hist, state):
    """hist[j % 4, raw top 16 bits] += 1 for every comparison (four copies: consecutive increments of
    one counter would wait on each other); state: [lowest, highest similarity, lowest and highest
    product seen (dot units)]. ``bin_lo[m]``, ``bin_hi[m]``: float64 values in that interval round into
    raw bin ``m`` for sure."""
    fmin, fmax = np.float32(state[0]), np.float32(state[1])
    amin, amax = state[2], state[3]
    new_min, new_max = amin + 2 * e_max, amax - 2 * e_max
    for i in range(approx.shape[0]):
        cai = ca[i] * (0.5 * _SCALE)
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a != a:
                continue
            if a >= new_max or a <= new_min:  # may be a new extreme: exact
                s = _exact(qa, i, qb, j)
                hist[j & 3, _bits(s) >> 16] += 1
                fmin, fmax = min(fmin, s), max(fmax, s)
                amin, amax = min(amin, a), max(amax, a)
                new_min, new_max = amin + 2 * e_max, amax - 2 * e_max
                continue
            x = (a * _SCALE + 1.0) * 0.5
            d = cai * nb[j] + _SLACK
            m = _bits(np.float32(x)) >> 16
            if x - d < bin_lo[m] or x + d > bin_hi[m]:
                m = _bits(_exact(qa, i, qb, j)) >> 16
            hist[j & 3, m] += 1
    state[0], state[1], state[2], state[3] = fmin, fmax, amin, amax


@njit(cache=True)
def _keep_bins(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, below, wanted, out):
    """Similarities whose raw top 16 bits are ``wanted``, appended to ``out``; returns how many.
    ``below``: a product under it is certainly in no wanted bin."""
    n = 0
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a < below or a != a:
                continue
            lo, hi = _bounds(a, ca[i] * nb[j])
            b_lo = _bits(lo) >> 16
            if b_lo == (_bits(hi) >> 16) and not wanted[b_lo]:
                continue
            s = _exact(qa, i, qb, j)
            if wanted[_bits(s) >> 16]:
                out[n] = s
                n += 1
    return n


@njit(cache=True)
def _digits(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, below, top16, slots, known, d, counts):
    """Counts of the next ``d`` key bits after the ``known``-bit key prefixes ``slots`` (sorted);
    ``top16[k]``: some slot starts with the 16 key bits ``k``; ``below`` as in :func:`_keep_bins`."""
    shift = 32 - known - d
    dmask = (1 << d) - 1
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a < below or a != a:
                continue
            lo, hi = _bounds(a, ca[i] * nb[j])
            t_lo = _key(lo) >> 16
            if t_lo == (_key(hi) >> 16) and not top16[t_lo]:
                continue
            key = _key(_exact(qa, i, qb, j))
            if not top16[key >> 16]:
                continue
            p = key >> (32 - known)
            pos = _count_below(slots, p)
            if pos < slots.shape[0] and slots[pos] == p:
                counts[(pos << d) | ((key >> shift) & dmask)] += 1


@njit(cache=True)
def _bracket(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, below, lo_t, hi_t, out, state):
    """Similarities in ``[lo_t, hi_t)`` appended to ``out`` (float64; returns how many); state[0]: the
    lowest similarity ``>= hi_t``; ``below`` as in :func:`_keep_bins`."""
    n = 0
    best = state[0]
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a < below or a != a:
                continue
            lo, hi = _bounds(a, ca[i] * nb[j])
            if np.float64(hi) < lo_t:
                continue  # below the bracket
            if np.float64(lo) >= hi_t and np.float64(lo) > best:
                continue  # above the bracket, and above a similarity already found there
            sf = np.float64(_exact(qa, i, qb, j))
            if sf >= lo_t and sf < hi_t:
                out[n] = sf
                n += 1
            elif sf >= hi_t and sf < best:
                best = sf
    state[0] = best
    return n


@njit(cache=True)
def _subject_edges(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, below, row_slot, edges, grid, counts):
    """counts[row_slot[i], k] += comparisons of row i with ``k`` edges strictly below the similarity;
    ``below``: a product under it has none; ``grid``: :func:`_edge_grid`."""
    e0 = edges[0]
    for i in range(approx.shape[0]):
        row = row_slot[i]
        n_below = 0
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a < below:
                n_below += 1
                continue
            if a != a:
                continue
            lo, hi = _bounds(a, ca[i] * nb[j])
            lo64, hi64 = np.float64(lo), np.float64(hi)
            if hi64 <= e0:
                n_below += 1
                continue
            k = _n_below(edges, grid, lo64)
            if k < edges.shape[0] and edges[k] < hi64:
                k = _n_below(edges, grid, np.float64(_exact(qa, i, qb, j)))
            counts[row, k] += 1
        counts[row, 0] += n_below


@njit(cache=True)
def _histogram(approx, qa, qb, ca, nb, gi0, gj0, all_vs_all, edges, grid, counts):
    """``np.histogram(similarities, edges)`` added to counts[j % 4] (see :func:`_top_bins`);
    ``grid``: :func:`_edge_grid`."""
    nbins = edges.shape[0] - 1
    e_first, e_last = edges[0], edges[nbins]
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            a = np.float64(approx[i, j])
            if a != a:
                continue
            lo, hi = _bounds(a, ca[i] * nb[j])
            lo64, hi64 = np.float64(lo), np.float64(hi)
            if hi64 < e_first or lo64 > e_last:
                continue
            k = _n_at_or_below(edges, grid, lo64)
            if lo64 < e_first or hi64 > e_last or (k <= nbins and edges[k] <= hi64):
                sf = np.float64(_exact(qa, i, qb, j))
                if sf < e_first or sf > e_last:
                    continue
                k = _n_at_or_below(edges, grid, sf)
            k -= 1
            if k >= nbins:
                k = nbins - 1
            counts[j & 3, k] += 1


# --- per pass: set up, run over the strips, pack like the numpy pass ------------------------------


class _Strips:
    """The strips of one block: float32 products (NaN where no impostor comparison of two made
    templates is) and what the kernels read alongside; the failed comparisons, counted per row."""

    def __init__(self, qa, a_ok, qb, b_ok, rsub, csub, r0, c0, all_vs_all):
        qa, qb = np.ascontiguousarray(qa), np.ascontiguousarray(qb)
        self.a32 = qa.astype(np.float32)
        self.b32t = np.ascontiguousarray(self.a32.T if qb is qa else qb.astype(np.float32).T)
        # the exact products read float32 copies when they hold the integers exactly (|q| <= 2**24:
        # unit vectors), half the memory of float64
        small = max(np.abs(qa).max(initial=0.0), np.abs(qb).max(initial=0.0)) <= 2.0**24
        self.qa = self.a32 if small else qa
        self.qb = np.ascontiguousarray(self.b32t.T) if small else qb
        c = error_bound_factor(self.qa.shape[1])
        self.ca = np.sqrt(np.einsum("ij,ij->i", qa, qa)) * c * (1 + 1e-9)
        self.nb = np.sqrt(np.einsum("ij,ij->i", qb, qb)) * (1 + 1e-9)
        self.r0, self.c0, self.all_vs_all = r0, c0, all_vs_all
        self.rsub, self.csub = rsub, csub = np.asarray(rsub, np.int64), np.asarray(csub, np.int64)
        nr, nc = len(rsub), len(csub)
        # genuine pairs of the block (rows and columns of one subject), in row order
        order = np.argsort(csub, kind="stable")
        lo = np.searchsorted(csub[order], rsub, side="left")
        n_same = np.searchsorted(csub[order], rsub, side="right") - lo
        self.g_rows = np.repeat(np.arange(nr), n_same)
        first = np.cumsum(n_same) - n_same
        self.g_cols = order[np.repeat(lo - first, n_same) + np.arange(self.g_rows.size)]
        a_ok, b_ok = np.asarray(a_ok, bool), np.asarray(b_ok, bool)
        self.bad_rows, self.bad_cols = np.flatnonzero(~a_ok), np.flatnonzero(~b_ok)
        # failed comparisons per row: owned impostor pairs with a template not made
        self.row_failed = np.zeros(nr, np.int64)
        if self.bad_rows.size or self.bad_cols.size:

            def failed(rows, cols):
                m = rsub[rows][:, None] != csub[cols][None, :]
                if all_vs_all:
                    m &= (r0 + rows)[:, None] < (c0 + cols)[None, :]
                return m.sum(axis=1)

            good = np.flatnonzero(a_ok)
            self.row_failed[good] = failed(good, self.bad_cols)
            self.row_failed[self.bad_rows] = failed(self.bad_rows, np.arange(nc))
        self.n_failed = int(self.row_failed.sum())
        self.e_max = float(self.ca.max(initial=0.0) * self.nb.max(initial=0.0))
        owned = np.maximum(0, c0 + nc - np.maximum(c0, r0 + np.arange(nr) + 1)) if all_vs_all else np.full(nr, nc)
        self.row_impostors = owned - np.bincount(
            self.g_rows[self.g_cols + c0 > self.g_rows + r0] if all_vs_all else self.g_rows, minlength=nr
        )

    def __iter__(self):
        """``(s0, s1, args)`` for each tile of rows ``s0:s1``: the kernels' common arguments (the
        products in a buffer reused from tile to tile)."""
        n, nc = self.qa.shape[0], self.qb.shape[0]
        buffers = {}
        for s0 in range(0, n, TILE_ROWS):
            s1 = min(n, s0 + TILE_ROWS)
            g0, g1 = np.searchsorted(self.g_rows, [s0, s1])
            g_rows, g_cols = self.g_rows[g0:g1] - s0, self.g_cols[g0:g1]
            rows = self.bad_rows[(self.bad_rows >= s0) & (self.bad_rows < s1)] - s0
            for t0 in range(0, nc, TILE_COLS):
                t1 = min(nc, t0 + TILE_COLS)
                if self.all_vs_all and self.r0 + s0 + 1 >= self.c0 + t1:
                    continue  # no pair i < j in this tile
                shape = (s1 - s0, t1 - t0)
                if shape not in buffers:
                    buffers[shape] = np.empty(shape, np.float32)
                approx = np.matmul(self.a32[s0:s1], self.b32t[:, t0:t1], out=buffers[shape])
                here = (g_cols >= t0) & (g_cols < t1)
                approx[g_rows[here], g_cols[here] - t0] = np.nan
                cols = self.bad_cols[(self.bad_cols >= t0) & (self.bad_cols < t1)] - t0
                if cols.size:
                    approx[:, cols] = np.nan
                if rows.size:
                    approx[rows] = np.nan
                args = (
                    approx,
                    self.qa[s0:s1],
                    self.qb[t0:t1],
                    self.ca[s0:s1],
                    self.nb[t0:t1],
                    self.r0 + s0,
                    self.c0 + t0,
                    self.all_vs_all,
                )
                yield s0, s1, args


_INF_RAW_BIN = int(np.array(-np.inf, np.float32).view(np.uint32)) >> 16
_INF_KEY = int(float_keys(np.array([-np.inf], np.float32))[0])
_UNIT_BINS = (int(np.array(1.0, np.float32).view(np.uint32)) >> 16) + 1
"""Raw top-16 bins of the similarities 0 ... 1 (non-negative float32: raw bits in value order)."""


def _bin_floor() -> np.ndarray:
    """float64 of the lowest float32 of each raw bin ``m < _UNIT_BINS`` (``+inf`` for the others)."""
    out = np.full(1 << 16, np.inf)
    m = np.arange(_UNIT_BINS, dtype=np.uint32)
    out[:_UNIT_BINS] = (m << np.uint32(16)).view(np.float32)
    return out


def _certain_bins() -> tuple[np.ndarray, np.ndarray]:
    """For each raw bin ``m``: float64 values ``x`` in ``[lo[m], hi[m]]`` round (and clip) to a float32
    of bin ``m`` (the float32 just above its lowest value, and just below the next bin's)."""
    lo = np.full(1 << 16, np.inf)
    hi = np.full(1 << 16, -np.inf)
    m = np.arange(_UNIT_BINS, dtype=np.uint32)
    lo[:_UNIT_BINS] = ((m << np.uint32(16)) + np.uint32(1)).view(np.float32)
    hi[:_UNIT_BINS] = ((m << np.uint32(16)) + np.uint32(0xFFFF)).view(np.float32)
    return lo, hi


def _below(strips: "_Strips", t: float) -> float:
    """A product under which the similarity is certainly below ``t`` (a float32 value in [0, 1])."""
    if not t > 0:
        return -np.inf
    return (2.0 * t - 1.0) / _SCALE - strips.e_max - 2.0**20


class _Runner:
    """One pass over the tiles of a block: ``tile`` for each tile, then ``result``, the packed partial."""

    def __init__(self, red, strips: _Strips) -> None:
        self.red, self.strips = red, strips

    def tile(self, s0: int, s1: int, args) -> None:
        raise NotImplementedError

    def result(self):
        raise NotImplementedError


class _TopBins(_Runner):
    def __init__(self, red: TopBinPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.hists = np.zeros((4, 1 << 16), np.int64)
        self.state = np.array([math.inf, -math.inf, math.inf, -math.inf])
        self.bin_lo, self.bin_hi = _certain_bins()

    def tile(self, s0, s1, args):
        _top_bins(*args, self.bin_lo, self.bin_hi, self.strips.e_max, self.hists, self.state)

    def result(self):
        hist = self.hists.sum(axis=0)
        n_failed = self.strips.n_failed
        hist[_INF_RAW_BIN] += n_failed
        return [hist, n_failed, float(self.state[0]), float(self.state[1])]


class _KeepBins(_Runner):
    def __init__(self, red: KeepBinsPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.wanted = wanted = np.ascontiguousarray(red.wanted, dtype=np.bool_)
        self.parts = []
        if strips.n_failed and wanted[_INF_RAW_BIN]:
            self.parts.append(np.full(strips.n_failed, -np.inf, np.float32))
        unit = np.flatnonzero(wanted[:_UNIT_BINS])
        self.active = bool(unit.size or wanted[_UNIT_BINS:].any())
        only_unit = unit.size and not wanted[_UNIT_BINS:].any()
        self.below = _below(strips, _bin_floor()[unit[0]]) if only_unit else -np.inf
        self.out = np.empty(TILE_ROWS * TILE_COLS, np.float32)

    def tile(self, s0, s1, args):
        if self.active:
            n = _keep_bins(*args, self.below, self.wanted, self.out)
            if n:
                self.parts.append(self.out[:n].copy())

    def result(self):
        return [np.concatenate(self.parts)] if self.parts else []


class _Digits(_Runner):
    def __init__(self, red: DigitPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.slots = slots = np.ascontiguousarray(red.slots, dtype=np.int64)
        self.top16 = np.zeros(1 << 16, np.bool_)
        self.top16[slots >> (red.known - 16)] = True
        self.counts = np.zeros(slots.size << red.d, np.int64)
        lowest_key = int(slots[0]) << (32 - red.known) if slots.size else 0
        self.below = -np.inf
        if lowest_key >= 0x80000000:  # every slot holds non-negative similarities
            self.below = _below(strips, float(keys_to_float(np.array([lowest_key], np.uint32), np.float32)[0]))

    def tile(self, s0, s1, args):
        red = self.red
        _digits(*args, self.below, self.top16, self.slots, red.known, red.d, self.counts)

    def result(self):
        red, slots, counts = self.red, self.slots, self.counts
        p = _INF_KEY >> (32 - red.known)
        pos = int(np.searchsorted(slots, p))
        if self.strips.n_failed and pos < slots.size and slots[pos] == p:
            digit = (_INF_KEY >> (32 - red.known - red.d)) & ((1 << red.d) - 1)
            counts[(pos << red.d) | digit] += self.strips.n_failed
        acc = _Counts(counts.size, red.chunk_size)
        acc.counts = counts
        return acc.pack()


class _Bracket(_Runner):
    def __init__(self, red: BracketPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.lo_t, self.hi_t = float(red.lo), float(red.hi)
        self.state = np.array([math.inf])
        self.values = []
        if strips.n_failed and self.lo_t <= -math.inf < self.hi_t:
            self.values.append(np.full(strips.n_failed, -np.inf))
        self.below = _below(strips, min(self.lo_t, 1.0))
        self.out = np.empty(TILE_ROWS * TILE_COLS, np.float64)

    def tile(self, s0, s1, args):
        n = _bracket(*args, self.below, self.lo_t, self.hi_t, self.out, self.state)
        if n:
            self.values.append(self.out[:n].copy())

    def result(self):
        acc = self.red.start()
        if self.values:
            u, c = np.unique(np.concatenate(self.values), return_counts=True)
            acc["values"], acc["counts"], acc["held"] = [u], [c], u.size
        acc["next_above"] = float(self.state[0])
        if self.strips.n_failed and -math.inf >= self.hi_t:
            acc["next_above"] = -math.inf
        return self.red.pack(acc)


class _SubjectEdges(_Runner):
    def __init__(self, red: SubjectEdgePass, strips: _Strips) -> None:
        super().__init__(red, strips)
        sid = np.searchsorted(red.subjects, strips.rsub)
        self.local, self.row_slot = np.unique(sid, return_inverse=True)
        self.edges = np.ascontiguousarray(red.edges, dtype=np.float64)
        self.counts = np.zeros((self.local.size, red.width), np.int64)
        if self.edges.size:
            self.grid = _edge_grid(red, self.edges)
            self.below = _below(strips, min(float(self.edges[0]), 1.0))

    def tile(self, s0, s1, args):
        if self.edges.size:
            slots = np.ascontiguousarray(self.row_slot[s0:s1], np.int64)
            _subject_edges(*args, self.below, slots, self.edges, self.grid, self.counts)

    def result(self):
        strips, counts, row_slot = self.strips, self.counts, self.row_slot
        if not self.edges.size:  # no edge: every comparison counts in column 0
            np.add.at(counts[:, 0], row_slot, strips.row_impostors - strips.row_failed)
        if strips.n_failed:
            column = int(np.searchsorted(self.edges, -math.inf, side="left"))
            np.add.at(counts[:, column], row_slot, strips.row_failed)
        r, k = np.nonzero(counts)
        return self.local[r].astype(np.int64) * self.red.width + k, counts[r, k]


class _Histogram(_Runner):
    def __init__(self, red: HistogramPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.edges = np.ascontiguousarray(red.edges, dtype=np.float64)
        self.counts = np.zeros((4, self.edges.size - 1), np.int64)
        self.grid = _edge_grid(red, self.edges)

    def tile(self, s0, s1, args):
        _histogram(*args, self.edges, self.grid, self.counts)

    def result(self):
        return [self.counts.sum(axis=0), self.strips.n_failed]


_KERNELS = {
    TopBinPass: _TopBins,
    KeepBinsPass: _KeepBins,
    DigitPass: _Digits,
    BracketPass: _Bracket,
    SubjectEdgePass: _SubjectEdges,
    HistogramPass: _Histogram,
}


def run_block(reduction, qa, a_ok, qb, b_ok, rsub, csub, r0: int, c0: int, all_vs_all: bool):
    """The packed partial of ``reduction`` over the impostor comparisons of one block.

    Parameters
    ----------
    reduction : a pass for which :func:`supports` is true (a :class:`validation.streaming.MultiPass`
        runs each of its passes on each tile while the tile's products are in cache)
    qa, qb : numpy.ndarray of float64, shape (rows, dim), (cols, dim)
        Quantised embeddings (:func:`implementation.template.quantise`) of the block's rows and columns.
    a_ok, b_ok : numpy.ndarray of bool
        Templates that were made (a comparison with any other one fails).
    rsub, csub : numpy.ndarray of int64
        Subject of each row and column; pairs of one subject are genuine and skipped.
    r0, c0 : int
        Global index of the first row and column (all-vs-all owns the pairs ``i < j``).
    """
    strips = _Strips(qa, a_ok, qb, b_ok, rsub, csub, r0, c0, all_vs_all)
    parts = reduction.reductions if isinstance(reduction, MultiPass) else [reduction]
    runners = [_KERNELS[type(r)](r, strips) for r in parts]
    for s0, s1, args in strips:
        for runner in runners:
            runner.tile(s0, s1, args)
    results = [runner.result() for runner in runners]
    return results if isinstance(reduction, MultiPass) else results[0]


def warm_up() -> None:
    """Compile (or load from numba's cache) every pass's loop, on a block of two templates."""
    q = tpl.quantise(np.eye(2, 4))
    ok = np.ones(2, bool)
    sub = np.arange(2, dtype=np.int64)
    edges = np.array([0.25, 0.5])
    for red in (
        TopBinPass(np.float32, True),
        KeepBinsPass(np.float32, True, np.ones(1 << 16, bool)),
        DigitPass(np.float32, True, np.array([0xBF00], np.uint64), 16, 4, 1 << 10),
        BracketPass(0.0, 1.0, True),
        SubjectEdgePass(sub, edges, True, 1 << 10),
        HistogramPass(edges),
    ):
        run_block(red, q, ok, q, ok, sub, sub, 0, 0, False)
