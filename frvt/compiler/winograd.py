"""Winograd F(m x m, 3 x 3) convolution in NHWC for MetaSchedule on CPU (the "NHWC-winograd" scheme).

Compute (one fused TIR function per convolution, the epilogue fuses in)::

    data (N, H, W, CI) --pad--> data_pad (N, Hp, Wp, CI)                      [schedule_rule None]
      --rows of B^T d--> dp_tmp (alpha, alpha, P, CI)                          [schedule_rule None]
      --columns (.. B)--> data_pack (alpha, alpha, P, CI)        [frvt_winograd_nhwc_data_pack]
    bgemm (alpha, alpha, P, CO) = sum_ci data_pack * kernel_pack    (MultiLevelTiling, the
                                   pre-computed kernel_pack (alpha, alpha, CI, CO) is layout free)
      --rows of A^T M--> inv_tmp (m, alpha, P, CO)                             [schedule_rule None]
      --columns (.. A)--> inverse (m, m, P, CO)                     [frvt_winograd_nhwc_inverse]
      --> conv2d_winograd (N, OH, OW, CO)  (+ bias / batch norm / relu fused by FuseOps)

The transforms are written out explicitly and separably: every output element of a
transform stage is ``Select(eps == 0, e_0, Select(eps == 1, e_1, ...))`` where ``e_k`` lists only
the non-zero coefficients of column k (coefficients +-1 become additions / subtractions). The
schedule rules unroll eps / nu, so after loop unrolling the Select folds away and no
multiplication by 0 is left. (Without unrolling the code is correct but evaluates all branches.)

The kernel transform ``G w G^T`` runs in numpy at legalization time (the weights are constants),
so no kernel-transform kernel exists at run time.

API
---
* :func:`register_schedule_rules` (called on import): registers the two custom MetaSchedule
  rules ``s_tir.meta_schedule.cpu.frvt_winograd_nhwc_{data_pack,inverse}``; they must be
  registered in the process that runs the search.
* :func:`make_legalize_conv2d` (``tiles``, ``min_channels``) -> a legalization
  function for ``relax.nn.conv2d`` that uses Winograd for NHWC/OHWI, groups 1, 3x3, stride 1,
  dilation 1, constant weights; everything else goes to TVM's default legalization.
* ``frvt.compiler.passes.prepare_module(mod, target, "NHWC-winograd")`` applies it with
  ``frvt.compiler.passes.WINOGRAD_SETTINGS`` (F(4x4, 3x3) on inputs from 16x16, F(2x2, 3x3)
  from 8x8).
* :func:`conv2d_winograd_nhwc` (TE compute) and :func:`kernel_pack_numpy`.
"""

from __future__ import annotations

import numpy as np

RULE_DATA_PACK = "frvt_winograd_nhwc_data_pack"
RULE_INVERSE = "frvt_winograd_nhwc_inverse"
WRITE_CACHE_LEVELS = (1, 2)
"""MultiLevelTiling levels of bgemm's write cache (one design space each)."""
PAD_MODES = ("inline", "root")
"""Where the data_pad block goes in the data-pack rule; each mode is one design space."""


# --------------------------------------------------------------------------------------------
# Transform matrices
# --------------------------------------------------------------------------------------------


