"""Hand-written schedules for direct NHWC convolutions, as seeds for MetaSchedule's databases.

MetaSchedule's multi-level tiling puts the spatial tile that shares a weight vector outside the
reduction loops, so for small outputs its kernels keep their accumulators in memory and load a
weight vector for every FMA (``data/tuning/README.md``, *Hand-written convolution kernels*, has
the measurements on the default embedder's 256-channel 3x3 convolution on a 4x4 input).

:func:`schedule_direct_conv` writes the register-blocked kernel by hand: a micro-tile of
``yi x xi`` output pixels by ``fi`` output channels (``fi / 8`` AVX2 vectors each) accumulates in
registers over the whole reduction, every weight vector loaded once per micro-tile and every
input value broadcast once; the weights are repacked (MetaSchedule's ``RewriteLayout``, lifted out
of the call like every tuned kernel's) so that each block of ``fi`` output channels reads its
weights as one sequential stream; the fused epilogue (bias, scale, residual, ReLU) runs on the
micro-tile while it is in registers.

:func:`schedule_winograd` does the same for the batched matrix product at the heart of a
Winograd convolution (:mod:`frvt.compiler.winograd`): for each of the ``alpha x alpha`` points, a
micro-tile of ``pi`` Winograd tiles by ``fi`` output channels accumulates in registers over the
input channels, reading the transformed weights (repacked the same way) as one stream; the input
and output transforms get the unrolled, channel-vectorised loops of the search's own rules, and
the epilogue runs on the output, vectorised across channels.

:func:`candidate_tiles` and :func:`winograd_tiles` give the variants that fit (tile shapes that
divide the output, :data:`MIN_ACCUMULATORS` to :data:`MAX_ACCUMULATORS` accumulator vectors), and
:func:`write_seed_database` writes them to a MetaSchedule database that ``scripts/tune.py
--handwritten`` times in the run's mode like any other record: they are kept only where they
measure faster.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path

CONV_BLOCK = "conv2d_nhwc"
"""The name of the convolution block in Relax's legalised NHWC ``conv2d``."""

VECTOR_LANES = 8
"""float32 lanes of an AVX2 register."""

MAX_ACCUMULATORS = 12
"""Accumulator registers a micro-tile may use: AVX2 has 16, and the kernel needs ``fi / 8``
for the weights and one for the broadcast input."""

MIN_ACCUMULATORS = 4
"""Fewer accumulators than this leave the FMA units waiting on their latency (4 cycles, two per
cycle), so smaller tiles are not offered; a convolution whose output sizes allow none (a prime
width such as 17, a single output pixel) keeps the search's schedules."""

ORDERS = ("c-outer", "tap-outer")
"""Reduction loop orders: over input channels then the kernel taps (weights packed
``[oc/fi][ic][kh][kw][fi]``), or over the taps then the input channels (``[oc/fi][kh][kw][ic][fi]``)."""


@dataclass(frozen=True)
class ConvTile:
    """One hand-written variant: micro-tile of ``yi x xi`` pixels by ``fi`` channels."""

    fi: int
    yi: int
    xi: int
    order: str = "c-outer"

    @property
    def label(self) -> str:
        return f"conv {self.yi}x{self.xi}px x {self.fi}ch {self.order}"


def conv_shape(func) -> dict | None:
    """The extents of a function's NHWC convolution block (``n, h, w, oc, kh, kw, ic``), or None
    when it has none (only plain ``conv2d_nhwc`` blocks with seven loops are handled)."""
    extents = _block_extents(func, CONV_BLOCK, 7)
    return None if extents is None else dict(zip(("n", "h", "w", "oc", "kh", "kw", "ic"), extents))


def _block_extents(func, name: str, n_loops: int) -> list[int] | None:
    """The constant loop extents of block ``name`` of ``func``, or None when there is no such
    block, it has other than ``n_loops`` loops, or an extent is not a constant."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    try:
        block = sch.get_sblock(name)
    except Exception:  # TVM raises its own error type for a missing block
        return None
    loops = sch.get_loops(block)
    if len(loops) != n_loops:
        return None
    extents = []
    for loop in loops:
        extent = sch.get(loop).extent
        if not hasattr(extent, "value"):
            return None
        extents.append(int(extent.value))
    return extents


def _epilogue_into_output(sch, producer) -> str:
    """Inline the element-wise blocks between ``producer`` and the function's one output block
    into the output (bias, batch-norm scale and shift, residual add, activation); the output's name."""
    root = sch.get_sblock("root")
    outputs = [sch.get(b).name_hint for b in sch.get_output_blocks(root)]
    if len(outputs) != 1:
        raise ValueError(f"expected one output block, found {outputs}")
    while consumers := [b for b in sch.get_consumers(producer) if sch.get(b).name_hint != outputs[0]]:
        for block in consumers:
            sch.compute_inline(block)
    return outputs[0]


