"""Exact order statistics of a score source, by selection on integer keys, in a few passes.

A float is mapped to an unsigned integer *key* whose order is the float order (flip the sign bit of
non-negative numbers, all bits of negative ones; ``-0.0`` is first turned into ``+0.0``). Pass 1
counts the top 16 bits of every key in 65,536 bins, which places each wanted order statistic in a
bin, with its rank inside the bin. Pass 2 keeps only the scores of those bins and sorts them (the
usual case: the bins of the FMR targets hold a small share of the scores); should they hold more
than ``collect_limit`` scores (scores piled up on few values), radix passes instead count the next
digit of the keys inside the chosen bins until the key is complete. Either way the statistic is
exact, together with the number of scores strictly above it. When a sample of the scores guesses
the bins beforehand (:func:`fine_bins_from_sample`), pass 1 also counts every distinct score of
those bins (:class:`FineBinsPass`), and the statistics found there need no pass 2.

Every pass is a :class:`Reduction` (count, keep or take extremes), run by :func:`run_pass` over the
chunks of a source or, by a source that can, where its scores are (block by block on a cluster).
Internally scores are similarities and a failed comparison is ``-inf``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, Sequence

import numpy as np

from validation.score_sources import DEFAULT_CHUNK, ScoreSource


COUNTER_BUDGET = 1 << 22
"""Histogram counters per refinement pass (32 MiB of int64)."""


def _similarity(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Similarities in the source's float width (a fresh array): distances negated, ``-0.0`` made
    ``+0.0``, the failure marker NaN made ``-inf``."""
    x = values if higher_is_better else -values
    x = x + x.dtype.type(0)
    failed = np.isnan(x)
    if failed.any():
        x[failed] = -np.inf
    return x


def float_keys(x: np.ndarray) -> np.ndarray:
    """Unsigned integer keys ordered like the floats ``x`` (float32 -> uint32, float64 -> uint64)."""
    if x.dtype == np.float32:
        signed, unsigned, top = np.int32, np.uint32, np.uint32(0x80000000)
        shift = 31
    else:
        signed, unsigned, top = np.int64, np.uint64, np.uint64(0x8000000000000000)
        shift = 63
    flip = (x.view(signed) >> shift).view(unsigned) | top
    return x.view(unsigned) ^ flip


