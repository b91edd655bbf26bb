"""emit_pack: a matmul's right operand copied into the panels the GEMM micro-kernel reads.

    for panel q, for segment s, for k, for j in range(width_q):
        packed[q][k][s][j] = b[k, s * L + q * U * VW + j]      (b[n, k] when transposed)
                             0 past the segment's L columns

A panel holds, for every k, `segments` runs of `width_q` contiguous floats: the same columns
of each of the S equal segments of N (S = 1: plain panels of consecutive columns). With S
segments, one register tile holds the columns j of every segment at once: the i, f, g, o
gate pre-activations of the same hidden units of an LSTM, so the cell update can follow the
k-loop in registers (see gemm.py). Panels are contiguous whatever b's layout: `transpose_b`
weights ([N, K], PyTorch's) and power-of-two row strides would otherwise make every k touch
the same cache sets.
"""
from __future__ import annotations

from llvmlite import ir

from .irbuilder import F32, I32, I64, Emitter, Ref
from .strides import ONE, Lin
from .tiling import GemmPlan

LANES = 8           # the packing moves 8-float groups (an 8 x 8 transpose in registers)


def emit_pack(em: Emitter, p: GemmPlan, packed: Ref, b: Ref,
              count: ir.Value | None = None) -> None:
    """packed = the panels of b (see the module docstring), zero-padded. `count`: the
    number of k rows at run time, instead of p.k (a block of a longer operand)."""
    k: Lin | ir.Value = p.k if count is None else count
    if p.panels == 0 or (isinstance(k, Lin) and k.const and k.c == 0):
        return
    s_k, s_n = (b.layout.strides[1], b.layout.strides[0]) if p.transpose \
        else (b.layout.strides[0], b.layout.strides[1])
    if p.transpose and s_k == ONE:
        fill = _fill_transposed
    elif not p.transpose and s_n == ONE:
        fill = _fill_rows
    else:
        fill = _fill_any

    def panel(q: ir.Value, width: int, valid: int | None) -> None:
        """Panel q of `width` floats per segment; `valid` columns (None: all of them)."""
        base = em.gep(packed.ptr, em.mul(q, _times(em, k, p.segments * p.seg_width)))
        col0 = em.mul(q, p.seg_width)
        with em.loop(p.segments, "pack_seg") as s:
            first = em.add(col0, em.builder.mul(s, ir.Constant(I64, p.seg_len), flags=["nsw"]))
            src = em.gep(b.ptr, em.mul(first, s_n))
            dst = em.gep(base, em.builder.mul(s, ir.Constant(I64, width), flags=["nsw"]))
            fill(em, k, src, dst, s_k, s_n, p.segments * width, width,
                 width if valid is None else valid)

    if p.full:
        with em.loop(p.full, "pack_panel") as q:
            panel(q, p.seg_width, None)
    if p.last_vectors:
        rest = p.seg_len - p.full * p.seg_width
        panel(ir.Constant(I64, p.full), p.last_vectors * p.vw, rest)


def _times(em: Emitter, k: Lin | ir.Value, factor: int) -> ir.Value | Lin:
    return k * factor if isinstance(k, Lin) else em.mul(k, factor)


def _row(em: Emitter, k: ir.Value, stride: int) -> ir.Value:
    return em.builder.mul(k, ir.Constant(I64, stride), flags=["nsw"])


