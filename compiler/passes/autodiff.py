"""differentiate: reverse-mode differentiation as a pass; the gradient of a graph is a graph.

`backprop` walks the graph in reverse order and applies each op's rule from VJP_RULES
(vjp.py), summing the contributions. The gradient of a loop is a reverse loop over its saved
steps (`loop_vjp`, BPTT): its carry is the gradient flowing back through the forward carry
plus one accumulator per const; at each step it recomputes the forward step from the saved
carry and the saved pre-activations (the elementwise rest of the step) and applies the step's
vector-Jacobian product, taken by `backprop` on the body. Loops are first put in the form
that makes this easy to state (autodiff_loop.prepare_loops).
"""
from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from graphrnn import ops
from graphrnn.ir import Graph, Node, Op, Param, TensorType, loop_operands, toposort
from graphrnn.ops import internal_graph

from .autodiff_loop import keep_checkpoint, like, prepare_loops, row_mask
from .rewrite import inline, substitute
from .vjp import VJP_RULES, is_float, total


def backprop(outputs: Sequence[Node], seeds: Sequence[Node | None], wrt: Sequence[Node],
             truncate: int | None = None) -> list[Node | None]:
    """Gradients of sum(output * seed) with respect to each node of `wrt` (None: no path)."""
    order = toposort([y for y, s in zip(outputs, seeds) if s is not None])
    wanted = {id(w) for w in wrt}
    live: set[int] = set()                     # nodes that depend on some wrt node
    for n in order:
        if id(n) in wanted or (is_float(n) and any(id(x) in live for x in n.inputs)):
            live.add(id(n))
    contribs: dict[int, list[Node]] = defaultdict(list)
    for y, s in zip(outputs, seeds):
        if s is not None:
            contribs[id(y)].append(s)
    for n in reversed(order):
        if id(n) not in live or id(n) in wanted and not n.inputs:
            continue
        if n.op == Op.GET:
            g = total(contribs.pop(id(n), []))
            if g is not None:
                contribs[id(n.inputs[0])].append((n.attrs["index"], g))  # type: ignore[arg-type]
            continue
        if n.op == Op.LOOP:
            parts: dict[int, list[Node]] = defaultdict(list)
            for i, g in contribs.pop(id(n), []):
                parts[i].append(g)
            if not parts:
                continue
            grads = loop_vjp(n, {i: total(v) for i, v in parts.items()},
                             [id(x) in live for x in n.inputs], truncate)
        else:
            g = total(contribs.get(id(n), []))
            if g is None:
                continue
            if id(n) not in wanted:
                contribs.pop(id(n), None)
            grads = VJP_RULES[n.op](n, g)
        for x, gx in zip(n.inputs, grads):
            if gx is not None and id(x) in live:
                contribs[id(x)].append(gx)
    return [total(contribs.get(id(w), [])) for w in wrt]


def differentiate(graph: Graph, *, truncate: int | None = None,
                  seed_outputs: Sequence[int] | None = None) -> tuple[Graph, list]:
    """The vector-Jacobian product of a typed graph, as a new graph.

    Inputs: the graph's inputs, then one cotangent per float output (same type as it).
    Outputs: the graph's outputs, then the gradient of sum(output * cotangent) with respect to
    every float input and every parameter, in that order; the second result names them as
    ("input", index) or ("param", Param). `truncate=k` cuts gradients flowing through loop
    carries at every k-th step (truncated BPTT: nothing flows back across a chunk border).
    `seed_outputs` limits the differentiated outputs (and so the cotangent inputs) to those
    indices, e.g. the loss alone when a graph also returns a state.
    """
    g = prepare_loops(graph)
    chosen = set(range(len(g.outputs)) if seed_outputs is None else seed_outputs)
    seeds = [ops.input_(y.type.shape, "float32", name=f"d_{y.name}")
             if is_float(y) and i in chosen else None for i, y in enumerate(g.outputs)]
    # prepare_loops gives each loop its own PARAM node as a const, so one parameter may have
    # several nodes here: its gradient is the sum over all of them
    params: dict[int, list[Node]] = {}
    for n in g.nodes:
        if n.op == Op.PARAM:
            params.setdefault(id(n.param), []).append(n)
    floats = [x for x in g.inputs if is_float(x)]
    names = [("input", i) for i, x in enumerate(g.inputs) if is_float(x)] + \
            [("param", ns[0].param) for ns in params.values()]
    raw = backprop(g.outputs, seeds, floats + [n for ns in params.values() for n in ns],
                   truncate)
    grads, k = raw[:len(floats)], len(floats)
    for ns in params.values():
        grads.append(total([gr for gr in raw[k:k + len(ns)] if gr is not None]))
        k += len(ns)
    wrt = floats + [ns[0] for ns in params.values()]
    grads = [gr if gr is not None else ops.expand(0.0, w) for gr, w in zip(grads, wrt)]
    inputs = list(g.inputs) + [s for s in seeds if s is not None]
    outputs = list(g.outputs) + grads
    return internal_graph(inputs, outputs), names


