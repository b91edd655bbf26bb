"""Reductions: sum and mean over axes, softmax and log_softmax along one axis, contract.

    sum:      for i in ndindex(kept): out[i] = sum(x[i, r] for r in ndindex(reduced))
    softmax:  for i in ndindex(others): m = max(x[i, :]); e = exp(x[i, :] - m)
                                        out[i, :] = e / sum(e)     (log: x - m - log(sum(e)))
    contract: out[k, n] = sum(a[m, k] * g[m, n] for m in ndindex(rows))

Sums accumulate in double, so a loss over many elements keeps float32 accuracy whatever the
order; a region contiguous innermost is summed by <8 x double> accumulators side by side.
The max uses llvm.maximum, which propagates NaN as numpy's max does.
"""
from __future__ import annotations

from llvmlite import ir

from graphrnn.ir import Node, Op

from .irbuilder import F32, FLAGS, I64, Emitter, Ref
from .strides import EXTRA, ONE, ZERO, Layout, Lin, collapse, product
from .emit_bmm import emit_bmm
from .mathfns import emit_exp, emit_log
from .emit_rows import ROW_KERNEL_RULES

F64 = ir.DoubleType()


def _split(layout: Layout, axes: tuple[int, ...]) -> tuple[Layout, Layout]:
    """(layout over the dims not in axes, layout over the dims in axes)."""
    keep = [i for i in range(layout.rank) if i not in axes]
    return layout.permute(keep), layout.permute(list(axes))


def _outer_first(layout: Layout) -> Layout:
    """The same dims walked largest stride first, so consecutive rows lie close in memory
    (a stacked loop output may be [B, T, ...] with T outermost in memory)."""
    order = sorted(range(layout.rank), key=lambda i: stride_magnitude(layout.strides[i]),
                   reverse=True)
    return layout.permute(order)


def stride_magnitude(x: Lin) -> tuple:
    """A key that orders sizes as they compare for large sizes: terms of further time
    symbols by degree, then B*T, T, B, 1."""
    extra = tuple(sorted(((len(m), k) for m, k in x.terms
                          if any(EXTRA.fullmatch(d) for d in m)), reverse=True))
    return extra, x.bs, x.s, x.b, x.c