def transform_matrices(m: int, r: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A, B, G) as float64 numpy arrays (TVM's Cook-Toom points), shapes (alpha, m),
    (alpha, alpha), (alpha, r): ``Y = A^T [(G g G^T) * (B^T d B)] A``."""
    from tvm.topi.nn.winograd_util import (
        _cook_toom_convolution,
        _interpolation_points,
    )

    A, B, G = _cook_toom_convolution(_interpolation_points(m + r - 2), m, r)
    return np.asarray(A, "float64"), np.asarray(B, "float64"), np.asarray(G, "float64")


def kernel_pack_numpy(weight_ohwi: np.ndarray, m: int) -> np.ndarray:
    """OHWI 3x3 weights -> (alpha, alpha, CI, CO) transformed kernel ``G g G^T`` (float32)."""
    _, _, G = transform_matrices(m, int(weight_ohwi.shape[1]))
    w = weight_ohwi.astype("float64")
    packed = np.einsum("ek,nl,oklc->enco", G, G, w)  # (alpha, alpha, CI, CO)
    return np.ascontiguousarray(packed.astype(weight_ohwi.dtype))


def _linear(coeffs, terms):
    """sum_i coeffs[i] * terms[i] over the non-zero coefficients (+-1 without multiply)."""
    from tvm import tirx

    expr = None
    for c, t in zip(coeffs, terms):
        c = float(c)
        if c == 0.0:
            continue
        if c == 1.0:
            val, neg = t, False
        elif c == -1.0:
            val, neg = t, True
        else:
            val, neg = t * tirx.const(c, t.dtype), False
        if expr is None:
            expr = -val if neg else val
        else:
            expr = expr - val if neg else expr + val
    if expr is None:
        expr = tirx.const(0.0, terms[0].dtype)
    return expr


def _select_chain(index, exprs):
    """exprs[index] for a loop variable ``index`` as a Select chain (folds once unrolled)."""
    from tvm import tirx

    out = exprs[-1]
    for k in range(len(exprs) - 2, -1, -1):
        out = tirx.Select(index == k, exprs[k], out)
    return out


# --------------------------------------------------------------------------------------------
# TE compute
# --------------------------------------------------------------------------------------------


def conv2d_winograd_nhwc(data, kernel_pack, padding, m: int, out_dtype: str | None = None):
    """Winograd NHWC 3x3 stride-1 convolution with a pre-computed kernel.

    Parameters
    ----------
    data : te.Tensor
        (N, H, W, CI).
    kernel_pack : te.Tensor
        (alpha, alpha, CI, CO), :func:`kernel_pack_numpy` of the OHWI weights.
    padding : (top, left, bottom, right)
    m : int
        Output tile size (2 or 4; alpha = m + 2).
    """
    from tvm import te, topi

    N, H, W, CI = (int(x) for x in data.shape)
    alpha, _, CI2, CO = (int(x) for x in kernel_pack.shape)
    r = 3
    assert alpha == m + r - 1 and CI2 == CI
    out_dtype = out_dtype or str(data.dtype)
    A_np, B_np, _ = transform_matrices(m, r)
    pad_t, pad_l, pad_b, pad_r = (int(p) for p in padding)
    OH, OW = H + pad_t + pad_b - r + 1, W + pad_l + pad_r - r + 1
    nH, nW = (OH + m - 1) // m, (OW + m - 1) // m
    P = N * nH * nW
    Hp, Wp = (nH - 1) * m + alpha, (nW - 1) * m + alpha
    data_pad = topi.nn.pad(
        data,
        (0, pad_t, pad_l, 0),
        (0, Hp - H - pad_t, Wp - W - pad_l, 0),
        name="data_pad",
        attrs={"schedule_rule": "None"},
    )

    def tmp_fn(eps, b, p, ci):
        n, y, x = p // (nH * nW), (p // nW) % nH, p % nW
        rows = [data_pad[n, y * m + a, x * m + b, ci] for a in range(alpha)]
        return _select_chain(eps, [_linear(B_np[:, k], rows) for k in range(alpha)])

    dp_tmp = te.compute((alpha, alpha, P, CI), tmp_fn, name="dp_tmp", attrs={"schedule_rule": "None"})

    def pack_fn(eps, nu, p, ci):
        cols = [dp_tmp[eps, b, p, ci] for b in range(alpha)]
        return _select_chain(nu, [_linear(B_np[:, k], cols) for k in range(alpha)])

    data_pack = te.compute((alpha, alpha, P, CI), pack_fn, name="data_pack", attrs={"schedule_rule": RULE_DATA_PACK})
    rc = te.reduce_axis((0, CI), name="rc")
    bgemm = te.compute(
        (alpha, alpha, P, CO),
        lambda eps, nu, p, co: te.sum(
            data_pack[eps, nu, p, rc].astype(out_dtype) * kernel_pack[eps, nu, rc, co].astype(out_dtype),
            axis=[rc],
        ),
        name="bgemm",
        attrs={
            "layout_free_placeholders": [kernel_pack],
            # MultiLevelTiling would otherwise take inv_tmp (reads bgemm at constant eps) for a
            # write cache and fail in reverse_compute_at; force an explicit write cache.
            "s_tir.meta_schedule.write_cache_level": list(WRITE_CACHE_LEVELS),
        },
    )

    def inv_tmp_fn(vh, b, p, co):
        rows = [bgemm[a, b, p, co] for a in range(alpha)]
        return _select_chain(vh, [_linear(A_np[:, k], rows) for k in range(m)])

    inv_tmp = te.compute((m, alpha, P, CO), inv_tmp_fn, name="inv_tmp", attrs={"schedule_rule": "None"})

    def inv_fn(vh, vw, p, co):
        cols = [inv_tmp[vh, b, p, co] for b in range(alpha)]
        return _select_chain(vw, [_linear(A_np[:, k], cols) for k in range(m)])

    inverse = te.compute((m, m, P, CO), inv_fn, name="inverse", attrs={"schedule_rule": RULE_INVERSE})
    return te.compute(
        (N, OH, OW, CO),
        lambda n, h, w, co: inverse[h % m, w % m, n * nH * nW + (h // m) * nW + (w // m), co],
        name="conv2d_winograd",
    )


# --------------------------------------------------------------------------------------------
# MetaSchedule rules
# --------------------------------------------------------------------------------------------


def _vector_width(extent: int, lanes: int = 8) -> int:
    for v in (lanes, 4, 2):
        if extent % v == 0:
            return v
    return 1


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _schedule_transform(sch, block, tmp, max_p_inner: int = 8, p_inner: int | None = None):
    """Loops (i, j, p, c) of ``block`` -> p_o, c_o, p_i, i(unroll), j(unroll), c_i(vector);
    its producer ``tmp`` (loops (i, k, p, c)) computed under p_i, unrolled and vectorised. The
    extent of p_i is sampled (at most ``max_p_inner``), or ``p_inner`` (a divisor of P)."""
    i, j, p, c = sch.get_loops(block)
    vec = _vector_width(_extent(sch, c))
    factors = [None, p_inner] if p_inner else sch.sample_perfect_tile(p, n=2, max_innermost_factor=max_p_inner)
    p_o, p_i = sch.split(p, factors)
    if vec > 1:
        c_o, c_i = sch.split(c, [None, vec])
    else:
        c_o, c_i = sch.split(c, [None, 1])
    sch.reorder(p_o, c_o, p_i, i, j, c_i)
    sch.unroll(i)
    sch.unroll(j)
    if vec > 1:
        sch.vectorize(c_i)
    sch.compute_at(tmp, p_i, preserve_unit_loops=True)
    t_loops = sch.get_loops(tmp)
    ti, tk, _tp, tc = t_loops[-4:]
    sch.unroll(ti)
    sch.unroll(tk)
    if vec > 1:
        sch.vectorize(tc)
    return p_o, c_o, p_i


def _rule_data_pack(sch, block):
    spaces = []
    for mode in PAD_MODES:
        s = sch.copy()
        (tmp,) = s.get_producers(block)
        (pad,) = s.get_producers(tmp)
        _schedule_transform(s, block, tmp)
        if mode == "inline":
            s.compute_inline(pad)
        else:  # root: a plain copy with the channel loop vectorised
            loops = s.get_loops(pad)
            vec = _vector_width(_extent(s, loops[-1]))
            if vec > 1:
                _, ci = s.split(loops[-1], [None, vec])
                s.vectorize(ci)
        spaces.append(s)
    return spaces


def _rule_inverse(sch, block):
    (tmp,) = sch.get_producers(block)
    _schedule_transform(sch, block, tmp)
    return [sch]


_REGISTERED = False


def register_schedule_rules() -> None:
    """Register the custom MetaSchedule rules (idempotent; needed in the searching process)."""
    global _REGISTERED
    if _REGISTERED:
        return
    import tvm

    for key in ("cpu",):
        tvm.register_global_func(f"s_tir.meta_schedule.{key}.{RULE_DATA_PACK}", _rule_data_pack, override=True)
        tvm.register_global_func(f"s_tir.meta_schedule.{key}.{RULE_INVERSE}", _rule_inverse, override=True)
    _REGISTERED = True


# --------------------------------------------------------------------------------------------
# Relax legalization and pipeline
# --------------------------------------------------------------------------------------------


def _constant_value(bb, expr):
    """The tvm.ir Constant an argument is (or is bound to), else None."""
    import tvm
    from tvm import relax

    seen = 0
    while isinstance(expr, relax.Var) and seen < 8:
        bound = bb.lookup_binding(expr)
        if bound is None:
            return None
        expr, seen = bound, seen + 1
    return expr if isinstance(expr, tvm.ir.expr.Constant) else None


def make_legalize_conv2d(*, tiles, min_channels: int):
    """Legalization for ``relax.nn.conv2d`` using :func:`conv2d_winograd_nhwc` when eligible.

    Eligible: data NHWC, kernel OHWI, out NHWC, groups 1, 3x3 kernel, stride 1, dilation 1,
    constant weights, CI and CO >= ``min_channels``, and an entry of ``tiles`` -- (minimum
    input height and width, output tile m in {2, 4}) pairs, the first that fits is used --
    for the input's size. The settings the project uses are
    ``frvt.compiler.passes.WINOGRAD_SETTINGS``.
    """
    tiles = [(int(min_hw), int(m)) for min_hw, m in tiles]
    if any(m not in (2, 4) for _, m in tiles):
        raise ValueError(f"Winograd output tiles must be 2 or 4: {tiles}")

    def legalize(bb, call):
        from tvm import relax
        from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

        a = call.attrs
        data, weight = call.args
        try:
            ds = [int(x) for x in data.ty.shape]
            ws = [int(x) for x in weight.ty.shape]
        except (TypeError, AttributeError):
            return _nn_conv2d(bb, call)
        const = _constant_value(bb, weight)
        m = next((m for min_hw, m in tiles if min(ds[1:3]) >= min_hw), None)
        ok = (
            a.data_layout == "NHWC"
            and a.kernel_layout == "OHWI"
            and (a.out_layout in ("", "NHWC"))
            and int(a.groups) == 1
            and [int(s) for s in a.strides] == [1, 1]
            and [int(s) for s in a.dilation] == [1, 1]
            and ws[1:3] == [3, 3]
            and const is not None
            and m is not None
            and min(ds[3], ws[0]) >= min_channels
        )
        if not ok:
            return _nn_conv2d(bb, call)
        value = const.value if hasattr(const, "value") else const.data
        packed = relax.const(kernel_pack_numpy(value.numpy(), m))
        padding = [int(p) for p in a.padding]
        if len(padding) == 2:
            padding = padding * 2
        out_dtype = str(a.out_dtype) if a.out_dtype is not None else ""
        out_dtype = None if out_dtype in ("", "None", "void") else out_dtype
        return bb.call_te(
            lambda d, k: conv2d_winograd_nhwc(d, k, padding, m, out_dtype),
            data,
            packed,
            primfunc_name_hint=f"conv2d_winograd_nhwc_f{m}",
        )

    return legalize


register_schedule_rules()