def _rewrite_layout(sch) -> None:
    """MetaSchedule's ``RewriteLayout`` post-processing: the weights repacked in the order the
    kernel reads them, outside the call."""
    from tvm.s_tir import meta_schedule as ms

    sch.enter_postproc()
    if not ms.postproc.RewriteLayout().apply(sch):
        raise ValueError("MetaSchedule's RewriteLayout did not apply")


def candidate_tiles(shape: dict, limit: int = 8) -> list[ConvTile]:
    """Variants for a convolution of this shape, most promising first (most FMAs per loaded weight
    vector, then per broadcast input), at most ``limit`` per reduction order."""
    options = []
    for fi in (8, 16, 24, 32):
        if shape["oc"] % fi:
            continue
        vectors = fi // VECTOR_LANES
        for yi, xi in itertools.product(range(1, shape["h"] + 1), range(1, shape["w"] + 1)):
            pixels = yi * xi
            # at least two pixels: with one, every weight vector is loaded for a single FMA
            if (
                shape["h"] % yi
                or shape["w"] % xi
                or pixels < 2
                or not MIN_ACCUMULATORS <= pixels * vectors <= MAX_ACCUMULATORS
            ):
                continue
            options.append(((-pixels * vectors, -pixels, -fi, yi), ConvTile(fi, yi, xi)))
    options.sort(key=lambda item: item[0])
    best = [tile for _, tile in options[:limit]]
    orders = ORDERS if shape["kh"] * shape["kw"] > 1 else ORDERS[:1]  # 1x1: the orders are the same loop
    return [ConvTile(t.fi, t.yi, t.xi, order) for order in orders for t in best]


def schedule_direct_conv(func, tile: ConvTile):
    """``func`` (one fused NHWC convolution, as MetaSchedule's task) scheduled by hand with ``tile``;
    MetaSchedule's ``RewriteLayout`` post-processing applied, so that the weights are repacked
    outside the call as for a tuned record. Raises TVM's schedule errors when the tile does not fit."""
    from tvm import s_tir

    sch = s_tir.Schedule(func)
    conv = sch.get_sblock(CONV_BLOCK)
    output = _epilogue_into_output(sch, conv)
    out = sch.get_sblock(output) if output != CONV_BLOCK else None
    n, yy, xx, ff, ry, rx, rc = sch.get_loops(conv)
    fo, fi = sch.split(ff, [None, tile.fi])
    yo, yi = sch.split(yy, [None, tile.yi])
    xo, xi = sch.split(xx, [None, tile.xi])
    reduction = (rc, ry, rx) if tile.order == "c-outer" else (ry, rx, rc)
    # the images of a batch inside the block of output channels: each block's weights serve
    # every image while they are in cache
    sch.reorder(fo, n, yo, xo, *reduction, yi, xi, fi)
    accumulators = sch.cache_write(conv, 0, "global")
    sch.reverse_compute_at(accumulators, xo)
    if out is not None:
        sch.reverse_compute_at(out, xo)
    sch.vectorize(fi)
    sch.unroll(xi)
    sch.unroll(yi)
    sch.decompose_reduction(conv, reduction[0])
    for block in (accumulators, out):
        if block is not None:
            loops = sch.get_loops(block)
            inner = sch.get(loops[-1]).extent
            if int(inner.value) % VECTOR_LANES == 0:
                sch.vectorize(loops[-1])
    _rewrite_layout(sch)
    return sch


