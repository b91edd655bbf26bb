"""The kinds of a loop body's values, shared by hoist.py (work moved before the loop),
join.py and accumulate.py (work moved after it).

Each body value is *invariant* (INV: from consts, parameters and constants only), *sequence*
(SEQ: from the step inputs x_t and invariants, never the carry, and valid on an extra T axis
by its SEQ_RULES entry) or *step* (STEP: anything else, and what must run every step).
`leaf_key` tells when two parameter or constant nodes are the same value, so a copy outside
the loop reuses the one the graph already holds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from graphrnn.ir import (ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Dim, Graph, Node, Op, TensorType,
                         split)

from ..per_step import per_step

INV, SEQ, STEP = "invariant", "sequence", "step"
BULK = frozenset({Op.MATMUL})                                # worth a sequence of its own


@dataclass(frozen=True)
class SeqContext:
    """What a sequence rule needs besides the node: the threshold and the outer time dim."""
    min_input_size: int
    steps: Dim



def leaf_key(n: Node, inputs: tuple[Node, ...]) -> tuple | None:
    """What makes a parameter or constant the same value in one graph, so it is not copied
    twice: the Param, or the flat vector and slot a view reads, or the constant's array."""
    if n.op == Op.PARAM:
        return ("param", id(n.param.root()))
    if n.op == Op.VIEW and inputs[0].op == Op.INPUT:
        return ("view", id(inputs[0]), n.attrs["offset"], tuple(n.attrs["shape"]))
    if n.op == Op.CONST:
        return ("const", id(n.attrs["value"]))
    return None



# ----------------------------------------------------------------------------- sequence rules
# rule(node, kinds of its inputs, ctx) -> the attrs of the [B, T, ...] version, or None when
# the op is not valid on the extra axis. Nodes and their inputs are the per-step ones.

def _batched(t: Any) -> bool:
    return isinstance(t, TensorType) and t.rank >= 1


def _elementwise(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    r = n.type.rank
    for x, k in zip(n.inputs, kinds):
        t = x.type
        if k == SEQ and t.rank != r:
            return None
        if k == INV and not (t.rank < r or t.shape[0] == 1):
            return None     # an invariant with a batch axis would meet T instead of B
    return {}


def _matmul(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    a = n.inputs[0].type
    k = a.shape[-1]
    if kinds != [SEQ, INV] or a.rank < 2 or (isinstance(k, int) and k <= ctx.min_input_size):
        return None
    return {}


def _lookup(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    return {} if kinds == [INV, SEQ] else None


def _all_seq(n: Node, kinds: list[str]) -> bool:
    return all(k == SEQ for k in kinds) and len({x.type.rank for x in n.inputs}) == 1


def _pick(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    return {} if _all_seq(n, kinds) else None


def _shift(key: str) -> Callable[[Node, list[str], SeqContext], dict | None]:
    """A rule for ops with one axis attribute: valid unless the axis is the batch axis."""
    def rule(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
        axis = n.attrs[key] % n.inputs[0].type.rank
        return {key: axis + 1} if axis >= 1 and _all_seq(n, kinds) else None
    return rule


def _reduce(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    axes = n.attrs.get("axes")
    if axes is None:
        return None
    axes = tuple(a % n.inputs[0].type.rank for a in axes)
    return {"axes": tuple(a + 1 for a in axes)} if 0 not in axes else None


def _normalize(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    """Over the last dims: valid on an extra T axis unless the batch axis is among them."""
    return {} if n.inputs[0].type.rank > len(n.attrs["shape"]) and _all_seq(n, kinds) else None


def _reshape(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    shape = tuple(n.attrs["shape"])
    if not shape or shape[0] != n.inputs[0].type.shape[0]:
        return None
    return {"shape": (shape[0], ctx.steps) + shape[1:]}


def _expand(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    """x broadcast to ref: like an elementwise op, but the result takes ref's shape."""
    return _elementwise(n, kinds, ctx) if kinds[1] == SEQ else None


def _onehot(n: Node, kinds: list[str], ctx: SeqContext) -> dict | None:
    return {} if kinds == [SEQ] else None


SEQ_RULES: dict[Op, Callable[[Node, list[str], SeqContext], dict | None]] = {
    **{op: _elementwise for op in ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE}},
    Op.EXPAND: _expand, Op.ONEHOT: _onehot, Op.ASTYPE: _elementwise,
    Op.MATMUL: _matmul, Op.LOOKUP: _lookup, Op.PICK: _pick,
    Op.SLICE: _shift("axis"), Op.INDEX: _shift("axis"), Op.CONCAT: _shift("axis"),
    Op.PAD: _shift("axis"), Op.SOFTMAX: _shift("axis"), Op.LOG_SOFTMAX: _shift("axis"),
    Op.SUM: _reduce, Op.MEAN: _reduce, Op.RESHAPE: _reshape, Op.SHIFT: _shift("axis"),
    Op.MAX: _shift("axis"), Op.MIN: _shift("axis"), Op.LOGSUMEXP: _shift("axis"),
    Op.ARG_ONEHOT: _shift("axis"), Op.NORMALIZE: _normalize, Op.NORMALIZE_GRAD: _normalize,
}
# ops with no SEQ_RULES entry: leaves and views of the parameters are invariant, dropout and
# loops run every step (per_step), and the others have no version valid on the extra T axis
NO_SEQ_RULE = frozenset({Op.INPUT, Op.PARAM, Op.CONST, Op.FILL, Op.VIEW, Op.DROPOUT, Op.LOOP,
                         Op.GET, Op.FUSED, Op.SAMPLE, Op.SEQ_MASK, Op.CONTRACT, Op.SCATTER,
                         Op.ASSEMBLE, Op.TRANSPOSE, Op.BMM})


def classify(body: Graph, n_consts: int, n_carry: int, ctx: SeqContext) -> dict[int, str]:
    """INV, SEQ or STEP for every body node, in one forward sweep."""
    consts, carry, xs = split(body.inputs, n_consts, n_carry)
    kind = {**{id(x): INV for x in consts}, **{id(x): STEP for x in carry},
            **{id(x): SEQ for x in xs}}
    for n in body.nodes:
        if id(n) in kind:
            continue
        ks = [kind[id(x)] for x in n.inputs]
        if STEP in ks or per_step(n):
            kind[id(n)] = STEP
        elif all(k == INV for k in ks):
            kind[id(n)] = INV
        else:
            rule = SEQ_RULES.get(n.op)
            ok = rule is not None and _batched(n.type) and rule(n, ks, ctx) is not None
            kind[id(n)] = SEQ if ok else STEP
    return kind


__all__ = ["INV", "SEQ", "STEP", "BULK", "SeqContext", "SEQ_RULES", "NO_SEQ_RULE", "classify",
           "leaf_key", "per_step"]