def _step_type(t: TensorType) -> TensorType:
    return TensorType(t.shape[:1] + t.shape[2:], t.dtype)


def loop_vjp(n: Node, cotangents: dict[int, Node], needs: list[bool],
             truncate: int | None) -> list[Node | None]:
    """Gradients for the inputs of a prepared loop, given cotangents of its parts."""
    consts, carry, xs, _ = loop_operands(n)
    body: Graph = n.attrs["body"]
    nc, nh = len(consts), len(carry)
    n_kept = n.attrs.get("saved", 0)
    n_ys = len(body.outputs) - 2 * nh - n_kept
    saved = [ops.get(n, nh + n_ys + i) for i in range(nh)]
    kept = [ops.get(n, nh + n_ys + nh + i) for i in range(n_kept)]
    g_final = [cotangents.get(i) or ops.expand(0.0, carry[i]) for i in range(nh)]
    g_ys = {k: cotangents[nh + k] for k in range(n_ys) if nh + k in cotangents}
    need_c = [j for j in range(nc) if needs[j] and is_float(consts[j])]
    need_x = [j for j in range(len(xs)) if needs[nc + nh + j] and is_float(xs[j])]

    bc = [like(c.type) for c in consts]
    bg = [like(c.type, "d_carry") for c in carry]
    bacc = [like(consts[j].type, "d_const") for j in need_c]
    bh = [like(c.type, "carry_in") for c in carry]
    bx = [like(_step_type(x.type)) for x in xs]
    bgy = {k: like(_step_type(g.type), "d_y") for k, g in g_ys.items()}
    bkept = [like(_step_type(v.type), "saved") for v in kept]
    # truncation cuts the carried gradient; a loop without carries has none to cut
    cut = bool(truncate) and nh > 0
    bcut = [like(TensorType(saved[0].type.shape[:1], "float32"), "not_border")] if cut else []

    outs = inline(body, bc + bh + bx)
    carry_out, ys = outs[:nh], outs[nh:nh + n_ys]
    wrt = [bc[j] for j in need_c] + bh + [bx[j] for j in need_x]
    grads = backprop(carry_out + [ys[k] for k in bgy], bg + list(bgy.values()), wrt, truncate)
    g_c, g_h, g_x = grads[:len(need_c)], grads[len(need_c):len(need_c) + nh], \
        grads[len(need_c) + nh:]
    g_h = [g if g is not None else ops.expand(0.0, h) for g, h in zip(g_h, bh)]
    if cut:
        g_h = [ops.where(row_mask(bcut[0], g.type.rank), g, 0.0) for g in g_h]
    acc = [ops.add(a, g) if g is not None else a for a, g in zip(bacc, g_c)]
    g_x = [g if g is not None else ops.expand(0.0, bx[j]) for g, j in zip(g_x, need_x)]
    # the step's values made from the saved pre-activations, not recomputed
    step_outs = substitute(g_h + acc + g_x, {id(v): b for v, b in zip(outs[-n_kept:], bkept)}
                           if n_kept else {})
    bbody = internal_graph(bc + bg + bacc + bh + bx + list(bgy.values()) + bcut + bkept,
                           step_outs)

    outer_xs = saved + list(xs) + list(g_ys.values()) + (
        [ops.seq_mask(saved[0], None, every=truncate)] if cut else []) + kept
    init = g_final + [ops.expand(0.0, consts[j]) for j in need_c]
    # a loop still asking to be unrolled here (truncated BPTT unrolls after differentiation)
    # asks the same of its backward loop
    back = ops.loop(bbody, consts, init, outer_xs, None, reverse=not n.attrs["reverse"],
                    unroll=n.attrs.get("unroll"), length=n.attrs.get("length"),
                    name=f"{n.name}_grad" if n.name else "")
    back = keep_checkpoint(n, back)
    result: list[Node | None] = [None] * len(n.inputs)
    for i in range(nh):
        result[nc + i] = ops.get(back, i)
    for a, j in enumerate(need_c):
        result[j] = ops.get(back, nh + a)
    for a, j in enumerate(need_x):
        result[nc + nh + j] = ops.get(back, nh + len(need_c) + a)
    return result


__all__ = ["VJP_RULES", "differentiate", "backprop", "loop_vjp", "internal_graph", "Param"]
