"""The gradient of a loop: a reverse loop over the saved per-step carries (BPTT).

Before differentiation, `prepare_loops` puts every loop in a form whose gradient is easy to
state, without changing what it computes:
- parameters used in a body become explicit consts (so their gradients can accumulate),
- `lengths` become a mask sequence and `where` nodes in the body (same semantics),
- the body also emits the carry it received, so the carry entering every step is saved;
- and it emits the *pre-activations* of the step (`saved_values`): the values made from a
  product of the carry by sums (an LSTM's gates before their nonlinearities), so that the
  backward loop reads them instead of recomputing the products (attrs["saved"] counts them).

The backward loop runs in the other direction. Its carry is the gradient flowing back through
the forward carry plus one accumulator per const; at each step it recomputes the forward step
from the saved carry and the saved pre-activations (the elementwise rest of the step) and
applies the step's vector-Jacobian product.
"""
from __future__ import annotations

from typing import Sequence

from graphrnn import ops
from graphrnn.ir import Graph, Node, Op, TensorType, loop_operands, node_error, toposort
from .autodiff import backprop, internal_graph, is_float
from .rewrite import rewrite


def _like(t: TensorType, name: str = "") -> Node:
    return ops.input_(t.shape, t.dtype, name=name)


def _step_type(t: TensorType) -> TensorType:
    return TensorType(t.shape[:1] + t.shape[2:], t.dtype)


def _row_mask(m: Node, rank: int) -> Node:
    """A per-row mask [B] shaped to broadcast against a [B, ...] value of `rank`."""
    return m if rank == 1 else ops.reshape(m, m.type.shape + (1,) * (rank - 1))


def inline(graph: Graph, args: Sequence[Node]) -> list[Node]:
    """Copies of `graph`'s nodes computing its outputs from `args`."""
    new: dict[int, Node] = {id(x): a for x, a in zip(graph.inputs, args)}
    for n in graph.nodes:
        if id(n) in new:
            continue
        if n.op == Op.INPUT:
            raise node_error(n, "input is not among the graph's inputs")
        ins = tuple(new[id(x)] for x in n.inputs)
        copy = Node(n.op, ins, dict(n.attrs), None, n.param, n.name, n.scope, n.where, n.doc)
        new[id(n)] = ops.apply_rule(copy, [x.type for x in ins])
    return [new[id(y)] for y in graph.outputs]


def prepare_loops(graph: Graph) -> Graph:
    """Every loop (inner ones first) in the form described in the module docstring."""
    def visit(n: Node) -> Node:
        if n.op != Op.LOOP:
            return n
        body = prepare_loops(n.attrs["body"])
        consts, carry, xs, lengths = loop_operands(n)
        params: dict[int, Node] = {}
        for b in body.nodes:
            if b.op == Op.PARAM:
                params.setdefault(id(b.param), b)
        p_inputs = {id(p.param): _like(p.type, p.name) for p in params.values()}
        nc, nh = len(consts), len(carry)
        c_in = list(body.inputs[:nc]) + list(p_inputs.values())
        h_in, x_in = list(body.inputs[nc:nc + nh]), list(body.inputs[nc + nh:])
        m_in = [_like(TensorType(xs[0].type.shape[:1], "float32"), "live")] if lengths else []
        outs = _substitute_params(body, p_inputs)
        carry_out, ys = outs[:nh], outs[nh:]
        if lengths is not None:
            if not xs:
                raise node_error(n, "a loop with lengths needs a sequence input to differentiate")
            m = m_in[0]
            carry_out = [ops.where(_row_mask(m, c.type.rank), c, h)
                         for c, h in zip(carry_out, h_in)]
            ys = [ops.where(_row_mask(m, y.type.rank), y, 0.0) for y in ys]
        kept = saved_values(carry_out + ys, h_in)
        new_body = internal_graph(c_in + h_in + x_in + m_in, carry_out + ys + h_in + kept)
        outer_consts = list(consts) + [ops.param(p.param) for p in params.values()]
        outer_xs = list(xs) + ([ops.seq_mask(xs[0], lengths)] if lengths is not None else [])
        a = n.attrs
        loop = ops.loop(new_body, outer_consts, carry, outer_xs, None, reverse=a["reverse"],
                        unroll=a.get("unroll"), length=a.get("length"), name=n.name)
        if kept:
            loop = loop.replace(attrs={**loop.attrs, "saved": len(kept)})
        return _keep_checkpoint(n, loop)
    return rewrite(graph, visit, into_loops=False)


SUMS = frozenset({Op.ADD, Op.SUB})
# unary ops whose gradient reads their output only: saving the output saves their input too
BY_OUTPUT = frozenset({Op.SLICE, Op.NEG, Op.EXP, Op.TANH, Op.SIGMOID})


