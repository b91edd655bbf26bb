"""A sum or mean over the last axis of an elementwise map it alone reads (a premap,
row_maps.py), the map evaluated as each element is read: one pass over the map's operands,
the map never stored.

    for i in ndindex(kept): out[i] = sum(body(a[i, r], b[i, r], ...) for r in ndindex(reduced))

With a postmap (row_maps.sum_postmaps) the same pass also writes a FUSED map `post` over
the operand's shape from the values it reads (and others):

    out[i] = sum(body(a[i, r], b[i, r]) ...);  post_out[i, r] = post(a[i, r], b[i, r], c...)

`mean((y - t)^2)` and its gradient `2 (y - t) / N` read y and t once, write one float and
the gradient. As in emit_sum, the sum
accumulates in double (SUM_VECTORS <8 x double> accumulators side by side when the last
reduced dim is contiguous or broadcast in every operand; scalars otherwise), so the result
keeps float32 accuracy over millions of elements.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from graphrnn.ir import Graph, Node, Op

from .emit_map import eval_body
from .emit_reduce import (F64, SUM_VECTORS, accumulated, lanes8, masked_load8, masked_store8,
                          stride_magnitude)
from .irbuilder import F32, FLAGS, I64, Emitter, Ref
from .strides import ONE, ZERO, Layout, collapse, product

Rule = Callable[[Emitter, Node, Ref, list[Ref]], None]


def premapped_sum(pre: Node, post: Node | None = None) -> Rule:
    """The SUM / MEAN rule whose operand is the FUSED map `pre` of the kernel's inputs (and
    that also writes the FUSED map `post`: inputs `[*pre operands, post, *post operands]`)."""
    return lambda em, n, out, ins: emit_sum_of_map(em, n, out, ins, pre, post)


class _Pass:
    """What one pass over the reduced elements computes: the summed body on the first `k`
    values read, and the post body on the others, stored to `dst`."""

    def __init__(self, em: Emitter, pre: Node, post: Node | None) -> None:
        self.em, self.body, self.k = em, pre.attrs["body"], len(pre.inputs)
        self.post: Graph | None = post.attrs["body"] if post is not None else None

    def term(self, vals: list[ir.Value], width: int) -> ir.Value:
        return eval_body(self.em, self.body, vals[:self.k], width)

    def mapped(self, vals: list[ir.Value], width: int) -> ir.Value:
        return eval_body(self.em, self.post, vals[self.k:], width)


def emit_sum_of_map(em: Emitter, n: Node, out: Ref, ins: list[Ref], pre: Node,
                    post: Node | None = None) -> None:
    k = len(pre.inputs)
    srcs, dst = (ins, None) if post is None else (ins[:k] + ins[k + 1:], ins[k])
    shape = Layout.of(pre.type).shape
    rank = len(shape)
    axes = sorted({a % rank for a in n.attrs["axes"]})
    keep = [i for i in range(rank) if i not in axes]
    refs = [r.layout.broadcast_to(shape) for r in srcs + ([dst] if dst is not None else [])]
    out_kept = out.layout.permute(keep) if n.attrs.get("keepdims") else out.layout
    kept = collapse([lay.permute(keep) for lay in refs] +
                    [Layout(tuple(shape[i] for i in keep), out_kept.strides, "float32")])
    reduced = collapse([lay.permute(_walk_order(refs, axes)) for lay in refs])
    count = product([shape[i] for i in axes])
    bld = em.builder
    job = _Pass(em, pre, post)
    vector = all(lay.strides[-1] in (ONE, ZERO) for lay in reduced) and \
        (dst is None or reduced[-1].strides[-1] == ONE)
    ptrs = [r.ptr for r in srcs + ([dst] if dst is not None else [])]
    with em.nest(kept[-1].shape, "sum_out") as idx:
        bases = [em.at(Ref(p, lay), idx) for p, lay in zip(ptrs, kept)]
        total = _vector_total(em, job, bases, reduced, dst is not None) if vector else \
            _scalar_total(em, job, bases, reduced, dst is not None)
        if n.op == Op.MEAN:
            total = bld.fdiv(total, bld.sitofp(em.lin(count), F64))
        em.store(bld.fptrunc(total, F32), em.at(Ref(out.ptr, kept[-1]), idx))


def _walk_order(refs: list[Layout], axes: list[int]) -> list[int]:
    """The reduced axes, largest stride first in the first operand that is not broadcast
    (a stacked loop output may be [B, T, ...] with T outermost in memory); the last axis
    stays last, so rows are read along it."""
    walked = next((lay for lay in refs if any(lay.strides[a] != ZERO for a in axes)), refs[0])
    lead = [a for a in axes if a != axes[-1]]
    lead.sort(key=lambda a: stride_magnitude(walked.strides[a]), reverse=True)
    return lead + [axes[-1]]


def _vector_total(em: Emitter, job: _Pass, bases: list[ir.Value], reduced: list[Layout],
                  store: bool) -> ir.Value:
    """The double sum of the body over `reduced`, rows read as <8 x float>: whole blocks of
    SUM_VECTORS vectors with plain loads, then the rest masked (the dead lanes' values
    dropped before they are added). Masked loads throughout ran 3x slower with two
    operands (measured on znver5). With `store`, the last base is the post map's row."""
    bld = em.builder
    vt = ir.VectorType(F64, 8)
    block = 8 * SUM_VECTORS
    accs = [em.alloca(vt, ir.Constant(vt, [0.0] * 8)) for _ in range(SUM_VECTORS)]
    first = reduced[0]
    inner = em.lin(first.shape[-1])
    blocks = bld.sdiv(inner, ir.Constant(I64, block))
    done = bld.mul(blocks, ir.Constant(I64, block), flags=["nsw"])
    left = bld.sdiv(bld.add(bld.sub(inner, done), ir.Constant(I64, 7)), ir.Constant(I64, 8))
    n_src = len(bases) - int(store)

    def step(acc: ir.Value, rows: list[ir.Value], fixed: list, at: ir.Value,
             live: ir.Value | None) -> None:
        vals = [f if f is not None else
                em.load(em.gep(p, at), 8) if live is None else
                masked_load8(em, em.gep(p, at), live)
                for f, p in zip(fixed, rows[:n_src])]
        value = job.term(vals, 8)
        if live is not None:
            value = bld.select(live, value, em.const(0.0, 8))
        bld.store(bld.fadd(bld.load(acc), bld.fpext(value, vt), flags=FLAGS), acc)
        if store:
            mapped, where = job.mapped(vals, 8), em.gep(rows[-1], at)
            em.store(mapped, where) if live is None else masked_store8(em, mapped, where, live)

    with em.nest(first.shape[:-1], "sum_in") as ridx:
        rows = [em.at(Ref(b, Layout(lay.shape[:-1], lay.strides[:-1])), ridx)
                for b, lay in zip(bases, reduced)]
        fixed = [em.splat(em.load(p), 8) if lay.strides[-1] == ZERO else None
                 for p, lay in zip(rows[:n_src], reduced)]
        with em.loop(blocks, "sum_block") as b:
            col = bld.mul(b, ir.Constant(I64, block), flags=["nsw"])
            for v, acc in enumerate(accs):
                step(acc, rows, fixed, bld.add(col, ir.Constant(I64, 8 * v)), None)
        with em.loop(left, "sum_tail") as j:
            at = bld.add(done, bld.mul(j, ir.Constant(I64, 8), flags=["nsw"]))
            step(accs[0], rows, fixed, at, lanes8(em, bld.sub(inner, at)))
    return accumulated(bld, accs)


def _scalar_total(em: Emitter, job: _Pass, bases: list[ir.Value], reduced: list[Layout],
                  store: bool) -> ir.Value:
    """The double sum of the body over `reduced`, one element at a time."""
    bld = em.builder
    acc = em.alloca(F64, ir.Constant(F64, 0.0))
    n_src = len(bases) - int(store)
    with em.nest(reduced[0].shape, "sum_in") as ridx:
        vals = [em.load(em.at(Ref(b, lay), ridx)) for b, lay in zip(bases[:n_src], reduced)]
        v = bld.fpext(job.term(vals, 0), F64)
        bld.store(bld.fadd(bld.load(acc), v, flags=FLAGS), acc)
        if store:
            em.store(job.mapped(vals, 0), em.at(Ref(bases[-1], reduced[-1]), ridx))
    return bld.load(acc)


__all__ = ["premapped_sum", "emit_sum_of_map"]
