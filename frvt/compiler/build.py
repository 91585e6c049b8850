"""Prepared module (+ tuning database) -> TVM executable, with the weights one call reads."""

from __future__ import annotations

import tempfile
from pathlib import Path

from frvt.compiler.databases import count_records, snapshot_database


def constant_bytes(mod) -> int:
    """Bytes of a Relax module's constants: the weights (as packed for the kernels) that one
    call of the model reads."""
    import numpy as np
    import tvm
    from tvm import relax

    total = 0

    def visit(expr) -> None:
        nonlocal total
        data = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
        if data is not None and hasattr(data, "shape"):  # a tensor constant (TVM 0.27's relax.Constant)
            total += int(np.prod([int(d) for d in data.shape])) * np.dtype(str(data.dtype)).itemsize

    for func in mod.functions.values():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    return total


def build_module(mod, target: dict, database: str | Path | None = None):
    """Prepared module (+ tuning database) -> ``(tvm.runtime.Executable, constant bytes)``.

    Functions found in the database get their tuned schedule (and packed weights folded at
    compile time); the others are compiled unscheduled (correct but slow). The second value is
    :func:`constant_bytes` of the final module.
    """
    import tvm
    from tvm import relax
    from tvm.s_tir import meta_schedule as ms

    tvm_target = tvm.target.Target(target)
    with tvm_target, tempfile.TemporaryDirectory(prefix="frvt-db-") as snapshot:
        if database is not None and count_records(database) > 0:
            # A snapshot: a tuning run may be appending to the database right now.
            snapshot_database(database, snapshot)
            db = ms.database.JSONDatabase(work_dir=snapshot, allow_missing=False)
            with db:
                mod = relax.transform.MetaScheduleApplyDatabase()(mod)
        mod = tvm.transform.Sequential(
            [
                relax.transform.SplitLayoutRewritePreproc(),
                relax.transform.FoldConstant(),
                relax.transform.DeadCodeElimination(),
            ]
        )(mod)
        n_bytes = constant_bytes(mod)
    return tvm.compile(mod, target=tvm_target), n_bytes
