"""Kernels that read or write at data-dependent positions: lookup, pick, onehot, scatter,
sampling, and the sequence mask.

    lookup:  out[i, :] = weight[ids[i], :]
    pick:    out[i]    = x[i, idx[i]]
    onehot:  out[i, :] = 0;  out[i, idx[i]] = 1
    scatter: out = 0;        out[ids[i], :] += g[i, :]
    seq_mask: out[b, t] = t < lengths[b] (and t % every != 0)

Ids are data, so the Program validates every id and length before the native call and
reports a bad one as an InputError naming the input. The native code still clamps each
id into range (reads stay inside the table even if that promise were broken), and the
writing kernels skip an out-of-range id; neither ever triggers after validation.
"""
from __future__ import annotations

from llvmlite import ir

from graphrnn.ir import Node, Op

from .emit_map import emit_elementwise, fill, identity
from .irbuilder import F32, FLAGS, I64, Emitter, Ref
from .mathfns import emit_exp
from .strides import Layout, collapse


def _rows(ids: Layout, *others: Layout) -> list[Layout]:
    """Joint iteration over the ids' shape: ids' layout, and each other's leading dims
    (collapsed together, so every layout walks the same merged dims)."""
    leads = [Layout(ids.shape, o.strides[:ids.rank], o.dtype) for o in others]
    return collapse([ids, *leads])


def _clamped(em: Emitter, i: ir.Value, n: int) -> tuple[ir.Value, ir.Value]:
    """(i if 0 <= i < n else 0, whether it was in range)."""
    ok = em.builder.icmp_unsigned("<", i, ir.Constant(I64, n))
    return em.builder.select(ok, i, ir.Constant(I64, 0)), ok


