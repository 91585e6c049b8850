"""Exact verification metrics over impostor scores that do not fit in memory.

Impostor scores are read in chunks from a *score source* (an in-memory array, a raw float32/float64
file, a ``.npy`` file or an HDF5 dataset); genuine scores (far fewer) are held in memory. Memory is
bounded by the chunk size and a fixed counter budget, never by the number of impostors.

**Exact order statistics by selection on integer keys.** A float is mapped to an unsigned integer
*key* whose order is the float order (flip the sign bit of non-negative numbers, all bits of
negative ones; ``-0.0`` is first turned into ``+0.0``). Pass 1 counts the top 16 bits of every key
in 65,536 bins, which places each wanted order statistic in a bin, with its rank inside the bin.
Pass 2 keeps only the scores of those bins and sorts them (the usual case: the bins of the FMR
targets hold a small share of the scores); should they hold more than ``collect_limit`` scores
(scores piled up on few values), radix passes instead count the next digit of the keys inside the
chosen bins until the key is complete. Either way the statistic is exact, together with the number
of scores strictly above it: the FNMR-at-FMR thresholds are the same numbers
:func:`validation.metrics.fnmr_at_fmr` finds by sorting, and the DET points and the EER are exact
too (the EER takes one more pass, over the impostors between two known operating points).

The conventions (direction, ties, failures, estimability, EER interpolation) are those of
:mod:`validation.metrics`; internally scores are similarities and a failed comparison is ``-inf``.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Protocol, Sequence

import numpy as np

from validation.metrics import (
    FMR_TARGETS,
    DETCurve,
    EqualErrorRate,
    OperatingPoint,
    ScoreError,
    allowed_false_matches,
    check_fmr_target,
    eer_from_points,
    estimability,
    next_above,
    operating_point,
    prepare_scores,
    to_user_threshold,
    unestimable_point,
)

DEFAULT_CHUNK = 1 << 18
"""Scores per chunk (1 MiB of float32: small enough to stay in cache while it is binned)."""

COUNTER_BUDGET = 1 << 22
"""Histogram counters per refinement pass (32 MiB of int64)."""


class ScoreFileError(ScoreError):
    """A score file that cannot be used: names the file, the line (text) or index (binary), the value."""


class ScoreSource(Protocol):
    """A one-dimensional array of scores read chunk by chunk.

    ``chunks`` yields ``(offset, values)`` with ``values`` a float32 or float64 array in the
    caller's units (similarities or distances). NaN marks a failed comparison (a non-match at every
    threshold); a file source raises :class:`ScoreFileError` on a NaN or infinite value in the file
    itself, so NaN appears only where a failure mask put it.
    """

    name: str
    dtype: np.dtype

    def __len__(self) -> int: ...

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]: ...


def _check_finite(values: np.ndarray, offset: int, name: str, allowed: np.ndarray | None = None) -> None:
    bad = ~np.isfinite(values)
    if allowed is not None:
        bad &= ~allowed
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ScoreFileError(name, offset + i, values[i], "score is not finite")


class ArrayScores:
    """An in-memory array as a score source (no validation: use :func:`source_from_array`).

    Parameters
    ----------
    values : numpy.ndarray, shape (n,)
        float32 or float64 scores in the caller's units, NaN for failures (other numbers become
        float64), or subject ids.
    name : str
    """

    def __init__(self, values: np.ndarray, name: str = "array") -> None:
        v = np.asarray(values)
        if v.ndim != 1:
            raise ScoreError(name, None, f"shape {v.shape}", "scores must be one-dimensional")
        if v.dtype.kind in "biuf" and v.dtype not in (np.float32, np.float64):
            v = v.astype(np.float64) if v.dtype.kind == "f" else v
        self.values = v
        self.name = name
        self.dtype = v.dtype

    def __len__(self) -> int:
        return int(self.values.size)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        for start in range(0, self.values.size, chunk_size):
            yield start, self.values[start : start + chunk_size]


class RawScores:
    """A headerless little-endian file of float32 (default) or float64 scores, read with plain reads.

    Parameters
    ----------
    path : path-like
    dtype : "float32" or "float64"
    """

    def __init__(self, path: str | os.PathLike, dtype: str = "float32") -> None:
        self.path = Path(path)
        self.name = str(self.path)
        self.dtype = np.dtype(dtype).newbyteorder("<")
        if self.dtype.kind != "f":
            raise ValueError(f"raw score files hold floats, not {dtype}")
        self._offset = 0
        size = self.path.stat().st_size
        if size % self.dtype.itemsize:
            raise ScoreFileError(
                self.name, None, f"{size} bytes", f"file size is not a multiple of {self.dtype.itemsize} ({self.dtype})"
            )
        self._n = size // self.dtype.itemsize

    def __len__(self) -> int:
        return self._n

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        buf = np.empty(min(chunk_size, max(self._n, 1)), dtype=self.dtype)
        with open(self.path, "rb") as fh:
            fh.seek(self._offset)
            start = 0
            while start < self._n:
                want = min(chunk_size, self._n - start)
                view = buf[:want]
                got = fh.readinto(memoryview(view).cast("B"))
                if got != want * self.dtype.itemsize:
                    raise ScoreFileError(self.name, start, f"{got} bytes", "file shorter than expected")
                values = view.astype(self.dtype.newbyteorder("="), copy=False)
                _check_finite(values, start, self.name)
                yield start, values
                start += want


class NpyScores(RawScores):
    """A one-dimensional float32/float64 ``.npy`` file, read in chunks after its header."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)
        self.name = str(self.path)
        with open(self.path, "rb") as fh:
            try:
                version = np.lib.format.read_magic(fh)
                read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
                shape, _, dtype = read(fh)
            except ValueError as exc:
                raise ScoreFileError(self.name, None, "", f"not a .npy file ({exc})") from None
            self._offset = fh.tell()
        if len(shape) != 1 or dtype.kind != "f" or dtype.itemsize not in (4, 8) or dtype.byteorder == ">":
            raise ScoreFileError(
                self.name,
                None,
                f"shape {shape} dtype {dtype}",
                "expected a one-dimensional little-endian float32 or float64 array",
            )
        self.dtype = dtype
        self._n = int(shape[0])


