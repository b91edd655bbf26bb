"""unroll_loops: a loop with a known number of steps becomes straight-line copies of its body.

Only on request: unrolled code grows with T, and so does its compile time. The copies hold
the same PARAM nodes (the same `Param` objects), so the parameter count does not change.

Full unrolling of `loop(consts, carry_0, xs[, lengths])` with T steps:

    carry = carry_0
    for t in order:                                 # reversed(range(T)) when reverse
        carry_new, y = <copy t of body>(consts, carry, index(x, 1, t) for x in xs)
        if lengths:                                 # m_t = seq_mask(xs[0], lengths)[:, t]
            carry_new = where(m_t, carry_new, carry); y = where(m_t, y, 0)
        carry = carry_new; ys[t] = reshape(y, [B, 1, ...])
    value = (*carry, *(concat(ys[0..T-1], axis=1) for each output))

Partial unrolling by k (T must be a multiple of k) keeps a loop of T/k steps over sequences
reshaped to [B, T/k, k, ...], whose body is k copies of the old one; the lengths mask becomes
one more sequence, so the masking is the same as above.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from graphrnn.ir import Graph, Node, Op, TensorType, loop_operands, node_error
from graphrnn.ops import apply_rule

from .rewrite import map_nodes, split_loops


def unroll_loops(graph: Graph, factor: int | None = None, *,
                 only_requested: bool = False) -> Graph:
    """Unroll the loops of `graph`; returns `graph` itself when no loop was unrolled.

    factor None: each loop as its own `unroll` attr asks (True: fully, k: by k), and fully
    when it asks nothing. factor k: every loop by k (k >= T means fully).
    only_requested: leave loops that ask nothing (the driver's default).
    Loops inside loop bodies are unrolled only when they ask for it.
    """
    names = _Names(n.name for n in graph.nodes)

    def split(loop: Node, whole: bool) -> tuple[Node, Sequence[Node] | None]:
        body = unroll_loops(loop.attrs["body"], only_requested=True)
        if body is not loop.attrs["body"]:
            loop = loop.replace(attrs={**loop.attrs, "body": body})
        k = _factor(loop, factor, only_requested)
        if k is None or whole:
            return loop, None
        return loop, (_unroll_fully(loop, names) if k >= _steps(loop)
                      else _unroll_by(loop, k, names))
    new, changed = split_loops(graph, split)
    if not changed:
        return graph
    return graph.remapped(new)


def _factor(loop: Node, factor: int | None, only_requested: bool) -> int | None:
    """Steps per iteration wanted for `loop` (a huge number for fully), or None to keep it."""
    if factor is None:
        asked = loop.attrs.get("unroll")
        if asked is None or asked is False or (asked is not True and int(asked) <= 1):
            if only_requested:
                return None
            asked = True
        if _steps(loop) == 0:           # zero steps: the loop itself gives the empty ys
            return None
        factor = _steps(loop) if asked is True else int(asked)
    if factor < 1:
        raise node_error(loop, f"unroll factor must be at least 1, got {factor}")
    if factor == 1 or _steps(loop) == 0:
        return None
    return factor


def _steps(loop: Node) -> int:
    _, _, xs, _ = loop_operands(loop)
    if xs and xs[0].type is None:
        raise node_error(loop, "cannot unroll an untyped loop: run infer_shapes first")
    steps = xs[0].type.shape[1] if xs else loop.attrs.get("length")
    if not isinstance(steps, int):
        raise node_error(loop, f"cannot unroll: the number of steps ({steps!r}) is not known "
                         "at compile time; give the inputs a concrete T (e.g. f32[B,20,D])")
    return steps


def _unroll_fully(loop: Node, names: "_Names") -> tuple[Node, ...]:
    consts, carry, xs, lengths = loop_operands(loop)
    steps = _steps(loop)
    mask = None
    if lengths is not None:
        mask = _node(Op.SEQ_MASK, [_mask_like(loop, xs), lengths], loop, names("mask"))
    order = range(steps - 1, -1, -1) if loop.attrs.get("reverse") else range(steps)
    final, ys = _steps_inline(loop, consts, carry, xs, mask, order, names)
    return tuple(final) + tuple(_stack(loop, column, names) for column in zip(*ys))


def _unroll_by(loop: Node, k: int, names: "_Names") -> tuple[Node, ...]:
    consts, carry, xs, lengths = loop_operands(loop)
    steps = _steps(loop)
    if steps % k:
        raise node_error(loop, f"cannot unroll by {k}: the loop's {steps} steps are not a "
                         f"multiple of {k}; pick a factor that divides T, or unroll fully")
    chunks = steps // k
    seqs = [_node(Op.RESHAPE, [x], loop, names(f"{x.name}_chunks"),
                  shape=_chunked(x.type.shape, chunks, k)) for x in xs]
    if lengths is not None:
        mask = _node(Op.SEQ_MASK, [_mask_like(loop, xs), lengths], loop, names("mask"))
        seqs.append(_node(Op.RESHAPE, [mask], loop, names("mask_chunks"),
                          shape=_chunked(mask.type.shape, chunks, k)))
    body = _chunk_body(loop, consts, carry, seqs, k, lengths is not None)
    n_h = len(carry)
    new = _node(Op.LOOP, [*consts, *carry, *seqs], loop, names(loop.name or "loop"),
                body=body, n_consts=len(consts), n_carry=n_h, n_xs=len(seqs),
                has_lengths=False, reverse=bool(loop.attrs.get("reverse")), unroll=None,
                length=None if seqs else chunks)
    outs = [_node(Op.GET, [new], loop, names(f"{new.name}_{i}"), index=i)
            for i in range(len(new.type))]
    ys = [_node(Op.RESHAPE, [y], loop, names(f"{y.name}_steps"),
                shape=(y.type.shape[0], steps) + y.type.shape[3:]) for y in outs[n_h:]]
    return tuple(outs[:n_h]) + tuple(ys)


def _chunk_body(loop: Node, consts: Sequence[Node], carry: Sequence[Node],
                seqs: Sequence[Node], k: int, masked: bool) -> Graph:
    """The body of the partially unrolled loop: k steps of the old body over one chunk."""
    names = _Names(())
    old = loop.attrs["body"]
    n_c = len(consts)
    ins = [Node(Op.INPUT, (), {}, x.type, name=names(x.name), scope=x.scope, where=x.where)
           for x in old.inputs[:n_c + len(carry)]]
    chunk_ins = [Node(Op.INPUT, (), {}, TensorType(s.type.shape[:1] + s.type.shape[2:],
                                                   s.type.dtype), name=names(f"{s.name}_t"))
                 for s in seqs]
    xs_in, mask_in = (chunk_ins[:-1], chunk_ins[-1]) if masked else (chunk_ins, None)
    order = range(k - 1, -1, -1) if loop.attrs.get("reverse") else range(k)
    final, ys = _steps_inline(loop, ins[:n_c], ins[n_c:], xs_in, mask_in, order, names)
    outs = list(final) + [_stack(loop, column, names) for column in zip(*ys)]
    return old.rebuilt([*ins, *chunk_ins], outs)


def _steps_inline(loop: Node, consts: Sequence[Node], carry: Sequence[Node],
                  xs: Sequence[Node], mask: Node | None, order: range,
                  names: "_Names") -> tuple[list[Node], list[list[Node]]]:
    """Copies of the body for each step t in `order`, the step's inputs read at index t of
    axis 1 of `xs` (and `mask`). Returns the final carry and the outputs of each step in time
    order."""
    body: Graph = loop.attrs["body"]
    n_h = len(carry)
    leaves: dict[int, Node] = {}
    carry = list(carry)
    per_step: dict[int, list[Node]] = {}
    zero = None
    for t in order:
        x_t = [_node(Op.INDEX, [x], loop, names(f"{x.name}_{t}"), axis=1, index=t) for x in xs]
        outs = _inline(body, [*consts, *carry, *x_t], f"_t{t}", leaves, names)
        new_carry, y = outs[:n_h], outs[n_h:]
        if mask is not None:
            m_t = _node(Op.INDEX, [mask], loop, names(f"live_{t}"), axis=1, index=t)
            if zero is None:
                zero = _node(Op.CONST, [], loop, names("zero"), value=np.zeros((), np.float32))
            new_carry = [_masked(loop, m_t, v, old, names) for v, old in zip(new_carry, carry)]
            y = [_masked(loop, m_t, v, zero, names) for v in y]
        carry = new_carry
        per_step[t] = y
    return carry, [per_step[t] for t in sorted(per_step)]


def _inline(body: Graph, args: Sequence[Node], suffix: str, leaves: dict[int, Node],
            names: "_Names") -> list[Node]:
    """One copy of `body` on `args`. Leaves without inputs (params, constants) are made once
    and shared by every copy."""
    def copy(n: Node, ins: tuple[Node, ...]) -> Node:
        if n.inputs:
            return n.replace(inputs=ins, name=names(n.name + suffix))
        if id(n) not in leaves:
            leaves[id(n)] = n.replace(name=names(n.name))
        return leaves[id(n)]
    env = map_nodes(body.nodes, copy, {id(x): a for x, a in zip(body.inputs, args)})
    return [env[id(y)] for y in body.outputs]


def _masked(loop: Node, m_t: Node, value: Node, otherwise: Node, names: "_Names") -> Node:
    """where(m_t, value, otherwise), the [B] mask reshaped to broadcast over `value`."""
    if value.type.dtype != "float32":
        raise node_error(loop, f"cannot unroll a loop with lengths whose state or output is "
                         f"{value.type}: masking is defined for float32 values")
    m = m_t
    if value.type.rank > 1:
        m = _node(Op.RESHAPE, [m_t], loop, names(f"{m_t.name}_r{value.type.rank}"),
                  shape=m_t.type.shape + (1,) * (value.type.rank - 1))
    return _node(Op.WHERE, [m, value, otherwise], loop, names(f"{value.name}_masked"))


def _stack(loop: Node, column: Sequence[Node], names: "_Names") -> Node:
    """[B, ...] values of consecutive steps -> [B, steps, ...]."""
    rows = [_node(Op.RESHAPE, [v], loop, names(f"{v.name}_row"),
                  shape=v.type.shape[:1] + (1,) + v.type.shape[1:]) for v in column]
    if len(rows) == 1:
        return rows[0]
    return _node(Op.CONCAT, rows, loop, names(f"{loop.name or 'loop'}_ys"), axis=1)


def _mask_like(loop: Node, xs: Sequence[Node]) -> Node:
    if not xs:
        raise node_error(loop, "cannot unroll a loop with lengths but no sequences")
    return xs[0]


def _chunked(shape: tuple, chunks: int, k: int) -> tuple:
    return (shape[0], chunks, k) + tuple(shape[2:])


def _node(op: Op, inputs: Sequence[Node], like: Node, name: str, **attrs: object) -> Node:
    """A typed node made by this pass, placed at `like`'s scope and source line."""
    n = Node(op, tuple(inputs), dict(attrs), None, None, name, like.scope, like.where)
    return apply_rule(n, [x.type for x in inputs])


class _Names:
    """Hands out node names not yet taken in one graph."""

    def __init__(self, taken: object) -> None:
        self.taken: set[str] = set(taken)

    def __call__(self, base: str) -> str:
        name, k = base, 0
        while name in self.taken:
            name, k = f"{base}_{k}", k + 1
        self.taken.add(name)
        return name


__all__ = ["unroll_loops"]