def saved_values(outputs: Sequence[Node], carry: Sequence[Node]) -> list[Node]:
    """The step values worth saving for the backward loop: products (MATMUL) reading the
    carry, extended through the sums (ADD, SUB) made from them and the unary ops whose
    gradient reads only their output (an LSTM's gate activations), cut where something
    else reads them. The backward step then recomputes only what follows them
    (elementwise), and the products it would recompute are dead."""
    order = toposort(outputs)
    deps = {id(h) for h in carry}
    for x in order:
        if any(id(i) in deps for i in x.inputs):
            deps.add(id(x))
    made: dict[int, Node] = {}
    for x in order:
        if not is_float(x) or isinstance(x.type, tuple):
            continue
        if (x.op == Op.MATMUL and id(x) in deps) or \
                (x.op in SUMS and any(id(i) in made for i in x.inputs)) or \
                (x.op in BY_OUTPUT and id(x.inputs[0]) in made):
            made[id(x)] = x
    # stacked on the step axis like the ys: batch-first values only
    batch = {h.type.shape[0] for h in carry if isinstance(h.type, TensorType) and h.type.rank}
    made = {k: x for k, x in made.items() if x.type.rank and x.type.shape[0] in batch}
    if not made:
        return []
    ends = {id(y) for y in outputs}
    read_outside = {id(i) for x in order if id(x) not in made for i in x.inputs}
    return [x for k, x in made.items() if k in read_outside or k in ends]


def _keep_checkpoint(old: Node, loop: Node) -> Node:
    """`loop` marked, like `old`, as a loop of checkpointed segments (compiler/checkpoint.py)."""
    k = old.attrs.get("checkpoint")
    return loop.replace(attrs={**loop.attrs, "checkpoint": k}) if k else loop


def _replaced(outputs: Sequence[Node], repl: dict[int, Node]) -> list[Node]:
    """`outputs` recomputed with the nodes of `repl` (by id) replaced by its values."""
    if not repl:
        return list(outputs)
    new: dict[int, Node] = {}
    for x in toposort(outputs):
        if id(x) in repl:
            new[id(x)] = repl[id(x)]
            continue
        ins = tuple(new[id(i)] for i in x.inputs)
        new[id(x)] = x if all(a is b for a, b in zip(ins, x.inputs)) else x.replace(inputs=ins)
    return [new[id(y)] for y in outputs]


def _substitute_params(body: Graph, p_inputs: dict[int, Node]) -> list[Node]:
    """The body's outputs with each PARAM node replaced by its new const input."""
    new: dict[int, Node] = {id(x): x for x in body.inputs}
    for n in body.nodes:
        if id(n) in new:
            continue
        if n.op == Op.PARAM:
            new[id(n)] = p_inputs[id(n.param)]
            continue
        ins = tuple(new[id(x)] for x in n.inputs)
        new[id(n)] = n if all(a is b for a, b in zip(ins, n.inputs)) else \
            ops.apply_rule(Node(n.op, ins, dict(n.attrs), None, n.param, n.name, n.scope,
                                n.where, n.doc), [x.type for x in ins])
    return [new[id(y)] for y in body.outputs]


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

    bc = [_like(c.type) for c in consts]
    bg = [_like(c.type, "d_carry") for c in carry]
    bacc = [_like(consts[j].type, "d_const") for j in need_c]
    bh = [_like(c.type, "carry_in") for c in carry]
    bx = [_like(_step_type(x.type)) for x in xs]
    bgy = {k: _like(_step_type(g.type), "d_y") for k, g in g_ys.items()}
    bkept = [_like(_step_type(v.type), "saved") for v in kept]
    # truncation cuts the carried gradient; a loop without carries has none to cut
    cut = bool(truncate) and nh > 0
    bcut = [_like(TensorType(saved[0].type.shape[:1], "float32"), "not_border")] if cut else []

    outs = inline(body, bc + bh + bx)
    carry_out, ys = outs[:nh], outs[nh:nh + n_ys]
    wrt = [bc[j] for j in need_c] + bh + [bx[j] for j in need_x]
    grads = backprop(carry_out + [ys[k] for k in bgy], bg + list(bgy.values()), wrt, truncate)
    g_c, g_h, g_x = grads[:len(need_c)], grads[len(need_c):len(need_c) + nh], \
        grads[len(need_c) + nh:]
    g_h = [g if g is not None else ops.expand(0.0, h) for g, h in zip(g_h, bh)]
    if cut:
        g_h = [ops.where(_row_mask(bcut[0], g.type.rank), g, 0.0) for g in g_h]
    acc = [ops.add(a, g) if g is not None else a for a, g in zip(bacc, g_c)]
    g_x = [g if g is not None else ops.expand(0.0, bx[j]) for g, j in zip(g_x, need_x)]
    # the step's values made from the saved pre-activations, not recomputed
    step_outs = _replaced(g_h + acc + g_x, {id(v): b for v, b in zip(outs[-n_kept:], bkept)}
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
    back = _keep_checkpoint(n, back)
    result: list[Node | None] = [None] * len(n.inputs)
    for i in range(nh):
        result[nc + i] = ops.get(back, i)
    for a, j in enumerate(need_c):
        result[j] = ops.get(back, nh + a)
    for a, j in enumerate(need_x):
        result[nc + nh + j] = ops.get(back, nh + len(need_c) + a)
    return result
