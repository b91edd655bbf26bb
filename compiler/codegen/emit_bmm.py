"""BMM: a batched matrix product over strided operands, for any leading dims (symbolic too).

    for each leading index l and row i:
        out[l, i, :] = 0
        for k in range(K):
            x = a[l, i, k]                      # a's or b's last two axes read swapped when
            out[l, i, :] += x * b[l, k, :]      # transpose_a / transpose_b: strides, no copy

The inner loop runs along the output's contiguous row, so LLVM vectorises it when b's row
is contiguous too. When b is read transposed with its k contiguous (attention scores, q @ K.T
over keys [T, H]), each output is a dot product over k instead, so b is read row by row. The GEMM micro-kernel (gemm.py) needs the product's N fixed and its
right operand packed once per call; a batched product has a different right operand per
leading index and, in attention, N = T, the sequence length: so it is emitted as loops.
"""
from __future__ import annotations

from llvmlite import ir

from graphrnn.ir import Node

from .irbuilder import F32, FLAGS, I32, I64, WIDTH, Emitter, Ref, vec
from .strides import ONE, Layout
from .tiling import vector_width


def swap_last(layout: Layout) -> Layout:
    """The layout with its last two axes swapped."""
    order = list(range(layout.rank))
    order[-1], order[-2] = order[-2], order[-1]
    return layout.permute(order)


def emit_bmm(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    a, b = ins
    a_lay = swap_last(a.layout) if n.attrs["transpose_a"] else a.layout
    b_lay = swap_last(b.layout) if n.attrs["transpose_b"] else b.layout
    k_dim, m_dim = b_lay.shape[-2], b_lay.shape[-1]
    lead = out.layout.shape[:-1]                    # the leading dims and the rows i
    if b_lay.strides[-2] == ONE and b_lay.strides[-1] != ONE:
        _emit_dots(em, out, Ref(a.ptr, a_lay), Ref(b.ptr, b_lay))
        return
    with em.nest(lead, "bmm") as idx:
        row = em.at(out, idx)
        a_row = em.at(Ref(a.ptr, a_lay), idx)
        b_mat = em.at(Ref(b.ptr, b_lay), idx[:-1])
        so, sb, sk = out.layout.strides[-1], b_lay.strides[-1], b_lay.strides[-2]
        with em.loop(m_dim, "bmm_zero") as j:
            em.store(em.const(0.0), em.gep(row, em.mul(j, so)))
        with em.loop(k_dim, "bmm_k") as k:
            x = em.load(em.gep(a_row, em.mul(k, a_lay.strides[-1])))
            b_row = em.gep(b_mat, em.mul(k, sk))
            with em.loop(m_dim, "bmm_j") as j:
                dst = em.gep(row, em.mul(j, so))
                y = em.load(em.gep(b_row, em.mul(j, sb)))
                em.store(em.fma(x, y, em.load(dst)), dst)


def _emit_dots(em: Emitter, out: Ref, a: Ref, b: Ref) -> None:
    """out[l, i, j] = sum_k a[l, i, k] * b[l, k, j], one dot product per output entry: in
    vectors of k when a's rows are contiguous too (partial sums added at the end), else
    scalar."""
    k_dim = b.layout.shape[-2]
    sa, sk = a.layout.strides[-1], b.layout.strides[-2]
    width = 0
    if sa == ONE:
        width = WIDTH if k_dim.const and k_dim.c < vector_width() else vector_width()
        width = 0 if k_dim.const and k_dim.c < width else width
    bld = em.builder
    with em.nest(out.layout.shape, "bmm_dot") as idx:
        a_row = em.at(a, idx[:-1])
        b_col = em.gep(em.at(b, idx[:-2]), em.mul(idx[-1], b.layout.strides[-1]))
        total = em.alloca(F32, em.const(0.0))
        start: ir.Value | int = 0
        if width:
            acc = em.alloca(vec(width), em.const(0.0, width))
            with em.loop(k_dim, "bmm_dot_v", step=width) as k:
                x = em.load(em.gep(a_row, k), width)
                y = em.load(em.gep(b_col, k), width)
                bld.store(em.fma(x, y, bld.load(acc)), acc)
            v = bld.load(acc)
            s = bld.extract_element(v, ir.Constant(I32, 0))
            for lane in range(1, width):
                s = bld.fadd(s, bld.extract_element(v, ir.Constant(I32, lane)), flags=FLAGS)
            bld.store(s, total)
            n = em.lin(k_dim)
            start = bld.mul(bld.sdiv(n, ir.Constant(I64, width)), ir.Constant(I64, width),
                            flags=["nsw"])
        with em.loop(k_dim, "bmm_dot_k", start=start) as k:
            x = em.load(em.gep(a_row, em.mul(k, sa)))
            y = em.load(em.gep(b_col, em.mul(k, sk)))
            bld.store(em.fma(x, y, bld.load(total)), total)
        em.store(bld.load(total), em.at(out, idx))


__all__ = ["emit_bmm", "swap_last"]
