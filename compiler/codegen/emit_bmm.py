"""BMM: a batched matrix product over strided operands, for any leading dims (symbolic too).

    for each leading index l and row i:
        out[l, i, :] = 0
        for k in range(K):
            x = a[l, i, k]                      # a's or b's last two axes read swapped when
            out[l, i, :] += x * b[l, k, :]      # transpose_a / transpose_b: strides, no copy

The inner loop runs along the output's contiguous row, so LLVM vectorises it when b's row
is contiguous too. The GEMM micro-kernel (gemm.py) needs the product's N fixed and its
right operand packed once per call; a batched product has a different right operand per
leading index and, in attention, N = T, the sequence length: so it is emitted as loops.
"""
from __future__ import annotations

from graphrnn.ir import Node

from .irbuilder import Emitter, Ref
from .strides import Layout


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


__all__ = ["emit_bmm", "swap_last"]
