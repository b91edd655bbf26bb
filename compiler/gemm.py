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

from graphrnn.ir import Graph, LoweringError, Node, Op

from .emit_map import eval_body
from .irbuilder import F32, I64, WIDTH, Emitter, Ref, vec
from .layout import ONE, ZERO, Layout, Lin, collapse, lin, product

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
    mr, nv = (1, 8) if m == ONE else (2, 6) if m == lin(2) else (3,4)
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
    if p.padded == 0 or p.k == 0:
        return
    s_k, s_n = (b.layout.strides[1], b.layout.strides[0]) if p.transpose \
        else (b.layout.strides[0], b.layout.strides[1])
    if p.transpose and s_k == ONE:
        fill_panel = _pack_transposed
    elif not p.transpose and s_n == ONE:
        fill_panel = _pack_rows
    else:
        _pack_any(em, p, packed, b, s_k, s_n)
        return
    if p.full:
        with em.loop(p.full, "pack_panel") as index:
            fill_panel(em, p, packed, b, s_k, s_n, index, p.width, p.width)
    if p.last_nv:
        fill_panel(em, p, packed, b, s_k, s_n, ir.Constant(I64, p.full), p.last_nv * WIDTH,
                   p.n - p.full * p.width)


def _pack_transposed(em: Emitter, p: GemmPlan, packed: Ref, b: Ref, s_k, s_n, index,
                     width: int, valid: int) -> None:
    """One panel from rows of b[n, k]: 8 rows x 8 k at a time, transposed in registers."""
    bld = em.builder
    dst = em.gep(packed.ptr, em.mul(index, p.k * p.width))
    col0 = em.mul(index, p.width)
    zero = em.const(0.0, WIDTH)
    main = p.k // WIDTH * WIDTH
    for g in range(width // WIDTH):
        rows = [em.gep(b.ptr, em.mul(em.add(col0, ir.Constant(I64, g * WIDTH + r)), s_n))
                if g * WIDTH + r < valid else None for r in range(WIDTH)]
        if main:
            with em.loop(main, "pack_k", step=WIDTH) as k:
                vecs = [em.load(em.gep(row, k), WIDTH) if row is not None else zero
                        for row in rows]
                for kk, v in enumerate(_transpose8(bld, vecs)):
                    at = em.add(bld.mul(em.add(k, ir.Constant(I64, kk)), ir.Constant(
                        I64, width), flags=["nsw"]), ir.Constant(I64, g * WIDTH))
                    em.store(v, em.gep(dst, at))
        if main < p.k:
            with em.loop(p.k, "pack_kt", start=main) as k:
                out = em.gep(dst, em.add(bld.mul(k, ir.Constant(I64, width), flags=["nsw"]),
                                         ir.Constant(I64, g * WIDTH)))
                for r, row in enumerate(rows):
                    v = em.load(em.gep(row, k)) if row is not None else ir.Constant(F32, 0.0)
                    em.store(v, em.gep(out, r))


def _pack_rows(em: Emitter, p: GemmPlan, packed: Ref, b: Ref, s_k, s_n, index, width: int,
               valid: int) -> None:
    """One panel from b[k, n] with contiguous rows: a vector copy per k."""
    dst = em.gep(packed.ptr, em.mul(index, p.k * p.width))
    src = em.gep(b.ptr, em.mul(index, p.width))
    with em.loop(p.k, "pack_k") as k:
        row = em.gep(src, em.mul(k, s_k))
        out = em.gep(dst, em.builder.mul(k, ir.Constant(I64, width), flags=["nsw"]))
        for v in range(width // WIDTH):
            lanes = min(WIDTH, max(0, valid - v * WIDTH))
            if lanes == WIDTH:
                em.store(em.load(em.gep(row, v * WIDTH), WIDTH), em.gep(out, v * WIDTH))
                continue
            for lane in range(WIDTH):
                value = em.load(em.gep(row, v * WIDTH + lane)) if lane < lanes \
                    else ir.Constant(F32, 0.0)
                em.store(value, em.gep(out, v * WIDTH + lane))


def _pack_any(em: Emitter, p: GemmPlan, packed: Ref, b: Ref, s_k, s_n) -> None:
    """Any strides: one element at a time."""
    bld = em.builder
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


_LO, _HI = [0, 8, 1, 9, 4, 12, 5, 13], [2, 10, 3, 11, 6, 14, 7, 15]
_PAIR_LO, _PAIR_HI = [0, 1, 8, 9, 4, 5, 12, 13], [2, 3, 10, 11, 6, 7, 14, 15]
_HALF_LO, _HALF_HI = [0, 1, 2, 3, 8, 9, 10, 11], [4, 5, 6, 7, 12, 13, 14, 15]


def _transpose8(bld: ir.IRBuilder, rows: list[ir.Value]) -> list[ir.Value]:
    """out[k][j] = rows[j][k] for 8 <8 x float> rows (unpack, pair shuffle, 128-bit halves)."""
    def shuf(a: ir.Value, b: ir.Value, mask: list[int]) -> ir.Value:
        return bld.shuffle_vector(a, b, ir.Constant(ir.VectorType(ir.IntType(32), 8), mask))
    t = []
    for i in range(0, 8, 2):
        t += [shuf(rows[i], rows[i + 1], _LO), shuf(rows[i], rows[i + 1], _HI)]
    s = [shuf(t[0], t[2], _PAIR_LO), shuf(t[0], t[2], _PAIR_HI),
         shuf(t[1], t[3], _PAIR_LO), shuf(t[1], t[3], _PAIR_HI),
         shuf(t[4], t[6], _PAIR_LO), shuf(t[4], t[6], _PAIR_HI),
         shuf(t[5], t[7], _PAIR_LO), shuf(t[5], t[7], _PAIR_HI)]
    out = [shuf(s[i], s[i + 4], _HALF_LO) for i in range(4)]
    return out + [shuf(s[i], s[i + 4], _HALF_HI) for i in range(4)]


@dataclass(frozen=True)
class Epilogue:
    """An elementwise FUSED body applied to the accumulators before they are stored.

    `slot` is the body input that receives the matmul's value; `refs` are the other inputs,
    in body order, each broadcast against the output.
    """
    body: Graph
    slot: int
    refs: tuple[Ref, ...]


@dataclass(frozen=True)
class _Tile:
    """Row base pointers and strides of one gemm call (after the outer dims are fixed)."""
    a: ir.Value
    lda: Lin
    ak: Lin
    c: ir.Value
    ldc: Lin
    packed: ir.Value
    extra: tuple[tuple[ir.Value, Lin, Lin], ...] = ()   # epilogue inputs: (ptr, row, col stride)
    epilogue: Epilogue | None = None

    def at_col(self, em: Emitter, col0: ir.Value) -> "_Tile":
        """The same tile with every column pointer moved to column `col0`."""
        extra = tuple((em.gep(ptr, em.mul(col0, cs)), ld, cs) for ptr, ld, cs in self.extra)
        return _Tile(self.a, self.lda, self.ak, em.gep(self.c, col0), self.ldc, self.packed,
                     extra, self.epilogue)


def epilogue_layouts(a: Layout, out: Layout, extra: list[Layout]) -> list[Layout] | None:
    """Row layouts of a, out and the epilogue inputs when one loop nest serves them all.

    None when an epilogue input is not contiguous or broadcast along N, or its rows do not
    follow the output's (then the FUSED node is computed by a kernel of its own).
    """
    lead = out.shape[:-1]
    try:
        wide = [e.broadcast_to(out.shape) for e in extra]
    except LoweringError:
        return None
    if any(e.strides[-1] not in (ZERO, ONE) for e in wide):
        return None
    plain = collapse([Layout(lead, a.strides[:-1]), Layout(lead, out.strides[:-1])])
    rows = collapse([Layout(lead, a.strides[:-1]), Layout(lead, out.strides[:-1])]
                    + [Layout(lead, e.strides[:-1]) for e in wide])
    return rows if rows[0].shape == plain[0].shape else None


def emit_matmul(em: Emitter, node: Node, out: Ref, a: Ref, packed: Ref,
                epilogue: Epilogue | None = None) -> None:
    """out[..., N] = epilogue(a[..., K] @ B), with B read from its packed panels."""
    p = plan(node)
    if out.layout.strides[-1] != ONE and p.n > 1:
        raise LoweringError(f"matmul output must be contiguous along N, got {out.layout}")
    extra = [r.layout for r in epilogue.refs] if epilogue else []
    rows = epilogue_layouts(a.layout, out.layout, extra)
    if rows is None:
        raise LoweringError("the epilogue's inputs do not follow the matmul's rows")
    cols = [r.layout.broadcast_to(out.layout.shape).strides[-1] for r in epilogue.refs] \
        if epilogue else []
    ptrs = [a.ptr, out.ptr] + [r.ptr for r in epilogue.refs] if epilogue else [a.ptr, out.ptr]
    with em.nest(rows[0].shape[:-1], "mm_outer") as idx:
        bases = [em.at(Ref(ptr, lay), idx) for ptr, lay in zip(ptrs, rows)]
        tile = _Tile(bases[0], rows[0].strides[-1], a.layout.strides[-1], bases[1],
                     rows[1].strides[-1], packed.ptr,
                     tuple((b, lay.strides[-1], cs) for b, lay, cs in zip(bases[2:], rows[2:],
                                                                           cols)), epilogue)
        _rows(em, p, rows[0].shape[-1], tile)


def _rows(em: Emitter, p: GemmPlan, m: Lin, tile: _Tile) -> None:
    bld = em.builder
    if m.const and m.c <= p.mc:
        _block(em, p, 0, m.c, tile)
        return
    total = em.lin(m)
    mc = ir.Constant(I64, p.mc)
    blocks = bld.sdiv(bld.add(total, ir.Constant(I64, p.mc - 1), flags=["nsw"]), mc)
    with em.loop(blocks, "mm_block") as blk:
        begin = bld.mul(blk, mc, flags=["nsw"])
        end = bld.add(begin, mc, flags=["nsw"])
        end = bld.select(bld.icmp_signed("<", end, total), end, total)
        _block(em, p, begin, end, tile)


def _block(em: Emitter, p: GemmPlan, begin, end, tile: _Tile) -> None:
    """Rows [begin, end) against every panel; begin/end are ints when known statically."""
    bld = em.builder
    static = isinstance(begin, int) and isinstance(end, int)
    i64 = (lambda v: ir.Constant(I64, v) if isinstance(v, int) else v)

    def panel(index: ir.Value | int, nv: int, cols: int) -> None:
        ptr = em.gep(tile.packed, em.mul(i64(index), p.k * p.width))
        t = tile.at_col(em, em.mul(i64(index), p.width))
        with em.loop(i64(end), "mm_tile", start=i64(begin), step=p.mr) as r:
            _micro(em, p, p.mr, nv, cols, r, t, ptr)
        if static:
            tail_start = begin + (end - begin) // p.mr * p.mr
            if end > tail_start:
                _micro(em, p, end - tail_start, nv, cols, i64(tail_start), t, ptr)
            return
        span = bld.sub(end, begin, flags=["nsw"])
        tail = bld.add(begin, bld.mul(bld.sdiv(span, i64(p.mr)), i64(p.mr), flags=["nsw"]),
                       flags=["nsw"])
        rem = bld.sub(end, tail, flags=["nsw"])
        for rows in range(p.mr - 1, 0, -1):
            with em.if_then(bld.icmp_signed("==", rem, i64(rows))):
                _micro(em, p, rows, nv, cols, tail, t, ptr)

    if p.full:
        with em.loop(p.full, "mm_panel") as index:
            panel(index, p.nv, p.width)
    if p.last_nv:
        panel(p.full, p.last_nv, p.n - p.full * p.width)


def _micro(em: Emitter, p: GemmPlan, mr: int, nv: int, cols: int, r: ir.Value, tile: _Tile,
           panel: ir.Value) -> None:
    """c[r : r + mr, :cols] = a[r : r + mr, :] @ panel, in mr * nv vector accumulators."""
    bld = em.builder
    row = [em.add(r, ir.Constant(I64, i)) for i in range(mr)]
    a_rows = [em.gep(tile.a, em.mul(ri, tile.lda)) for ri in row]
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
        kp = em.gep(panel, bld.mul(k, ir.Constant(I64, nv * WIDTH), flags=["nsw"]))
        bcast = [em.splat(em.load(em.gep(a_rows[i], em.mul(k, tile.ak))), WIDTH)
                 for i in range(mr)]
        new = list(phis)
        for v in range(nv):
            bv = em.load(em.gep(kp, v * WIDTH), WIDTH)
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
        c_row = em.gep(tile.c, em.mul(row[i], tile.ldc))
        x_rows = [(em.gep(ptr, em.mul(row[i], ld)), cs) for ptr, ld, cs in tile.extra]
        for v in range(nv):
            lanes = min(WIDTH, cols - v * WIDTH)
            _store(em, tile.epilogue, acc[i * nv + v], em.gep(c_row, v * WIDTH),
                   [(em.gep(x, em.mul(ir.Constant(I64, v * WIDTH), cs)), cs)
                    for x, cs in x_rows], lanes)


def _store(em: Emitter, epi: Epilogue | None, value: ir.Value, ptr: ir.Value,
           extra: list[tuple[ir.Value, Lin]], lanes: int) -> None:
    """Store `lanes` lanes of an accumulator, through the epilogue when there is one."""
    bld = em.builder

    def finish(v: ir.Value, width: int, lane: int) -> ir.Value:
        if epi is None:
            return v
        args = []
        for x, cs in extra:
            if cs == ZERO:
                s = em.load(x)
                args.append(em.splat(s, width) if width else s)
            else:
                args.append(em.load(x, width) if width else em.load(em.gep(x, lane)))
        args.insert(epi.slot, v)
        return eval_body(em, epi.body, args, width)

    if lanes == WIDTH:
        em.store(finish(value, WIDTH, 0), ptr)
        return
    for lane in range(lanes):
        scalar = bld.extract_element(value, ir.Constant(ir.IntType(32), lane))
        em.store(finish(scalar, 0, lane), em.gep(ptr, lane))


__all__ = ["GemmPlan", "Epilogue", "plan", "packed_floats", "epilogue_layouts", "emit_pack",
           "emit_matmul"]
