"""prepare_loops: every loop put in the form whose gradient autodiff.loop_vjp states.

Before differentiation, `prepare_loops` puts every loop in a form whose gradient is easy to
state, without changing what it computes:
- parameters used in a body become explicit consts (so their gradients can accumulate),
- `lengths` become a mask sequence and `where` nodes in the body (same semantics),
- the body also emits the carry it received, so the carry entering every step is saved;
- and it emits the *pre-activations* of the step (`saved_values`): the values made from a
  product or a norm of the carry by sums and scalings (an LSTM's gates before their
  nonlinearities, a layer-normalised LSTM's gates), so that the backward loop reads them
  instead of recomputing the products and norms (attrs["saved"] counts them).
"""
from __future__ import annotations

from typing import Sequence

from graphrnn import ops
from graphrnn.ir import Graph, Node, Op, TensorType, loop_operands, node_error, toposort

from graphrnn.ops import internal_graph

from .rewrite import map_nodes, rewrite, with_inputs
from .vjp import is_float


def like(t: TensorType, name: str = "") -> Node:
    """A new input node of type `t`."""
    return ops.input_(t.shape, t.dtype, name=name)


def row_mask(m: Node, rank: int) -> Node:
    """A per-row mask [B] shaped to broadcast against a [B, ...] value of `rank`."""
    return m if rank == 1 else ops.reshape(m, m.type.shape + (1,) * (rank - 1))


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
        p_inputs = {id(p.param): like(p.type, p.name) for p in params.values()}
        nc, nh = len(consts), len(carry)
        c_in = list(body.inputs[:nc]) + list(p_inputs.values())
        h_in, x_in = list(body.inputs[nc:nc + nh]), list(body.inputs[nc + nh:])
        m_in = [like(TensorType(xs[0].type.shape[:1], "float32"), "live")] if lengths else []
        outs = _substitute_params(body, p_inputs)
        carry_out, ys = outs[:nh], outs[nh:]
        if lengths is not None:
            if not xs:
                raise node_error(n, "a loop with lengths needs a sequence input to differentiate")
            m = m_in[0]
            carry_out = [ops.where(row_mask(m, c.type.rank), c, h)
                         for c, h in zip(carry_out, h_in)]
            ys = [ops.where(row_mask(m, y.type.rank), y, 0.0) for y in ys]
        kept = saved_values(carry_out + ys, h_in)
        new_body = internal_graph(c_in + h_in + x_in + m_in, carry_out + ys + h_in + kept)
        outer_consts = list(consts) + [ops.param(p.param) for p in params.values()]
        outer_xs = list(xs) + ([ops.seq_mask(xs[0], lengths)] if lengths is not None else [])
        a = n.attrs
        loop = ops.loop(new_body, outer_consts, carry, outer_xs, None, reverse=a["reverse"],
                        unroll=a.get("unroll"), length=a.get("length"), name=n.name)
        if kept:
            loop = loop.replace(attrs={**loop.attrs, "saved": len(kept)})
        return keep_checkpoint(n, loop)
    return rewrite(graph, visit, into_loops=False)


SUMS = frozenset({Op.ADD, Op.SUB})
# unary ops whose gradient reads their output only: saving the output saves their input too
BY_OUTPUT = frozenset({Op.SLICE, Op.NEG, Op.EXP, Op.TANH, Op.SIGMOID, Op.SQRT})
# ops whose gradient reads their inputs: a saved value they read is kept for the backward step
BY_INPUT = frozenset({Op.MUL, Op.NORMALIZE})


def saved_values(outputs: Sequence[Node], carry: Sequence[Node]) -> list[Node]:
    """The step values worth saving for the backward loop: products (MATMUL) and norms
    (NORMALIZE, two row reductions) reading the carry, extended through the sums (ADD, SUB)
    made from them, their scalings by a factor that does not read the carry (a norm's
    weight) and the unary ops whose gradient reads only their output (an LSTM's gate
    activations), cut where something else reads them; a saved value that a scaling or a
    norm reads is kept too, as their gradients read it. The backward step then recomputes
    only what follows them (elementwise), and the products and norms it would recompute
    are dead."""
    order = toposort(outputs)
    deps = {id(h) for h in carry}
    for x in order:
        if any(id(i) in deps for i in x.inputs):
            deps.add(id(x))
    made: dict[int, Node] = {}
    for x in order:
        if not is_float(x) or isinstance(x.type, tuple):
            continue
        if (x.op in (Op.MATMUL, Op.NORMALIZE) and id(x) in deps) or \
                (x.op in SUMS and any(id(i) in made for i in x.inputs)) or \
                (x.op in BY_OUTPUT and id(x.inputs[0]) in made) or \
                (x.op == Op.MUL and _scaled(x, made, deps)):
            made[id(x)] = x
    # stacked on the step axis like the ys: batch-first values only
    batch = {h.type.shape[0] for h in carry if isinstance(h.type, TensorType) and h.type.rank}
    made = {k: x for k, x in made.items() if x.type.rank and x.type.shape[0] in batch}
    if not made:
        return []
    ends = {id(y) for y in outputs}
    read_outside = {id(i) for x in order if id(x) not in made or x.op in BY_INPUT
                    for i in x.inputs}
    return [x for k, x in made.items() if k in read_outside or k in ends]


def _scaled(x: Node, made: dict[int, Node], deps: set[int]) -> bool:
    """Whether MUL `x` scales a saved value by a factor that does not read the carry (a
    norm's weight): its gradient then needs only that value and the factor."""
    a, b = x.inputs
    return (id(a) in made and id(b) not in deps) or (id(b) in made and id(a) not in deps)


def keep_checkpoint(old: Node, loop: Node) -> Node:
    """`loop` marked, like `old`, as a loop of checkpointed segments (checkpoint.py)."""
    k = old.attrs.get("checkpoint")
    return loop.replace(attrs={**loop.attrs, "checkpoint": k}) if k else loop


def _substitute_params(body: Graph, p_inputs: dict[int, Node]) -> list[Node]:
    """The body's outputs with each PARAM node replaced by its new const input."""
    new = map_nodes(body.nodes, lambda n, ins: p_inputs[id(n.param)] if n.op == Op.PARAM
                    else with_inputs(n, ins, retype=True))
    return [new[id(y)] for y in body.outputs]


__all__ = ["prepare_loops", "saved_values", "like", "row_mask", "keep_checkpoint"]