def emit_lookup(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    w, ids = ins
    rows, d = w.layout.shape[0].c, w.layout.shape[1]
    id_l, out_l = _rows(ids.layout, out.layout)
    row_w = Layout((d,), (w.layout.strides[1],))
    row_o = Layout((d,), (out.layout.strides[-1],))
    with em.nest(id_l.shape, "lookup") as idx:
        i, _ = _clamped(em, em.load(em.at(Ref(ids.ptr, id_l), idx)), max(rows, 1))
        src = em.gep(w.ptr, em.mul(i, w.layout.strides[0]))
        emit_elementwise(em, Ref(em.at(Ref(out.ptr, out_l), idx), row_o), [Ref(src, row_w)],
                         identity)


def emit_pick(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x, idx_ref = ins
    classes = x.layout.shape[-1].c
    id_l, x_l, o_l = _rows(idx_ref.layout, x.layout, out.layout)
    with em.nest(id_l.shape, "pick") as idx:
        c, _ = _clamped(em, em.load(em.at(Ref(idx_ref.ptr, id_l), idx)), max(classes, 1))
        row = em.at(Ref(x.ptr, x_l), idx)
        em.store(em.load(em.gep(row, em.mul(c, x.layout.strides[-1]))),
                 em.at(Ref(out.ptr, o_l), idx))


def emit_onehot(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    fill(em, out, 0.0)
    classes = n.attrs["n"]
    id_l, o_l = _rows(ins[0].layout, out.layout)
    with em.nest(id_l.shape, "onehot") as idx:
        c, ok = _clamped(em, em.load(em.at(Ref(ins[0].ptr, id_l), idx)), classes)
        with em.if_then(ok):
            row = em.at(Ref(out.ptr, o_l), idx)
            em.store(ir.Constant(F32, 1.0), em.gep(row, em.mul(c, out.layout.strides[-1])))


def emit_scatter(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    g, ids = ins
    fill(em, out, 0.0)
    id_l, g_l = _rows(ids.layout, g.layout)
    d = g.layout.shape[-1]
    row_g = Layout((d,), (g.layout.strides[-1],))
    row_o = Layout((d,), (out.layout.strides[1],))
    with em.nest(id_l.shape, "scatter") as idx:
        i, ok = _clamped(em, em.load(em.at(Ref(ids.ptr, id_l), idx)), n.attrs["n"])
        with em.if_then(ok):
            dst = Ref(em.gep(out.ptr, em.mul(i, out.layout.strides[0])), row_o)
            src = Ref(em.at(Ref(g.ptr, g_l), idx), row_g)
            emit_elementwise(em, dst, [dst, src],
                             lambda e, v, w: e.builder.fadd(v[0], v[1], flags=FLAGS))


def emit_seq_mask(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    bld = em.builder
    every = n.attrs.get("every")
    batch, steps = out.layout.shape[:2]
    with em.nest((batch, steps), "mask") as (b, t):
        keep = ir.Constant(ir.IntType(1), 1)
        if len(ins) > 1:
            length = em.load(em.at(ins[1], [b]))
            keep = bld.and_(keep, bld.icmp_signed("<", t, length))
        if every:
            rem = bld.srem(t, ir.Constant(I64, int(every)))
            keep = bld.and_(keep, bld.icmp_signed("!=", rem, ir.Constant(I64, 0)))
        em.store(bld.uitofp(keep, F32), em.at(out, [b, t]))


def emit_sample(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """out[b] = argmax(logits[b]) when temperature <= 0, else the first class whose
    cumulative softmax(logits[b] / temperature) reaches u[b] (the interpreter's rule)."""
    logits, u, temp = ins
    bld = em.builder
    classes, stride = logits.layout.shape[1], logits.layout.strides[1]
    tv = em.load(temp.ptr)
    greedy = bld.fcmp_ordered("<=", tv, ir.Constant(F32, 0.0))
    maximum = em.intrinsic("maximum", F32, 2)
    with em.loop(logits.layout.shape[0], "sample") as b:
        row = em.at(logits, [b])
        at = (lambda j: em.load(em.gep(row, em.mul(j, stride))))
        best = em.alloca(I64, ir.Constant(I64, 0))
        top = em.alloca(F32, ir.Constant(F32, float("-inf")))
        zmax = em.alloca(F32, ir.Constant(F32, float("-inf")))
        with em.loop(classes, "sample_max") as j:
            v = at(j)
            with em.if_then(bld.fcmp_ordered(">", v, bld.load(top))):
                bld.store(v, top)
                bld.store(j, best)
            z = bld.fdiv(v, tv, flags=FLAGS)
            bld.store(bld.call(maximum, [bld.load(zmax), z]), zmax)
        with em.if_then(bld.not_(greedy)):     # the argmax alone needs no exponentials
            bld.store(_drawn(em, at, classes, tv, bld.load(zmax), em.load(em.at(u, [b]))),
                      best)
        em.store(bld.load(best), em.at(out, [b]))


def _drawn(em: Emitter, at, classes, tv: ir.Value, m: ir.Value, u: ir.Value) -> ir.Value:
    """The first class whose cumulative softmax(logits / tv) reaches u (of one row)."""
    bld = em.builder
    total = em.alloca(F32, ir.Constant(F32, 0.0))
    with em.loop(classes, "sample_sum") as j:
        e = emit_exp(bld, bld.fsub(bld.fdiv(at(j), tv, flags=FLAGS), m, flags=FLAGS))
        bld.store(bld.fadd(bld.load(total), e, flags=FLAGS), total)
    target = bld.fmul(u, bld.load(total), flags=FLAGS)
    cdf = em.alloca(F32, ir.Constant(F32, 0.0))
    count = em.alloca(I64, ir.Constant(I64, 0))
    with em.loop(classes, "sample_cdf") as j:
        e = emit_exp(bld, bld.fsub(bld.fdiv(at(j), tv, flags=FLAGS), m, flags=FLAGS))
        c = bld.fadd(bld.load(cdf), e, flags=FLAGS)
        bld.store(c, cdf)
        below = bld.zext(bld.fcmp_ordered("<", c, target), I64)
        bld.store(bld.add(bld.load(count), below, flags=["nsw"]), count)
    last = em.lin(classes - 1)
    drawn = bld.load(count)
    return bld.select(bld.icmp_signed("<", drawn, last), drawn, last)

INDEX_RULES = {Op.LOOKUP: emit_lookup, Op.PICK: emit_pick, Op.ONEHOT: emit_onehot,
               Op.SCATTER: emit_scatter, Op.SEQ_MASK: emit_seq_mask, Op.SAMPLE: emit_sample}

__all__ = ["INDEX_RULES"]
