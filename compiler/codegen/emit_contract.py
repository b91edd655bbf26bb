"""CONTRACT on the GEMM micro-kernel: the weight gradients summed over all B*T rows.

    out[k, n] = sum over rows m of a[m, k] * g[m, n]        (a and g swapped: transpose_out)

is the product a.T @ g with a reduction over the (collapsed) rows. It runs in blocks of
CONTRACT_KC rows, so that both packed operands of a block stay in cache:

    out = 0
    for m0 in range(0, M, KC):
        panels = pack(g[m0 : m0 + KC])          # [panel][k][W], as a matmul's weights
        tiles = pack_tiles(a[m0 : m0 + KC].T)   # [row tile][k][MR]: a's columns made rows
        out += tiles @ panels                   # the micro-kernel, accumulating

The schedule gives it a scratch buffer of contract_floats() for one block of each. An output
larger than L2 takes blocks of CONTRACT_KC_LARGE rows: it is read and written once per block.
"""
from __future__ import annotations

from llvmlite import ir

from graphrnn.ir import LoweringError, Node

from .emit_pack import emit_pack, emit_pack_tiles
from .gemm import Epilogue, emit_gemm
from .irbuilder import I64, Emitter, Ref
from .strides import ONE, Layout, Lin, collapse
from .tiling import GemmPlan, make_plan

def contract_operands(node: Node, a: Layout, g: Layout
                      ) -> tuple[Layout, Layout, tuple[int, int]] | None:
    """A CONTRACT as a product: (A [K, M], B [M, N], which inputs they view), where
    out[k, n] = sum over the rows m of a[m, k] * g[m, n] (a and g swapped with
    transpose_out). None when the rows of the two inputs do not collapse to one strided dim
    or N is not fixed (then the plain reduction runs)."""
    which = (1, 0) if node.attrs.get("transpose_out") else (0, 1)
    if which[0]:
        a, g = g, a
    lead = a.shape[:-1]
    if g.shape[:-1] != lead or not g.shape[-1].const:
        return None
    rows = collapse([Layout(lead, a.strides[:-1]), Layout(lead, g.strides[:-1])])
    if rows[0].rank != 1:
        return None
    m = rows[0].shape[0]
    return (Layout((a.shape[-1], m), (a.strides[-1], rows[0].strides[0])),
            Layout((m, g.shape[-1]), (rows[1].strides[0], g.strides[-1])), which)


CONTRACT_KC = 256       # rows of the reduction per block: a panel block stays in L2
# an output larger than L2 is read and written once per block from farther away: longer
# blocks (more scratch) make that traffic rarer
CONTRACT_KC_LARGE = 1024
L2_BYTES = 1 << 20


def contract_kc(lhs: Layout, rhs: Layout) -> int:
    """Rows of the reduction per block for an output lhs.rows x rhs.cols."""
    out_bytes = 4 * lhs.shape[0].c * rhs.shape[1].c
    return CONTRACT_KC_LARGE if out_bytes > L2_BYTES else CONTRACT_KC


def contract_plan(lhs: Layout, rhs: Layout) -> GemmPlan:
    """The plan of a contract's product lhs [K, M] @ rhs [M, N], in blocks of M."""
    return make_plan(contract_kc(lhs, rhs), rhs.shape[1].c, lhs.shape[0])


def contract_floats(lhs: Layout, rhs: Layout) -> int:
    """Scratch of a contract: one block of rhs's panels and of lhs's row tiles."""
    p = contract_plan(lhs, rhs)
    return p.floats.c + -(-lhs.shape[0].c // p.mr) * p.mr * contract_kc(lhs, rhs)


def emit_contract(em: Emitter, node: Node, out: Ref, ins: list[Ref], scratch: Ref) -> None:
    """out = contract(a, g): zero, then per block of CONTRACT_KC rows of the reduction, pack
    both operands (g as panels, a transposed as row tiles) and add their product to out.

        for m0 in range(0, M, KC):  out += a[m0 : m0 + KC].T @ g[m0 : m0 + KC]
    """
    found = contract_operands(node, ins[0].layout, ins[1].layout)
    if found is None:
        raise LoweringError("contract operands do not collapse to one row dim")
    lhs, rhs, which = found
    p = contract_plan(lhs, rhs)
    bld = em.builder
    rows = lhs.shape[0].c
    fill_zero(em, out)
    panels = scratch.ptr
    tiles = em.gep(scratch.ptr, p.floats.c)
    total = em.lin(rhs.shape[0])
    block = contract_kc(lhs, rhs)
    kc = ir.Constant(I64, block)
    blocks = bld.sdiv(bld.add(total, ir.Constant(I64, block - 1), flags=["nsw"]), kc)
    with em.loop(blocks, "ct_block") as blk:
        m0 = bld.mul(blk, kc, flags=["nsw"])
        left = bld.sub(total, m0, flags=["nsw"])
        count = bld.select(bld.icmp_signed("<", left, kc), left, kc)
        b = Ref(em.gep(ins[which[1]].ptr, em.mul(m0, rhs.strides[0])), rhs)
        emit_pack(em, p, Ref(panels, scratch.layout), b, count)
        a = Ref(em.gep(ins[which[0]].ptr, em.mul(m0, lhs.strides[1])), lhs)
        emit_pack_tiles(em, p.mr, rows, a, tiles, count)
        emit_gemm(em, p, Ref(tiles, Layout((lhs.shape[0], Lin(block)), (ONE, Lin(p.mr)))),
                  panels, out, Epilogue(accumulate=True), count=count, a_tiles=True)


def fill_zero(em: Emitter, out: Ref) -> None:
    """out = 0 (a [rows, N] layout contiguous along N)."""
    with em.nest(out.layout.shape, "zero") as idx:
        em.store(em.const(0.0), em.at(out, idx))


__all__ = ["contract_operands", "contract_plan", "contract_floats", "contract_kc",
           "emit_contract", "CONTRACT_KC", "CONTRACT_KC_LARGE"]
