"""Checks shared by the tests of hand-written TVM schedules."""

from __future__ import annotations

import numpy as np


def assert_variants_compute_the_same(func_mod, tiles, schedule, rng, atol: float = 1e-4) -> int:
    """Build ``func_mod`` unscheduled and ``schedule(func_mod, tile)`` for each tile (each built
    alone, its weight repacking kept inside the function), run all on the same random arguments
    and assert the outputs agree within ``atol``; returns the variants checked."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from frvt.compiler import targets

    target = tvm.target.Target(targets.parse_target("broadwell"))
    infos = ms.arg_info.ArgInfo.from_prim_func(func_mod["main"])
    args = [rng.normal(0, 1, [int(d) for d in info.shape]).astype(info.dtype) for info in infos]
    reference = tvm.compile(func_mod, target=target).jit()
    expected = [tvm.runtime.tensor(a) for a in args]
    reference["main"](*expected)
    for tile in tiles:
        built = tvm.compile(schedule(func_mod, tile).mod, target=target).jit()
        ours = [tvm.runtime.tensor(a) for a in args]
        built["main"](*ours)
        np.testing.assert_allclose(ours[-1].numpy(), expected[-1].numpy(), rtol=0, atol=atol, err_msg=tile.label)
    return len(tiles)
