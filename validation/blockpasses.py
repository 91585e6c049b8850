"""The passes of the exact metrics over one block of vector similarities, compiled, without score arrays.

A block of ``cosine-q24`` similarities (:func:`implementation.template.similarity_matrix`) is exact:
an integer dot product of quantised embeddings, computed in float64, rounded once to float32. Here
a block is taken in tiles of 256 x 512 pairs that stay in the core's cache, each a **float32**
matrix product (twice the float64 rate) that is only an approximation, with a rigorous bound on its
error. Every decision a pass makes about a similarity (its key bin, whether it is kept, which
bracket or edge interval it falls in) is a non-decreasing step function of the similarity, and the
similarity is a non-decreasing function of the dot product, so when both ends of the interval
``approximation +- bound`` give the same decision, that decision is the exact similarity's.

A loop without branches (vector instructions) gives every pair of a tile a *code*: its key bin
(the top 16 bits of the float32) when both ends of its interval fall in the same bin, else -1.
Each pass then reads, through a table over the 65,536 codes, what it does with every similarity of
a bin (count it in bin ``c``, skip it, count it below ``k`` bootstrap edges, ...); only the pairs
the table cannot decide (their bin holds a step of the pass, or the code is -1), and those whose
exact value the pass keeps, take the interval's ends or the exact dot product (in int64 on integer
copies of the embeddings: exact, and so is its float64). The first pass (key bins, and the exact
values of the fine bins) gets its codes with flags on the pairs its codes do not settle, and visits
only those one by one. The result of each pass is the packed partial its numpy ``add`` gives on
the same scores, bit for bit (``tests/validation/test_blockpasses.py``).

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
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic

from implementation import template as tpl
from validation.intervals import SubjectEdgePass
from validation.selection import (
    DigitPass,
    FineBinsPass,
    KeepBinsPass,
    MultiPass,
    TopBinPass,
    float_keys,
    run_starts,
)
from validation.streaming import BracketPass, HistogramPass, histogram_bin_of_ranges

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
    """Order-preserving uint32 key of a float32 (:func:`validation.selection.float_keys`), as int64."""
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


@njit(cache=True)
def _exact_dot(qa, i, qb, j):
    """The dot product of row ``i`` of ``qa`` and row ``j`` of ``qb`` (integers): below 2**53 in
    magnitude, as is every partial sum, so the int64 sum (vector instructions) is exact, and so is
    its float64."""
    acc = np.int64(0)
    for k in range(qa.shape[1]):
        acc += np.int64(qa[i, k]) * np.int64(qb[j, k])
    return np.float64(acc)


@njit(inline="always", cache=True)
def _exact(qa, i, qb, j):
    """The exact similarity of row ``i`` of ``qa`` and row ``j`` of ``qb``."""
    return _sim32(_exact_dot(qa, i, qb, j))


@njit(inline="always", cache=True)
def _bounds(approx, ca, nb, i, j):
    """float64 of float32 lower and upper bounds of the similarity of pair (i, j) from its product
    (``ca``, ``nb`` as in :func:`_codes`; clipped to [0, 1] like the similarity)."""
    x = (np.float64(approx[i, j]) * _SCALE + 1.0) * 0.5
    d = ca[i] * nb[j] + _SLACK
    lo = np.float64(np.float32(x - d))
    hi = np.float64(np.float32(x + d))
    if lo > 1.0:
        lo = 1.0
    if hi < 0.0:
        hi = 0.0
    return lo, hi


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


_HALF_SCALE32 = np.float32(0.5 * _SCALE)
_HALF32 = np.float32(0.5)
_SLACK32 = np.float32(2.0**-21)
"""Covers the float32 roundings of ``approx * 2**-49 + 0.5`` (at most ``2**-24`` near 1) and of the
interval's two ends (half an ulp each); relative to ``|y|`` (:data:`_REL32`) when ``|y| > 1``."""
_REL32 = np.float32(2.0**-22)
_MARGIN32 = 1 + 2.0**-20
"""The float32 bound ``ca[i] nb[j]`` (four roundings of ``2**-24`` each) is widened by this factor."""


@njit(inline="always", cache=True)
def _code_row(approx, cai, nb, codes):
    """One row of :func:`_codes`."""
    for j in range(approx.shape[0]):
        y = approx[j] * _HALF_SCALE32 + _HALF32
        d = cai * nb[j] + _SLACK32 + abs(y) * _REL32
        lo = np.int32(_float32_bits(y - d) >> np.uint32(16))
        hi = np.int32(_float32_bits(y + d) >> np.uint32(16))
        codes[j] = lo if lo == hi else np.int32(-1)


