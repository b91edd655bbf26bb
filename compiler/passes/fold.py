"""fold_constants: compute at compile time what depends on constants only.

Two kinds of rewrite, both exact:
- a node whose inputs are all literal constants (CONST, or FILL without an input) is
  evaluated by the interpreter's own EVAL_RULES and becomes a CONST;
- identities that give back an operand unchanged, applied only when the result has the
  operand's type (so broadcasting never changes a shape): x*1, 1*x, x/1, x-0, x+0, 0+x,
  neg(neg(x)), reshape/slice/concat that change nothing, dropout with p = 0.
  (x + 0 turns -0.0 into +0.0; the lowering already treats signed zeros as equal, `nsz`.)
An EXPAND reads its reference for the shape only: a literal expanded to a small concrete
shape becomes a CONST, and a reference computed elementwise is replaced by an operand of its
shape (the count of a mean's gradient, `sum(expand(1, (y - t)^2))`, then keeps no squares
alive: it refers to y).
Parameters, inputs and FILLs that take their batch from an input are never folded.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from graphrnn.interpret import EVAL_RULES, Context
from graphrnn.ir import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, Node, Op
from graphrnn.ops import apply_rule

from .rewrite import rewrite, with_inputs

# A fold may not turn a compact FILL or broadcast into a large literal array.
FOLD_MAX_ELEMENTS = 4096

# Ops that compute their value elementwise, of the shape their operands broadcast to.
_ELEMENTWISE = ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE}

# Ops whose value depends on more than their inputs, or that are not a single array.
_NEVER = frozenset({Op.INPUT, Op.PARAM, Op.CONST, Op.FILL, Op.LOOP, Op.GET, Op.DROPOUT})


def fold_constants(graph: Graph) -> Graph:
    """`graph` with constant subgraphs evaluated and identities removed, loop bodies too.

    Returns `graph` itself when nothing changed.
    """
    return rewrite(graph, lambda m: _evaluate(m) or _simplify(m) or m, into_fused=True)


def _literal(n: Node) -> bool:
    return n.op == Op.CONST or (n.op == Op.FILL and not n.inputs)


def _evaluate(n: Node) -> Node | None:
    """A CONST with `n`'s value, when all its inputs are literals."""
    if n.op in _NEVER or not n.inputs or not all(_literal(x) for x in n.inputs):
        return None
    if not all(x.type.is_concrete() for x in (n, *n.inputs)):
        return None
    if _size(n) > max([FOLD_MAX_ELEMENTS] + [_size(x) for x in n.inputs]):
        return None
    ctx = Context()
    with np.errstate(all="ignore"):
        args = [EVAL_RULES[x.op](x, [], ctx) for x in n.inputs]
        value = np.asarray(EVAL_RULES[n.op](n, args, ctx))
    value = value.astype(np.int64 if value.dtype.kind in "iub" else np.float32)
    out = apply_rule(Node(Op.CONST, (), {"value": value}, None, None, n.name, n.scope,
                          n.where, n.doc), [])
    return out if out.type == n.type else None


def _size(n: Node) -> int:
    return int(np.prod(n.type.shape, dtype=np.int64))


def _scalar(n: Node) -> float | None:
    """The one value every element of a literal has, or None."""
    if n.op == Op.FILL:
        return float(n.attrs["value"])
    if n.op == Op.CONST:
        v = n.attrs["value"]
        if v.size and v.dtype.kind == "f" and np.all(v == v.flat[0]):
            return float(v.flat[0])
    return None


def _operand(n: Node, i: int) -> Node | None:
    """Input i of `n`, if `n` may be replaced by it without changing the type."""
    x = n.inputs[i]
    return x if x.type == n.type else None


def _mul(n: Node) -> Node | None:
    a, b = n.inputs
    if _scalar(b) == 1.0:
        return _operand(n, 0)
    return _operand(n, 1) if _scalar(a) == 1.0 else None


def _add(n: Node) -> Node | None:
    a, b = n.inputs
    if _scalar(b) == 0.0:
        return _operand(n, 0)
    return _operand(n, 1) if _scalar(a) == 0.0 else None


def _slice(n: Node) -> Node | None:
    d = n.inputs[0].type.shape[n.attrs["axis"]]
    return _operand(n, 0) if n.attrs["start"] == 0 and n.attrs["length"] == d else None


def _expand(n: Node) -> Node | None:
    """A literal expanded to a small concrete shape as a CONST; else the expand with a
    reference that is not computed elementwise from an operand of its shape."""
    x, ref = n.inputs
    if _literal(x) and n.type.is_concrete() and _size(n) <= FOLD_MAX_ELEMENTS:
        value = np.broadcast_to(EVAL_RULES[x.op](x, [], Context()), n.type.shape)
        value = value.astype(np.int64 if value.dtype.kind in "iub" else np.float32)
        out = apply_rule(Node(Op.CONST, (), {"value": value}, None, None,
                              n.name, n.scope, n.where, n.doc), [])
        return out if out.type == n.type else None
    base = ref
    while base.op in _ELEMENTWISE and base.type is not None:
        same = [y for y in base.inputs if y.type is not None and y.type.shape == base.type.shape]
        if not same:
            break
        base = same[0]
    return with_inputs(n, (x, base)) if base is not ref else None


IDENTITY_RULES: dict[Op, Callable[[Node], Node | None]] = {
    Op.MUL: _mul,
    Op.DIV: lambda n: _operand(n, 0) if _scalar(n.inputs[1]) == 1.0 else None,
    Op.ADD: _add,
    Op.SUB: lambda n: _operand(n, 0) if _scalar(n.inputs[1]) == 0.0 else None,
    Op.NEG: lambda n: n.inputs[0].inputs[0] if n.inputs[0].op == Op.NEG else None,
    Op.RESHAPE: lambda n: _operand(n, 0),
    Op.SLICE: _slice,
    Op.CONCAT: lambda n: _operand(n, 0) if len(n.inputs) == 1 else None,
    Op.DROPOUT: lambda n: _operand(n, 0) if n.attrs["p"] == 0.0 else None,
    Op.EXPAND: _expand,
}


def _simplify(n: Node) -> Node | None:
    rule = IDENTITY_RULES.get(n.op)
    return rule(n) if rule is not None and n.type is not None else None


__all__ = ["fold_constants", "IDENTITY_RULES"]
