"""The GEMM kernel: packed panels and a register-blocked micro-kernel with its epilogue.

    for each block of MC rows:                  # the block of `a` stays in L2
        for each panel q of B:                  # K x (S * U * VW) contiguous floats
            for each tile of MR rows:
                acc[MR][S * U] = 0              # vector registers, VW floats each
                prefetch(the tile's rows of the epilogue's inputs)       # prefetch.py
                for k in range(K):
                    a_r = broadcast(a[r, k]) for the MR rows     # broadcasts first, then
                    for v in range(S * U):                       # one panel vector at a time
                        acc[r][v] = fma(a_r, panel[q][k][v], acc[r][v])
                epilogue(acc)                   # in registers, then stored (a wide tile
                                                # with a transcendental: from a scratch,
                                                # row by row; tile_epilogue.parked)

VW, MR, U and the blocks come from tiling.py (the host's vector width, the register budget
and a cost model of the k-loop).

Segments: with S > 1 the product's N columns are S equal segments of L (the slices a cell
takes of its gate pre-activations) and a tile's vector v = s * U + u holds columns
s * L + (q * U + u) * VW + [0, VW) of segment s, so the same units of every segment meet in
one tile (emit_pack lays the panels out that way), and the epilogue (tile_epilogue.py)
computes the cell on them: a cell's gate buffer never goes to memory. Without segments
(S = 1) the epilogue is the optional `first` body and the store of its value at [r, n].

Split `a`: the left operand may come as pieces along K (a concatenation that is never
written, such as [x_t, h] of a joined step product): the k-loop then walks each piece's rows
against its k-rows of the panel, one after the other.

Tails: columns past a segment's end are zero in the panels; the last vector of a segment may
be partial and is stored (and its inputs loaded) with masked vector accesses.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from llvmlite import ir

from graphrnn.ir import LoweringError, Node

from .emit_pack import emit_pack
from .irbuilder import F32, I32, I64, Emitter, Ref
from .kloop import emit_kloop, emit_kloop_parts
from .prefetch import MIN_K, prefetch_tile
from .strides import ONE, ZERO, Layout, Lin, collapse, lin
from .tile_epilogue import Arg, Epilogue, Operand, Stage, finish_row, parked
from .tiling import GemmPlan, k_chains, operand_layouts, plan

@dataclass
class _Tile:
    a: ir.Value
    lda: Lin
    ak: Lin
    out: Operand | None
    refs: list[Operand] = field(default_factory=list)
    stage_refs: list[Operand] = field(default_factory=list)
    stores: list[Operand | None] = field(default_factory=list)
    flip: ir.Value | None = None        # i1: panels and k in reverse order (see emit_gemm)
    one: ir.Value | None = None         # i1: the rows (known at run time) are one
    pieces: list[tuple[ir.Value, Lin, Lin, int]] = field(default_factory=list)  # split `a`:
    #                                     (base, row stride, k stride, k-rows) of each piece


def emit_gemm(em: Emitter, p: GemmPlan, a: Ref | list[Ref], packed: ir.Value,
              out: Ref | None,
              epilogue: Epilogue | None = None, *, step: ir.Value | None = None) -> None:
    """epilogue(a[..., K] @ B) with B read from its packed panels (see the docstring).

    step: a loop's step index (i64), for a product of one row (a GEMV, whose panels stream
    from L2 every step; or rows known at run time, when they are one): odd steps walk the
    full panels and k in reverse order, so that a step starts on the panel rows the previous
    one read last, still in L1. A list `a`: the pieces of `a` along K (see the docstring;
    K known at compile time, no k blocks)."""
    epi = epilogue or Epilogue()
    pieces = a if isinstance(a, list) else [a]
    a = pieces[0]
    if len(pieces) > 1 and (p.kc or not p.k.const
                            or sum(_k_rows(x) for x in pieces) != p.k.c):
        raise LoweringError("a product of a split left operand needs K fixed and unblocked")
    lead = a.layout.shape[:-1]
    n_last, l_last = lin(p.n), lin(p.seg_len)
    parts: list[tuple[Ref, Lin]] = []
    if out is not None and not epi.stages:
        parts.append((out, n_last))
    parts += [(r, n_last) for r in epi.refs]
    parts += [(r, l_last) for r in epi.stage_refs]
    parts += [(s.store, l_last) for s in epi.stages if s.store is not None]
    wide = operand_layouts(lead, [(r.layout, last) for r, last in parts])
    if wide is None:
        raise LoweringError("the epilogue's operands do not follow the product's rows")
    na = len(pieces)
    rows = collapse([Layout(lead, x.layout.strides[:-1]) for x in pieces]
                    + [Layout(lead, w.strides[:-1]) for w in wide])
    ptrs = [x.ptr for x in pieces] + [r.ptr for r, _ in parts]
    with em.nest(rows[0].shape[:-1], "mm_outer") as idx:
        bases = [em.at(Ref(ptr, lay), idx) for ptr, lay in zip(ptrs, rows)]
        ops = [Operand(b, lay.strides[-1], w.strides[-1])
               for b, lay, w in zip(bases[na:], rows[na:], wide)]
        tile = _Tile(bases[0], rows[0].strides[-1], a.layout.strides[-1], None)
        if na > 1:
            tile.pieces = [(b, lay.strides[-1], x.layout.strides[-1], _k_rows(x))
                           for b, lay, x in zip(bases, rows, pieces)]
        if step is not None and p.k.const and (p.mr == 1 or not p.kc):
            tile.flip = em.builder.trunc(step, ir.IntType(1))
            if p.mr > 1:        # rows known at run time: a GEMV's walk when there is one row
                tile.one = em.builder.icmp_signed("==", em.lin(rows[0].shape[-1]),
                                                  em.lin(ONE))
                tile.flip = em.builder.and_(tile.flip, tile.one)
        if out is not None and not epi.stages:
            tile.out = ops.pop(0)
        tile.refs = ops[:len(epi.refs)]
        tile.stage_refs = ops[len(epi.refs):len(epi.refs) + len(epi.stage_refs)]
        stores = iter(ops[len(epi.refs) + len(epi.stage_refs):])
        tile.stores = [next(stores) if s.store is not None else None for s in epi.stages]
        _row_blocks(em, p, rows[0].shape[-1], tile, epi, packed)


def _k_rows(a: Ref) -> int:
    """The k-rows of a piece of a split `a` (0 when not known at compile time)."""
    k = a.layout.shape[-1]
    return k.c if k.const else 0


def _row_blocks(em: Emitter, p: GemmPlan, m: Lin, tile: _Tile, epi: Epilogue,
                packed: ir.Value) -> None:
    bld = em.builder
    if m.const and m.c <= p.mc:
        _block(em, p, 0, m.c, tile, epi, packed)
        return
    total = em.lin(m)
    mc = ir.Constant(I64, p.mc)
    blocks = bld.sdiv(bld.add(total, ir.Constant(I64, p.mc - 1), flags=["nsw"]), mc)
    with em.loop(blocks, "mm_block") as blk:
        begin = bld.mul(blk, mc, flags=["nsw"])
        end = bld.add(begin, mc, flags=["nsw"])
        end = bld.select(bld.icmp_signed("<", end, total), end, total)
        _block(em, p, begin, end, tile, epi, packed)


@dataclass(frozen=True)
class _Part:
    """A block of the reduction for a tile: k in [k0, k0 + klen), its partial sums in
    `carry` (vectors, rows from the block's first), loaded first and/or stored after."""
    k0: ir.Value | int
    klen: int
    carry: ir.Value
    first_row: ir.Value | int
    load: bool
    store: bool


def _block(em: Emitter, p: GemmPlan, begin, end, tile: _Tile, epi: Epilogue,
           packed: ir.Value) -> None:
    """Rows [begin, end) against every panel; begin/end are ints when known statically.
    With p.kc (a panel too big for L1), each panel is walked in blocks of kc k-rows, every
    tile of the rows taking a block before the next: the block stays in L1, the tiles'
    partial sums wait in a small stack buffer, and the last block applies the epilogue."""
    bld = em.builder
    static = isinstance(begin, int) and isinstance(end, int)
    i64 = (lambda v: ir.Constant(I64, v) if isinstance(v, int) else v)
    width = p.segments * p.seg_width
    panel_floats = p.k * width
    kc = p.kc if tile.flip is None else 0
    carry = None
    if kc:
        slots = (p.mc + p.mr) * p.segments * p.nv
        carry = bld.gep(em.alloca(ir.ArrayType(ir.VectorType(F32, p.vw), slots)),
                        [ir.Constant(I32, 0), ir.Constant(I32, 0)], inbounds=True)

    def tiles(ptr: ir.Value, nv: int, lanes: list[int], col0: ir.Value,
              part: _Part | None) -> None:
        if not static:
            # rows known at run time only (B, T or B * T): the full tiles, then the last rows
            # as tiles of 4, 2 and 1 rows, each run when the remainder has that bit
            rem = bld.srem(bld.sub(end, begin, flags=["nsw"]), i64(p.mr))
            at = bld.sub(end, rem, flags=["nsw"])
            with em.loop(at, "mm_tile", start=begin, step=p.mr) as r:
                _micro(em, p, p.mr, nv, lanes, r, tile, epi, ptr, col0, part=part)
            for bit in (4, 2, 1):
                if bit < p.mr:
                    has = bld.and_(rem, i64(bit))
                    with em.if_then(bld.icmp_signed("!=", has, i64(0))):
                        _micro(em, p, bit, nv, lanes, at, tile, epi, ptr, col0, part=part)
                    at = bld.add(at, has, flags=["nsw"])
            return
        with em.loop(i64(end), "mm_tile", start=i64(begin), step=p.mr) as r:
            _micro(em, p, p.mr, nv, lanes, r, tile, epi, ptr, col0, part=part)
        at, rem = begin + (end - begin) // p.mr * p.mr, (end - begin) % p.mr
        for bit in (4, 2, 1):               # the last rows as tiles of 4, 2 and 1 rows
            if rem & bit:
                _micro(em, p, bit, nv, lanes, i64(at), tile, epi, ptr, col0, part=part)
                at += bit

    def panel(q: ir.Value, nv: int, lanes: list[int]) -> None:
        ptr = em.gep(packed, em.mul(q, panel_floats))
        col0 = em.mul(q, p.seg_width)
        if not kc or p.k.c <= kc:
            tiles(ptr, nv, lanes, col0, None)
            return
        blocks = -(-p.k.c // kc)
        tiles(ptr, nv, lanes, col0, _Part(0, kc, carry, begin, False, True))
        if blocks > 2:
            with em.loop(blocks - 1, "mm_kblock", start=1) as j:
                k0 = bld.mul(j, ir.Constant(I64, kc), flags=["nsw"])
                tiles(ptr, nv, lanes, col0, _Part(k0, kc, carry, begin, True, True))
        last = (blocks - 1) * kc
        tiles(ptr, nv, lanes, col0, _Part(last, p.k.c - last, carry, begin, True, False))

    if p.full:
        with em.loop(p.full, "mm_panel") as q:
            if tile.flip is not None:
                q = bld.select(tile.flip, bld.sub(ir.Constant(I64, p.full - 1), q,
                                                  flags=["nsw"]), q)
            panel(q, p.nv, [p.vw] * p.nv)
    if p.last_vectors:
        rest = p.seg_len - p.full * p.seg_width
        panel(ir.Constant(I64, p.full), p.last_vectors,
              [min(p.vw, rest - u * p.vw) for u in range(p.last_vectors)])


def _micro(em: Emitter, p: GemmPlan, mr: int, nv: int, lanes: list[int], r: ir.Value,
           tile: _Tile, epi: Epilogue, panel: ir.Value, col0: ir.Value,
           part: _Part | None = None) -> None:
    """Rows r .. r + mr against one panel of nv vectors per segment, then the epilogue;
    with `part`, one block of the reduction (the epilogue after the last one only)."""
    bld = em.builder
    vw = p.vw
    nvec = nv * p.segments
    row = [em.add(r, ir.Constant(I64, i)) for i in range(mr)]
    zero = em.const(0.0, vw)
    acc = [zero] * (mr * nvec)
    slot = []
    if part is not None:
        at = em.mul(bld.sub(r, ir.Constant(I64, part.first_row) if isinstance(
            part.first_row, int) else part.first_row, flags=["nsw"]), Lin(nvec))
        slot = [em.gep(part.carry, em.add(at, ir.Constant(I64, j))) for j in range(len(acc))]
        if part.load:
            acc = [bld.load(s) for s in slot]
    static = p.k.const
    if not (static and p.k.c == 0):
        a_rows = [em.gep(tile.a, em.mul(ri, tile.lda)) for ri in row]
        count = em.lin(p.k)
        if part is not None:
            k0 = ir.Constant(I64, part.k0) if isinstance(part.k0, int) else part.k0
            a_rows = [em.gep(a, em.mul(k0, tile.ak)) for a in a_rows]
            panel = em.gep(panel, bld.mul(k0, ir.Constant(I64, nvec * vw), flags=["nsw"]))
            count = ir.Constant(I64, part.klen)
        # (set with more rows per tile only when the rows are one: these tiles do not run)
        flip = (tile.flip, p.k.c) if tile.flip is not None and mr == 1 else None
        chains = k_chains(mr, nvec) if p.mr == 1 or (mr == 1 and tile.one is not None) else 1
        if mr > 1 and p.k.const and p.k.c >= MIN_K and (part is None or not part.store):
            _prefetch_epilogue(em, p, tile, row, col0, nv)
        when = tile.one if p.mr > 1 and mr == 1 else None
        if tile.pieces:
            acc = emit_kloop_parts(
                em, [([em.gep(b, em.mul(ri, ld)) for ri in row], ak, k)
                     for b, ld, ak, k in tile.pieces], panel, nvec, vw, acc,
                flip=flip[0] if flip else None, chains=chains, when=when)
        else:
            acc = emit_kloop(em, a_rows, tile.ak, panel, nvec, vw, count, acc,
                             may_be_empty=not static, flip=flip, chains=chains, when=when)
    if part is not None and part.store:
        for s, v in zip(slot, acc):
            bld.store(v, s)
        return
    if not parked(epi, len(acc)):
        for i in range(mr):
            for u in range(nv):
                col = em.add(col0, ir.Constant(I64, u * vw))
                values = [acc[i * nvec + s * nv + u] for s in range(p.segments)]
                finish_row(em, p, tile, epi, row[i], col, values, lanes[u])
        return
    # a cell's epilogue (transcendentals, several stages) one row and unit at a time, from
    # the tile parked in an L1 scratch: the registers hold one unit's values, not the tile's
    scratch = em.alloca(ir.ArrayType(zero.type, mr * nvec))
    for j, v in enumerate(acc):
        bld.store(v, bld.gep(scratch, [ir.Constant(I32, 0), ir.Constant(I32, j)], inbounds=True))
    with em.loop(mr, "mm_epilogue") as i:
        base = bld.mul(i, ir.Constant(I64, nvec), flags=["nsw"])

        def unit(u: ir.Value, live: int) -> None:
            col = em.add(col0, bld.mul(u, ir.Constant(I64, vw), flags=["nsw"]))
            values = [bld.load(bld.gep(scratch, [ir.Constant(I32, 0), em.add(
                em.add(base, u), ir.Constant(I64, s * nv))], inbounds=True))
                for s in range(p.segments)]
            finish_row(em, p, tile, epi, em.add(r, i), col, values, live)
        if all(n == vw for n in lanes):         # one copy of the cell's code per tile
            with em.loop(nv, "mm_unit") as u:
                unit(u, vw)
        else:
            for u in range(nv):
                unit(ir.Constant(I64, u), lanes[u])


def _prefetch_epilogue(em: Emitter, p: GemmPlan, tile: _Tile, row: list[ir.Value],
                       col0: ir.Value, nv: int) -> None:
    """Prefetch the tile's rows of the epilogue's inputs (those shared by all rows, such as
    a bias, stay in cache; stores wait in the store queue, not on their lines)."""
    segs = [s * p.seg_len for s in range(p.segments)]
    ops = [(o, segs) for o in tile.refs] + [(o, [0]) for o in tile.stage_refs]
    cols = [em.add(col0, ir.Constant(I64, u * p.vw)) for u in range(nv)]
    prefetch_tile(em, row, cols, [(o.base, em.lin(o.ld), off) for o, off in ops
                                  if o.cs != ZERO and o.ld != ZERO])


# ----------------------------------------------------------------------------- rules

def emit_matmul(em: Emitter, node: Node, out: Ref, a: Ref, packed: Ref,
                epilogue: Epilogue | None = None, segments: int = 1) -> None:
    """out[..., N] = epilogue(a[..., K] @ B), B read from its packed panels."""
    p = plan(node, segments)
    if out is not None and not (epilogue and epilogue.stages) \
            and out.layout.strides[-1] != ONE and p.n > 1:
        raise LoweringError(f"matmul output must be contiguous along N, got {out.layout}")
    emit_gemm(em, p, a, packed.ptr, out, epilogue)


def emit_pack_rule(em: Emitter, node: Node, packed: Ref, b: Ref, segments: int = 1) -> None:
    """The packed panels of a matmul node's right operand."""
    emit_pack(em, plan(node, segments), packed, b)


__all__ = ["Epilogue", "Stage", "Arg", "emit_gemm", "emit_matmul", "emit_pack_rule"]