@njit(cache=True)
def _codes(approx, ca, nb, codes):
    """codes[i, j]: the raw top-16 bits (key bin) of the exact similarity when both ends of its
    interval fall in one bin, else -1 (NaN products give a NaN bit pattern). A loop without
    branches in float32 (eight pairs per vector instruction): ``ca`` and ``nb`` are float32 and
    already widened by :data:`_MARGIN32`, and the constant and relative slack cover the roundings,
    so the interval still holds the exact similarity; a float32 ``lo <= exact`` rounds to a key
    ``<=`` the exact similarity's float32 (rounding keeps the order)."""
    for i in range(approx.shape[0]):
        _code_row(approx[i], ca[i], nb, codes[i])


@njit(inline="always", cache=True)
def _flag_row(row, flags, first, span, runs):
    """flags[j] = 1 where row[j] is not one of the ``span`` codes from ``first`` (-1 and NaN
    included) or is in a run of codes (rows ``(first, count)`` of ``runs``, four at a time, padded
    with empty runs). Vector instructions (int32 comparisons: eight codes at a time)."""
    lo, hi = np.int32(first), np.int32(first + span)
    for k in range(0, runs.shape[0], 4):
        a0, b0 = np.int32(runs[k, 0]), np.int32(runs[k, 0] + runs[k, 1])
        a1, b1 = np.int32(runs[k + 1, 0]), np.int32(runs[k + 1, 0] + runs[k + 1, 1])
        a2, b2 = np.int32(runs[k + 2, 0]), np.int32(runs[k + 2, 0] + runs[k + 2, 1])
        a3, b3 = np.int32(runs[k + 3, 0]), np.int32(runs[k + 3, 0] + runs[k + 3, 1])
        for j in range(row.shape[0]):
            c = row[j]
            f = ((c >= a0) & (c < b0)) | ((c >= a1) & (c < b1)) | ((c >= a2) & (c < b2)) | ((c >= a3) & (c < b3))
            if k == 0:
                flags[j] = f | (c < lo) | (c >= hi)
            else:
                flags[j] |= f


@njit(cache=True)
def _flag(codes, flags, first, span, runs):
    """:func:`_flag_row` on every row."""
    for i in range(codes.shape[0]):
        _flag_row(codes[i], flags[i], first, span, runs)


@njit(cache=True)
def _codes_flagged(approx, ca, nb, codes, flags, first, span, runs):
    """:func:`_codes` and :func:`_flag` row by row, while the row is in the first-level cache: the
    pairs :func:`_top_bins` takes one by one."""
    for i in range(approx.shape[0]):
        _code_row(approx[i], ca[i], nb, codes[i])
        _flag_row(codes[i], flags[i], first, span, runs)


@njit(cache=True)
def _row_extremes(approx, qa, qb, i, j0):
    """The lowest and highest exact similarity of row ``i``'s comparisons from column ``j0`` (NaN
    products skipped; ``inf, -inf`` when there are none)."""
    lo, hi = np.float32(np.inf), np.float32(-np.inf)
    for j in range(j0, approx.shape[1]):
        if approx[i, j] != approx[i, j]:
            continue
        s = _exact(qa, i, qb, j)
        lo, hi = min(lo, s), max(hi, s)
    return lo, hi


# Each pass below reads the codes through a table over the 65,536 codes (index ``code & 0xFFFF``, so
# -1 reads entry 0xFFFF): what the pass does with every similarity of a bin, or SLOW (take the exact
# similarity; also for a NaN product, which is skipped, and every code that is no bin of [0, 1]).
SLOW = 255


@njit(inline="always", cache=True)
def _range_of(fmin, fmax):
    """The bins strictly between those of the lowest and highest similarity so far, as the first one
    and their number (unsigned: one comparison tests a code)."""
    if fmin > fmax:
        return np.uint64(0), np.uint64(0), 1 << 20, -1
    lo_bin, hi_bin = _bits(fmin) >> 16, _bits(fmax) >> 16
    span = hi_bin - lo_bin - 1 if hi_bin - lo_bin > 1 else 0
    return np.uint64(lo_bin + 1), np.uint64(span), lo_bin, hi_bin