def emit_sum(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x = ins[0]
    axes = tuple(n.attrs["axes"])
    kept, reduced = _split(x.layout, axes)
    out_kept = out.layout
    if n.attrs.get("keepdims"):
        out_kept = _split(out.layout, axes)[0]
    x_kept, o_kept = collapse([kept, Layout(kept.shape, out_kept.strides, out.layout.dtype)])
    # a broadcast (stride 0) reduced dim repeats the same values: a factor, not a loop
    walked = [i for i in range(reduced.rank) if reduced.strides[i] != ZERO]
    copies = product([reduced.shape[i] for i in range(reduced.rank) if i not in walked])
    reduced_walked = (reduced.permute(walked) if walked
                      else Layout((ONE,), (ONE,), reduced.dtype))
    (red,) = collapse([_outer_first(reduced_walked)])
    bld = em.builder
    count = product(reduced.shape)
    if copies == ONE and x_kept.strides[-1] == ONE and o_kept.strides[-1] == ONE \
            and x_kept.shape[-1] != ONE:
        _column_sums(em, n, Ref(x.ptr, x_kept), Ref(out.ptr, o_kept), red, count)
        return
    with em.nest(x_kept.shape, "sum_out") as idx:
        base = em.at(Ref(x.ptr, x_kept), idx)
        if red.strides[-1] == ONE and x.layout.dtype == "float32":
            total = _contiguous_total(em, base, red)
        else:
            acc = em.alloca(F64, ir.Constant(F64, 0.0))
            with em.nest(red.shape, "sum_in") as ridx:
                v = bld.fpext(em.load(em.at(Ref(base, red), ridx)), F64)
                bld.store(bld.fadd(bld.load(acc), v, flags=FLAGS), acc)
            total = bld.load(acc)
        if copies != ONE:
            k = em.lin(copies)
            scaled = bld.fmul(total, bld.sitofp(k, F64), flags=FLAGS)
            # no copies: an empty sum, 0 even where the values are inf or NaN
            total = bld.select(bld.icmp_signed("==", k, ir.Constant(I64, 0)),
                               ir.Constant(F64, 0.0), scaled)
        if n.op == Op.MEAN:
            total = bld.fdiv(total, bld.sitofp(em.lin(count), F64))
        em.store(bld.fptrunc(total, F32), em.at(Ref(out.ptr, o_kept), idx))


SUM_VECTORS = 4                 # <8 x double> accumulators per block of columns


# Kept rows up to this many columns are summed in one pass over the reduced rows, their
# double partial sums in a stack scratch (32 KB): a pass per block of columns would read the
# whole input once per block (measured 5x slower for a [10000, 100] bias gradient).
ROW_PASS_COLUMNS = 4096


def _column_sums(em: Emitter, n: Node, x: Ref, out: Ref, red: Layout, count) -> None:
    """The sum over `red` when the kept values are contiguous: <8 x double> partial sums of
    the kept columns while the reduced dims are walked (masked at the end)."""
    inner = x.layout.shape[-1]
    if inner.const and inner.c <= ROW_PASS_COLUMNS:
        _column_sums_one_pass(em, n, x, out, red, count, inner.c)
    else:
        _column_sums_by_block(em, n, x, out, red, count)


def _column_sums_one_pass(em: Emitter, n: Node, x: Ref, out: Ref, red: Layout, count,
                          inner: int) -> None:
    """Row by row, every column block added into its slot of a [ceil(inner / 8) x <8 x
    double>] scratch; the last block masked."""
    bld = em.builder
    vt = ir.VectorType(F64, 8)
    full, tail = divmod(inner, 8)
    blocks = full + (1 if tail else 0)
    scratch = em.alloca(ir.ArrayType(vt, blocks))
    zero = ir.Constant(vt, [0.0] * 8)
    i32 = ir.IntType(32)

    def slot(j: ir.Value) -> ir.Value:
        return bld.gep(scratch, [ir.Constant(i32, 0), j], inbounds=True)
    tail_lanes = lanes8(em, ir.Constant(I64, tail)) if tail else None
    with em.nest(x.layout.shape[:-1], "sum_out") as idx:
        base = em.at(Ref(x.ptr, x.layout), idx)
        dest = em.at(Ref(out.ptr, out.layout), idx)
        with em.loop(blocks, "sum_zero") as j:
            bld.store(zero, slot(j))
        with em.nest(red.shape, "sum_rows") as ridx:
            row = em.at(Ref(base, red), ridx)
            if full:
                with em.loop(full, "sum_cols") as j:
                    p = bld.bitcast(em.gep(row, bld.mul(j, ir.Constant(I64, 8), flags=["nsw"])),
                                    ir.VectorType(F32, 8).as_pointer())
                    vals = bld.load(p, align=4)
                    acc = slot(j)
                    bld.store(bld.fadd(bld.load(acc), bld.fpext(vals, vt), flags=FLAGS), acc)
            if tail:
                vals = masked_load8(em, em.gep(row, 8 * full), tail_lanes)
                acc = slot(ir.Constant(I64, full))
                bld.store(bld.fadd(bld.load(acc), bld.fpext(vals, vt), flags=FLAGS), acc)
        with em.loop(blocks, "sum_store") as j:
            s = bld.load(slot(j))
            if n.op == Op.MEAN:
                s = bld.fdiv(s, splat8(em, bld.sitofp(em.lin(count), F64)))
            col = bld.mul(j, ir.Constant(I64, 8), flags=["nsw"])
            lanes = lanes8(em, bld.sub(ir.Constant(I64, inner), col))
            masked_store8(em, bld.fptrunc(s, ir.VectorType(F32, 8)), em.gep(dest, col), lanes)


def _column_sums_by_block(em: Emitter, n: Node, x: Ref, out: Ref, red: Layout, count) -> None:
    """Blocks of 32 kept columns, each summed over all the reduced rows in registers."""
    bld = em.builder
    vt = ir.VectorType(F64, 8)
    inner = x.layout.shape[-1]
    block = 8 * SUM_VECTORS
    with em.nest(x.layout.shape[:-1], "sum_out") as idx:
        base = em.at(Ref(x.ptr, x.layout), idx)
        dest = em.at(Ref(out.ptr, out.layout), idx)
        total = em.lin(inner)
        blocks = bld.sdiv(bld.add(total, ir.Constant(I64, block - 1)), ir.Constant(I64, block))
        with em.loop(blocks, "sum_cols") as b:
            col = bld.mul(b, ir.Constant(I64, block), flags=["nsw"])
            lanes = [lanes8(em, bld.sub(total, bld.add(col, ir.Constant(I64, 8 * v))))
                     for v in range(SUM_VECTORS)]
            accs = [em.alloca(vt, ir.Constant(vt, [0.0] * 8)) for _ in range(SUM_VECTORS)]
            with em.nest(red.shape, "sum_rows") as ridx:
                row = em.gep(em.at(Ref(base, red), ridx), col)
                for v, acc in enumerate(accs):
                    vals = masked_load8(em, em.gep(row, 8 * v), lanes[v])
                    bld.store(bld.fadd(bld.load(acc), bld.fpext(vals, vt), flags=FLAGS), acc)
            for v, acc in enumerate(accs):
                s = bld.load(acc)
                if n.op == Op.MEAN:
                    s = bld.fdiv(s, splat8(em, bld.sitofp(em.lin(count), F64)))
                masked_store8(em, bld.fptrunc(s, ir.VectorType(F32, 8)),
                               em.gep(em.gep(dest, col), 8 * v), lanes[v])


def _contiguous_total(em: Emitter, base: ir.Value, red: Layout) -> ir.Value:
    """The double sum of a region whose innermost dim is contiguous: SUM_VECTORS <8 x double>
    accumulators side by side (a single one would wait for each add's latency), the last
    partial block masked, then the lanes added."""
    bld = em.builder
    vt = ir.VectorType(F64, 8)
    block = 8 * SUM_VECTORS
    accs = [em.alloca(vt, ir.Constant(vt, [0.0] * 8)) for _ in range(SUM_VECTORS)]
    inner = em.lin(red.shape[-1])
    blocks = bld.sdiv(bld.add(inner, ir.Constant(I64, block - 1)), ir.Constant(I64, block))
    outer = Layout(red.shape[:-1], red.strides[:-1])
    with em.nest(outer.shape, "sum_in") as ridx:
        row = em.at(Ref(base, outer), ridx)
        with em.loop(blocks, "sum_block") as b:
            col = bld.mul(b, ir.Constant(I64, block), flags=["nsw"])
            for v, acc in enumerate(accs):
                at = bld.add(col, ir.Constant(I64, 8 * v))
                vals = masked_load8(em, em.gep(row, at), lanes8(em, bld.sub(inner, at)))
                bld.store(bld.fadd(bld.load(acc), bld.fpext(vals, vt), flags=FLAGS), acc)
    return accumulated(bld, accs)


def accumulated(bld: ir.IRBuilder, accs: list[ir.Value]) -> ir.Value:
    """The double total of the <8 x double> accumulators at `accs` (lanes added pairwise)."""
    total = bld.load(accs[0])
    for acc in accs[1:]:
        total = bld.fadd(total, bld.load(acc), flags=FLAGS)
    lanes = [bld.extract_element(total, ir.Constant(ir.IntType(32), j)) for j in range(8)]
    while len(lanes) > 1:
        lanes = [bld.fadd(a, b, flags=FLAGS) for a, b in zip(lanes[::2], lanes[1::2])]
    return lanes[0]


def lanes8(em: Emitter, left: ir.Value) -> ir.Value:
    """<8 x i1>: lane j is live when j < left."""
    bld = em.builder
    iota = ir.Constant(ir.VectorType(I64, 8), list(range(8)))
    return bld.icmp_signed("<", iota, splat8(em, left))


def splat8(em: Emitter, v: ir.Value) -> ir.Value:
    bld = em.builder
    vt = ir.VectorType(v.type, 8)
    one = bld.insert_element(ir.Constant(vt, ir.Undefined), v, ir.Constant(ir.IntType(32), 0))
    return bld.shuffle_vector(one, ir.Constant(vt, ir.Undefined),
                              ir.Constant(ir.VectorType(ir.IntType(32), 8), [0] * 8))


def _masked8(em: Emitter, name: str) -> ir.Function:
    vt = ir.VectorType(F32, 8)
    full = f"llvm.masked.{name}.v8f32.p0"
    found = em.module.globals.get(full)
    if found is not None:
        return found
    mask = ir.VectorType(ir.IntType(1), 8)
    i32 = ir.IntType(32)
    ty = ir.FunctionType(vt, [vt.as_pointer(), i32, mask, vt]) if name == "load" else \
        ir.FunctionType(ir.VoidType(), [vt, vt.as_pointer(), i32, mask])
    return ir.Function(em.module, ty, full)


def masked_load8(em: Emitter, ptr: ir.Value, mask: ir.Value) -> ir.Value:
    vt = ir.VectorType(F32, 8)
    p = em.builder.bitcast(ptr, vt.as_pointer())
    return em.builder.call(_masked8(em, "load"), [p, ir.Constant(ir.IntType(32), 4), mask,
                                                  ir.Constant(vt, [0.0] * 8)])


def masked_store8(em: Emitter, value: ir.Value, ptr: ir.Value, mask: ir.Value) -> None:
    p = em.builder.bitcast(ptr, value.type.as_pointer())
    em.builder.call(_masked8(em, "store"), [value, p, ir.Constant(ir.IntType(32), 4), mask])


def emit_softmax(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x = ins[0]
    axis = n.attrs["axis"]
    x_o, _ = _split(x.layout, (axis,))
    o_o, _ = _split(out.layout, (axis,))
    x_o, o_o = collapse([x_o, o_o])
    size = x.layout.shape[axis]
    sx, so = x.layout.strides[axis], out.layout.strides[axis]
    bld = em.builder
    log = n.op == Op.LOG_SOFTMAX
    maximum = em.intrinsic("maximum", F32, 2)
    with em.nest(x_o.shape, "sm") as idx:
        xp = em.at(Ref(x.ptr, x_o), idx)
        op = em.at(Ref(out.ptr, o_o), idx)
        m = em.alloca(F32, ir.Constant(F32, float("-inf")))
        with em.loop(size, "sm_max") as j:
            v = em.load(em.gep(xp, em.mul(j, sx)))
            bld.store(bld.call(maximum, [bld.load(m), v]), m)
        mx = bld.load(m)
        s = em.alloca(F32, ir.Constant(F32, 0.0))
        with em.loop(size, "sm_exp") as j:
            e = emit_exp(bld, bld.fsub(em.load(em.gep(xp, em.mul(j, sx))), mx, flags=FLAGS))
            if not log:
                em.store(e, em.gep(op, em.mul(j, so)))
            bld.store(bld.fadd(bld.load(s), e, flags=FLAGS), s)
        total = bld.load(s)
        if log:
            shift = bld.fadd(mx, emit_log(bld, total), flags=FLAGS)
            with em.loop(size, "sm_out") as j:
                v = em.load(em.gep(xp, em.mul(j, sx)))
                em.store(bld.fsub(v, shift, flags=FLAGS), em.gep(op, em.mul(j, so)))
        else:
            inv = bld.fdiv(ir.Constant(F32, 1.0), total, flags=FLAGS)
            with em.loop(size, "sm_out") as j:
                p = em.gep(op, em.mul(j, so))
                em.store(bld.fmul(em.load(p), inv, flags=FLAGS), p)


def emit_contract(em: Emitter, node: Node, out: Ref, ins: list[Ref]) -> None:
    """out[k, n] = sum over rows m of a[m, k] * g[m, n] ([n, k] with transpose_out).

    A rank-1 update of `out` per row: backward-pass sized, so plain loops suffice here.
    """
    a, g = ins
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


REDUCE_RULES = {Op.BMM: emit_bmm, Op.SUM: emit_sum, Op.MEAN: emit_sum,
                Op.SOFTMAX: emit_softmax, Op.LOG_SOFTMAX: emit_softmax, Op.CONTRACT: emit_contract,
                **ROW_KERNEL_RULES}

__all__ = ["REDUCE_RULES", "emit_sum", "emit_softmax", "stride_magnitude", "lanes8",
           "accumulated",
           "masked_load8", "masked_store8", "splat8"]
