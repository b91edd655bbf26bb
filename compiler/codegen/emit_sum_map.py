"""A sum or mean over the last axis of an elementwise map it alone reads (a premap,
row_maps.py), the map evaluated as each element is read: one pass over the map's operands,
the map never stored.

    for i in ndindex(kept): out[i] = sum(body(a[i, r], b[i, r], ...) for r in ndindex(reduced))

`mean((y - t)^2)` reads y and t once and writes one float. As in emit_sum, the sum
accumulates in double (SUM_VECTORS <8 x double> accumulators side by side when the last
reduced dim is contiguous or broadcast in every operand; scalars otherwise), so the result
keeps float32 accuracy over millions of elements.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from graphrnn.ir import Graph, Node, Op

from .emit_map import eval_body
from .emit_reduce import F64, SUM_VECTORS, lanes8, masked_load8, stride_magnitude
from .irbuilder import F32, FLAGS, I64, Emitter, Ref
from .strides import ONE, ZERO, Layout, collapse, product

Rule = Callable[[Emitter, Node, Ref, list[Ref]], None]


def premapped_sum(pre: Node) -> Rule:
    """The SUM / MEAN rule whose operand is the FUSED map `pre` of the kernel's inputs."""
    return lambda em, n, out, ins: emit_sum_of_map(em, n, out, ins, pre)


def emit_sum_of_map(em: Emitter, n: Node, out: Ref, ins: list[Ref], pre: Node) -> None:
    body: Graph = pre.attrs["body"]
    shape = Layout.of(pre.type).shape
    rank = len(shape)
    axes = sorted({a % rank for a in n.attrs["axes"]})
    keep = [i for i in range(rank) if i not in axes]
    refs = [r.layout.broadcast_to(shape) for r in ins]
    out_kept = out.layout.permute(keep) if n.attrs.get("keepdims") else out.layout
    kept = collapse([lay.permute(keep) for lay in refs] +
                    [Layout(tuple(shape[i] for i in keep), out_kept.strides, "float32")])
    reduced = collapse([lay.permute(_walk_order(refs, axes)) for lay in refs])
    count = product([shape[i] for i in axes])
    bld = em.builder
    vector = all(lay.strides[-1] in (ONE, ZERO) for lay in reduced)
    with em.nest(kept[-1].shape, "sum_out") as idx:
        bases = [em.at(Ref(r.ptr, lay), idx) for r, lay in zip(ins, kept)]
        total = _vector_total(em, body, bases, reduced) if vector else \
            _scalar_total(em, body, bases, reduced)
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


def _vector_total(em: Emitter, body: Graph, bases: list[ir.Value],
                  reduced: list[Layout]) -> ir.Value:
    """The double sum of body(...) over `reduced`, rows read as <8 x float>: whole blocks of
    SUM_VECTORS vectors with plain loads, then the rest masked (the dead lanes' values
    dropped before they are added). Masked loads throughout ran 3x slower with two
    operands (measured on znver5)."""
    bld = em.builder
    vt = ir.VectorType(F64, 8)
    block = 8 * SUM_VECTORS
    accs = [em.alloca(vt, ir.Constant(vt, [0.0] * 8)) for _ in range(SUM_VECTORS)]
    first = reduced[0]
    inner = em.lin(first.shape[-1])
    blocks = bld.sdiv(inner, ir.Constant(I64, block))
    done = bld.mul(blocks, ir.Constant(I64, block), flags=["nsw"])
    left = bld.sdiv(bld.add(bld.sub(inner, done), ir.Constant(I64, 7)), ir.Constant(I64, 8))

    def add(acc: ir.Value, vals: list[ir.Value], live: ir.Value | None) -> None:
        value = eval_body(em, body, vals, 8)
        if live is not None:
            value = bld.select(live, value, em.const(0.0, 8))
        bld.store(bld.fadd(bld.load(acc), bld.fpext(value, vt), flags=FLAGS), acc)

    with em.nest(first.shape[:-1], "sum_in") as ridx:
        rows = [em.at(Ref(b, Layout(lay.shape[:-1], lay.strides[:-1])), ridx)
                for b, lay in zip(bases, reduced)]
        fixed = [em.splat(em.load(p), 8) if lay.strides[-1] == ZERO else None
                 for p, lay in zip(rows, reduced)]
        with em.loop(blocks, "sum_block") as b:
            col = bld.mul(b, ir.Constant(I64, block), flags=["nsw"])
            for v, acc in enumerate(accs):
                at = bld.add(col, ir.Constant(I64, 8 * v))
                add(acc, [f if f is not None else em.load(em.gep(p, at), 8)
                          for f, p in zip(fixed, rows)], None)
        with em.loop(left, "sum_tail") as j:
            at = bld.add(done, bld.mul(j, ir.Constant(I64, 8), flags=["nsw"]))
            live = lanes8(em, bld.sub(inner, at))
            add(accs[0], [f if f is not None else masked_load8(em, em.gep(p, at), live)
                          for f, p in zip(fixed, rows)], live)
    total = bld.load(accs[0])
    for acc in accs[1:]:
        total = bld.fadd(total, bld.load(acc), flags=FLAGS)
    lanes = [bld.extract_element(total, ir.Constant(ir.IntType(32), j)) for j in range(8)]
    while len(lanes) > 1:
        lanes = [bld.fadd(a, b, flags=FLAGS) for a, b in zip(lanes[::2], lanes[1::2])]
    return lanes[0]


def _scalar_total(em: Emitter, body: Graph, bases: list[ir.Value],
                  reduced: list[Layout]) -> ir.Value:
    """The double sum of body(...) over `reduced`, one element at a time."""
    bld = em.builder
    acc = em.alloca(F64, ir.Constant(F64, 0.0))
    with em.nest(reduced[0].shape, "sum_in") as ridx:
        vals = [em.load(em.at(Ref(b, lay), ridx)) for b, lay in zip(bases, reduced)]
        v = bld.fpext(eval_body(em, body, vals, 0), F64)
        bld.store(bld.fadd(bld.load(acc), v, flags=FLAGS), acc)
    return bld.load(acc)


__all__ = ["premapped_sum", "emit_sum_of_map"]