@njit(cache=True)
def _top_bins(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, fine, hist, state, out, words):
    """hist[raw top 16 bits] += 1 for every comparison; state: [lowest, highest similarity]; the raw
    bits of the exact similarity of every comparison in a ``fine`` bin appended to ``out`` (returns
    how many).

    ``words`` holds, one byte per pair and eight pairs per word, the flags of :func:`_codes_flagged`
    (given the bins strictly between those of the lowest and highest similarity when the tile
    began, and the fine bins as runs): the pairs that need more than their code. Row by row: one loop counts every pair's
    code, flagged or not; then the flagged pairs are taken one by one (the set bytes of each word).
    A code outside the bins strictly between those of the lowest and highest similarity so far is
    uncounted and replaced by the exact similarity's bin (or skipped: NaN, no impostor comparison);
    a fine pair's exact similarity is kept."""
    fmin, fmax = np.float32(state[0]), np.float32(state[1])
    first, span, lo_bin, hi_bin = _range_of(fmin, fmax)
    n = approx.shape[1]
    n_words = words.shape[1]
    n_out = 0
    for i in range(approx.shape[0]):
        j0 = _first_col(all_vs_all, gi0 + i, gj0)
        if j0 >= n:
            continue
        row = codes[i]
        for j in range(j0, n):
            hist[np.uint64(row[j]) & np.uint64(0xFFFF)] += 1
        for w in range(j0 >> 3, n_words):
            word = words[i, w]
            while word != 0:
                j = (w << 3) | (trailing_zeros(word) >> 3)
                word &= word - np.uint64(1)
                if j < j0:
                    continue
                c = np.int64(row[j])
                if c > lo_bin and c < hi_bin:
                    if not fine[c]:
                        continue
                    s = _exact(qa, i, qb, j)
                else:
                    hist[c & 0xFFFF] -= 1
                    if approx[i, j] != approx[i, j]:
                        continue
                    s = _exact(qa, i, qb, j)
                    c = _bits(s) >> 16
                    hist[c] += 1
                    if s < fmin or s > fmax:
                        fmin, fmax = min(fmin, s), max(fmax, s)
                        first, span, lo_bin, hi_bin = _range_of(fmin, fmax)
                    if not fine[c]:
                        continue
                out[n_out] = _bits(s)
                n_out += 1
    state[0], state[1] = fmin, fmax
    return n_out


_NO_RUNS = np.zeros((4, 2), np.int64)