def write_seed_database(tasks: list, target: dict, out: str | Path, limit: int = 8) -> tuple[dict[str, int], list[str]]:
    """Write every fitting hand-written variant of each task's convolution (direct or Winograd) to a JSON database at
    ``out``, to be timed by :func:`frvt.compiler.tuning.remeasure_records` (the run time written,
    1 s, is a placeholder: this database only carries the traces). Returns the records written per
    task name (tasks without a direct convolution or a fitting tile are absent) and the errors,
    naming task and variant."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = ms.database.JSONDatabase(work_dir=str(out))
    tvm_target = tvm.target.Target(target)
    written: dict[str, int] = {}
    errors: list[str] = []
    for task in tasks:
        mod = task.dispatched[0]
        shape, wshape = conv_shape(mod), winograd_shape(mod)
        if shape is not None:
            tiles, schedule = candidate_tiles(shape, limit), schedule_direct_conv
        elif wshape is not None:
            tiles, schedule = winograd_tiles(wshape, limit), schedule_winograd
        else:
            continue
        if not tiles:
            continue
        workload = db.commit_workload(mod)
        for tile in tiles:
            try:
                sch = schedule(mod, tile)
            except Exception as exc:  # TVM raises its own error types
                errors.append(f"{task.task_name} {tile.label}: {str(exc).strip().splitlines()[-1][:300]}")
                continue
            args_info = ms.arg_info.ArgInfo.from_entry_func(sch.mod, remove_preproc=True)
            db.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, [1.0], tvm_target, args_info))
            written[task.task_name] = written.get(task.task_name, 0) + 1
    return written, errors


# --- Winograd ---------------------------------------------------------------------------------------

WINOGRAD_GEMM = "bgemm"
"""The batched product block of :func:`frvt.compiler.winograd.conv2d_winograd_nhwc`, loops
``(eps, nu, p, co, ci)``; its transforms are the blocks ``dp_tmp``/``data_pack`` (input, after
``data_pad``) and ``inv_tmp``/``inverse`` (output), then ``conv2d_winograd`` puts the tiles back
in NHWC order."""


@dataclass(frozen=True)
class WinogradTile:
    """One hand-written variant of a Winograd convolution: micro-tile of ``pi`` tiles by ``fi``
    output channels in the batched product."""

    pi: int
    fi: int

    @property
    def label(self) -> str:
        return f"winograd {self.pi} tiles x {self.fi}ch"


def winograd_shape(func) -> dict | None:
    """The extents of a function's Winograd product block (``alpha``, ``p`` tiles, ``co``, ``ci``),
    or None when it has none."""
    extents = _block_extents(func, WINOGRAD_GEMM, 5)
    if extents is None:
        return None
    eps, nu, p, co, ci = extents
    if eps != nu:
        return None
    return {"alpha": eps, "p": p, "co": co, "ci": ci}


def winograd_tiles(shape: dict, limit: int = 8) -> list[WinogradTile]:
    """Variants for a Winograd product of this shape, most accumulators first, at most ``limit``."""
    options = []
    for fi in (8, 16, 24, 32):
        if shape["co"] % fi:
            continue
        vectors = fi // VECTOR_LANES
        for pi in range(1, shape["p"] + 1):
            if shape["p"] % pi or not MIN_ACCUMULATORS <= pi * vectors <= MAX_ACCUMULATORS:
                continue
            options.append(((-pi * vectors, -pi, fi), WinogradTile(pi, fi)))
    options.sort(key=lambda item: item[0])
    return [tile for _, tile in options[:limit]]


def _largest_divisor(n: int, at_most: int) -> int:
    return max(d for d in range(1, min(n, at_most) + 1) if n % d == 0)


def schedule_winograd(func, tile: WinogradTile):
    """``func`` (one fused Winograd convolution, as MetaSchedule's task) scheduled by hand with
    ``tile``, with MetaSchedule's ``RewriteLayout`` applied to the transformed weights. Raises TVM's
    schedule errors when the tile does not fit."""
    from tvm import s_tir

    from frvt.compiler import winograd

    sch = s_tir.Schedule(func)
    conv = sch.get_sblock("conv2d_winograd")
    # the tiles' reordering and the epilogue into the output block
    output = _epilogue_into_output(sch, conv)
    if output != "conv2d_winograd":
        sch.compute_inline(conv)
    gemm = sch.get_sblock(WINOGRAD_GEMM)
    eps, nu, p, co, rc = sch.get_loops(gemm)
    p_inner = _largest_divisor(int(sch.get(p).extent.value), 8)
    # the transforms: unrolled over the tile, vectorised across channels (the search's rules, with
    # a fixed number of tiles per step)
    winograd._schedule_transform(sch, sch.get_sblock("data_pack"), sch.get_sblock("dp_tmp"), p_inner=p_inner)
    sch.compute_inline(sch.get_sblock("data_pad"))
    winograd._schedule_transform(sch, sch.get_sblock("inverse"), sch.get_sblock("inv_tmp"), p_inner=p_inner)
    # the product: each point's micro-tiles, accumulators in registers over the input channels
    po, pi = sch.split(p, [None, tile.pi])
    coo, coi = sch.split(co, [None, tile.fi])
    sch.reorder(eps, nu, coo, po, rc, pi, coi)
    accumulators = sch.cache_write(gemm, 0, "global")
    sch.reverse_compute_at(accumulators, po)
    sch.vectorize(coi)
    sch.unroll(pi)
    sch.decompose_reduction(gemm, rc)
    loops = sch.get_loops(accumulators)
    if int(sch.get(loops[-1]).extent.value) % VECTOR_LANES == 0:
        sch.vectorize(loops[-1])
    loops = sch.get_loops(sch.get_sblock(output))
    if int(sch.get(loops[-1]).extent.value) % VECTOR_LANES == 0:
        _, lanes = sch.split(loops[-1], [None, VECTOR_LANES])
        sch.vectorize(lanes)
    _rewrite_layout(sch)
    return sch
