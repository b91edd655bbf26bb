"""The GEMM kernel: packed panels and a register-blocked micro-kernel with its epilogue.

    for each block of MC rows:                  # the block of `a` stays in L2
        for each panel q of B:                  # K x (S * U * VW) contiguous floats
            for each tile of MR rows:
                acc[MR][S * U] = 0              # vector registers, VW floats each
                for k in range(K):
                    a_r = broadcast(a[r, k]) for the MR rows     # broadcasts first, then
                    for v in range(S * U):                       # one panel vector at a time
                        acc[r][v] = fma(a_r, panel[q][k][v], acc[r][v])
                epilogue(acc)                   # in registers, then stored

VW is the host's vector width: 16 floats with AVX-512 (32 registers: up to 24
accumulators), else 8 (16 registers: 12). The tile's rows MR follow from the number of rows
(a cost model of FMA throughput, latency and tails; one row for a GEMV).

Segments: with S > 1 the product's N columns are S equal segments of L (the slices a cell
takes of its gate pre-activations) and a tile's vector v = s * U + u holds columns
s * L + (q * U + u) * VW + [0, VW) of segment s, so the same units of every segment meet in
one tile (emit_pack lays the panels out that way). The epilogue is then:

    x_s = first(acc[r][s * U + u], its inputs at column s * L + c)   # e.g. + bias + i2h
    for each stage (a FUSED body on the [.., L] slices, in order):
        value = body(x_s / earlier stage values / inputs at column c)
        store value at [r, c] when it is needed outside          # h, c of an LSTM

so a cell's gate buffer never goes to memory. Without segments (S = 1) the epilogue is the
optional `first` body and the store of its value at [r, n].

Tails: columns past a segment's end are zero in the panels; the last vector of a segment may
be partial and is stored (and its inputs loaded) with masked vector accesses.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass, field

from llvmlite import ir

from graphrnn.ir import Graph, LoweringError, Node, Op

from .emit_map import eval_body
from .emit_pack import emit_pack
from .irbuilder import F32, I32, I64, Emitter, Ref
from .layout import ONE, ZERO, Layout, Lin, collapse, lin, product

A_BLOCK_BYTES = 96 * 1024        # rows of `a` per block: MC * K * 4 bytes stays in L2
MAX_SEGMENTS = 8


@functools.lru_cache(maxsize=1)
def vector_width() -> int:
    """Floats per vector register of the host: 16 with AVX-512, else 8."""
    import llvmlite.binding as llvm
    return 16 if llvm.get_host_cpu_features().get("avx512f") else 8


def accumulators() -> int:
    """How many accumulators a tile may hold (registers left for the operands)."""
    return 24 if vector_width() >= 16 else 12


def narrow(columns: int, vw: int) -> int:
    """The vector width for `columns` columns: half-width vectors when that pads less on a
    narrow product (24 columns: 3 x 8, not 2 x 16)."""
    if vw > 8 and columns <= 4 * vw and -(-columns // 8) * 8 < -(-columns // vw) * vw:
        return 8
    return vw


@dataclass(frozen=True)
class GemmPlan:
    """Static tiling of one product: K (may grow with T), N, rows per tile, vector width,
    vectors per segment in a panel (U), segments (S), and the right operand's layout."""
    k: Lin
    n: int
    mr: int
    vw: int
    nv: int
    segments: int = 1
    transpose: bool = False

    @property
    def seg_len(self) -> int:
        return self.n // self.segments

    @property
    def seg_width(self) -> int:
        """Columns of one segment in a full panel."""
        return self.nv * self.vw

    @property
    def full(self) -> int:
        """Number of full panels."""
        return self.seg_len // self.seg_width

    @property
    def last_vectors(self) -> int:
        """Vectors per segment in the last, narrower panel (0: none)."""
        return -(-(self.seg_len - self.full * self.seg_width) // self.vw)

    @property
    def panels(self) -> int:
        return self.full + (1 if self.last_vectors else 0)

    @property
    def floats(self) -> Lin:
        """Size of the packed panels."""
        return self.k * (self.segments * (self.full * self.seg_width
                                          + self.last_vectors * self.vw))

    @property
    def mc(self) -> int:
        k = self.k.c if self.k.const else 512
        rows = A_BLOCK_BYTES // (4 * max(k, 1))
        return max(self.mr, rows // self.mr * self.mr)


def make_plan(k: Lin | int, n: int, rows: Lin | int, *, segments: int = 1,
              transpose: bool = False, vw: int | None = None) -> GemmPlan:
    """The tiling of a [rows, k] @ [k, n] product (n split in `segments` equal segments)."""
    vw = narrow(n // segments, vw or vector_width())
    rows = lin(rows)
    need = max(1, -(-(n // segments) // vw))
    budget = accumulators()
    if rows == ONE:
        u = max(1, min(need, 8 // segments))
        return GemmPlan(lin(k), n, 1, vw, u, segments, transpose)
    u = max(1, min(need, 4 // segments))
    mr = _rows_per_tile(rows.c if rows.const else 1 << 12, u * segments, vw, budget)
    return GemmPlan(lin(k), n, mr, vw, u, segments, transpose)


def _rows_per_tile(rows: int, nvec: int, vw: int, budget: int) -> int:
    """MR minimising the k-loop's cycles over all tiles of `rows` rows (ties: more rows)."""
    per_fma = 1.0 if vw >= 16 else 0.5

    def cycles(mr: int) -> float:
        if mr == 0:
            return 0.0
        return max(mr * nvec * per_fma, 4.0, (mr + nvec) / 2) + 1.0

    best, best_cost = 1, float("inf")
    for mr in range(1, max(1, min(8, budget // nvec)) + 1):
        cost = rows // mr * cycles(mr) + cycles(rows % mr)
        if cost <= best_cost * 1.001:
            best, best_cost = mr, min(cost, best_cost)
    return best


def plan(node: Node, segments: int = 1) -> GemmPlan:
    """The plan of a MATMUL node (its weights' dims must be fixed)."""
    a, b = (x.type for x in node.inputs)
    transpose = bool(node.attrs.get("transpose_b"))
    k, n = (b.shape[1], b.shape[0]) if transpose else b.shape
    if not isinstance(k, int) or not isinstance(n, int):
        raise LoweringError(f"matmul weights must have fixed dims, got {b}")
    return make_plan(k, n, product(a.shape[:-1]), segments=segments, transpose=transpose)


def packed_floats(node: Node, segments: int = 1) -> Lin:
    """Size of the packed right operand of a matmul node (0 for other ops)."""
    return plan(node, segments).floats if node.op == Op.MATMUL else ZERO


# ----------------------------------------------------------------------------- epilogues

@dataclass(frozen=True)
class Arg:
    """An input of a stage: kind "seg" (segment s of the product, after `first`), "stage"
    (an earlier stage's value) or "ref" (Epilogue.stage_refs[index], in [.., L] space)."""
    kind: str
    index: int


@dataclass(frozen=True)
class Stage:
    body: Graph
    args: tuple[Arg, ...]
    store: Ref | None = None        # where the value goes ([.., L]); None: registers only


@dataclass(frozen=True)
class Epilogue:
    """What happens to the accumulators: `first` (a FUSED body whose input `slot` is the
    product, `refs` its other inputs in [.., N] space; None: the product itself), then the
    stages (with segments), else the store of first's value to the output."""
    first: Graph | None = None
    slot: int = 0
    refs: tuple[Ref, ...] = ()
    stages: tuple[Stage, ...] = ()
    stage_refs: tuple[Ref, ...] = ()


def operand_layouts(lead: tuple[Lin, ...], layouts: list[tuple[Layout, Lin]]
                    ) -> list[Layout] | None:
    """Each (layout, last dim) broadcast to lead + (last,), as row layouts over `lead`
    with the column stride appended; None when a column stride is not 0 or 1."""
    out = []
    for lay, last in layouts:
        try:
            wide = lay.broadcast_to(lead + (last,))
        except LoweringError:
            return None
        if wide.strides[-1] not in (ZERO, ONE) and last != ONE:
            return None
        out.append(wide)
    return out


def epilogue_layouts(a: Layout, out: Layout, extra: list[Layout]) -> list[Layout] | None:
    """Whether a product of `a` into `out` can apply a FUSED epilogue reading `extra`
    (each broadcast to out's shape, contiguous or broadcast along N): the layouts, or None."""
    lead = out.shape[:-1]
    if a.shape[:-1] != lead:
        return None
    return operand_layouts(lead, [(x, out.shape[-1]) for x in extra])


@dataclass
class _Operand:
    """A pointer walked by rows and columns: base (after the outer dims), row stride,
    column stride (0 or 1), and whether its columns are the segment's ([.., L]) or N's."""
    base: ir.Value
    ld: Lin
    cs: Lin
    seg_space: bool = False


@dataclass
class _Tile:
    a: ir.Value
    lda: Lin
    ak: Lin
    out: _Operand | None
    refs: list[_Operand] = field(default_factory=list)
    stage_refs: list[_Operand] = field(default_factory=list)
    stores: list[_Operand | None] = field(default_factory=list)


def emit_gemm(em: Emitter, p: GemmPlan, a: Ref, packed: ir.Value, out: Ref | None,
              epilogue: Epilogue | None = None) -> None:
    """epilogue(a[..., K] @ B) with B read from its packed panels (see the docstring)."""
    epi = epilogue or Epilogue()
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
    rows = collapse([Layout(lead, a.layout.strides[:-1])]
                    + [Layout(lead, w.strides[:-1]) for w in wide])
    ptrs = [a.ptr] + [r.ptr for r, _ in parts]
    with em.nest(rows[0].shape[:-1], "mm_outer") as idx:
        bases = [em.at(Ref(ptr, lay), idx) for ptr, lay in zip(ptrs, rows)]
        ops = [_Operand(b, lay.strides[-1], w.strides[-1], last == l_last and p.segments > 1)
               for b, lay, w, (_, last) in zip(bases[1:], rows[1:], wide, parts)]
        tile = _Tile(bases[0], rows[0].strides[-1], a.layout.strides[-1], None)
        if out is not None and not epi.stages:
            tile.out = ops.pop(0)
        tile.refs = ops[:len(epi.refs)]
        tile.stage_refs = ops[len(epi.refs):len(epi.refs) + len(epi.stage_refs)]
        stores = iter(ops[len(epi.refs) + len(epi.stage_refs):])
        tile.stores = [next(stores) if s.store is not None else None for s in epi.stages]
        _row_blocks(em, p, rows[0].shape[-1], tile, epi, packed)


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


def _block(em: Emitter, p: GemmPlan, begin, end, tile: _Tile, epi: Epilogue,
           packed: ir.Value) -> None:
    """Rows [begin, end) against every panel; begin/end are ints when known statically."""
    bld = em.builder
    static = isinstance(begin, int) and isinstance(end, int)
    i64 = (lambda v: ir.Constant(I64, v) if isinstance(v, int) else v)
    panel_floats = p.k * (p.segments * p.seg_width)

    def panel(q: ir.Value, nv: int, lanes: list[int]) -> None:
        ptr = em.gep(packed, em.mul(q, panel_floats))
        col0 = em.mul(q, p.seg_width)
        with em.loop(i64(end), "mm_tile", start=i64(begin), step=p.mr) as r:
            _micro(em, p, p.mr, nv, lanes, r, tile, epi, ptr, col0)
        # the last rows (fewer than MR) as tiles of 4, 2 and 1 rows: few variants of code
        if static:
            at, rem = begin + (end - begin) // p.mr * p.mr, (end - begin) % p.mr
            for bit in (4, 2, 1):
                if rem & bit:
                    _micro(em, p, bit, nv, lanes, i64(at), tile, epi, ptr, col0)
                    at += bit
            return
        span = bld.sub(end, begin, flags=["nsw"])
        rem = bld.srem(span, i64(p.mr))
        at = bld.sub(end, rem, flags=["nsw"])
        for bit in (4, 2, 1):
            if bit >= p.mr:
                continue
            taken = bld.and_(rem, i64(bit))
            with em.if_then(bld.icmp_signed("!=", taken, i64(0))):
                _micro(em, p, bit, nv, lanes, at, tile, epi, ptr, col0)
            at = bld.add(at, taken, flags=["nsw"])

    if p.full:
        with em.loop(p.full, "mm_panel") as q:
            panel(q, p.nv, [p.vw] * p.nv)
    if p.last_vectors:
        rest = p.seg_len - p.full * p.seg_width
        panel(ir.Constant(I64, p.full), p.last_vectors,
              [min(p.vw, rest - u * p.vw) for u in range(p.last_vectors)])


def _micro(em: Emitter, p: GemmPlan, mr: int, nv: int, lanes: list[int], r: ir.Value,
           tile: _Tile, epi: Epilogue, panel: ir.Value, col0: ir.Value) -> None:
    """Rows r .. r + mr against one panel of nv vectors per segment, then the epilogue."""
    bld = em.builder
    vw = p.vw
    nvec = nv * p.segments
    row = [em.add(r, ir.Constant(I64, i)) for i in range(mr)]
    zero = em.const(0.0, vw)
    acc = [zero] * (mr * nvec)
    if not (p.k.const and p.k.c == 0):
        a_rows = [em.gep(tile.a, em.mul(ri, tile.lda)) for ri in row]
        pre = bld.block
        body = em.function.append_basic_block("mm_k.body")
        done = em.function.append_basic_block("mm_k.exit")
        count = em.lin(p.k)
        if p.k.const:
            bld.branch(body)
        else:                           # K grows with T: it may be 0
            bld.cbranch(bld.icmp_signed(">", count, ir.Constant(I64, 0)), body, done)
        bld.position_at_end(body)
        k = bld.phi(I64, name="k")
        k.add_incoming(ir.Constant(I64, 0), pre)
        phis = [bld.phi(zero.type) for _ in acc]
        for ph in phis:
            ph.add_incoming(zero, pre)
        kp = em.gep(panel, bld.mul(k, ir.Constant(I64, nvec * vw), flags=["nsw"]))
        # broadcasts first, then one panel vector at a time: MR * NV + MR + 1 registers
        bcast = [em.splat(em.load(em.gep(a_rows[i], em.mul(k, tile.ak))), vw)
                 for i in range(mr)]
        new = list(phis)
        if PREFETCH:
            for v in range(nvec):
                _prefetch(em, em.gep(kp, PREFETCH * nvec * vw + v * vw))
        for v in range(nvec):
            bv = em.load(em.gep(kp, v * vw), vw)
            for i in range(mr):
                new[i * nvec + v] = em.fma(bcast[i], bv, new[i * nvec + v])
        nxt = bld.add(k, ir.Constant(I64, 1), flags=["nsw"])
        k.add_incoming(nxt, body)
        for ph, val in zip(phis, new):
            ph.add_incoming(val, body)
        bld.cbranch(bld.icmp_signed("<", nxt, count), body, done)
        bld.position_at_end(done)
        acc = new
        if not p.k.const:
            acc = []
            for val in new:
                merge = bld.phi(zero.type)
                merge.add_incoming(zero, pre)
                merge.add_incoming(val, body)
                acc.append(merge)
    for i in range(mr):
        for u in range(nv):
            col = em.add(col0, ir.Constant(I64, u * vw))
            values = [acc[i * nvec + s * nv + u] for s in range(p.segments)]
            _finish(em, p, tile, epi, row[i], col, values, lanes[u])


PREFETCH = 0                    # k-rows ahead to prefetch the panel (measured: no gain)


def _prefetch(em: Emitter, ptr: ir.Value) -> None:
    i8p = ir.IntType(8).as_pointer()
    fn = em.module.globals.get("llvm.prefetch.p0")
    if fn is None:
        fn = ir.Function(em.module, ir.FunctionType(ir.VoidType(), [i8p, I32, I32, I32]),
                         "llvm.prefetch.p0")
    em.builder.call(fn, [em.builder.bitcast(ptr, i8p), ir.Constant(I32, 0),
                         ir.Constant(I32, 3), ir.Constant(I32, 1)])


def _finish(em: Emitter, p: GemmPlan, tile: _Tile, epi: Epilogue, row: ir.Value,
            col: ir.Value, values: list[ir.Value], lanes: int) -> None:
    """The epilogue of one row and one unit column (col: within a segment)."""
    vw = p.vw
    seg = []
    for s, v in enumerate(values):
        at = em.add(col, ir.Constant(I64, s * p.seg_len))
        if epi.first is not None:
            args = [_read(em, o, row, at, vw, lanes) for o in tile.refs]
            args.insert(epi.slot, v)
            v = eval_body(em, epi.first, args, vw)
        if not epi.stages:
            _write(em, v, tile.out, row, at, lanes)
        seg.append(v)
    done: list[ir.Value] = []
    for stage, store in zip(epi.stages, tile.stores):
        args = [seg[a.index] if a.kind == "seg" else done[a.index] if a.kind == "stage"
                else _read(em, tile.stage_refs[a.index], row, col, vw, lanes)
                for a in stage.args]
        value = eval_body(em, stage.body, args, vw)
        if store is not None:
            _write(em, value, store, row, col, lanes)
        done.append(value)


def _read(em: Emitter, o: _Operand, row: ir.Value, col: ir.Value, vw: int,
          lanes: int) -> ir.Value:
    ptr = em.gep(o.base, em.mul(row, o.ld))
    if o.cs == ZERO:
        return em.splat(em.load(ptr), vw)
    ptr = em.gep(ptr, col)
    return em.load(ptr, vw) if lanes == vw else masked_load(em, ptr, vw, lanes)


def _write(em: Emitter, value: ir.Value, o: _Operand, row: ir.Value, col: ir.Value,
           lanes: int) -> None:
    ptr = em.gep(em.gep(o.base, em.mul(row, o.ld)), col)
    vw = value.type.count
    if lanes == vw:
        em.store(value, ptr)
    else:
        masked_store(em, value, ptr, lanes)


def _mask(vw: int, lanes: int) -> ir.Constant:
    return ir.Constant(ir.VectorType(ir.IntType(1), vw), [1] * lanes + [0] * (vw - lanes))


def _masked_fn(em: Emitter, name: str, vw: int) -> ir.Function:
    vt = ir.VectorType(F32, vw)
    full = f"llvm.masked.{name}.v{vw}f32.p0"
    found = em.module.globals.get(full)
    if found is not None:
        return found
    mask = ir.VectorType(ir.IntType(1), vw)
    ty = ir.FunctionType(vt, [vt.as_pointer(), I32, mask, vt]) if name == "load" else \
        ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), I32, mask])
    return ir.Function(em.module, ty, full)


def masked_load(em: Emitter, ptr: ir.Value, vw: int, lanes: int) -> ir.Value:
    """The first `lanes` floats at ptr as a <vw x float> (zeros after); reads no further."""
    vt = ir.VectorType(F32, vw)
    p = em.builder.bitcast(ptr, vt.as_pointer())
    return em.builder.call(_masked_fn(em, "load", vw),
                           [p, ir.Constant(I32, 4), _mask(vw, lanes), em.const(0.0, vw)])


def masked_store(em: Emitter, value: ir.Value, ptr: ir.Value, lanes: int) -> None:
    """Store the first `lanes` lanes of value at ptr; writes no further."""
    vw = value.type.count
    p = em.builder.bitcast(ptr, value.type.as_pointer())
    em.builder.call(_masked_fn(em, "store", vw), [value, p, ir.Constant(I32, 4),
                                                  _mask(vw, lanes)])


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


__all__ = ["GemmPlan", "Epilogue", "Stage", "Arg", "plan", "make_plan", "packed_floats",
           "epilogue_layouts", "operand_layouts", "emit_gemm", "emit_matmul",
           "emit_pack_rule", "masked_load", "masked_store", "vector_width"]