def _runs(mask: np.ndarray) -> np.ndarray:
    """The runs of true entries of ``mask`` as rows ``(first, count)``."""
    m = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(m[1:] != m[:-1])
    runs = np.zeros((max(4, -(-edges.size // 8) * 4), 2), np.int64)  # a multiple of 4 rows, empty ones last
    runs[: edges.size // 2] = np.stack([edges[::2], edges[1::2] - edges[::2]], axis=1)
    return runs


@njit(cache=True)
def _keep_bins(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, table, wanted, out):
    """Similarities whose raw top 16 bits are ``wanted``, appended to ``out``; returns how many.
    table[code]: 0 not wanted, 1 wanted, SLOW."""
    n = 0
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            t = table[codes[i, j] & 0xFFFF]
            if t == 0:
                continue
            if t == SLOW:
                if approx[i, j] != approx[i, j]:
                    continue
                s = _exact(qa, i, qb, j)
                if not wanted[_bits(s) >> 16]:
                    continue
            else:
                s = _exact(qa, i, qb, j)
            out[n] = s
            n += 1
    return n


@njit(cache=True)
def _digits(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, table, first, slots, known, d, out):
    """The counter ``(slot << d) | digit`` of every comparison whose key starts with one of the
    ``known``-bit prefixes ``slots`` (sorted), ``digit`` its next ``d`` bits, appended to ``out``
    (returns how many: sorting them later beats incrementing counters scattered over megabytes).
    ``first[k]``: the first slot whose 16 top key bits are ``k``, -1 for none; table[code]: 0 in no
    slot, SLOW."""
    shift = 32 - known - d
    dmask = (1 << d) - 1
    n = 0
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            if table[codes[i, j] & 0xFFFF] == 0 or approx[i, j] != approx[i, j]:
                continue
            key = _key(_exact(qa, i, qb, j))
            pos = first[key >> 16]
            if pos < 0:
                continue
            p = key >> (32 - known)
            while pos < slots.shape[0] and slots[pos] < p:  # the slots of one 16-bit prefix
                pos += 1
            if pos < slots.shape[0] and slots[pos] == p:
                out[n] = (pos << d) | ((key >> shift) & dmask)
                n += 1
    return n


@njit(cache=True)
def _bracket(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, table, floor, lo_t, hi_t, out, state):
    """Similarities in ``[lo_t, hi_t)`` appended to ``out`` (float64; returns how many); state[0]: the
    lowest similarity ``>= hi_t``. table[code]: 0 below ``lo_t``, 1 at or above ``hi_t``, SLOW;
    floor[code]: the bin's lowest value."""
    n = 0
    best = state[0]
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            c = codes[i, j] & 0xFFFF
            t = table[c]
            if t == 0 or (t == 1 and floor[c] > best) or approx[i, j] != approx[i, j]:
                continue
            sf = np.float64(_exact(qa, i, qb, j))
            if sf >= lo_t and sf < hi_t:
                out[n] = sf
                n += 1
            elif sf >= hi_t and sf < best:
                best = sf
    state[0] = best
    return n


@njit(cache=True)
def _subject_edges(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, row_slot, table, edges, grid, counts, words):
    """counts[row_slot[i], k] += comparisons of row i with ``k`` edges strictly below the similarity;
    table[code]: that ``k`` when the whole bin has it, else -1 (and for codes of no bin): then the
    bounds of the similarity decide, or its exact value. ``words``: the flags of :func:`_flag` (eight
    pairs per word) on every pair whose code is not below the first code with a nonzero ``table``
    (-1 and NaN included); the others, no edge below them, are counted at once."""
    n = approx.shape[1]
    for i in range(approx.shape[0]):
        j0 = _first_col(all_vs_all, gi0 + i, gj0)
        if j0 >= n:
            continue
        row = row_slot[i]
        n_below = n - j0
        for w in range(j0 >> 3, words.shape[1]):
            word = words[i, w]
            while word != 0:
                j = (w << 3) | (trailing_zeros(word) >> 3)
                word &= word - np.uint64(1)
                if j < j0:
                    continue
                n_below -= 1
                k = table[codes[i, j] & 0xFFFF]
                if k == 0:
                    n_below += 1
                    continue
                if k < 0:
                    if approx[i, j] != approx[i, j]:
                        continue
                    lo, hi = _bounds(approx, ca, nb, i, j)
                    k = _n_below(edges, grid, lo)
                    if k < edges.shape[0] and edges[k] < hi:
                        k = _n_below(edges, grid, np.float64(_exact(qa, i, qb, j)))
                counts[row, k] += 1
        counts[row, 0] += n_below


@njit(cache=True)
def _histogram(approx, codes, qa, qb, ca, nb, gi0, gj0, all_vs_all, table, edges, grid, counts):
    """``np.histogram(similarities, edges)`` added to counts[j % 4] (four copies: consecutive
    increments of one counter would wait on each other);
    table[code]: the histogram bin of the whole key bin, -2 outside the edges, -1 mixed (or no bin):
    then the bounds of the similarity decide, or its exact value."""
    nbins = edges.shape[0] - 1
    e_first, e_last = edges[0], edges[nbins]
    for i in range(approx.shape[0]):
        for j in range(_first_col(all_vs_all, gi0 + i, gj0), approx.shape[1]):
            k = table[codes[i, j] & 0xFFFF]
            if k == -2:
                continue
            if k == -1:
                if approx[i, j] != approx[i, j]:
                    continue
                lo, hi = _bounds(approx, ca, nb, i, j)
                if hi < e_first or lo > e_last:
                    continue
                k = _n_at_or_below(edges, grid, lo)
                if lo < e_first or hi > e_last or (k <= nbins and edges[k] <= hi):
                    sf = np.float64(_exact(qa, i, qb, j))
                    if sf < e_first or sf > e_last:
                        continue
                    k = _n_at_or_below(edges, grid, sf)
                k = min(k - 1, nbins - 1)
            counts[j & 3, k] += 1


def _flag_buffers(store: dict, name: str, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Flags for a tile of ``shape``, kept in ``store``: bytes, one per pair, in rows of whole uint64
    words (C order; the padding is never flagged), and the same memory as those words."""
    key = (name, *shape)
    if key not in store:
        words = np.zeros((shape[0], -(-shape[1] // 8)), np.uint64)
        store[key] = words.view(np.uint8), words
    return store[key]


class _Strips:
    """The strips of one block: float32 products (NaN where no impostor comparison of two made
    templates is) and what the kernels read alongside; the failed comparisons, counted per row."""

    def __init__(self, qa, a_ok, qb, b_ok, rsub, csub, r0, c0, all_vs_all, scratch=None, keys=(None, None)):
        # scratch: buffers and the panels' float32 and integer copies kept from block to block (a
        # worker's), so that a block allocates (and page-faults) nothing new; keys name the two panels
        self.scratch = scratch if scratch is not None else {}
        (a32, a_norm, a_int), (b32, b_norm, b_int) = self._prepared(qa, keys[0]), self._prepared(qb, keys[1])
        self.a32 = a32
        self.b32t = self._prepared_t(b32, keys[1])
        # the exact products read integer copies (int32 when every value fits, as for unit vectors)
        self.qa, self.qb = a_int, b_int
        c = error_bound_factor(self.qa.shape[1])
        # the bound on a product's error, c |qa| |qb|, in units of the similarity (times 2**-49)
        self.ca = a_norm * (c * (1 + 1e-9) * 0.5 * _SCALE)
        self.nb = b_norm * (1 + 1e-9)
        self.ca32 = (self.ca * _MARGIN32).astype(np.float32)
        self.nb32 = (self.nb * _MARGIN32).astype(np.float32)
        self.r0, self.c0, self.all_vs_all = r0, c0, all_vs_all
        self.flagger = None  # a runner whose flags the codes come with (:attr:`_Runner.flag_params`)
        self.tile_flags = None
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

    def _prepared(self, q, key):
        """float32 copy, row norms, and an integer copy (int32 when every value fits, else int64)."""
        cache = self.scratch.setdefault("panels", {})
        hit = cache.get(key) if key is not None else None
        if hit is None or hit[0].shape != q.shape:
            q64 = np.ascontiguousarray(q)
            small = bool(np.abs(q64).max(initial=0.0) < 2.0**31)
            hit = (
                q64.astype(np.float32),
                np.sqrt(np.einsum("ij,ij->i", q64, q64)),
                q64.astype(np.int32 if small else np.int64),
            )
            if key is not None:
                while len(cache) >= 16:
                    cache.pop(next(iter(cache)))
                cache[key] = hit
        return hit

    def _prepared_t(self, q32, key):
        cache = self.scratch.setdefault("transposed", {})
        hit = cache.get(key) if key is not None else None
        if hit is None or hit.shape[::-1] != q32.shape:
            hit = np.ascontiguousarray(q32.T)
            if key is not None:
                while len(cache) >= 16:
                    cache.pop(next(iter(cache)))
                cache[key] = hit
        return hit

    def buffer(self, name: str, size: int, dtype) -> np.ndarray:
        """A buffer of ``size`` values kept in the scratch space."""
        buf = self.scratch.get(name)
        if buf is None or buf.size < size or buf.dtype != dtype:
            buf = self.scratch[name] = np.empty(size, dtype)
        return buf[:size]

    def __iter__(self):
        """``(s0, s1, args)`` for each tile of rows ``s0:s1``: the kernels' common arguments (the
        products in a buffer reused from tile to tile)."""
        n, nc = self.qa.shape[0], self.qb.shape[0]
        buffers = self.scratch.setdefault("tiles", {})
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
                    buffers[shape] = np.empty(shape, np.float32), np.empty(shape, np.int32)
                approx, codes = buffers[shape]
                np.matmul(self.a32[s0:s1], self.b32t[:, t0:t1], out=approx)
                here = (g_cols >= t0) & (g_cols < t1)
                approx[g_rows[here], g_cols[here] - t0] = np.nan
                cols = self.bad_cols[(self.bad_cols >= t0) & (self.bad_cols < t1)] - t0
                if cols.size:
                    approx[:, cols] = np.nan
                if rows.size:
                    approx[rows] = np.nan
                ca, nb = self.ca[s0:s1], self.nb[t0:t1]
                if self.flagger is None:
                    _codes(approx, self.ca32[s0:s1], self.nb32[t0:t1], codes)
                else:
                    self.tile_flags = _flag_buffers(buffers, "flags", shape)
                    params = self.flagger.flag_params(
                        approx, self.qa[s0:s1], self.qb[t0:t1], self.r0 + s0, self.c0 + t0
                    )
                    _codes_flagged(approx, self.ca32[s0:s1], self.nb32[t0:t1], codes, self.tile_flags[0], *params)
                args = (
                    approx,
                    codes,
                    self.qa[s0:s1],
                    self.qb[t0:t1],
                    ca,
                    nb,
                    self.r0 + s0,
                    self.c0 + t0,
                    self.all_vs_all,
                )
                yield s0, s1, args


_INF_RAW_BIN = int(np.array(-np.inf, np.float32).view(np.uint32)) >> 16
_INF_KEY = int(float_keys(np.array([-np.inf], np.float32))[0])
_UNIT_BINS = (int(np.array(1.0, np.float32).view(np.uint32)) >> 16) + 1
"""Raw top-16 bins of the similarities 0 ... 1 (non-negative float32: raw bits in value order)."""


def _bin_ends() -> tuple[np.ndarray, np.ndarray]:
    """float64 of the lowest and the highest float32 of each raw bin of [0, 1] (``_UNIT_BINS`` bins)."""
    m = np.arange(_UNIT_BINS, dtype=np.uint32) << np.uint32(16)
    return m.view(np.float32).astype(np.float64), (m | np.uint32(0xFFFF)).view(np.float32).astype(np.float64)


def _table(unit_part: np.ndarray, other, dtype) -> np.ndarray:
    """A table over the 65,536 codes: ``unit_part`` for the bins of [0, 1], ``other`` elsewhere."""
    t = np.full(1 << 16, other, dtype)
    t[:_UNIT_BINS] = unit_part
    return t


class _Runner:
    """One pass over the tiles of a block: ``tile`` for each tile, then ``result``, the packed partial."""

    def __init__(self, red, strips: _Strips) -> None:
        self.red, self.strips = red, strips

    flag_params = None
    """For a pass that visits only the pairs its codes do not settle: ``flag_params(approx, qa, qb,
    gi0, gj0)`` gives :func:`_flag`'s ``(first, span, runs)`` for the next tile."""

    def tile(self, s0: int, s1: int, args) -> None:
        raise NotImplementedError

    def result(self):
        raise NotImplementedError

    def words(self, args) -> np.ndarray:
        """This pass's flags of the tile, eight pairs per uint64 word: computed with the codes for
        the block's first such pass, here for any other."""
        strips = self.strips
        if strips.flagger is self:
            return strips.tile_flags[1]
        approx, codes = args[0], args[1]
        flags, words = _flag_buffers(strips.scratch, "own_flags", codes.shape)
        _flag(codes, flags, *self.flag_params(approx, args[2], args[3], args[6], args[7]))
        return words


class _TopBins(_Runner):
    def __init__(self, red: TopBinPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.hist = np.zeros(1 << 16, np.int64)
        self.state = np.array([math.inf, -math.inf])
        self.fine = np.ascontiguousarray(getattr(red, "fine", np.zeros(1 << 16, bool)), dtype=np.bool_)
        self.runs = _runs(self.fine)
        self.out = strips.buffer("fine_out", TILE_ROWS * TILE_COLS, np.uint32)
        self.parts = []

    def flag_params(self, approx, qa, qb, gi0, gj0):
        """What :func:`_codes_flagged` flags in the next tile: ``(first, span, runs)``. With no
        similarity seen yet, the extremes are first taken from the exact similarities of the tile's
        first row with comparisons (counted later like every other: they only narrow the pairs
        flagged for possibly being new extremes)."""
        if self.state[0] > self.state[1]:
            for i in range(approx.shape[0]):
                j0 = _first_col(self.strips.all_vs_all, gi0 + i, gj0)
                if j0 < approx.shape[1]:
                    lo, hi = _row_extremes(approx, qa, qb, i, j0)
                    if lo <= hi:
                        self.state[:] = lo, hi
                        break
        first, span, _, _ = _range_of(np.float32(self.state[0]), np.float32(self.state[1]))
        return int(first), int(span), self.runs

    def tile(self, s0, s1, args):
        words = self.words(args)
        n = _top_bins(*args, self.fine, self.hist, self.state, self.out, words)
        if n:
            self.parts.append(self.out[:n].copy())

    def result(self):
        hist = self.hist.copy()
        n_failed = self.strips.n_failed
        hist[_INF_RAW_BIN] += n_failed
        return [hist, n_failed, float(self.state[0]), float(self.state[1])]


class _FineBins(_TopBins):
    def result(self):
        hist, n_failed, fmin, fmax = super().result()
        parts = self.parts
        if n_failed and self.fine[_INF_RAW_BIN]:
            parts = [*parts, np.full(n_failed, _INF_RAW_BIN << 16, np.uint32)]
        bits = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint32)
        start = run_starts(bits)  # np.unique with counts, on values already sorted
        return [hist, n_failed, fmin, fmax, (bits[start], np.diff(np.append(start, bits.size)).astype(np.int64))]


class _KeepBins(_Runner):
    def __init__(self, red: KeepBinsPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.wanted = wanted = np.ascontiguousarray(red.wanted, dtype=np.bool_)
        self.table = _table(wanted[:_UNIT_BINS], SLOW, np.uint8)
        self.parts = []
        if strips.n_failed and wanted[_INF_RAW_BIN]:
            self.parts.append(np.full(strips.n_failed, -np.inf, np.float32))
        self.out = strips.buffer("kept", TILE_ROWS * TILE_COLS, np.float32)

    def tile(self, s0, s1, args):
        n = _keep_bins(*args, self.table, self.wanted, self.out)
        if n:
            self.parts.append(self.out[:n].copy())

    def result(self):
        return [np.concatenate(self.parts)] if self.parts else []


class _Digits(_Runner):
    def __init__(self, red: DigitPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.slots = slots = np.ascontiguousarray(red.slots, dtype=np.int64)
        top = slots >> (red.known - 16)
        self.first = np.full(1 << 16, -1, np.int64)
        self.first[top[::-1]] = np.arange(slots.size)[::-1]  # the first slot of each 16-bit prefix
        # a non-negative similarity's key is its bits with the top bit set
        in_slot = self.first[np.arange(_UNIT_BINS) | 0x8000] >= 0
        self.table = _table(np.where(in_slot, SLOW, 0), SLOW, np.uint8)
        self.parts = []
        self.out = strips.buffer("counters", TILE_ROWS * TILE_COLS, np.int64)

    def tile(self, s0, s1, args):
        red = self.red
        n = _digits(*args, self.table, self.first, self.slots, red.known, red.d, self.out)
        if n:
            self.parts.append(self.out[:n].copy())

    def result(self):
        red, slots = self.red, self.slots
        p = _INF_KEY >> (32 - red.known)
        pos = int(np.searchsorted(slots, p))
        if self.strips.n_failed and pos < slots.size and slots[pos] == p:
            digit = (_INF_KEY >> (32 - red.known - red.d)) & ((1 << red.d) - 1)
            self.parts.append(np.full(self.strips.n_failed, (pos << red.d) | digit, np.int64))
        if not self.parts:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        # (counter, count) pairs, as DigitPass packs them
        return np.unique(np.concatenate(self.parts), return_counts=True)


class _Bracket(_Runner):
    def __init__(self, red: BracketPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.lo_t, self.hi_t = float(red.lo), float(red.hi)
        floor, ceil = _bin_ends()
        self.table = _table(np.where(ceil < self.lo_t, 0, np.where(floor >= self.hi_t, 1, SLOW)), SLOW, np.uint8)
        self.floor = _table(floor, np.inf, np.float64)
        self.state = np.array([math.inf])
        self.values = []
        if strips.n_failed and self.lo_t <= -math.inf < self.hi_t:
            self.values.append(np.full(strips.n_failed, -np.inf))
        self.out = strips.buffer("bracket", TILE_ROWS * TILE_COLS, np.float64)

    def tile(self, s0, s1, args):
        n = _bracket(*args, self.table, self.floor, self.lo_t, self.hi_t, self.out, self.state)
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
        edges = np.ascontiguousarray(red.edges, dtype=np.float64)
        self.edges = edges if edges.size else np.array([np.inf])  # no edge: every count in column 0
        self.grid = _edge_grid(red, self.edges)
        floor, ceil = _bin_ends()
        k_lo, k_hi = np.searchsorted(edges, floor, side="left"), np.searchsorted(edges, ceil, side="left")
        self.table = _table(np.where(k_lo == k_hi, k_lo, -1), -1, np.int64)
        self.below = int(np.argmax(self.table != 0))  # codes 0 ... below - 1: no edge below, counted at once
        self.counts = np.zeros((self.local.size, red.width), np.int64)

    def flag_params(self, approx, qa, qb, gi0, gj0):
        return 0, self.below, _NO_RUNS

    def tile(self, s0, s1, args):
        slots = np.ascontiguousarray(self.row_slot[s0:s1], np.int64)
        _subject_edges(*args, slots, self.table, self.edges, self.grid, self.counts, self.words(args))

    def result(self):
        strips, counts, row_slot = self.strips, self.counts, self.row_slot
        if strips.n_failed:
            column = int(np.searchsorted(self.red.edges, -math.inf, side="left"))
            np.add.at(counts[:, column], row_slot, strips.row_failed)
        r, k = np.nonzero(counts)
        return self.local[r].astype(np.int64) * self.red.width + k, counts[r, k]


class _Histogram(_Runner):
    def __init__(self, red: HistogramPass, strips: _Strips) -> None:
        super().__init__(red, strips)
        self.edges = edges = np.ascontiguousarray(red.edges, dtype=np.float64)
        nbins = edges.size - 1
        self.grid = _edge_grid(red, edges)
        self.table = _table(histogram_bin_of_ranges(*_bin_ends(), edges), -1, np.int64)
        self.counts = np.zeros((4, nbins), np.int64)

    def tile(self, s0, s1, args):
        _histogram(*args, self.table, self.edges, self.grid, self.counts)

    def result(self):
        return [self.counts.sum(axis=0), self.strips.n_failed]


_KERNELS = {
    TopBinPass: _TopBins,
    FineBinsPass: _FineBins,
    KeepBinsPass: _KeepBins,
    DigitPass: _Digits,
    BracketPass: _Bracket,
    SubjectEdgePass: _SubjectEdges,
    HistogramPass: _Histogram,
}


def run_block(
    reduction, qa, a_ok, qb, b_ok, rsub, csub, r0: int, c0: int, all_vs_all: bool, scratch=None, keys=(None, None)
):
    """The packed partial of ``reduction`` over the impostor comparisons of one block.

    Parameters
    ----------
    reduction : a pass for which :func:`supports` is true (a :class:`validation.selection.MultiPass`
        runs each of its passes on each tile while the tile's products are in cache)
    qa, qb : numpy.ndarray of float64, shape (rows, dim), (cols, dim)
        Quantised embeddings (:func:`implementation.template.quantise`) of the block's rows and columns.
    a_ok, b_ok : numpy.ndarray of bool
        Templates that were made (a comparison with any other one fails).
    rsub, csub : numpy.ndarray of int64
        Subject of each row and column; pairs of one subject are genuine and skipped.
    r0, c0 : int
        Global index of the first row and column (all-vs-all owns the pairs ``i < j``).
    scratch : dict, optional
        Kept by the caller from block to block: buffers, and the float32 copies of the panels named
        by ``keys`` (hashable names of the row and column panels, unique to their contents).
    """
    strips = _Strips(qa, a_ok, qb, b_ok, rsub, csub, r0, c0, all_vs_all, scratch, keys)
    parts = reduction.reductions if isinstance(reduction, MultiPass) else [reduction]
    runners = [_KERNELS[type(r)](r, strips) for r in parts]
    strips.flagger = next((r for r in runners if r.flag_params is not None), None)
    try:
        for s0, s1, args in strips:
            for runner in runners:
                runner.tile(s0, s1, args)
        results = [runner.result() for runner in runners]
    finally:  # the runner and the strips refer to each other: freed now, not at the next collection
        strips.flagger = strips.tile_flags = None
    return results if isinstance(reduction, MultiPass) else results[0]


def warm_up() -> None:
    """Compile (or load from numba's cache) every pass's loop, on a block of two templates."""
    q = tpl.quantise(np.eye(2, 4))
    ok = np.ones(2, bool)
    sub = np.arange(2, dtype=np.int64)
    edges = np.array([0.25, 0.5])
    for red in (
        TopBinPass(np.float32, True),
        FineBinsPass(True, np.ones(1 << 16, bool)),
        KeepBinsPass(np.float32, True, np.ones(1 << 16, bool)),
        DigitPass(np.float32, True, np.array([0xBF00], np.uint64), 16, 4, 1 << 10),
        BracketPass(0.0, 1.0, True),
        SubjectEdgePass(sub, edges, True, 1 << 10),
        HistogramPass(edges),
    ):
        run_block(red, q, ok, q, ok, sub, sub, 0, 0, False)
