"""CONTRACT on the GEMM micro-kernel: the weight gradients summed over all B*T rows.

    out[k, n] = sum over rows m of a[m, k] * g[m, n]        (a and g swapped: transpose_out)

is the product a.T @ g with a reduction over the (collapsed) rows M. It runs in blocks of
kc rows of M and nc columns of N (contract_blocking), one row tile (MR rows of out) at a
time against every panel of the block:

    out = 0
    for n0 in range(0, N, nc):                      # usually one block: nc = N
        for m0 in range(0, M, kc):
            panels = pack(g[m0 : m0 + kc, n0 : n0 + nc])    # stays in L2 (PANEL_BYTES)
            for r0 in range(0, K, MR):
                prefetch(out's rows of the next tile, a's lines of the next tile)
                tile = a[m0 : m0 + kc, r0 : r0 + MR]        # [kc][MR]: stays in L1
                out[r0 : r0 + MR, n0 : n0 + nc] += tile.T @ panels

The tile is reused by every panel from L1 while the panels stream from L2 (the operand
BLIS keeps in L1 is the broadcast one too). Packing a's tile alone, just before its use,
reads a once, row after row of the block in the order of the tiles, and the next tile's
lines are prefetched while this one's products run; out's rows are read and written once
per block of M, also prefetched a tile ahead.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from graphrnn.ir import LoweringError, Node

from .contract_tiles import SLACK, emit_tiles
from .emit_pack import emit_pack
from .irbuilder import I64, Emitter, Ref
from .strides import Layout, Lin, collapse
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


# the panels of a block (kc rows x nc columns) stay in L2 (1 MB on Zen 4-5) beside the tile
# streams; blocks of M as long as that allows, at least MIN_KC rows (each block reads and
# writes out's rows once), then blocks of N
PANEL_BYTES = 576 * 1024
MAX_KC = 512
MIN_KC = 256


@dataclass(frozen=True)
class ContractBlocking:
    """kc rows of M and nc columns of N per block (nc a multiple of the panel width)."""
    kc: int
    nc: int


def contract_blocking(lhs: Layout, rhs: Layout) -> ContractBlocking:
    """The blocks of a contract's product lhs [K, M] @ rhs [M, N]."""
    n, rows = rhs.shape[1].c, lhs.shape[0]
    width = make_plan(MAX_KC, n, rows)
    panel = width.seg_width
    padded = width.panels * panel
    kc = PANEL_BYTES // (4 * padded)
    if kc >= MIN_KC:
        return ContractBlocking(min(MAX_KC, kc), n)
    nc = max(panel, PANEL_BYTES // (4 * MIN_KC) // panel * panel)
    return ContractBlocking(min(MAX_KC, PANEL_BYTES // (4 * nc)), min(nc, n))


def contract_plan(lhs: Layout, rhs: Layout, columns: int | None = None,
                  blocking: ContractBlocking | None = None) -> GemmPlan:
    """The plan of a block of `columns` (default: nc) columns of a contract's product."""
    b = blocking or contract_blocking(lhs, rhs)
    return make_plan(b.kc, b.nc if columns is None else columns, lhs.shape[0])


def contract_floats(lhs: Layout, rhs: Layout) -> int:
    """Scratch of a contract: one block's panels and two row tiles (the last block of
    columns, narrower, may take another tile shape)."""
    b, n = contract_blocking(lhs, rhs), rhs.shape[1].c
    plans = [contract_plan(lhs, rhs, min(b.nc, n - n0), b) for n0 in (0, n // b.nc * b.nc)
             if n0 < n]
    return max(p.floats.c + 2 * (b.kc * p.mr + SLACK) for p in plans)


def emit_contract(em: Emitter, node: Node, out: Ref, ins: list[Ref], scratch: Ref) -> None:
    """out = contract(a, g) in blocks (see the module docstring)."""
    found = contract_operands(node, ins[0].layout, ins[1].layout)
    if found is None:
        raise LoweringError("contract operands do not collapse to one row dim")
    lhs, rhs, which = found
    blocking = contract_blocking(lhs, rhs)
    n = rhs.shape[1].c
    fill_zero(em, out)
    if n == 0 or lhs.shape[0].c == 0:
        return
    bld = em.builder
    total = em.lin(rhs.shape[0])
    kc = ir.Constant(I64, blocking.kc)
    blocks = bld.sdiv(bld.add(total, ir.Constant(I64, blocking.kc - 1), flags=["nsw"]), kc)
    with em.loop(blocks, "ct_block") as blk:
        m0 = bld.mul(blk, kc, flags=["nsw"])
        left = bld.sub(total, m0, flags=["nsw"])
        count = bld.select(bld.icmp_signed("<", left, kc), left, kc)
        a = Ref(em.gep(ins[which[0]].ptr, em.mul(m0, lhs.strides[1])), lhs)
        b = em.gep(ins[which[1]].ptr, em.mul(m0, rhs.strides[0]))
        for n0 in range(0, n, blocking.nc):
            cols = min(blocking.nc, n - n0)
            p = contract_plan(lhs, rhs, cols, blocking)
            emit_pack(em, p, scratch, Ref(em.gep(b, rhs.strides[1] * n0), Layout(
                (rhs.shape[0], Lin(cols)), rhs.strides)), count)
            part = Ref(em.gep(out.ptr, n0), Layout((out.layout.shape[0], Lin(cols)),
                                                   out.layout.strides))
            first = em.gep(scratch.ptr, p.floats.c)
            emit_tiles(em, p, a, scratch.ptr, part, count,
                       (first, em.gep(first, blocking.kc * p.mr + SLACK)))


def fill_zero(em: Emitter, out: Ref) -> None:
    """out = 0 (a [rows, N] layout contiguous along N)."""
    with em.nest(out.layout.shape, "zero") as idx:
        em.store(em.const(0.0), em.at(out, idx))


__all__ = ["contract_operands", "contract_plan", "contract_floats", "contract_blocking",
           "ContractBlocking", "emit_contract", "PANEL_BYTES", "MAX_KC", "MIN_KC"]
