"""Every comparison among the templates of a store (or between two stores), scored without writing a score.

The comparisons are cut into blocks of ``block x block`` templates. Each pass of the exact metrics
(:func:`validation.selection.run_pass`) runs on every block where the block is computed (a Dask
worker, or this process; a task takes a group of neighbouring blocks) and sends back only its small
partial result; the similarities are recomputed for each pass and never stored. A sample of the
blocks first guesses where the wanted order statistics lie (:meth:`StoreComparisons.sample_histogram`),
so that one pass over every comparison gives the key histogram with every score of the guessed bins,
hence the FNMR thresholds, the DET points, the EER and the plot histogram; the subject bootstrap's
per-subject counts take one more pass, and a guess that missed costs the pass it would have saved. Every pass counts, keeps or takes
extremes, so the numbers do not depend on the number of workers, the block size or the order
blocks finish in: they are those :func:`validation.score.score` gives on the same scores written
to a file.

Similarities: when the store's header declares a vector form (fixed-length vectors with a declared
similarity, e.g. :class:`implementation.template.VectorForm`), a block is one matrix product
between two panels of vectors, which gives the same value as ``match_templates`` for every pair;
otherwise each pair goes through the implementation's ``match_templates``, initialised once per
worker. A comparison fails (a non-match at every threshold, kept in the denominators) when either
template's creation failed (non-zero code) or ``match_templates`` returns a non-success code.

Pairs: within one store, every unordered pair ``i < j`` of rows; between a gallery store and a
probe store, every (gallery, probe) pair. A pair is genuine when both images have the same
identity. The subject of an impostor comparison, for the subject bootstrap, is the gallery (row)
template's identity.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from frvt.store import (
    StoreError,
    StoreInfo,
    check_compatible,
    read_store_info,
    read_templates,
)
from validation.metrics import FailureCount
from validation.score_sources import DEFAULT_CHUNK
from validation.selection import TopBinPass

GROUP_SIDE = 8
"""Most blocks per side of a task's group (:func:`block_groups`)."""

SAMPLE_FRACTION = 1 / 64
"""Share of the blocks whose similarities guess, before the first pass, where the wanted order
statistics lie (a wrong guess costs a pass, never exactness)."""

DEFAULT_BLOCK = 4096
"""Templates per block side. A block is computed in tiles that stay in cache, so its size sets what
a block's fixed costs (reading and decoding its two panels of templates, merging its partial) are
shared by, and the panels a worker holds (about 8 MB each for 4096 templates of 128 values)."""


@dataclass
class Plan:
    """What to compare, shipped once to every worker.

    Attributes
    ----------
    gallery, probe : StoreInfo
        ``probe`` is ``gallery`` for all-vs-all.
    all_vs_all : bool
    row_subject, col_subject : numpy.ndarray of int64
        Subject number of each gallery / probe template (numbers over the union of identities).
    n_subjects : int
    block : int
    implementation, config_dir : str
        For the ``match_templates`` fallback.
    vector_form : object or None
    """

    gallery: StoreInfo
    probe: StoreInfo
    all_vs_all: bool
    row_subject: np.ndarray
    col_subject: np.ndarray
    n_subjects: int
    block: int
    implementation: str
    config_dir: str
    vector_form: object = None

    def blocks(self) -> list[tuple[int, int, int, int]]:
        """``(r0, r1, c0, c1)`` of every block holding at least one pair."""
        nr, nc = self.gallery.n, self.probe.n
        out = []
        for r0 in range(0, nr, self.block):
            for c0 in range(r0 if self.all_vs_all else 0, nc, self.block):
                out.append((r0, min(nr, r0 + self.block), c0, min(nc, c0 + self.block)))
        return out

    def genuine_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        """Row and column index of every genuine pair, in row-major order (i, then j)."""
        rs, cs = self.row_subject, self.col_subject
        r_order = np.argsort(rs, kind="stable")
        c_order = np.argsort(cs, kind="stable")
        r_sorted, c_sorted = rs[r_order], cs[c_order]
        subjects, r_start, r_count = np.unique(r_sorted, return_index=True, return_counts=True)
        c_lo = np.searchsorted(c_sorted, subjects, side="left")
        c_hi = np.searchsorted(c_sorted, subjects, side="right")
        ii, jj = [], []
        for s0, k, lo, hi in zip(r_start, r_count, c_lo, c_hi):
            rows = r_order[s0 : s0 + k]
            cols = c_order[lo:hi]
            if self.all_vs_all:
                if k < 2:
                    continue
                a, b = np.triu_indices(k, 1)
                i, j = rows[a], rows[b]
                swap = i > j
                i, j = np.where(swap, j, i), np.where(swap, i, j)
            else:
                if not cols.size:
                    continue
                i = np.repeat(rows, cols.size)
                j = np.tile(cols, rows.size)
            ii.append(i)
            jj.append(j)
        if not ii:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        i, j = np.concatenate(ii).astype(np.int64), np.concatenate(jj).astype(np.int64)
        order = np.lexsort((j, i))
        return i[order], j[order]

    def for_workers(self) -> Plan:
        """This plan without the stores' names of templates, identities and images (workers need the
        subject numbers and return codes only; an error names a template by reading its id then)."""
        return replace(self, gallery=self.gallery.without_names(), probe=self.probe.without_names())

    @property
    def n_pairs(self) -> int:
        n = self.gallery.n
        return n * (n - 1) // 2 if self.all_vs_all else n * self.probe.n


