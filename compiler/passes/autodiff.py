"""differentiate: reverse-mode differentiation as a pass; the gradient of a graph is a graph.

Each op's local rule lives in VJP_RULES: `(node, g) -> one gradient (or None) per input`,
built from the same primitive ops as the forward graph. Loops are differentiated in
compiler/autodiff_loop.py: the gradient of a loop is a reverse loop over its saved steps.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Callable, Sequence

from graphrnn import ops
from graphrnn.close import renamed_graph
from graphrnn.ir import Graph, GraphError, Node, Op, Param, TensorType, node_error, toposort

Grads = tuple  # one Node | None per input


def unbroadcast(g: Node, t: TensorType) -> Node:
    """Sum `g` over the axes that broadcasting added to a value of type `t`."""
    lead = g.type.rank - t.rank
    axes = list(range(lead)) + [lead + i for i, d in enumerate(t.shape)
                                if d == 1 and g.type.shape[lead + i] != 1]
    if not axes:
        return g
    s = ops.sum_(g, axes)
    return s if s.type.shape == t.shape else ops.reshape(s, t.shape)


def _binary_rule(da: Callable, db: Callable) -> Callable:
    def rule(n: Node, g: Node) -> Grads:
        a, b = n.inputs
        return unbroadcast(da(n, g, a, b), a.type), unbroadcast(db(n, g, a, b), b.type)
    return rule


def _keepdims(g: Node, n: Node) -> Node:
    """A reduction's gradient reshaped so that it broadcasts against the reduced input."""
    if n.attrs["keepdims"]:
        return g
    x = n.inputs[0]
    shape = tuple(1 if i in n.attrs["axes"] else d for i, d in enumerate(x.type.shape))
    return ops.reshape(g, shape)


def _sum(n: Node, g: Node) -> Grads:
    return (ops.expand(_keepdims(g, n), n.inputs[0]),)


def _mean(n: Node, g: Node) -> Grads:
    x = n.inputs[0]
    dims = [x.type.shape[i] for i in n.attrs["axes"]]
    if all(isinstance(d, int) for d in dims):
        count: object = float(max(1, int(__import__("math").prod(dims))))
    else:   # a symbolic count (B or T): measured from the shapes at run time
        count = ops.div(ops.sum_(ops.expand(1.0, x)), ops.sum_(ops.expand(1.0, n)))
    return (ops.div(ops.expand(_keepdims(g, n), x), count),)


def _matmul(n: Node, g: Node) -> Grads:
    a, w = n.inputs
    if n.attrs.get("transpose_b"):            # w [N, K]
        return ops.matmul(g, w), ops.contract(g, a)
    return ops.matmul(g, w, transpose_b=True), ops.contract(a, g)


def _contract(n: Node, g: Node) -> Grads:
    a, b = n.inputs
    if n.attrs.get("transpose_out"):          # g [N, K]
        return ops.matmul(b, g), ops.matmul(a, g, transpose_b=True)
    return ops.matmul(b, g, transpose_b=True), ops.matmul(a, g)


def _concat(n: Node, g: Node) -> Grads:
    out, start, axis = [], 0, n.attrs["axis"]
    for x in n.inputs:
        width = x.type.shape[axis]
        out.append(ops.slice_(g, axis, start, width) if width else None)   # empty: no grad
        start += width
    return tuple(out)


def _slice(n: Node, g: Node) -> Grads:
    a = n.attrs
    d = n.inputs[0].type.shape[a["axis"]]
    if not isinstance(d, int):
        raise node_error(n, f"cannot differentiate a slice of symbolic dim {d!r}")
    return (ops.pad(g, a["axis"], a["start"], d - a["start"] - a["length"]),)


def _index(n: Node, g: Node) -> Grads:
    x, axis, i = n.inputs[0], n.attrs["axis"], n.attrs["index"]
    d = x.type.shape[axis]
    if not isinstance(d, int):
        raise node_error(n, f"cannot differentiate an index of symbolic dim {d!r}")
    shape = x.type.shape[:axis] + (1,) + x.type.shape[axis + 1:]
    return (ops.pad(ops.reshape(g, shape), axis, i, d - i - 1),)


def _pick(n: Node, g: Node) -> Grads:
    x, idx = n.inputs
    hot = ops.onehot(idx, x.type.shape[-1])
    return ops.mul(hot, ops.reshape(g, g.type.shape + (1,))), None


def _view(n: Node, g: Node) -> Grads:
    flat = n.inputs[0]
    size = int(__import__("math").prod(n.attrs["shape"]))
    return (ops.assemble([ops.reshape(g, (size,))], [n.attrs["offset"]], flat.type.shape[0]),)


def _assemble(n: Node, g: Node) -> Grads:
    return tuple(ops.slice_(g, 0, off, x.type.shape[0])
                 for x, off in zip(n.inputs, n.attrs["offsets"]))


def _no_grad(n: Node, g: Node) -> Grads:
    return (None,) * len(n.inputs)