class HDF5Scores:
    """One-dimensional dataset of an HDF5 file, read by slices (the file is opened per pass).

    Parameters
    ----------
    path : path-like
    dataset : str
        Dataset name, e.g. ``"impostor"``.
    failed_dataset : str, optional
        A boolean dataset of the same length; True marks a failed comparison (its score becomes
        NaN, the failure marker, and is not validated).
    validate : bool
        Check scores are finite (False for id datasets).
    """

    def __init__(
        self, path: str | os.PathLike, dataset: str, failed_dataset: str | None = None, validate: bool = True
    ) -> None:
        import h5py

        self.path = Path(path)
        self.dataset = dataset
        self.failed_dataset = failed_dataset
        self.validate = validate
        self.name = f"{self.path}:{dataset}"
        with h5py.File(self.path, "r") as f:
            if dataset not in f:
                raise ScoreFileError(str(self.path), None, dataset, "dataset missing")
            d = f[dataset]
            if d.ndim != 1:
                raise ScoreFileError(self.name, None, f"shape {d.shape}", "dataset must be one-dimensional")
            self._n = int(d.shape[0])
            if validate and d.dtype.kind not in "fiu":
                raise ScoreFileError(self.name, None, str(d.dtype), "scores must be numbers")
            self.dtype = d.dtype if d.dtype in (np.float32, np.float64) or not validate else np.dtype(np.float64)
            if failed_dataset is not None:
                if failed_dataset not in f:
                    raise ScoreFileError(str(self.path), None, failed_dataset, "dataset missing")
                if f[failed_dataset].shape != d.shape:
                    raise ScoreFileError(
                        f"{self.path}:{failed_dataset}",
                        None,
                        str(f[failed_dataset].shape),
                        f"must have the shape of {dataset} {d.shape}",
                    )

    def __len__(self) -> int:
        return self._n

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        import h5py

        with h5py.File(self.path, "r") as f:
            d = f[self.dataset]
            fd = f[self.failed_dataset] if self.failed_dataset is not None else None
            for start in range(0, self._n, chunk_size):
                values = d[start : start + chunk_size]
                if not self.validate:
                    yield start, values
                    continue
                if values.dtype not in (np.float32, np.float64):
                    values = values.astype(np.float64)
                failed = fd[start : start + chunk_size].astype(bool) if fd is not None else None
                _check_finite(values, start, self.name, failed)
                if failed is not None and failed.any():
                    values = values.copy()
                    values[failed] = np.nan
                yield start, values