def _fill_transposed(em: Emitter, count: Lin | ir.Value, src: ir.Value, dst: ir.Value,
                     s_k: Lin, s_n: Lin, stride: int, width: int, valid: int) -> None:
    """From rows of b[n, k] (contiguous along k): groups of 8 columns, 8 rows x 8 k at a
    time transposed in registers; the groups past `valid` columns are zeros."""
    total = em.lin(count) if isinstance(count, Lin) else count
    full = min(valid, width) // LANES

    def rows_at(first: ir.Value, live: int) -> list[ir.Value | None]:
        return [em.gep(src, em.mul(em.add(first, ir.Constant(I64, r)), s_n)) if r < live
                else None for r in range(LANES)]
    if full:
        with em.loop(full, "pack_g") as g:
            first = em.builder.mul(g, ir.Constant(I64, LANES), flags=["nsw"])
            _transpose_group(em, count, total, rows_at(first, LANES), em.gep(dst, first),
                             stride)
    if full * LANES < valid:
        first = ir.Constant(I64, full * LANES)
        _transpose_group(em, count, total, rows_at(first, valid - full * LANES),
                         em.gep(dst, first), stride)
    zeros = -(-valid // LANES) * LANES
    if zeros < width:
        with em.loop(total, "pack_z") as k:
            row = em.gep(dst, _row(em, k, stride))
            for at in range(zeros, width, LANES):
                em.store(em.const(0.0, LANES), em.gep(row, at))


def _transpose_group(em: Emitter, count: Lin | ir.Value, total: ir.Value,
                     rows: list[ir.Value | None], dst: ir.Value, stride: int) -> None:
    """dst[k * stride + j] = rows[j][k] for the 8 rows (a missing row: zeros)."""
    zero = em.const(0.0, LANES)
    static = isinstance(count, Lin) and count.const
    main_k = count.c // LANES * LANES if static else None
    if main_k is None or main_k:
        with em.loop(total, "pack_k", step=LANES) as k:
            vecs = [em.load(em.gep(row, k), LANES) if row is not None else zero
                    for row in rows]
            for kk, v in enumerate(_transpose8(em.builder, vecs)):
                em.store(v, em.gep(dst, _row(em, em.add(k, ir.Constant(I64, kk)), stride)))
    if main_k is not None and main_k == count.c:
        return
    start = _floor(em, total) if main_k is None else ir.Constant(I64, main_k)
    with em.loop(total, "pack_kt", start=start) as k:
        out = em.gep(dst, _row(em, k, stride))
        for r, row in enumerate(rows):
            v = em.load(em.gep(row, k)) if row is not None else ir.Constant(F32, 0.0)
            em.store(v, em.gep(out, r))


def _floor(em: Emitter, n: ir.Value) -> ir.Value:
    """n rounded down to a multiple of LANES."""
    return em.builder.and_(n, ir.Constant(I64, -LANES))


def _fill_rows(em: Emitter, count: Lin | ir.Value, src: ir.Value, dst: ir.Value, s_k: Lin,
               s_n: Lin, stride: int, width: int, valid: int) -> None:
    """From b[k, n] with contiguous rows: a vector copy per k."""
    with em.loop(count, "pack_k") as k:
        row = em.gep(src, em.mul(k, s_k))
        out = em.gep(dst, _row(em, k, stride))
        for v in range(0, width, LANES):
            lanes = min(LANES, max(0, valid - v))
            if lanes == LANES:
                em.store(em.load(em.gep(row, v), LANES), em.gep(out, v))
                continue
            for lane in range(LANES):
                value = em.load(em.gep(row, v + lane)) if lane < lanes \
                    else ir.Constant(F32, 0.0)
                em.store(value, em.gep(out, v + lane))


def _fill_any(em: Emitter, count: Lin | ir.Value, src: ir.Value, dst: ir.Value, s_k: Lin,
              s_n: Lin, stride: int, width: int, valid: int) -> None:
    """Any strides: one element at a time."""
    bld = em.builder
    with em.loop(width, "pack_j") as j:
        inside = bld.icmp_signed("<", j, ir.Constant(I64, valid))
        col = em.gep(src, em.mul(bld.select(inside, j, ir.Constant(I64, 0)), s_n))
        with em.loop(count, "pack_k") as k:
            v = bld.select(inside, em.load(em.gep(col, em.mul(k, s_k))), ir.Constant(F32, 0.0))
            em.store(v, em.gep(dst, em.add(_row(em, k, stride), j)))


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


__all__ = ["emit_pack", "masked_load", "masked_store"]