def keys_to_float(keys: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`float_keys`."""
    if np.dtype(dtype) == np.float32:
        k = np.asarray(keys, dtype=np.uint32)
        top = np.uint32(0x80000000)
        u = np.where(k & top, k ^ top, ~k)
        return u.astype(np.uint32).view(np.float32)
    k = np.asarray(keys, dtype=np.uint64)
    top = np.uint64(0x8000000000000000)
    u = np.where(k & top, k ^ top, ~k)
    return u.astype(np.uint64).view(np.float64)


@dataclass(frozen=True)
class Selection:
    """Exact order statistics of a score source, on the similarity scale.

    Attributes
    ----------
    ks : numpy.ndarray of int64, shape (m,)
        0-based ranks from the top (0 = the highest similarity).
    values : numpy.ndarray of float64, shape (m,)
        ``values[i]`` is the ``ks[i]``-th highest similarity (``-inf`` = a failed comparison).
    n_greater : numpy.ndarray of int64, shape (m,)
        How many similarities are strictly greater than ``values[i]``.
    n : int
        Number of scores.
    n_failed : int
        Number of ``-inf`` (failed) scores.
    finite_min, finite_max : float
        Range of the finite similarities (NaN when there are none).
    passes : int
        Passes made over the source.
    hist : numpy.ndarray of int64, shape (65536,), or None
        Scores per value of the top 16 bits of their key (bins in score order).
    dtype : numpy.dtype
        float32 or float64: the precision the keys were taken in.
    """

    ks: np.ndarray
    values: np.ndarray
    n_greater: np.ndarray
    n: int
    n_failed: int
    finite_min: float
    finite_max: float
    passes: int
    hist: np.ndarray | None = None
    dtype: np.dtype = np.dtype(np.float64)
    fine: FineValues | None = None


@dataclass(frozen=True)
class FineValues:
    """Every distinct score of some key bins with its count (float32 sources, from
    :class:`FineBinsPass`): enough to answer any question about the scores of those bins exactly.

    Attributes
    ----------
    bins : numpy.ndarray of bool, shape (65536,)
        The key bins (top 16 key bits) whose scores are all here.
    keys : numpy.ndarray of uint32
        Order-preserving keys of the distinct scores, ascending.
    counts : numpy.ndarray of int64
        How many scores have each key.
    """

    bins: np.ndarray
    keys: np.ndarray
    counts: np.ndarray

    def covers(self, key_bins: np.ndarray) -> bool:
        """Whether every key bin given is one of :attr:`bins`."""
        return bool(self.bins[np.asarray(key_bins, np.int64)].all())

    def values(self) -> np.ndarray:
        """The distinct scores (similarities, float64), ascending."""
        return keys_to_float(self.keys, np.float32).astype(np.float64)

    def key_bins(self) -> np.ndarray:
        """The key bin of each distinct score (int64), ascending."""
        return (self.keys >> np.uint32(16)).astype(np.int64)


def _raw_top16_to_key_top16() -> np.ndarray:
    """``m[r]`` is the top 16 bits of the order-preserving key for raw top 16 bits ``r``."""
    r = np.arange(1 << 16, dtype=np.int64)
    return np.where(r < 0x8000, r ^ 0x8000, r ^ 0xFFFF)


def key_histogram(raw_hist: np.ndarray) -> np.ndarray:
    """A histogram over the raw top 16 bits of float32 scores, reordered over their key bins (score
    order), same dtype."""
    hist = np.zeros(1 << 16, dtype=np.asarray(raw_hist).dtype)
    hist[_raw_top16_to_key_top16()] = raw_hist
    return hist


class Reduction(Protocol):
    """One pass over a score source as a reduction, so that a source may run it where its scores are.

    ``add`` folds one chunk (scores in the caller's units, NaN = failed; ``ids`` the chunk's subject
    ids when the pass reads them) into an accumulator from ``start``; ``pack`` makes an accumulator
    compact for shipping; ``merge`` folds a packed accumulator into another; ``finish`` gives the
    pass's result. Every reduction here counts, keeps or takes extremes, so the result does not
    depend on how the scores are chunked or in which order the chunks come.
    """

    def start(self): ...

    def add(self, acc, x: np.ndarray, ids: np.ndarray | None): ...

    def pack(self, acc): ...

    def merge(self, acc, packed): ...

    def finish(self, acc): ...


def run_pass(
    source: ScoreSource, reduction: Reduction, chunk_size: int = DEFAULT_CHUNK, ids: ScoreSource | None = None
):
    """Run ``reduction`` over every score of ``source`` (with the aligned subject ids of ``ids``).

    A source with a ``run_pass(reduction, chunk_size, ids)`` method runs the pass itself (e.g.
    block by block on a cluster, without the scores ever leaving the workers); otherwise the
    chunks are read here in order.
    """
    own = getattr(source, "run_pass", None)
    if own is not None:
        return own(reduction, chunk_size, ids)
    acc = reduction.start()
    if ids is None:
        for _, chunk in source.chunks(chunk_size):
            acc = reduction.add(acc, chunk, None)
    else:
        for (_, x), (_, chunk_ids) in zip(source.chunks(chunk_size), ids.chunks(chunk_size)):
            acc = reduction.add(acc, x, chunk_ids)
    return reduction.finish(acc)


class _Pass:
    """Defaults: nothing to pack, ``finish`` returns the accumulator."""

    def pack(self, acc):
        return acc

    def finish(self, acc):
        return acc


class MultiPass:
    """Several reductions in one pass over the scores (each sees every chunk; the results in order).

    A source that computes its scores (template stores) computes them once for all of them.
    """

    def __init__(self, reductions: Sequence[Reduction]) -> None:
        self.reductions = list(reductions)

    def start(self):
        return [r.start() for r in self.reductions]

    def add(self, acc, x, ids):
        return [r.add(a, x, ids) for r, a in zip(self.reductions, acc)]

    def pack(self, acc):
        return [r.pack(a) for r, a in zip(self.reductions, acc)]

    def merge(self, acc, packed):
        return [r.merge(a, p) for r, a, p in zip(self.reductions, acc, packed)]

    def finish(self, acc):
        return [r.finish(a) for r, a in zip(self.reductions, acc)]


class _Counts:
    """Counters filled by ``bincount`` over indices gathered in batches of at least the counter
    array's size (so that adding a large counter array per small chunk never dominates). When the
    counters far outnumber the indices (a block of comparisons touching few of many subjects), the
    batches are counted sparsely, as (index, count) pairs, and the dense array is made only once."""

    def __init__(self, size: int, flush_at: int) -> None:
        self.size = size
        self.flush_at = max(min(size, 1 << 24), flush_at)
        self.counts: np.ndarray | None = None
        self.sparse: list[tuple[np.ndarray, np.ndarray]] = []
        self.pending: list[np.ndarray] = []
        self.n_pending = 0

    def add(self, idx: np.ndarray) -> None:
        self.pending.append(idx)
        self.n_pending += idx.size
        if self.n_pending >= self.flush_at:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        idx = np.concatenate(self.pending)
        self.pending, self.n_pending = [], 0
        if self.counts is None and self.size > 4 * idx.size:
            u, c = np.unique(idx, return_counts=True)
            self.sparse.append((u, c.astype(np.int64)))
            if len(self.sparse) > 64:
                self.sparse = [self._sparse_sum(self.sparse)]
            return
        c = np.bincount(idx, minlength=self.size)
        self.counts = c if self.counts is None else self.counts + c

    @staticmethod
    def _sparse_sum(parts):
        u = np.concatenate([p[0] for p in parts])
        c = np.concatenate([p[1] for p in parts])
        if not u.size:
            return u.astype(np.int64), c.astype(np.int64)
        order = np.argsort(u, kind="stable")
        u, c = u[order], c[order]
        uu, start = np.unique(u, return_index=True)
        return uu, np.add.reduceat(c, start)

    def total(self) -> np.ndarray:
        self.flush()
        out = self.counts if self.counts is not None else np.zeros(self.size, dtype=np.int64)
        for u, c in self.sparse:
            np.add.at(out, u, c)
        self.sparse = []
        self.counts = out
        return out

    def pack(self) -> tuple[np.ndarray, np.ndarray]:
        """The non-zero counters as (index, count): small when few counters are hit."""
        self.flush()
        parts = list(self.sparse)
        if self.counts is not None:
            nz = np.flatnonzero(self.counts)
            parts.append((nz, self.counts[nz]))
        if not parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        return self._sparse_sum(parts) if len(parts) > 1 else parts[0]

    def merge(self, packed: tuple[np.ndarray, np.ndarray]) -> None:
        idx, c = packed
        if idx.size:
            if self.counts is None:
                self.counts = np.zeros(self.size, dtype=np.int64)
            np.add.at(self.counts, idx, c)


class TopBinPass(_Pass):
    """Pass 1 of :func:`kth_largest`: scores per top-16-bit key bin (raw bit order), failures, range."""

    def __init__(self, dtype: np.dtype, higher_is_better: bool) -> None:
        self.dtype, self.higher_is_better = np.dtype(dtype), higher_is_better

    def start(self):
        return [np.zeros(1 << 16, dtype=np.int64), 0, math.inf, -math.inf]

    def add(self, acc, x, ids):
        bits = 32 if self.dtype == np.float32 else 64
        ukey = np.uint32 if bits == 32 else np.uint64
        x = _similarity(np.asarray(x, dtype=self.dtype), self.higher_is_better)
        if not x.size:
            return acc
        lo, hi = float(x.min()), float(x.max())
        if lo == -math.inf:
            finite = x[x != -np.inf]
            acc[1] += x.size - finite.size
            lo = float(finite.min()) if finite.size else math.inf
            hi = float(finite.max()) if finite.size else -math.inf
        acc[2], acc[3] = min(acc[2], lo), max(acc[3], hi)
        acc[0] += np.bincount((x.view(ukey) >> ukey(bits - 16)).astype(np.intp), minlength=1 << 16)
        return acc

    def merge(self, acc, packed):
        acc[0] += packed[0]
        acc[1] += packed[1]
        acc[2], acc[3] = min(acc[2], packed[2]), max(acc[3], packed[3])
        return acc


class FineBinsPass(TopBinPass):
    """Pass 1 of :func:`kth_largest` that also keeps, for the raw bins marked in ``fine``, every
    distinct float32 score with its count: the order statistics that fall in those bins need no
    second pass.

    The result is TopBinPass's ``[hist, n_failed, min, max]`` followed by the raw bits (uint32,
    ascending) and the counts of the distinct scores of the fine bins.
    """

    def __init__(self, higher_is_better: bool, fine: np.ndarray) -> None:
        super().__init__(np.float32, higher_is_better)
        self.fine = np.ascontiguousarray(fine, dtype=bool)

    def start(self):
        return [*super().start(), _FineCounts()]

    def add(self, acc, x, ids):
        super().add(acc, x, ids)
        x = _similarity(np.asarray(x, dtype=np.float32), self.higher_is_better)
        bits = x.view(np.uint32)
        kept = bits[self.fine[(bits >> np.uint32(16)).astype(np.intp)]]
        if kept.size:
            u, c = np.unique(kept, return_counts=True)
            acc[4].add(u, c)
        return acc

    def pack(self, acc):
        return [*acc[:4], acc[4].sparse()]

    def merge(self, acc, packed):
        super().merge(acc, packed)
        acc[4].add(*packed[4])
        return acc

    def finish(self, acc):
        return [*acc[:4], *acc[4].sparse()]


def run_starts(a: np.ndarray) -> np.ndarray:
    """Where each run of equal values of ``a`` begins (``a`` sorted: where each distinct value does)."""
    a = np.asarray(a)
    if not a.size:
        return np.zeros(0, np.intp)
    return np.flatnonzero(np.concatenate([[True], a[1:] != a[:-1]]))


class _FineCounts:
    """Counts of distinct float32 bit patterns, a table of the 65,536 patterns of each top-16-bit bin
    that holds any: adding a batch of (bits, counts) costs the batch, whatever was added before, and
    memory is bounded by the bins."""

    def __init__(self) -> None:
        self.rows: dict[int, np.ndarray] = {}

    def add(self, bits: np.ndarray, counts: np.ndarray) -> None:
        """Add the counts of distinct, ascending ``bits``."""
        bits = np.asarray(bits, np.uint32)
        if not bits.size:
            return
        top = (bits >> np.uint32(16)).astype(np.int64)
        low = (bits & np.uint32(0xFFFF)).astype(np.intp)
        start = run_starts(top)  # ascending: runs of one bin
        b, stop = top[start], np.append(start[1:], top.size)
        for t, s0, s1 in zip(b.tolist(), start.tolist(), stop.tolist()):
            row = self.rows.get(t)
            if row is None:
                row = self.rows[t] = np.zeros(1 << 16, np.int64)
            row[low[s0:s1]] += counts[s0:s1]

    def sparse(self) -> tuple[np.ndarray, np.ndarray]:
        """(bits ascending as uint32, counts) of every pattern counted."""
        bits, counts = [np.zeros(0, np.uint32)], [np.zeros(0, np.int64)]
        for t in sorted(self.rows):
            row = self.rows[t]
            low = np.flatnonzero(row)
            bits.append((np.uint32(t) << np.uint32(16)) | low.astype(np.uint32))
            counts.append(row[low])
        return np.concatenate(bits), np.concatenate(counts)


class KeepBinsPass(_Pass):
    """Pass 2 of :func:`kth_largest`: the similarities whose raw top 16 bits are ``wanted``."""

    def __init__(self, dtype: np.dtype, higher_is_better: bool, wanted: np.ndarray) -> None:
        self.dtype, self.higher_is_better, self.wanted = np.dtype(dtype), higher_is_better, wanted

    def start(self):
        return []

    def add(self, acc, x, ids):
        bits = 32 if self.dtype == np.float32 else 64
        ukey = np.uint32 if bits == 32 else np.uint64
        x = _similarity(np.asarray(x, dtype=self.dtype), self.higher_is_better)
        acc.append(x[self.wanted[(x.view(ukey) >> ukey(bits - 16)).astype(np.intp)]])
        return acc

    def pack(self, acc):
        return [np.concatenate(acc)] if acc else []

    def merge(self, acc, packed):
        acc.extend(packed)
        return acc

    def finish(self, acc):
        return np.concatenate(acc) if acc else np.zeros(0, dtype=self.dtype)


class _CountsPass(_Pass):
    """A pass whose accumulator is a :class:`_Counts`: packed and merged as counts, finished as totals."""

    def pack(self, acc):
        return acc.pack()

    def merge(self, acc, packed):
        acc.merge(packed)
        return acc

    def finish(self, acc):
        return acc.total()


class DigitPass(_CountsPass):
    """A radix pass of :func:`kth_largest`: counts of the next ``d`` key bits inside the chosen prefixes."""

    def __init__(
        self, dtype: np.dtype, higher_is_better: bool, slots: np.ndarray, known: int, d: int, chunk_size: int
    ) -> None:
        self.dtype, self.higher_is_better = np.dtype(dtype), higher_is_better
        self.slots, self.known, self.d, self.chunk_size = slots, known, d, chunk_size
        self.lut = None
        self.top16 = None
        if known <= 16:
            self.lut = np.full(1 << known, -1, dtype=np.int64)
            self.lut[slots.astype(np.int64)] = np.arange(slots.size)
        else:
            self.top16 = np.zeros(1 << 16, dtype=bool)
            self.top16[(slots >> np.uint64(known - 16)).astype(np.int64)] = True

    def start(self):
        size = self.slots.size << self.d
        return _Counts(size, self.chunk_size)

    def add(self, acc, x, ids):
        bits = 32 if self.dtype == np.float32 else 64
        ukey = np.uint32 if bits == 32 else np.uint64
        n_slots, known, d = self.slots.size, self.known, self.d
        shift = bits - known - d
        dmask = ukey((1 << d) - 1)
        key = float_keys(_similarity(np.asarray(x, dtype=self.dtype), self.higher_is_better))
        if self.lut is not None:
            pos = self.lut[(key >> ukey(bits - known)).astype(np.intp)]
            sel = pos >= 0
            pos = pos[sel]
            sub = key[sel]
        else:
            slots_k = self.slots.astype(ukey)
            sub = key[self.top16[(key >> ukey(bits - 16)).astype(np.intp)]]
            p = sub >> ukey(bits - known)
            pos = np.minimum(np.searchsorted(slots_k, p), n_slots - 1)
            sel = slots_k[pos] == p
            pos = pos[sel]
            sub = sub[sel]
        acc.add((pos.astype(np.int64) << d) | ((sub >> ukey(shift)) & dmask).astype(np.int64))
        return acc


COLLECT_LIMIT = 1 << 24
"""Most scores the second pass may hold in memory (128 MiB as float64); beyond, radix passes."""


def fine_bins_from_sample(
    sample: np.ndarray, n: int, ks: np.ndarray, z: float = 5.0, slack: float = 0.02
) -> np.ndarray:
    """The raw top-16-bit bins that may hold the ``ks``-th highest of ``n`` float32 scores, judged
    from the raw-bin histogram ``sample`` of a sample of them: the ``fine`` bins of
    :func:`kth_largest`.

    A bin is kept when the counts above and at-or-above it, scaled from the sample, could bracket a
    wanted rank: each sample count ``S`` stands for anything from ``(S - z sqrt(S) - z**2)(1 - slack)``
    to ``(S + z sqrt(S) + z**2)(1 + slack)`` (binomial noise, and ``slack`` for a sample taken in
    blocks rather than score by score). A wrong guess costs time, never exactness:
    :func:`kth_largest` takes the statistics outside the fine bins in a second pass.
    """
    hs = key_histogram(np.asarray(sample, np.float64))
    m = hs.sum()
    ks = np.asarray(ks, np.int64)
    if m <= 0 or not ks.size:
        return np.zeros(1 << 16, bool)
    ge = np.cumsum(hs[::-1])[::-1]  # sample scores in key bins >= b
    gt = ge - hs
    scale = n / m

    def low(c):
        return np.maximum(c - z * np.sqrt(c) - z * z, 0.0) * (1 - slack) * scale

    def high(c):
        return (c + z * np.sqrt(c) + z * z) * (1 + slack) * scale

    lo_gt, hi_ge = low(gt), high(ge)  # lo_gt non-increasing, hi_ge non-increasing in b
    # bins b with lo_gt[b] <= k < hi_ge[b]: an interval of bins for each k
    b_lo = np.searchsorted(-lo_gt, -ks, side="left")  # first b with lo_gt[b] <= k
    b_end = np.searchsorted(-hi_ge, -ks, side="left")  # first b with hi_ge[b] <= k: past the last
    some = b_lo < b_end
    delta = np.zeros((1 << 16) + 1, dtype=np.int64)
    np.add.at(delta, b_lo[some], 1)
    np.add.at(delta, b_end[some], -1)
    return (np.cumsum(delta[:-1]) > 0)[_raw_top16_to_key_top16()]


def kth_largest(
    source: ScoreSource,
    ks: Sequence[int] | np.ndarray,
    *,
    higher_is_better: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    counter_budget: int = COUNTER_BUDGET,
    collect_limit: int = COLLECT_LIMIT,
    fine: np.ndarray | None = None,
) -> Selection:
    """Exact ``k``-th highest similarities of a source, by selection on order-preserving keys.

    Pass 1 counts the top 16 bits of every key (65,536 bins), which places each wanted statistic
    in a bin together with its rank inside the bin. Pass 2 keeps only the scores of those bins and
    sorts them, when they number at most ``collect_limit``; otherwise (scores piled into few bins)
    further passes each count the next digit of the keys inside the chosen bins until the key is
    complete. Either way the result is exact.

    Given a guess of the bins the statistics fall in (``fine``, from a sample of the scores), pass 1
    also keeps every distinct score of those bins with its count (:class:`FineBinsPass`): the
    statistics found there are final after one pass, and only those outside the guess take pass 2.

    Parameters
    ----------
    source : ScoreSource
        Scores (caller's units; NaN = failed comparison, the lowest similarity).
    ks : sequence of int, each in ``[0, len(source))``
        0-based ranks from the top.
    higher_is_better : bool
        False when the source holds distances (they are negated).
    chunk_size : int
        Scores per read.
    counter_budget : int
        Counters per radix pass (8 bytes each); sets the digit width.
    collect_limit : int
        Most scores pass 2 may hold.
    fine : numpy.ndarray of bool, shape (65536,), optional
        Raw top-16-bit bins to keep whole in pass 1 (float32 sources only; see :class:`FineBinsPass`).

    Returns
    -------
    Selection
    """
    n = len(source)
    ks = np.asarray(ks, dtype=np.int64).reshape(-1)
    if ks.size and (ks.min() < 0 or ks.max() >= n):
        raise ValueError(f"ranks must lie in [0, {n}), got {ks.min()}..{ks.max()}")
    dtype = np.dtype(np.float32) if source.dtype == np.float32 else np.dtype(np.float64)
    m = ks.size
    key_of_raw = _raw_top16_to_key_top16()
    fine_values = None

    # pass 1: histogram of the top 16 key bits, range and failures (and the fine bins' scores)
    if fine is not None and dtype == np.float32 and np.any(fine):
        raw_hist, n_failed, fmin, fmax, fine_bits, fine_counts = run_pass(
            source, FineBinsPass(higher_is_better, fine), chunk_size
        )
        fine_keys = float_keys(np.asarray(fine_bits, np.uint32).view(np.float32))
        order = np.argsort(fine_keys, kind="stable")
        fine_bins = np.zeros(1 << 16, dtype=bool)
        fine_bins[key_of_raw[np.asarray(fine, bool)]] = True
        fine_values = FineValues(fine_bins, fine_keys[order], np.asarray(fine_counts, np.int64)[order])
    else:
        raw_hist, n_failed, fmin, fmax = run_pass(source, TopBinPass(dtype, higher_is_better), chunk_size)
    passes = 1
    hist = key_histogram(np.asarray(raw_hist, np.int64))
    from_top = np.cumsum(hist[::-1])  # from_top[j]: scores in key bins >= 65535 - j
    j = np.searchsorted(from_top, ks, side="right")
    above = np.where(j > 0, from_top[np.maximum(j - 1, 0)], 0).astype(np.int64)
    rank = ks - above
    prefix = (0xFFFF - j).astype(np.uint64)  # key bin of each statistic
    finite_min = fmin if fmin != math.inf else math.nan
    finite_max = fmax if fmax != -math.inf else math.nan
    values = np.zeros(m, dtype=np.float64)
    n_greater = above.copy()
    todo = np.ones(m, dtype=bool)
    if fine_values is not None and m:
        todo = ~fine_values.bins[prefix.astype(np.int64)]
        done = np.flatnonzero(~todo)
        if done.size:
            values[done], n_greater[done] = _from_fine(fine_values, prefix[done], rank[done], above[done])
    if todo.any():
        idx = np.flatnonzero(todo)
        v, g, extra = _refine(
            source,
            dtype,
            higher_is_better,
            hist,
            prefix[idx],
            rank[idx],
            above[idx],
            chunk_size,
            counter_budget,
            collect_limit,
        )
        values[idx], n_greater[idx] = v, g
        passes += extra
    return Selection(ks, values, n_greater, n, n_failed, finite_min, finite_max, passes, hist, dtype, fine_values)


def _from_fine(fine: FineValues, prefix: np.ndarray, rank: np.ndarray, above: np.ndarray):
    """Values and counts strictly above of the statistics whose key bins are fine: ``rank`` scores of
    bin ``prefix`` lie above each (``above`` scores in higher bins)."""
    keys, counts = fine.keys, fine.counts
    from_top = np.concatenate([np.cumsum(counts[::-1])[::-1], [0]])  # scores with key >= keys[i]
    end = np.searchsorted(fine.key_bins(), prefix.astype(np.int64), side="right")  # one past the bin's last key
    # the statistic is the highest key i of the bin with (scores of the bin >= keys[i]) > rank
    target = from_top[end] + rank
    i = np.searchsorted(-from_top, -target, side="left") - 1
    values = keys_to_float(keys[i], np.float32).astype(np.float64)
    return values, above + (from_top[i + 1] - from_top[end])


def _refine(source, dtype, higher_is_better, hist, prefix, rank, above, chunk_size, counter_budget, collect_limit):
    """Pass 2 (and radix passes) for the statistics in key bins ``prefix``; returns their values,
    the counts strictly above them and the passes made."""
    bits = 32 if dtype == np.float32 else 64
    ukey = np.uint32 if bits == 32 else np.uint64
    key_of_raw = _raw_top16_to_key_top16()
    prefix, rank, above = prefix.copy(), rank.copy(), above.copy()
    m = prefix.size
    cand = np.unique(prefix).astype(np.int64)
    if int(hist[cand].sum()) <= collect_limit:
        # pass 2: keep the scores of the chosen bins, sort their keys
        raw_of_key = np.empty(1 << 16, dtype=np.int64)
        raw_of_key[key_of_raw] = np.arange(1 << 16)
        wanted = np.zeros(1 << 16, dtype=bool)
        wanted[raw_of_key[cand]] = True
        kept = run_pass(source, KeepBinsPass(dtype, higher_is_better, wanted), chunk_size)
        keys = np.sort(float_keys(kept))
        key_top = (keys >> ukey(bits - 16)).astype(np.int64)
        end = np.searchsorted(key_top, prefix.astype(np.int64), side="right")
        found = keys[end - 1 - rank]
        n_greater = above + (end - np.searchsorted(keys, found, side="right"))
        return keys_to_float(found, dtype).astype(np.float64), n_greater.astype(np.int64), 1

    # radix passes: count the next digit of the keys inside the chosen prefixes
    passes = 0
    known = 16
    while known < bits:
        slots = np.unique(prefix)
        n_slots = slots.size
        d = int(math.floor(math.log2(max(counter_budget // max(n_slots, 1), 2))))
        d = max(1, min(d, 16, bits - known))
        counts = run_pass(source, DigitPass(dtype, higher_is_better, slots, known, d, chunk_size), chunk_size)
        passes += 1
        counts = counts.reshape(n_slots, 1 << d)
        digits_from_top = np.cumsum(counts[:, ::-1], axis=1)  # [s, j]: keys with digit >= 2^d-1-j
        slot_of = np.searchsorted(slots, prefix)
        for i in range(m):
            row = digits_from_top[slot_of[i]]
            jj = int(np.searchsorted(row, rank[i], side="right"))
            before = int(row[jj - 1]) if jj > 0 else 0
            above[i] += before
            rank[i] -= before
            prefix[i] = (prefix[i] << np.uint64(d)) | np.uint64((1 << d) - 1 - jj)
        known += d
    return keys_to_float(prefix.astype(ukey), dtype).astype(np.float64), above, passes