def open_scores(path: str | os.PathLike, dataset: str | None = None) -> ScoreSource:
    """A source for a binary score file, chosen by extension.

    ``.npy``: a 1-D float array; ``.f32``/``.bin``/``.raw``: headerless float32; ``.f64``: headerless
    float64; ``.h5``/``.hdf5``: the dataset ``dataset``. Text files are read by
    :func:`validation.score.read_score_text`.
    """
    p = Path(path)
    ext = p.suffix.lower()
    if ext == ".npy":
        return NpyScores(p)
    if ext in (".f32", ".bin", ".raw"):
        return RawScores(p, "float32")
    if ext == ".f64":
        return RawScores(p, "float64")
    if ext in (".h5", ".hdf5"):
        if dataset is None:
            raise ValueError(f"{p}: name the HDF5 dataset to read")
        return HDF5Scores(p, dataset)
    raise ValueError(f"{p}: unknown binary score file extension {ext!r} (.npy, .f32, .bin, .raw, .f64, .h5)")


# --- order-preserving integer keys --------------------------------------------------------------


def _similarity(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Similarities in the source's float width (a fresh array): distances negated, ``-0.0`` made
    ``+0.0``, the failure marker NaN made ``-inf``."""
    x = values if higher_is_better else -values
    x = x + x.dtype.type(0)
    failed = np.isnan(x)
    if failed.any():
        x[failed] = -np.inf
    return x


def source_from_array(scores, failed=None, *, higher_is_better: bool = True, name: str = "impostor") -> ArrayScores:
    """Validate an in-memory score array and wrap it as a source (failures become NaN).

    Raises :class:`validation.metrics.ScoreError` naming the index of a non-finite score that is
    not marked as failed.
    """
    prepare_scores(scores, failed, higher_is_better=higher_is_better, name=name)  # validation only
    a = np.asarray(scores)
    a = a.astype(np.float32 if a.dtype == np.float32 else np.float64, copy=True)
    if failed is not None:
        a[np.asarray(failed, dtype=bool)] = np.nan
    return ArrayScores(a, name)


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


def _raw_top16_to_key_top16() -> np.ndarray:
    """``m[r]`` is the top 16 bits of the order-preserving key for raw top 16 bits ``r``."""
    r = np.arange(1 << 16, dtype=np.int64)
    return np.where(r < 0x8000, r ^ 0x8000, r ^ 0xFFFF)


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


def kth_largest(
    source: ScoreSource,
    ks: Sequence[int] | np.ndarray,
    *,
    higher_is_better: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    counter_budget: int = COUNTER_BUDGET,
    collect_limit: int = COLLECT_LIMIT,
) -> Selection:
    """Exact ``k``-th highest similarities of a source, by selection on order-preserving keys.

    Pass 1 counts the top 16 bits of every key (65,536 bins), which places each wanted statistic
    in a bin together with its rank inside the bin. Pass 2 keeps only the scores of those bins and
    sorts them, when they number at most ``collect_limit``; otherwise (scores piled into few bins)
    further passes each count the next digit of the keys inside the chosen bins until the key is
    complete. Either way the result is exact.

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

    Returns
    -------
    Selection
    """
    n = len(source)
    ks = np.asarray(ks, dtype=np.int64).reshape(-1)
    if ks.size and (ks.min() < 0 or ks.max() >= n):
        raise ValueError(f"ranks must lie in [0, {n}), got {ks.min()}..{ks.max()}")
    dtype = np.dtype(np.float32) if source.dtype == np.float32 else np.dtype(np.float64)
    bits = 32 if dtype == np.float32 else 64
    ukey = np.uint32 if bits == 32 else np.uint64
    m = ks.size

    # pass 1: histogram of the top 16 key bits, range and failures
    raw_hist, n_failed, fmin, fmax = run_pass(source, TopBinPass(dtype, higher_is_better), chunk_size)
    passes = 1
    key_of_raw = _raw_top16_to_key_top16()
    hist = np.zeros(1 << 16, dtype=np.int64)
    hist[key_of_raw] = raw_hist
    from_top = np.cumsum(hist[::-1])  # from_top[j]: scores in key bins >= 65535 - j
    j = np.searchsorted(from_top, ks, side="right")
    above = np.where(j > 0, from_top[np.maximum(j - 1, 0)], 0).astype(np.int64)
    rank = ks - above
    prefix = (0xFFFF - j).astype(np.uint64)  # key bin of each statistic
    known = 16
    finite_min = fmin if fmin != math.inf else math.nan
    finite_max = fmax if fmax != -math.inf else math.nan
    if not m:
        return Selection(
            ks, np.zeros(0), np.zeros(0, dtype=np.int64), n, n_failed, finite_min, finite_max, passes, hist, dtype
        )

    cand = np.unique(prefix).astype(np.int64)
    if int(hist[cand].sum()) <= collect_limit:
        # pass 2: keep the scores of the chosen bins, sort their keys
        raw_of_key = np.empty(1 << 16, dtype=np.int64)
        raw_of_key[key_of_raw] = np.arange(1 << 16)
        wanted = np.zeros(1 << 16, dtype=bool)
        wanted[raw_of_key[cand]] = True
        kept = run_pass(source, KeepBinsPass(dtype, higher_is_better, wanted), chunk_size)
        passes += 1
        keys = np.sort(float_keys(kept))
        key_top = (keys >> ukey(bits - 16)).astype(np.int64)
        end = np.searchsorted(key_top, prefix.astype(np.int64), side="right")
        found = keys[end - 1 - rank]
        n_greater = above + (end - np.searchsorted(keys, found, side="right"))
        values = keys_to_float(found, dtype).astype(np.float64)
        return Selection(
            ks, values, n_greater.astype(np.int64), n, n_failed, finite_min, finite_max, passes, hist, dtype
        )

    # radix passes: count the next digit of the keys inside the chosen prefixes
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
    values = keys_to_float(prefix.astype(ukey), dtype).astype(np.float64)
    return Selection(ks, values, above, n, n_failed, finite_min, finite_max, passes, hist, dtype)


# --- the evaluation -------------------------------------------------------------------------------


def tail_ranks(n: int, n_points: int, top_fraction: float = 0.01) -> np.ndarray:
    """0-based ranks from the top, geometric from 0 to ``ceil(top_fraction * n)`` (all when few).

    The exact DET points in the low-FMR tail, where the 65,536 coarse bins are too few.
    """
    if n <= 0 or n_points <= 0:
        return np.zeros(0, dtype=np.int64)
    top = max(1, min(n, int(math.ceil(top_fraction * n))))
    g = np.unique(np.round(np.geomspace(1, top, max(n_points, 2))).astype(np.int64)) - 1
    return g[g < n]


def target_window_ranks(k: int, n: int, n_points: int = 201) -> np.ndarray:
    """Ranks around ``k`` spanning a factor ``1 + w`` either way, ``w = max(0.2, 10 / sqrt(k))``.

    Thresholds of subject-bootstrap resamples land in this window (the factor is wide where few
    false matches make the threshold noisy); it is the grid the bootstrap snaps thresholds to.
    """
    w = max(0.2, 10.0 / math.sqrt(max(k, 1)))
    r = np.round(k * np.exp(np.linspace(-math.log1p(w), math.log1p(w), n_points))).astype(np.int64)
    lo = max(0, int(math.floor(k / (1 + w))))
    hi = min(n - 1, int(math.ceil(k * (1 + w))))
    small = np.arange(lo, min(hi, lo + n_points) + 1, dtype=np.int64)  # every rank when k is small
    r = np.unique(np.concatenate([r, small, [k]]))
    return r[(r >= 0) & (r < n)]


@dataclass(frozen=True)
class StreamingEvaluation:
    """Everything :func:`evaluate` computes.

    ``det`` holds exact operating points (a subset of the full DET steps): the most lenient one
    (every finite score accepted), one at the lower edge of each of the 65,536 key bins that holds
    impostor scores, and one just above each selected order statistic (the tail grid and windows
    around each FMR target). ``selection`` holds those order statistics (the subject bootstrap
    snaps to them). ``genuine`` are the prepared genuine similarities in input order (``-inf`` =
    failed); ``genuine_sorted`` ascending.
    """

    operating_points: dict[float, OperatingPoint]
    eer: EqualErrorRate
    det: DETCurve
    selection: Selection
    genuine: np.ndarray
    genuine_sorted: np.ndarray
    n_genuine_failed: int
    n_impostor_failed: int
    higher_is_better: bool
    min_false_matches: int
    passes: int
    companions: tuple = ()

    @property
    def n_genuine(self) -> int:
        return int(self.genuine.size)

    @property
    def n_impostor(self) -> int:
        return int(self.selection.n)


class BracketPass(_Pass):
    """Distinct similarities ``v`` with ``lo <= v < hi`` and their counts, and the lowest similarity
    ``>= hi``; memory: the distinct values only."""

    def __init__(self, lo: float, hi: float, higher_is_better: bool, merge_at: int = 1 << 22) -> None:
        self.lo, self.hi = np.float64(lo), np.float64(hi)  # numpy scalars: float32 chunks compare in float64
        self.higher_is_better, self.merge_at = higher_is_better, merge_at

    def start(self):
        return {"values": [], "counts": [], "held": 0, "next_above": math.inf}

    @staticmethod
    def _merge(acc) -> None:
        u = np.concatenate(acc["values"])
        c = np.concatenate(acc["counts"])
        order = np.argsort(u, kind="stable")
        u, c = u[order], c[order]
        uu, start = np.unique(u, return_index=True)
        acc["values"], acc["counts"] = [uu], [np.add.reduceat(c, start)]
        acc["held"] = uu.size

    def add(self, acc, x, ids):
        x = _similarity(np.asarray(x), self.higher_is_better)
        inside = x[(x >= self.lo) & (x < self.hi)]
        if inside.size:
            u, c = np.unique(inside.astype(np.float64), return_counts=True)
            acc["values"].append(u)
            acc["counts"].append(c)
            acc["held"] += u.size
            if acc["held"] > self.merge_at:
                self._merge(acc)
        above = x[x >= self.hi]
        if above.size:
            acc["next_above"] = min(acc["next_above"], float(above.min()))
        return acc

    def pack(self, acc):
        if acc["values"]:
            self._merge(acc)
        return acc

    def merge(self, acc, packed):
        acc["values"] += packed["values"]
        acc["counts"] += packed["counts"]
        acc["held"] += packed["held"]
        acc["next_above"] = min(acc["next_above"], packed["next_above"])
        if acc["held"] > self.merge_at:
            self._merge(acc)
        return acc

    def finish(self, acc):
        if not acc["values"]:
            return np.zeros(0), np.zeros(0, dtype=np.int64), acc["next_above"]
        self._merge(acc)
        return acc["values"][0], acc["counts"][0], acc["next_above"]


def _det_on_grid(sel: Selection) -> tuple[np.ndarray, np.ndarray]:
    """Exact (threshold, false matches) pairs on the similarity scale, thresholds ascending.

    From the order statistics (threshold just above each) and from the key-bin lower edges
    (threshold = the lowest float of the bin, false matches = scores in that bin and above), and
    the most lenient point (just above a failed comparison).
    """
    t_parts = [next_above(np.array([-np.inf]), sel.dtype), next_above(sel.values, sel.dtype)]
    fm_parts = [np.array([sel.n - sel.n_failed]), sel.n_greater]
    if sel.hist is not None and sel.n:
        bits = 32 if sel.dtype == np.float32 else 64
        nonempty = np.flatnonzero(sel.hist)
        edge_keys = nonempty.astype(np.uint64) << np.uint64(bits - 16)
        with np.errstate(invalid="ignore"):  # bins beyond +-inf have NaN edges; dropped below
            edges = keys_to_float(edge_keys, sel.dtype).astype(np.float64)
        at_or_above = np.cumsum(sel.hist[::-1])[::-1]  # scores in bins >= b
        ok = ~np.isnan(edges) & np.isfinite(edges)
        t_parts.append(edges[ok])
        fm_parts.append(at_or_above[nonempty][ok])
    t = np.concatenate(t_parts)
    fm = np.concatenate(fm_parts).astype(np.int64)
    order = np.argsort(t, kind="stable")
    t, fm = t[order], fm[order]
    keep = np.concatenate([[True], t[1:] != t[:-1]]) if t.size else np.zeros(0, bool)
    return t[keep], fm[keep]


def evaluate(
    genuine,
    impostor: ScoreSource | np.ndarray,
    fmr_targets: Sequence[float] = FMR_TARGETS,
    *,
    genuine_failed=None,
    impostor_failed=None,
    higher_is_better: bool = True,
    min_false_matches: int = 1,
    n_grid: int = 256,
    target_windows: bool = True,
    with_eer: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
    counter_budget: int = COUNTER_BUDGET,
    collect_limit: int = COLLECT_LIMIT,
    companions=None,
) -> StreamingEvaluation:
    """FNMR at each FMR target, the EER and a DET curve, reading the impostors in chunks.

    Parameters
    ----------
    genuine : array_like, shape (n_genuine,)
        Genuine scores, held in memory.
    impostor : ScoreSource or numpy.ndarray
        Impostor scores in the caller's units (an array is validated and wrapped).
    fmr_targets : sequence of float
    genuine_failed, impostor_failed : array_like of bool, optional
        Failed comparisons (``impostor_failed`` only with an array; a source marks them with NaN).
    higher_is_better : bool
        False when both sets are distances.
    min_false_matches : int
        Estimability rule of :mod:`validation.metrics`.
    n_grid : int
        Exact DET points in the top 1% of impostor scores (see :func:`tail_ranks`).
    target_windows : bool
        Also select the ranks around each target (:func:`target_window_ranks`), which the subject
        bootstrap needs.
    with_eer : bool
        Compute the EER (one more pass).
    chunk_size, counter_budget, collect_limit : int
        Memory bounds (see :func:`kth_largest`).
    companions : callable, optional
        ``companions(selection, operating_points, genuine)`` -> ``(reductions, ids)`` (``genuine``: the
        prepared genuine similarities): more passes that need only the order statistics and the
        genuine scores (the subject bootstrap's counts, a plot histogram), run in the same
        pass over the impostors as the EER's (``ids``: the subject ids they read, or None). Their
        results are ``StreamingEvaluation.companions``, in order.

    Returns
    -------
    StreamingEvaluation
        Operating points and EER identical to :func:`validation.metrics.fnmr_at_fmr` and
        :func:`validation.metrics.eer` on the same data. Passes over the impostors: 2 (3 when the
        selected bins hold more than ``collect_limit`` scores, more for float64), plus 1 for the EER
        and the companions.
    """
    if hasattr(impostor, "chunks"):
        if impostor_failed is not None:
            raise ValueError("impostor_failed applies to an array; a source marks failures with NaN")
        source = impostor
    else:
        source = source_from_array(impostor, impostor_failed, higher_is_better=higher_is_better)
    g = prepare_scores(genuine, genuine_failed, higher_is_better=higher_is_better, name="genuine")
    g_sorted = np.sort(g)
    n = len(source)
    ops: dict[float, OperatingPoint] = {}
    wanted: dict[float, int] = {}
    for f in fmr_targets:
        f = check_fmr_target(f)
        reason = estimability(f, n, g.size, min_false_matches)
        if reason:
            ops[f] = unestimable_point(f, reason, n, g.size)
        else:
            wanted[f] = allowed_false_matches(f, n)
    parts = [tail_ranks(n, n_grid), np.fromiter(wanted.values(), dtype=np.int64, count=len(wanted))]
    if target_windows:
        parts += [target_window_ranks(k, n) for k in wanted.values()]
    ks = np.unique(np.concatenate(parts))
    sel = (
        kth_largest(
            source,
            ks,
            higher_is_better=higher_is_better,
            chunk_size=chunk_size,
            counter_budget=counter_budget,
            collect_limit=collect_limit,
        )
        if n
        else Selection(
            ks, np.zeros(0), np.zeros(0, dtype=np.int64), 0, 0, math.nan, math.nan, 0, None, np.dtype(np.float64)
        )
    )
    passes = sel.passes
    pos_of = {int(k): i for i, k in enumerate(sel.ks)}
    for f, k in wanted.items():
        i = pos_of[k]
        ops[f] = operating_point(f, sel.values[i], int(sel.n_greater[i]), n, g_sorted, higher_is_better, sel.dtype)
    ops = {check_fmr_target(f): ops[check_fmr_target(f)] for f in fmr_targets}
    extra, extra_ids = companions(sel, ops, g) if companions is not None else ([], None)
    extra_results: list = []

    def bracket_and_companions(bracket):
        """The bracket pass with the companions in the same pass; their results go to extra_results."""
        nonlocal passes
        passes += 1
        if not extra:
            return run_pass(source, bracket, chunk_size)
        results = run_pass(source, MultiPass([bracket, *extra]), chunk_size, ids=extra_ids)
        extra_results.extend(results[1:])
        return results[0]

    t_sim, fm = _det_on_grid(sel)
    fnm = np.searchsorted(g_sorted, t_sim, side="left").astype(np.int64)
    with np.errstate(divide="ignore", invalid="ignore"):
        det = DETCurve(
            to_user_threshold(t_sim, higher_is_better),
            fm,
            n,
            fnm,
            g.size,
            fm / n if n else np.full(fm.shape, np.nan),
            fnm / g.size if g.size else np.full(fm.shape, np.nan),
        )

    eer = EqualErrorRate(math.nan, math.nan, math.nan, math.nan, None, n, None, g.size)
    if with_eer:
        if n == 0 or g.size == 0:
            eer = eer_from_points(np.zeros(1), np.zeros(1), np.zeros(1), n, g.size)
        else:
            b = int(np.flatnonzero(fnm / g.size >= fm / n)[0]) if fm[-1] * g.size <= fnm[-1] * n else None
            if b is None:  # the grid ends before the crossing: add the point that rejects everything
                t_sim, fm, fnm = np.append(t_sim, np.inf), np.append(fm, 0), np.append(fnm, g.size)
                b = int(np.flatnonzero(fnm / g.size >= fm / n)[0])
            if b == 0:
                eer = eer_from_points(t_sim[:1], fm[:1], fnm[:1], n, g.size)
            else:
                lo, hi = float(t_sim[b - 1]), float(t_sim[b])
                u, c, next_imp = bracket_and_companions(BracketPass(lo, hi, higher_is_better))
                g_in = g_sorted[(g_sorted >= lo) & (g_sorted < hi)]
                g_above = g_sorted[g_sorted >= hi]
                next_above = min(next_imp, float(g_above[0]) if g_above.size else math.inf)
                cand = np.unique(np.concatenate([u, g_in]))
                # impostors >= t for t in [lo, hi): those >= hi plus those in [t, hi)
                cum_from_top = np.concatenate([np.cumsum(c[::-1])[::-1], [0]])
                fm_c = int(fm[b]) + cum_from_top[np.searchsorted(u, cand, side="left")]
                cand = np.append(cand, next_above)
                fm_c = np.append(fm_c, int(fm[b]))
                fnm_c = np.searchsorted(g_sorted, cand, side="left").astype(np.int64)
                r = eer_from_points(cand, fm_c, fnm_c, n, g.size)
                eer = EqualErrorRate(
                    r.eer,
                    float(to_user_threshold(r.threshold, higher_is_better)),
                    r.fmr,
                    r.fnmr,
                    r.false_matches,
                    n,
                    r.false_non_matches,
                    g.size,
                )
    if extra and not extra_results:  # no EER pass was needed: the companions on their own
        extra_results = run_pass(source, MultiPass(extra), chunk_size, ids=extra_ids)
        passes += 1
    return StreamingEvaluation(
        ops,
        eer,
        det,
        sel,
        g,
        g_sorted,
        int(np.count_nonzero(g == -np.inf)),
        sel.n_failed,
        higher_is_better,
        min_false_matches,
        passes,
        tuple(extra_results),
    )


def fnmr_at_fmr(
    genuine, impostor: ScoreSource | np.ndarray, fmr_targets: Sequence[float] = FMR_TARGETS, **kwargs
) -> dict[float, OperatingPoint]:
    """Only FNMR at each FMR target (2 passes over float32 impostors). See :func:`evaluate`."""
    kwargs.setdefault("n_grid", 0)
    kwargs.setdefault("target_windows", False)
    kwargs.setdefault("with_eer", False)
    return evaluate(genuine, impostor, fmr_targets, **kwargs).operating_points


def histogram(source: ScoreSource, edges: np.ndarray, *, chunk_size: int = DEFAULT_CHUNK) -> tuple[np.ndarray, int]:
    """Counts of the scores in the bins ``edges`` (caller's units), and the number of failures.

    Returns
    -------
    counts : numpy.ndarray of int64, shape (len(edges) - 1,)
    n_failed : int
        Failed comparisons (NaN in the source), not binned.
    """
    counts, n_failed = run_pass(source, HistogramPass(edges), chunk_size)
    return counts, n_failed


class HistogramPass(_Pass):
    """Counts in the bins ``edges`` (caller's units) and the number of failures (NaN)."""

    def __init__(self, edges: np.ndarray) -> None:
        self.edges = np.asarray(edges)

    def start(self):
        return [np.zeros(len(self.edges) - 1, dtype=np.int64), 0]

    def add(self, acc, x, ids):
        x = np.asarray(x)
        fin = np.isfinite(x)
        acc[1] += int(x.size - np.count_nonzero(fin))
        c, _ = np.histogram(x[fin] if not fin.all() else x, bins=self.edges)
        acc[0] += c
        return acc

    def merge(self, acc, packed):
        acc[0] += packed[0]
        acc[1] += packed[1]
        return acc


class HDF5ScoreWriter:
    """Append genuine and impostor scores (and subject ids) to an HDF5 score file, chunk by chunk.

    The layout :mod:`validation.score` reads: float32 datasets ``genuine`` and ``impostor``;
    optional int64 ``genuine_subject`` / ``impostor_subject`` (one subject id per score, for the
    subject bootstrap; for an impostor pair, the enrolled template's subject); optional boolean
    ``genuine_failed`` / ``impostor_failed``; attribute ``schema = "frvt.scores/1"`` and
    ``direction`` (``"similarity"`` or ``"distance"``).

    >>> import tempfile, os
    >>> p = os.path.join(tempfile.mkdtemp(), "s.h5")
    >>> with HDF5ScoreWriter(p, with_subjects=True) as w:
    ...     w.append("genuine", [0.9, 0.8], subjects=[1, 2])
    ...     w.append("impostor", [0.1], subjects=[1])
    """

    def __init__(
        self,
        path: str | os.PathLike,
        *,
        with_subjects: bool = False,
        with_failed: bool = False,
        direction: str = "similarity",
        dtype: str = "float32",
    ) -> None:
        import h5py

        if direction not in ("similarity", "distance"):
            raise ValueError(f"direction must be 'similarity' or 'distance', not {direction!r}")
        self._f = h5py.File(path, "w")
        self._f.attrs["schema"] = "frvt.scores/1"
        self._f.attrs["direction"] = direction
        self.with_subjects = with_subjects
        self.with_failed = with_failed
        for cls in ("genuine", "impostor"):
            self._f.create_dataset(cls, shape=(0,), maxshape=(None,), dtype=dtype, chunks=(1 << 18,))
            if with_subjects:
                self._f.create_dataset(f"{cls}_subject", shape=(0,), maxshape=(None,), dtype="int64", chunks=(1 << 18,))
            if with_failed:
                self._f.create_dataset(f"{cls}_failed", shape=(0,), maxshape=(None,), dtype="bool", chunks=(1 << 18,))

    def append(self, cls: str, scores, subjects=None, failed=None) -> None:
        """Append scores of class ``"genuine"`` or ``"impostor"`` (and their subjects / failure flags)."""
        if cls not in ("genuine", "impostor"):
            raise ValueError(f"class must be 'genuine' or 'impostor', not {cls!r}")
        s = np.asarray(scores).reshape(-1)
        parts = [(cls, s)]
        if self.with_subjects:
            if subjects is None:
                raise ValueError("this file stores subject ids: pass subjects")
            parts.append((f"{cls}_subject", np.asarray(subjects, dtype=np.int64).reshape(-1)))
        if self.with_failed:
            parts.append(
                (
                    f"{cls}_failed",
                    np.zeros(s.size, bool) if failed is None else np.asarray(failed, dtype=bool).reshape(-1),
                )
            )
        for name, a in parts:
            if a.size != s.size:
                raise ValueError(f"{name} has {a.size} values for {s.size} scores")
        for name, a in parts:
            d = self._f[name]
            n0 = d.shape[0]
            d.resize((n0 + a.size,))
            d[n0:] = a

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> "HDF5ScoreWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