# --- per worker -------------------------------------------------------------------------------------


def _template_id(store: StoreInfo, row: int) -> str:
    """The id of a template (read from the store when the worker's plan holds no names)."""
    ids = store.ids if store.ids is not None else read_store_info(store.path).ids
    return str(ids[row])


class BlockContext:
    """What a worker keeps between tasks: the plan, recently used panels, the implementation.

    A Dask worker gets one through :class:`ScoringPlugin`; a run in this process holds one itself.
    """

    def __init__(self, plan: Plan, panels: int = 2 * GROUP_SIDE + 2, compiled: bool = True) -> None:
        self.plan = plan
        self.max_panels = panels
        self.compiled = compiled  # False: every pass through numpy on materialised blocks (the reference)
        self._scratch: dict = {}  # the compiled passes' buffers and float32 panels, reused block to block
        self._panels: dict[tuple, tuple] = {}
        self._impl = None

    def panel(self, store: StoreInfo, start: int, stop: int):
        """Rows ``start:stop`` of a store: (vectors or template bytes, usable mask, codes)."""
        key = (str(store.path), start, stop)
        hit = self._panels.pop(key, None)
        if hit is None:
            hit = self._load_panel(store, start, stop)
            while len(self._panels) >= self.max_panels:
                self._panels.pop(next(iter(self._panels)))
        self._panels[key] = hit
        return hit

    def _load_panel(self, store: StoreInfo, start: int, stop: int):
        templates = read_templates(store.path, start, stop)
        codes = store.codes[start:stop]
        made = codes == 0
        form = self.plan.vector_form
        if form is None:
            return templates, made, codes
        q = np.zeros((stop - start, self.plan.gallery.header.get("dim", 0) or 1), np.float64)
        rows = np.flatnonzero(made)
        if rows.size:
            try:
                v, ok = form.vectors([templates[r] for r in rows])
            except ValueError as exc:
                pos = getattr(exc, "index", None)
                which = (
                    f"template {_template_id(store, start + rows[pos])!r} (row {start + rows[pos]})"
                    if pos is not None
                    else f"templates {start}..{stop - 1}"
                )
                raise StoreError(store.path, f"{which}: {str(exc).split(': ', 1)[-1]}") from None
            q = np.zeros((stop - start, v.shape[1]), np.float64)
            q[rows] = v
            made = made.copy()
            made[rows] = ok
        return q, made, codes

    def implementation(self):
        if self._impl is None:
            from frvt.contract import load_implementation

            impl = load_implementation(self.plan.implementation)
            status = impl.initialize(self.plan.config_dir)
            if not status.ok:
                raise RuntimeError(f"initialize({self.plan.config_dir}) returned {status.code.name}: {status.info}")
            self._impl = impl
        return self._impl

    def block_scores(self, r0: int, r1: int, c0: int, c1: int) -> tuple[np.ndarray, np.ndarray]:
        """Similarities (r1-r0, c1-c0) float32 with NaN for failed comparisons, and the pair mask
        (True for the pairs this block owns: ``i < j`` in all-vs-all)."""
        plan = self.plan
        a, a_ok, _ = self.panel(plan.gallery, r0, r1)
        b, b_ok, _ = self.panel(plan.probe, c0, c1)
        if plan.vector_form is not None:
            s = plan.vector_form.similarity_matrix(a, b)
            if not (a_ok.all() and b_ok.all()):
                s[~a_ok[:, None] | ~b_ok[None, :]] = np.nan
        else:
            s, failed = self._match_block(a, a_ok, b, b_ok)
            s[failed] = np.nan
        owned = None  # every pair of the block
        if plan.all_vs_all and c0 < r1:
            owned = np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :]
        return s, owned

    def impostor_mask(self, r0: int, r1: int, c0: int, c1: int, owned: np.ndarray | None) -> np.ndarray | None:
        """The block's impostor pairs, or None when every pair of the block is one."""
        rs, cs = self.plan.row_subject[r0:r1], self.plan.col_subject[c0:c1]
        shared = np.intersect1d(rs, cs, assume_unique=False)
        if owned is None and not shared.size:
            return None
        imp = rs[:, None] != cs[None, :] if shared.size else np.ones((r1 - r0, c1 - c0), bool)
        return imp if owned is None else imp & owned

    def _match_block(self, a, a_ok, b, b_ok):
        impl = self.implementation()
        s = np.full((len(a), len(b)), np.nan, np.float32)
        failed = np.ones(s.shape, bool)
        for i in range(len(a)):
            if not a_ok[i]:
                continue
            for j in range(len(b)):
                if b_ok[j]:
                    r = impl.match_templates(b[j], a[i])
                    if r.status.ok:
                        s[i, j], failed[i, j] = r.similarity, False
        return s, failed

    def pair_scores(self, i: np.ndarray, j: np.ndarray) -> np.ndarray:
        """Similarities (float32, NaN = failed) of the pairs ``(i[k], j[k])``, computed like a block's."""
        out = np.full(i.size, np.nan, np.float32)
        for r0 in range(0, self.plan.gallery.n, self.plan.block):
            sel = np.flatnonzero((i >= r0) & (i < r0 + self.plan.block))
            if not sel.size:
                continue
            r1 = min(self.plan.gallery.n, r0 + self.plan.block)
            cols = j[sel]
            c_lo, c_hi = int(cols.min()), int(cols.max()) + 1
            for c0 in range(c_lo, c_hi, self.plan.block):
                part = sel[(cols >= c0) & (cols < c0 + self.plan.block)]
                if not part.size:
                    continue
                c1 = min(self.plan.probe.n, c0 + self.plan.block)
                a, a_ok, _ = self.panel(self.plan.gallery, r0, r1)
                b, b_ok, _ = self.panel(self.plan.probe, c0, c1)
                ri, cj = i[part] - r0, j[part] - c0
                if self.plan.vector_form is not None:
                    uniq_r, inv_r = np.unique(ri, return_inverse=True)
                    uniq_c, inv_c = np.unique(cj, return_inverse=True)
                    s = self.plan.vector_form.similarity_matrix(a[uniq_r], b[uniq_c])[inv_r, inv_c]
                    bad = ~a_ok[ri] | ~b_ok[cj]
                else:
                    impl = self.implementation()
                    s = np.full(part.size, np.nan, np.float32)
                    bad = np.ones(part.size, bool)
                    for k, (x, y) in enumerate(zip(ri, cj)):
                        if a_ok[x] and b_ok[y]:
                            r = impl.match_templates(b[y], a[x])
                            if r.status.ok:
                                s[k], bad[k] = r.similarity, False
                s = np.asarray(s, np.float32)
                s[bad] = np.nan
                out[part] = s
        return out

    def run_block(self, blk: tuple[int, int, int, int], reduction, chunk_size: int, with_ids: bool):
        """One pass's packed partial over the impostor comparisons of a block."""
        r0, r1, c0, c1 = blk
        plan = self.plan
        if self.compiled and plan.vector_form is not None:
            from validation import blockpasses

            if blockpasses.supports(plan.vector_form, reduction):
                a, a_ok, _ = self.panel(plan.gallery, r0, r1)
                b, b_ok, _ = self.panel(plan.probe, c0, c1)
                rs, cs = plan.row_subject[r0:r1], plan.col_subject[c0:c1]
                keys = ((str(plan.gallery.path), r0, r1), (str(plan.probe.path), c0, c1))
                return blockpasses.run_block(
                    reduction, a, a_ok, b, b_ok, rs, cs, r0, c0, plan.all_vs_all, self._scratch, keys
                )
        s, owned = self.block_scores(r0, r1, c0, c1)
        rs = self.plan.row_subject[r0:r1]
        impostor = self.impostor_mask(r0, r1, c0, c1, owned)
        acc = reduction.start()
        if hasattr(reduction, "add_block"):  # passes that need both templates of each comparison
            return reduction.pack(reduction.add_block(acc, s, r0, r1, c0, c1, impostor))
        step = max(1, chunk_size // max(1, c1 - c0))
        for k in range(0, r1 - r0, step):
            if impostor is None:  # the usual block: every pair an impostor, no copy
                x = s[k : k + step].ravel()
                ids = np.repeat(rs[k : k + step], c1 - c0) if with_ids else None
            else:
                m = impostor[k : k + step]
                x = s[k : k + step][m]
                ids = np.broadcast_to(rs[k : k + step, None], m.shape)[m] if with_ids else None
            if x.size:
                acc = reduction.add(acc, x, ids)
        return reduction.pack(acc)


try:
    from distributed.diagnostics.plugin import WorkerPlugin as _WorkerPlugin
except ImportError:  # pragma: no cover - dask is a dependency
    _WorkerPlugin = object


class ScoringPlugin(_WorkerPlugin):
    """Holds a :class:`BlockContext` in each Dask worker (the implementation loads at most once)."""

    def __init__(self, plan: Plan, name: str) -> None:
        self.plan = plan
        self.name = name
        self.context: BlockContext | None = None

    def setup(self, worker=None) -> None:
        self.context = BlockContext(self.plan)
        if self.plan.vector_form is not None:  # load the compiled passes now, not in the first pass
            from validation import blockpasses

            blockpasses.warm_up()

    def teardown(self, worker=None) -> None:
        self.context = None


def _context(name: str) -> BlockContext:
    from distributed import get_worker

    return get_worker().plugins[name].context


def _task_blocks(name: str, blocks, reduction, chunk_size: int, with_ids: bool):
    """The packed partial of a group of blocks (merged here: one partial to send back) and the CPU
    seconds this worker thread spent on it."""
    t0 = time.thread_time()
    ctx = _context(name)
    if len(blocks) == 1:
        part = ctx.run_block(blocks[0], reduction, chunk_size, with_ids)
    else:
        acc = reduction.start()
        for blk in blocks:
            acc = reduction.merge(acc, ctx.run_block(blk, reduction, chunk_size, with_ids))
        part = reduction.pack(acc)
    return part, time.thread_time() - t0


def block_groups(blocks: list[tuple[int, int, int, int]], block: int, workers: int) -> list[list]:
    """The blocks in groups of up to ``g x g`` neighbours (row-major inside a group), ``g`` as large
    as leaves eight groups per worker, at most :data:`GROUP_SIDE`: a task computes a group, so a
    worker reads each of the group's ``2 g`` panels once for ``g**2`` blocks and sends back one
    partial result."""
    g = int(max(1, min(GROUP_SIDE, math.isqrt(max(1, len(blocks) // (8 * max(1, workers)))))))
    if g == 1:
        return [[b] for b in blocks]
    groups: dict[tuple[int, int], list] = {}
    for blk in blocks:
        groups.setdefault((blk[0] // block // g, blk[2] // block // g), []).append(blk)
    return list(groups.values())


def _task_pairs(name: str, i: np.ndarray, j: np.ndarray) -> np.ndarray:
    return _context(name).pair_scores(i, j)


# --- the source ------------------------------------------------------------------------------------


@dataclass
class PassLog:
    """Timing of each pass: name, blocks, comparisons, seconds (wall) and cpu_seconds (the CPU time of
    the threads that computed the blocks, summed over workers: what the pass costs on a shared machine)."""

    entries: list[dict] = field(default_factory=list)


class StoreComparisons:
    """The impostor comparisons of a :class:`Plan` as a score source whose passes run block by block.

    Parameters
    ----------
    plan : Plan
    client : distributed.Client or None
        None: every block in this process.
    n_impostor : int
    """

    dtype = np.dtype(np.float32)

    def __init__(
        self,
        plan: Plan,
        client,
        n_impostor: int,
        name: str,
        chunk_size: int = DEFAULT_CHUNK,
        max_in_flight: int | None = None,
        progress: bool = False,
    ) -> None:
        self.plan = plan
        self.client = client
        self.name = name
        self._n = n_impostor
        self.chunk_size = chunk_size
        self.log = PassLog()
        self.progress = progress
        self._local = BlockContext(plan) if client is None else None
        self._plugin = None
        if client is not None:
            self._plugin = f"frvt-scoring-{id(self)}-{time.time_ns()}"
            client.register_plugin(ScoringPlugin(plan.for_workers(), self._plugin), name=self._plugin)
            self.max_in_flight = max_in_flight or 2 * max(1, len(client.scheduler_info()["workers"]))

    def __len__(self) -> int:
        return self._n

    def subjects(self) -> ImpostorSubjects:
        return ImpostorSubjects(self)

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        """The impostor similarities block by block (for inspection; passes use :meth:`run_pass`)."""
        ctx = self._local or BlockContext(self.plan)
        offset = 0
        for blk in self.plan.blocks():
            s, owned = ctx.block_scores(*blk)
            m = ctx.impostor_mask(*blk, owned)
            x = s.ravel() if m is None else s[m]
            yield offset, x
            offset += x.size

    def run_pass(self, reduction, chunk_size: int, ids=None):
        with_ids = ids is not None
        if with_ids and not (isinstance(ids, ImpostorSubjects) and ids.source is self):
            raise ValueError("the subject ids of store comparisons come from the same comparisons")
        return self._run_blocks(reduction, self.plan.blocks(), with_ids)

    def sample_histogram(self, fraction: float = SAMPLE_FRACTION) -> np.ndarray:
        """The raw top-16-bit histogram of the similarities of a sample of the blocks (evenly spaced
        in the plan, ``fraction`` of them, at least one): what
        :func:`validation.selection.fine_bins_from_sample` needs to guess where the wanted order
        statistics lie, so that one pass finds them."""
        blocks = self.plan.blocks()
        k = max(1, math.ceil(len(blocks) * fraction))
        picked = [blocks[i] for i in np.unique(np.linspace(0, len(blocks) - 1, k).round().astype(int))]
        share = fraction * len(blocks) / len(picked)
        if share < 1:  # few blocks: the first rows of each picked block
            picked = [(r0, r0 + max(1, math.ceil((r1 - r0) * share)), c0, c1) for r0, r1, c0, c1 in picked]
        return self._run_blocks(TopBinPass(np.float32, True), picked, False, "sample: ")[0]

    def _run_blocks(self, reduction, blocks, with_ids: bool, label: str = ""):
        t0 = time.perf_counter()
        cpu = 0.0
        acc = reduction.start()
        bar = _bar(
            len(blocks),
            label + "+".join(type(r).__name__ for r in getattr(reduction, "reductions", [reduction])),
            self.progress,
        )
        workers = 1 if self.client is None else len(self.client.scheduler_info()["workers"])
        groups = block_groups(blocks, self.plan.block, workers)
        if self.client is None:
            for blk in (b for grp in groups for b in grp):
                c0 = time.thread_time()
                part = self._local.run_block(blk, reduction, self.chunk_size, with_ids)
                cpu += time.thread_time() - c0
                acc = reduction.merge(acc, part)
                bar.update(1)
        else:
            from distributed import as_completed

            red = self.client.scatter(reduction, broadcast=True, hash=False)
            todo = iter(groups)
            ac = as_completed()

            sizes: dict = {}

            def submit(grp):
                fut = self.client.submit(_task_blocks, self._plugin, grp, red, self.chunk_size, with_ids, pure=False)
                sizes[fut.key] = len(grp)
                return fut

            for _ in range(self.max_in_flight):
                grp = next(todo, None)
                if grp is None:
                    break
                ac.add(submit(grp))
            for fut in ac:
                part, block_cpu = fut.result()
                cpu += block_cpu
                done = sizes.pop(fut.key)
                fut.release()
                grp = next(todo, None)
                if grp is not None:
                    ac.add(submit(grp))
                acc = reduction.merge(acc, part)
                bar.update(done)
            del red
        bar.close()
        parts = getattr(reduction, "reductions", [reduction])  # a MultiPass: its passes, computed together
        self.log.entries.append(
            {
                "pass": label + "+".join(type(r).__name__ for r in parts),
                "blocks": len(blocks),
                "comparisons": self.plan.n_pairs if label == "" else self._pairs_in(blocks),
                "seconds": time.perf_counter() - t0,
                "cpu_seconds": cpu,
            }
        )
        return reduction.finish(acc)

    def _pairs_in(self, blocks) -> int:
        """Comparisons the plan owns in ``blocks``."""
        total = 0
        for r0, r1, c0, c1 in blocks:
            if self.plan.all_vs_all:  # the pairs i < j
                total += int(np.maximum(0, c1 - np.maximum(np.arange(r0, r1) + 1, c0)).sum())
            else:
                total += (r1 - r0) * (c1 - c0)
        return total

    def pair_scores(self, i: np.ndarray, j: np.ndarray, per_task: int = 1 << 20) -> np.ndarray:
        """Similarities of the given pairs (the genuine ones), float32, NaN = failed."""
        if self.client is None:
            return self._local.pair_scores(i, j)
        futures = [
            self.client.submit(_task_pairs, self._plugin, i[k : k + per_task], j[k : k + per_task], pure=False)
            for k in range(0, i.size, per_task)
        ]
        parts = self.client.gather(futures)
        return np.concatenate(parts) if parts else np.zeros(0, np.float32)

    def close(self) -> None:
        if self.client is not None and self._plugin is not None:
            with contextlib.suppress(Exception):
                self.client.unregister_worker_plugin(self._plugin)


class ImpostorSubjects:
    """The subject ids aligned with a :class:`StoreComparisons` (the gallery template's subject)."""

    def __init__(self, source: StoreComparisons) -> None:
        self.source = source
        self.name = f"{source.name} (subjects)"
        self.dtype = np.dtype(np.int64)

    def __len__(self) -> int:
        return len(self.source)

    def unique(self) -> np.ndarray:
        """The subjects that have at least one impostor comparison."""
        plan = self.source.plan
        rs = plan.row_subject
        if plan.all_vs_all:
            order = np.argsort(rs, kind="stable")
            total = np.bincount(rs, minlength=plan.n_subjects)
            rank = np.empty(rs.size, np.int64)
            starts = np.concatenate([[0], np.cumsum(total)[:-1]])
            rank[order] = np.arange(rs.size) - starts[rs[order]]
            later_same = total[rs] - rank - 1
            has = (rs.size - 1 - np.arange(rs.size)) - later_same > 0
        else:
            in_probe = np.bincount(plan.col_subject, minlength=plan.n_subjects)
            has = plan.probe.n - in_probe[rs] > 0
        return np.unique(rs[has])

    def chunks(self, chunk_size: int = DEFAULT_CHUNK) -> Iterator[tuple[int, np.ndarray]]:
        plan = self.source.plan
        ctx = BlockContext(plan)
        offset = 0
        for r0, r1, c0, c1 in plan.blocks():
            rs = plan.row_subject[r0:r1]
            owned = np.arange(r0, r1)[:, None] < np.arange(c0, c1)[None, :] if plan.all_vs_all and c0 < r1 else None
            m = ctx.impostor_mask(r0, r1, c0, c1, owned)
            x = np.repeat(rs, c1 - c0) if m is None else np.broadcast_to(rs[:, None], m.shape)[m]
            yield offset, x
            offset += x.size


def _bar(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="block", disable=not enabled, leave=False)


# --- planning and loading ---------------------------------------------------------------------------


def make_plan(
    gallery: str | Path,
    probe: str | Path | None = None,
    *,
    block: int = DEFAULT_BLOCK,
    implementation: str | None = None,
    config_dir: str | None = None,
    force_pairwise: bool = False,
) -> Plan:
    """Check the store(s) and plan the comparisons.

    Raises StoreError: a store with templates still to make, two stores that cannot be compared
    (another implementation, model or template format: their headers say so), an implementation
    given that is not the one that made the store.
    """
    g = read_store_info(gallery)
    p = read_store_info(probe) if probe is not None else g
    for s in {id(g): g, id(p): p}.values():
        if not s.complete:
            raise StoreError(
                s.path, f"{s.n - s.n_made} of {s.n} templates are still to make: finish `frvt enroll` first"
            )
    if probe is not None:
        check_compatible(g, p)
    if implementation is not None and implementation != g.implementation:
        raise StoreError(g.path, f"made by {g.implementation}, not by {implementation}")
    if block < 1:
        raise ValueError(f"block size must be positive, got {block}")
    names, subj = np.unique(np.concatenate([g.identities, p.identities]).astype(str), return_inverse=True)
    form = None if force_pairwise else g.vector_form()
    return Plan(
        g,
        p,
        probe is None,
        subj[: g.n].astype(np.int64),
        subj[g.n :].astype(np.int64),
        int(names.size),
        block,
        implementation or g.implementation,
        config_dir or g.config_dir,
        form,
    )


def load_comparisons(plan: Plan, client=None, *, name: str = "", progress: bool = False):
    """:class:`validation.score.LoadedScores` for the plan: genuine scores computed (few), impostors a
    :class:`StoreComparisons` source."""
    from validation.score import LoadedScores

    i, j = plan.genuine_pairs()
    n_imp = plan.n_pairs - i.size
    src = StoreComparisons(plan, client, n_imp, name or str(plan.gallery.path), progress=progress)
    g = src.pair_scores(i, j).astype(np.float64)
    gf = np.isnan(g)
    failures = {
        "enroll": FailureCount(int(np.count_nonzero(plan.gallery.codes != 0)), plan.gallery.n),
        "verif": FailureCount(int(np.count_nonzero(plan.probe.codes != 0)), plan.probe.n),
    }
    if plan.vector_form is not None:  # a matrix product never fails
        failures["match"] = FailureCount(0, plan.n_pairs)
    return LoadedScores(g, gf, src, plan.row_subject[i], src.subjects(), failures, True, int(gf.sum()))


@contextlib.contextmanager
def scoring_client(scheduler: str | None = None, workers: int | None = None):
    """A Dask client for scoring (see :func:`frvt.cluster.dask_client`); ``workers=0``: no Dask, this process."""
    if workers == 0 and not scheduler:
        yield None
        return
    from frvt.cluster import dask_client

    with dask_client(scheduler, workers) as client:
        yield client


def materialise(plan: Plan, path: str | Path, with_templates: bool = False) -> dict:
    """Write every comparison's score to an HDF5 score file (:class:`validation.score_sources.HDF5ScoreWriter`)
    in row-major order, one ``match_templates`` call per pair: the slow reference the block passes are
    checked against. Returns the counts.

    ``with_templates``: also each comparison's two templates (:class:`validation.paired_comparisons.HDF5PairWriter`;
    gallery rows, then probe rows after them), for ``frvt score --demographics``."""
    from validation.score_sources import HDF5ScoreWriter

    ctx = BlockContext(plan)
    impl = ctx.implementation()
    counts = {"genuine": 0, "impostor": 0}
    offset = 0 if plan.all_vs_all else plan.gallery.n
    if with_templates:
        from validation.paired_comparisons import HDF5PairWriter

        stores = [plan.gallery] if plan.all_vs_all else [plan.gallery, plan.probe]
        writer = HDF5PairWriter(
            path,
            templates=[str(x) for st in stores for x in st.ids],
            identities=[str(x) for st in stores for x in st.identities],
        )
    else:
        writer = HDF5ScoreWriter(path, with_subjects=True, with_failed=True)
    with writer as w:
        for i in range(plan.gallery.n):
            a = read_templates(plan.gallery.path, i, i + 1)[0]
            js = np.arange(i + 1, plan.probe.n) if plan.all_vs_all else np.arange(plan.probe.n)
            if not js.size:
                continue
            templates = read_templates(plan.probe.path, int(js[0]), int(js[-1]) + 1)
            s = np.empty(js.size, np.float64)
            f = np.zeros(js.size, bool)
            for k, j in enumerate(js):
                if plan.gallery.codes[i] != 0 or plan.probe.codes[j] != 0:
                    s[k], f[k] = -1.0, True
                    continue
                r = impl.match_templates(templates[k], a)
                s[k], f[k] = (r.similarity, False) if r.status.ok else (-1.0, True)
            same = plan.col_subject[js] == plan.row_subject[i]
            for cls, m in (("genuine", same), ("impostor", ~same)):
                if not m.any():
                    continue
                subjects = np.full(int(m.sum()), plan.row_subject[i])
                if with_templates:
                    w.append(cls, s[m], subjects, np.full(int(m.sum()), i), js[m] + offset, failed=f[m])
                else:
                    w.append(cls, s[m], subjects=subjects, failed=f[m])
                counts[cls] += int(m.sum())
    return counts


def comparisons_per_second(src: StoreComparisons) -> list[dict]:
    """Each pass's comparisons per second of wall time and per CPU second of the workers (every
    comparison of the plan is computed in each pass)."""
    return [
        dict(
            e,
            comparisons_per_second=e["comparisons"] / e["seconds"] if e["seconds"] > 0 else math.nan,
            comparisons_per_cpu_second=e["comparisons"] / e["cpu_seconds"] if e["cpu_seconds"] > 0 else math.nan,
        )
        for e in src.log.entries
    ]


def score_stores(
    gallery: str | Path,
    probe: str | Path | None,
    out_dir: str | Path,
    *,
    label: str | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    block: int = DEFAULT_BLOCK,
    implementation: str | None = None,
    config_dir: str | None = None,
    force_pairwise: bool = False,
    progress: bool = False,
    after_scoring=None,
    **score_options,
):
    """``frvt score --all-vs-all``: every comparison of ``gallery`` (with ``probe``: gallery x probe),
    scored exactly without writing the scores; returns ``(ScoreReport, pass timings)``.

    ``score_options`` go to :func:`validation.score.score` (FMR targets, bootstrap, plots, ...).
    ``after_scoring(report)`` runs while the workers still hold the stores (e.g. more passes over
    the same comparisons: :func:`validation.demographics.score_demographics`); its passes are timed too.
    """
    from validation.score import ScoreInput, score

    plan = make_plan(
        gallery, probe, block=block, implementation=implementation, config_dir=config_dir, force_pairwise=force_pairwise
    )
    paths = (Path(gallery),) if probe is None else (Path(gallery), Path(probe))
    name = label or (Path(gallery).stem if probe is None else f"{Path(gallery).stem} x {Path(probe).stem}")
    with scoring_client(scheduler, workers) as client:
        holder: dict = {}

        def loader():
            holder["loaded"] = load_comparisons(plan, client, name=name, progress=progress)
            return holder["loaded"]

        inp = ScoreInput(name, "templates", paths, loader=loader)
        report = score([inp], out_dir, **score_options)
        if after_scoring is not None:
            after_scoring(report)
        src = holder["loaded"].impostor
        timings = comparisons_per_second(src)
        src.close()
    return report, timings
