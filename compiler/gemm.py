"""The matmul emitter: packed weight panels and a register-blocked <8 x float> micro-kernel.

    for each block of MC rows:                  # the block of `a` stays in L2
        for each panel p of W = 8 * NV columns: # one panel is K x W contiguous floats
            for each tile of MR rows:
                acc[MR][NV] = 0                 # MR * NV vector registers
                for k in range(K):
                    a_r = broadcast(a[r, k]) for the MR rows     # broadcasts first, then
                    for v in range(NV):                          # one panel vector at a time:
                        b = panel[p][k][8v : 8v + 8]             # MR*NV + MR + 1 <= 16 ymm
                        acc[r][v] = fma(a_r, b, acc[r][v])
                c[r, cols of p] = acc

The right operand is first packed into panel-major order `[panel][k][W]` (zero-padded to a
whole vector), whatever its layout: `transpose_b` weights ([N, K], PyTorch's) and row strides
that are powers of two would otherwise make every k touch the same cache sets. A matmul in a
loop body whose weights are loop-invariant is packed once, in the loop's prologue.

The tile shape follows the number of rows: MR=3 x NV=4 (12 accumulators) in general, wider
panels for 1 or 2 rows so that enough independent FMA chains hide the FMA latency.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from graphrnn.ir import LoweringError, Node, Op

from .irbuilder import F32, I64, WIDTH, Emitter, Ref, vec
from .layout import ONE, Layout, collapse, lin, product

A_BLOCK_BYTES = 96 * 1024        # rows of `a` per block: MC * K * 4 bytes stays in L2


@dataclass(frozen=True)
class GemmPlan:
    """Static tiling of one matmul: K, N, rows per tile, vectors per panel."""
    k: int
    n: int
    mr: int
    nv: int
    transpose: bool

    @property
    def width(self) -> int:
        return WIDTH * self.nv

    @property
    def full(self) -> int:
        """Number of full-width panels."""
        return self.n // self.width

    @property
    def last_nv(self) -> int:
        """Vectors in the last, narrower panel (0 when N is a multiple of the width)."""
        return -(-(self.n - self.full * self.width) // WIDTH)

    @property
    def padded(self) -> int:
        return self.full * self.width + self.last_nv * WIDTH

    @property
    def mc(self) -> int:
        rows = A_BLOCK_BYTES // (4 * max(self.k, 1))
        return max(self.mr, rows // self.mr * self.mr)


def plan(node: Node) -> GemmPlan:
    a, b = (x.type for x in node.inputs)
    transpose = bool(node.attrs.get("transpose_b"))
    k, n = (b.shape[1], b.shape[0]) if transpose else b.shape
    if not isinstance(k, int) or not isinstance(n, int):
        raise LoweringError(f"matmul weights must have fixed dims, got {b}")
    m = product(a.shape[:-1])
    mr, nv = (1, 8) if m == ONE else (2, 6) if m == lin(2) else (3, 4)
    return GemmPlan(k, n, mr, max(1, min(nv, -(-n // WIDTH))), transpose)


def packed_floats(node: Node) -> int:
    """Size of the packed right operand of a matmul node."""
    if node.op != Op.MATMUL:
        return 0
    p = plan(node)
    return p.k * p.padded


def emit_pack(em: Emitter, node: Node, packed: Ref, b: Ref) -> None:
    """packed[panel][k][j] = b[k, panel * W + j] (b[n, k] when transposed), 0 past N."""
    p = plan(node)
    bld = em.builder
    if p.padded == 0 or p.k == 0:
        return
    s_k, s_n = (b.layout.strides[1], b.layout.strides[0]) if p.transpose \
        else (b.layout.strides[0], b.layout.strides[1])
    w = ir.Constant(I64, p.width)
    with em.loop(p.padded, "pack_n") as n:
        panel = bld.sdiv(n, w)
        j = bld.sub(n, bld.mul(panel, w, flags=["nsw"]), flags=["nsw"])
        full = bld.icmp_signed("<", panel, ir.Constant(I64, p.full))
        width = bld.select(full, w, ir.Constant(I64, p.last_nv * WIDTH))
        base = em.add(bld.mul(panel, ir.Constant(I64, p.k * p.width), flags=["nsw"]), j)
        inside = bld.icmp_signed("<", n, ir.Constant(I64, p.n))
        col = em.gep(b.ptr, em.mul(bld.select(inside, n, ir.Constant(I64, 0)), s_n))
        with em.loop(p.k, "pack_k") as k:
            v = em.load(em.gep(col, em.mul(k, s_k)))
            v = bld.select(inside, v, ir.Constant(F32, 0.0))
            em.store(v, em.gep(packed.ptr, em.add(base, bld.mul(k, width, flags=["nsw"]))))


def emit_matmul(em: Emitter, node: Node, out: Ref, a: Ref, packed: Ref) -> None:
    """out[..., N] = a[..., K] @ B, with B read from its packed panels."""
    p = plan(node)
    if out.layout.strides[-1] != ONE and p.n > 1:
        raise LoweringError(f"matmul output must be contiguous along N, got {out.layout}")
    lead = a.layout.shape[:-1]
    rows = collapse([Layout(lead, a.layout.strides[:-1]), Layout(lead, out.layout.strides[:-1])])
    a_rows, c_rows = rows
    ak = a.layout.strides[-1]
    with em.nest(a_rows.shape[:-1], "mm_outer") as idx:
        a_base = em.at(Ref(a.ptr, a_rows), idx)
        c_base = em.at(Ref(out.ptr, c_rows), idx)
        m = a_rows.shape[-1]
        _rows(em, p, m, a_base, a_rows.strides[-1], ak, c_base, c_rows.strides[-1], packed.ptr)


def _rows(em: Emitter, p: GemmPlan, m, a_base, lda, ak, c_base, ldc, packed) -> None:
    bld = em.builder
    if m.const and m.c <= p.mc:
        _block(em, p, 0, m.c, a_base, lda, ak, c_base, ldc, packed)
        return
    total = em.lin(m)
    mc = ir.Constant(I64, p.mc)
    blocks = bld.sdiv(bld.add(total, ir.Constant(I64, p.mc - 1), flags=["nsw"]), mc)
    with em.loop(blocks, "mm_block") as blk:
        begin = bld.mul(blk, mc, flags=["nsw"])
        end = bld.add(begin, mc, flags=["nsw"])
        end = bld.select(bld.icmp_signed("<", end, total), end, total)
        _block(em, p, begin, end, a_base, lda, ak, c_base, ldc, packed)


def _block(em: Emitter, p: GemmPlan, begin, end, a_base, lda, ak, c_base, ldc, packed) -> None:
    """Rows [begin, end) against every panel; begin/end are ints when known statically."""
    bld = em.builder
    static = isinstance(begin, int) and isinstance(end, int)
    i64 = (lambda v: ir.Constant(I64, v) if isinstance(v, int) else v)

    def panel(index: ir.Value | int, nv: int, cols: int) -> None:
        ptr = em.gep(packed, em.mul(i64(index), p.k * p.width))
        col0 = em.mul(i64(index), p.width)
        a0, c0 = a_base, em.gep(c_base, col0)
        with em.loop(i64(end), "mm_tile", start=i64(begin), step=p.mr) as r:
            _micro(em, p, p.mr, nv, cols, r, a0, lda, ak, c0, ldc, ptr)
        if static:
            tail_start = begin + (end - begin) // p.mr * p.mr
            rem = end - tail_start
            if rem:
                _micro(em, p, rem, nv, cols, i64(tail_start), a0, lda, ak, c0, ldc, ptr)
            return
        span = bld.sub(end, begin, flags=["nsw"])
        tail = bld.add(begin, bld.mul(bld.sdiv(span, i64(p.mr)), i64(p.mr), flags=["nsw"]),
                       flags=["nsw"])
        rem = bld.sub(end, tail, flags=["nsw"])
        for rows in range(p.mr - 1, 0, -1):
            with em.if_then(bld.icmp_signed("==", rem, i64(rows))):
                _micro(em, p, rows, nv, cols, tail, a0, lda, ak, c0, ldc, ptr)

    if p.full:
        with em.loop(p.full, "mm_panel") as index:
            panel(index, p.nv, p.width)
    if p.last_nv:
        panel(p.full, p.last_nv, p.n - p.full * p.width)


def _micro(em: Emitter, p: GemmPlan, mr: int, nv: int, cols: int, r: ir.Value, a_base, lda,
           ak, c_base, ldc, panel: ir.Value) -> None:
    """c[r : r + mr, :cols] = a[r : r + mr, :] @ panel, in mr * nv vector accumulators."""
    bld = em.builder
    a_rows = [em.gep(a_base, em.mul(em.add(r, ir.Constant(I64, i)), lda)) for i in range(mr)]
    c_rows = [em.gep(c_base, em.mul(em.add(r, ir.Constant(I64, i)), ldc)) for i in range(mr)]
    zero = em.const(0.0, WIDTH)
    acc = [zero] * (mr * nv)
    if p.k:
        pre = bld.block
        body = em.function.append_basic_block("mm_k.body")
        done = em.function.append_basic_block("mm_k.exit")
        bld.branch(body)
        bld.position_at_end(body)
        k = bld.phi(I64, name="k")
        k.add_incoming(ir.Constant(I64, 0), pre)
        phis = [bld.phi(vec()) for _ in acc]
        for ph in phis:
            ph.add_incoming(zero, pre)
        row = em.gep(panel, bld.mul(k, ir.Constant(I64, nv * WIDTH), flags=["nsw"]))
        bcast = [em.splat(em.load(em.gep(a_rows[i], em.mul(k, ak))), WIDTH) for i in range(mr)]
        new = list(phis)
        for v in range(nv):
            bv = em.load(em.gep(row, v * WIDTH), WIDTH)
            for i in range(mr):
                new[i * nv + v] = em.fma(bcast[i], bv, new[i * nv + v])
        nxt = bld.add(k, ir.Constant(I64, 1), flags=["nsw"])
        k.add_incoming(nxt, body)
        for ph, val in zip(phis, new):
            ph.add_incoming(val, body)
        bld.cbranch(bld.icmp_signed("<", nxt, ir.Constant(I64, p.k)), body, done)
        bld.position_at_end(done)
        acc = new
    for i in range(mr):
        for v in range(nv):
            n_valid = min(WIDTH, cols - v * WIDTH)
            ptr = em.gep(c_rows[i], v * WIDTH)
            value = acc[i * nv + v]
            if n_valid == WIDTH:
                em.store(value, ptr)
            else:
                for lane in range(n_valid):
                    em.store(bld.extract_element(value, ir.Constant(ir.IntType(32), lane)),
                             em.gep(ptr, lane))


def emit_contract(em: Emitter, node: Node, out: Ref, a: Ref, g: Ref) -> None:
    """out[k, n] = sum over rows m of a[m, k] * g[m, n] ([n, k] with transpose_out)."""
    lead = a.layout.shape[:-1]
    a_rows, g_rows = collapse([Layout(lead, a.layout.strides[:-1]),
                               Layout(lead, g.layout.strides[:-1])])
    o = out.layout.permute((1, 0)) if node.attrs.get("transpose_out") else out.layout
    kdim, ndim = a.layout.shape[-1], g.layout.shape[-1]
    with em.nest((kdim, ndim), "ct_zero") as (k, n):
        em.store(em.const(0.0), em.at(Ref(out.ptr, o), [k, n]))
    with em.nest(a_rows.shape, "ct_m") as idx:
        a_row = em.at(Ref(a.ptr, a_rows), idx)
        g_row = em.at(Ref(g.ptr, g_rows), idx)
        with em.loop(kdim, "ct_k") as k:
            x = em.load(em.gep(a_row, em.mul(k, a.layout.strides[-1])))
            with em.loop(ndim, "ct_n") as n:
                dst = em.at(Ref(out.ptr, o), [k, n])
                y = em.load(em.gep(g_row, em.mul(n, g.layout.strides[-1])))
                em.store(em.fma(x, y, em.load(dst)), dst)


__all__ = ["GemmPlan", "plan", "packed_floats", "emit_pack", "emit_matmul", "emit_contract"]
