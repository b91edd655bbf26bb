"""Typing a graph: SHAPE_RULES (every op's type rule), `apply_rule` for one node, and
`infer_graph`, which runs the rules over a whole graph once its input types are given.

Constructors in `ops.py` apply the rules as soon as the input types are known, so a bad
`Linear` input fails at the user's line; `infer_graph` types a whole graph (the compiler's
`infer_shapes` pass and the interpreter both use it). The rules of the ops without a body are
in shape_rules.py; those of LOOP and FUSED are here, as they type their body with infer_graph.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from .ir import Dim, Graph, Node, NodeType, Op, ShapeError, TensorType, node_error, type_str
from .shape_rules import I64, TENSOR_RULES


def _fused(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    body = infer_graph(node.attrs["body"], ts, where=node)
    return body.outputs[0].type, {"body": body}


def _loop(node: Node, ts: list[TensorType]) -> tuple[tuple, dict]:
    """consts, carry and x_t in; carry out and y_t per step; ys stacked along axis 1."""
    a = node.attrs
    body: Graph = a["body"]
    n_c, n_h = a["n_consts"], a["n_carry"]
    n_in = len(ts) - (1 if a.get("has_lengths") else 0)
    const_t, carry_t, xs_t = ts[:n_c], ts[n_c:n_c + n_h], ts[n_c + n_h:n_in]
    if len(body.inputs) != n_in:
        raise node_error(node, f"the body takes {len(body.inputs)} inputs, the loop gives "
                         f"{n_c} consts + {n_h} carried + {len(xs_t)} sequences", ShapeError)
    if len(body.outputs) < n_h:
        raise node_error(node, f"the body returns {len(body.outputs)} values, fewer than the "
                         f"{n_h} carried states", ShapeError)
    steps: Dim | None = a.get("length")
    for i, t in enumerate(xs_t):
        if t.rank < 2:
            raise node_error(node, f"sequence {i} is {t}: expected [B, T, ...]", ShapeError)
        if steps is None:
            steps = t.shape[1]
        elif steps != t.shape[1]:
            raise node_error(node, f"sequence {i} is {t}: expected {steps} steps", ShapeError)
    if steps is None:
        raise node_error(node, "a loop without sequences needs a length", ShapeError)
    if a.get("has_lengths"):
        lt = ts[-1]
        if lt.dtype != I64 or lt.rank != 1:
            raise node_error(node, f"lengths must be i64[B], got {lt}", ShapeError)
    step_t = [TensorType(t.shape[:1] + t.shape[2:], t.dtype) for t in xs_t]
    typed = infer_graph(body, list(const_t) + list(carry_t) + step_t, where=node)
    for i, (out, want) in enumerate(zip(typed.outputs[:n_h], carry_t)):
        if out.type != want:
            at = f" at {node.where}" if node.where else ""
            label = f"the loop {node.name}" if node.name else "the loop"
            raise node_error(out, f"carried state {i} of {label}{at}: "
                             f"expected the body to return {want}, got {type_str(out.type)} "
                             "(a carried state keeps its type from step to step)", ShapeError)
    ys_t = []
    for out in typed.outputs[n_h:]:
        t = out.type
        if not isinstance(t, TensorType) or t.rank < 1:
            raise node_error(out, f"a per-step output needs a batch axis, got {type_str(t)}",
                             ShapeError)
        ys_t.append(TensorType(t.shape[:1] + (steps,) + t.shape[1:], t.dtype))
    if a.get("has_lengths"):        # a finished row emits zeros
        rows = ts[-1].shape[0]
        for out in typed.outputs[n_h:]:
            if out.type.rank < 1 or out.type.shape[0] != rows:
                raise node_error(out, f"with lengths, a per-step output needs the batch axis "
                                 f"{rows} first (rows finish on their own), got "
                                 f"{type_str(out.type)}", ShapeError)
    return tuple(carry_t) + tuple(ys_t), {"body": typed}


SHAPE_RULES: dict[Op, Callable[[Node, list], Any]] = {**TENSOR_RULES, Op.LOOP: _loop,
                                                     Op.FUSED: _fused}


def apply_rule(node: Node, in_types: list[NodeType]) -> Node:
    """`node` with its type (and normalised attrs) from SHAPE_RULES."""
    out = SHAPE_RULES[node.op](node, in_types)
    if isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict) \
            and node.op in _RULES_WITH_ATTRS:
        t, attrs = out
        return node.replace(type=t, attrs={**node.attrs, **attrs})
    return node.replace(type=out)


_RULES_WITH_ATTRS = frozenset({Op.SUM, Op.MEAN, Op.SOFTMAX, Op.LOG_SOFTMAX, Op.CONCAT,
                               Op.SLICE, Op.INDEX, Op.LOOP, Op.FUSED, Op.PAD, Op.MAX,
                               Op.MIN, Op.LOGSUMEXP, Op.ARG_ONEHOT, Op.NORMALIZE,
                               Op.NORMALIZE_GRAD, Op.TRANSPOSE, Op.SHIFT, Op.BMM})


def bind_input(x: Node, given: TensorType, sizes: dict[str, Dim]) -> TensorType:
    """Check a value of type `given` may feed input `x`, binding symbols of its declared type."""
    declared = x.type
    if declared is None:
        return given
    if declared.dtype != given.dtype or declared.rank != given.rank:
        raise node_error(x, f"expected {declared}, got {given}", ShapeError)
    for d, g in zip(declared.shape, given.shape):
        if isinstance(d, str):
            if d in sizes and sizes[d] != g:
                raise node_error(x, f"expected {declared} with {d}={sizes[d]}, got {given}",
                                 ShapeError)
            sizes[d] = g
        elif d != g:
            raise node_error(x, f"expected {declared}, got {given}", ShapeError)
    return given


def _bind_attrs(n: Node, sizes: dict[str, Dim]) -> Node:
    """Symbols in a node's own shape attributes (reshape, fill, loop length) bound as well."""
    if not sizes:
        return n
    changes = {}
    if n.op in (Op.RESHAPE, Op.FILL):
        changes["shape"] = tuple(sizes.get(d, d) if isinstance(d, str) else d
                                 for d in n.attrs["shape"])
    if n.op == Op.LOOP and isinstance(n.attrs.get("length"), str):
        changes["length"] = sizes.get(n.attrs["length"], n.attrs["length"])
    return n.replace(attrs={**n.attrs, **changes}) if changes else n


def infer_graph(graph: Graph, input_types: Sequence[TensorType], *,
                where: Node | None = None) -> Graph:
    """A copy of `graph` with every node typed, given the types of its inputs."""
    if len(input_types) != len(graph.inputs):
        msg = f"expected {len(graph.inputs)} inputs, got {len(input_types)}"
        raise node_error(where, msg, ShapeError) if where else ShapeError(msg)
    sizes: dict[str, Dim] = {}
    new: dict[int, Node] = {}
    for x, t in zip(graph.inputs, input_types):
        new[id(x)] = x.replace(type=bind_input(x, t, sizes))
    for n in graph.nodes:
        if id(n) in new:
            continue
        if n.op == Op.INPUT:
            raise node_error(n, "input is not among the graph's inputs")
        ins = tuple(new[id(x)] for x in n.inputs)
        new[id(n)] = apply_rule(_bind_attrs(n.replace(inputs=ins), sizes), [x.type for x in ins])
    return graph.remapped(new)


__all__ = ["SHAPE_RULES", "apply_rule", "bind_input", "infer_graph"]