def _fused(n: Node, g: Node) -> Grads:
    raise node_error(n, "differentiate before fusing: a fused node has no gradient rule",
                     GraphError)


VJP_RULES: dict[Op, Callable[[Node, Node], Grads]] = {
    Op.INPUT: _no_grad, Op.PARAM: _no_grad, Op.CONST: _no_grad, Op.FILL: _no_grad,
    Op.NEG: lambda n, g: (ops.neg(g),),
    Op.EXP: lambda n, g: (ops.mul(g, n),),
    Op.LOG: lambda n, g: (ops.div(g, n.inputs[0]),),
    Op.TANH: lambda n, g: (ops.mul(g, ops.sub(1.0, ops.mul(n, n))),),
    Op.SIGMOID: lambda n, g: (ops.mul(g, ops.mul(n, ops.sub(1.0, n))),),
    Op.RELU: lambda n, g: (ops.mul(g, ops.step(n.inputs[0])),),
    Op.STEP: _no_grad,
    Op.ADD: _binary_rule(lambda n, g, a, b: g, lambda n, g, a, b: g),
    Op.SUB: _binary_rule(lambda n, g, a, b: g, lambda n, g, a, b: ops.neg(g)),
    Op.MUL: _binary_rule(lambda n, g, a, b: ops.mul(g, b), lambda n, g, a, b: ops.mul(g, a)),
    Op.DIV: _binary_rule(lambda n, g, a, b: ops.div(g, b),
                         lambda n, g, a, b: ops.neg(ops.div(ops.mul(g, n), b))),
    Op.MATMUL: _matmul,
    Op.CONTRACT: _contract,
    Op.SUM: _sum,
    Op.MEAN: _mean,
    Op.SOFTMAX: lambda n, g: (ops.mul(n, ops.sub(g, ops.sum_(ops.mul(g, n), [n.attrs["axis"]],
                                                               keepdims=True))),),
    Op.LOG_SOFTMAX: lambda n, g: (ops.sub(g, ops.mul(ops.exp(n), ops.sum_(
        g, [n.attrs["axis"]], keepdims=True))),),
    Op.LOOKUP: lambda n, g: (ops.scatter(g, n.inputs[1], n.inputs[0].type.shape[0]), None),
    Op.SCATTER: lambda n, g: (ops.lookup(g, n.inputs[1]), None),
    Op.PICK: _pick,
    Op.ONEHOT: _no_grad,
    Op.CONCAT: _concat,
    Op.SLICE: _slice,
    Op.INDEX: _index,
    Op.PAD: lambda n, g: (ops.slice_(g, n.attrs["axis"], n.attrs["before"],
                                     n.inputs[0].type.shape[n.attrs["axis"]]),),
    Op.RESHAPE: lambda n, g: (ops.reshape(g, n.inputs[0].type.shape),),
    Op.EXPAND: lambda n, g: (unbroadcast(g, n.inputs[0].type), None),
    Op.DROPOUT: lambda n, g: (ops.dropout(g, n.attrs["p"], n.attrs["seed"]),),
    Op.WHERE: lambda n, g: (None,
                            unbroadcast(ops.where(n.inputs[0], g, 0.0), n.inputs[1].type),
                            unbroadcast(ops.where(n.inputs[0], 0.0, g), n.inputs[2].type)),
    Op.SEQ_MASK: _no_grad,
    Op.VIEW: _view,
    Op.ASSEMBLE: _assemble,
    Op.FUSED: _fused,
    Op.SAMPLE: _no_grad,
    # LOOP and GET are handled by backprop itself (a loop's value is a tuple)
}


def total(parts: list[Node]) -> Node | None:
    """The sum of gradient contributions; ASSEMBLE parts of one vector merge into one node."""
    if not parts:
        return None
    if len(parts) > 1 and all(p.op == Op.ASSEMBLE for p in parts) and \
            len({p.attrs["size"] for p in parts}) == 1:
        return ops.assemble([x for p in parts for x in p.inputs],
                            [o for p in parts for o in p.attrs["offsets"]], parts[0].attrs["size"])
    out = parts[0]
    for p in parts[1:]:
        out = ops.add(out, p)
    return out


def is_float(n: Node) -> bool:
    return isinstance(n.type, tuple) or (n.type is not None and n.type.dtype == "float32")


def backprop(outputs: Sequence[Node], seeds: Sequence[Node | None], wrt: Sequence[Node],
             truncate: int | None = None) -> list[Node | None]:
    """Gradients of sum(output * seed) with respect to each node of `wrt` (None: no path)."""
    from .autodiff_loop import loop_vjp
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
    from .autodiff_loop import prepare_loops
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


def internal_graph(inputs: Sequence[Node], outputs: Sequence[Node]) -> Graph:
    """A graph made by a pass: unused inputs allowed, every node given a unique name."""
    order = toposort(outputs)
    seen = {id(n) for n in order}
    order = [x for x in inputs if id(x) not in seen] + order
    return renamed_graph(tuple(inputs), tuple(outputs), order)


__all__ = ["VJP_RULES", "differentiate", "backprop", "internal_graph", "Param"]
