"""checkpoint_loops: gradient checkpointing, as a loop of segments whose body is a loop.

Differentiating a loop saves the carry entering every step (O(T) memory, autodiff_loop.py).
Run before differentiation, this pass cuts each top-level loop of T steps into S = ceil(T / k)
segments of k steps without changing what it computes:

    loop(consts, carry_0, xs)                                   T steps
 -> segments = loop(consts, carry_0, xs as [B, S, k, ...])      S steps, whose body is
        inner = loop(consts, carry, x_chunk[B, k, ...])         k steps of the old body
    value = (*segments.carry, *(ys as [B, S*k, ...])[:, :T])

When k does not divide T, the sequences are padded with S*k - T dead steps at the end
(copies of the last step, so that the dead steps compute on real values): the loop is put
in masked form first (a `live` mask sequence, and `where` in the body: a dead
step keeps the carry and emits zeros, exactly the semantics of a loop's lengths, which take
the same form), so the padding changes nothing, in either direction.

Differentiation then does the rest: the outer loop saves only the carry entering each
segment (a checkpoint every k steps); its backward loop runs over the segments in reverse
and, for each, recomputes the segment from its checkpoint (the inner forward loop, saving
that segment's k carries) and runs the inner reverse loop over them. The saved carries take
O(T/k + k) memory instead of O(T); the price is one more forward computation. The segment
loop is marked (attrs["checkpoint"] = k, kept by differentiation) so that hoist and
accumulate leave per-segment work inside it instead of stacking it over all T steps.

Left alone: loops with at most k steps, loops asking to be unrolled, loops used other than
through GET, loops with lengths but no sequences, loops to be masked (lengths, or k not
dividing T) with a carry or per-step output whose axis 0 is not the batch, and loops inside
loop bodies. The number
of steps must be known at compile time (a checkpointed program is specialised on T).
"""
from __future__ import annotations

from typing import Sequence

from graphrnn import ops
from graphrnn.ir import Graph, GraphError, Node, TensorType, loop_operands, node_error
from graphrnn.ops import internal_graph

from .rewrite import inline, split_loops


def checkpoint_loops(graph: Graph, every: int, *, truncate: int | None = None) -> Graph:
    """`graph` with each top-level loop of more than `every` steps cut into segments of
    `every` steps (see the module docstring). Returns `graph` itself when nothing changed.

    `truncate`: the truncated-BPTT length the graph will be differentiated with. Segment
    borders must then be truncation borders (`every` a multiple of it), and loops whose
    borders would not line up (reverse loops, T not a multiple of `every`) are left whole.
    """
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ValueError(f"checkpoint must be a positive number of steps, got {every!r}")
    if truncate and every % truncate:
        raise ValueError(f"checkpoint={every} with BPTT truncated every {truncate} steps: the "
                         f"segment length must be a multiple of {truncate}")
    def split(loop: Node, whole: bool) -> tuple[Node, list[Node] | None]:
        wanted = not whole and _wanted(loop, every, truncate)
        return loop, (_segmented(loop, every) if wanted else None)
    new, changed = split_loops(graph, split)
    if not changed:
        return graph
    return internal_graph([new[id(x)] for x in graph.inputs],
                          [new[id(y)] for y in graph.outputs])


def _steps(loop: Node) -> int:
    _, _, xs, _ = loop_operands(loop)
    steps = xs[0].type.shape[1] if xs else loop.attrs.get("length")
    if not isinstance(steps, int):
        raise node_error(loop, f"checkpointing needs the number of steps at compile time, got "
                         f"{steps!r}: give the inputs a concrete T (e.g. f32[B,1000,D])",
                         GraphError)
    return steps


def _wanted(loop: Node, every: int, truncate: int | None) -> bool:
    _, carry, xs, lengths = loop_operands(loop)
    if not carry or loop.attrs.get("unroll") or (lengths is not None and not xs):
        return False
    steps = _steps(loop)
    # truncation borders must stay where they were: no padding, no reversed segments
    if truncate and (loop.attrs.get("reverse") or steps % every):
        return False
    # masking (for lengths or padding) keeps or zeroes rows: it needs float32 carries and
    # per-step outputs whose axis 0 is the batch
    if lengths is not None or steps % every:
        like = (xs[0] if xs else carry[0]).type
        rows = like.shape[0] if like.rank else None
        if rows is None or any(y.type.dtype != "float32" or y.type.rank < 1
                               or y.type.shape[0] != rows
                               for y in loop.attrs["body"].outputs):
            return False
    return steps > every


def _segmented(loop: Node, k: int) -> list[Node]:
    """The parts (*carry, *ys) of `loop` computed by a loop of segments."""
    consts, carry, xs, lengths = loop_operands(loop)
    body: Graph = loop.attrs["body"]
    steps = _steps(loop)
    segments = -(-steps // k)
    pad = segments * k - steps
    xs = list(xs)
    if lengths is not None or pad:
        like = xs[0] if xs else carry[0]
        live = ops.seq_mask(xs[0], lengths) if lengths is not None else \
            ops.fill((steps,), 1.0, batch_like=like)
        body = _masked_body(body, like, len(consts), len(carry))
        xs = [_pad_steps(x, steps, pad) for x in xs] + [ops.pad(live, 1, 0, pad) if pad
                                                         else live]
    name = loop.name or "loop"
    chunks = [ops.reshape(x, x.type.shape[:1] + (segments, k) + x.type.shape[2:]) for x in xs]
    reverse = bool(loop.attrs.get("reverse"))
    seg_body = _segment_body(body, consts, carry, chunks, k, reverse, name)
    outer = ops.loop(seg_body, consts, carry, chunks, reverse=reverse,
                     length=None if chunks else segments, name=f"{name}_segments")
    outer = outer.replace(attrs={**outer.attrs, "checkpoint": k})
    n_h = len(carry)
    ys = []
    for i in range(n_h, len(outer.type)):
        y = ops.get(outer, i)
        y = ops.reshape(y, y.type.shape[:1] + (segments * k,) + y.type.shape[3:])
        ys.append(ops.slice_(y, 1, 0, steps) if pad else y)
    return [ops.get(outer, i) for i in range(n_h)] + ys


def _pad_steps(x: Node, steps: int, pad: int) -> Node:
    """x[B, steps, ...] followed by `pad` copies of its last step. Dead steps compute on real
    data, not zeros: what they emit is masked away, but a body such as a / b would give 0 / 0
    there, and the gradient through the mask, 0 * NaN, would still be NaN."""
    if not pad:
        return x
    last = ops.slice_(x, 1, steps - 1, 1)
    return ops.concat([x] + [last] * pad, axis=1)


def _segment_body(body: Graph, consts: Sequence[Node], carry: Sequence[Node],
                  chunks: Sequence[Node], k: int, reverse: bool, name: str) -> Graph:
    """(consts, carry, chunk_1..n) -> (carry after the k steps, ys of the k steps)."""
    n_c, n_h = len(consts), len(carry)
    c_in = [_like(x.type, b.name) for x, b in zip(consts, body.inputs[:n_c])]
    h_in = [_like(x.type, b.name) for x, b in zip(carry, body.inputs[n_c:n_c + n_h])]
    x_in = [_like(TensorType(c.type.shape[:1] + c.type.shape[2:], c.type.dtype), "chunk")
            for c in chunks]
    inner = ops.loop(body, c_in, h_in, x_in, reverse=reverse, length=None if x_in else k,
                     name=f"{name}_steps")
    return internal_graph(c_in + h_in + x_in,
                          [ops.get(inner, i) for i in range(len(inner.type))])


def _masked_body(body: Graph, like: Node, n_c: int, n_h: int) -> Graph:
    """The body with one more sequence input, live[B]: a dead row keeps its carry and emits
    zeros (a loop's lengths, as a mask)."""
    args = [_like(x.type, x.name) for x in body.inputs]
    live = _like(TensorType(like.type.shape[:1], "float32"), "live")
    outs = inline(body, args)
    h_in = args[n_c:n_c + n_h]
    carry = [ops.where(_rows(live, c), c, h) for c, h in zip(outs[:n_h], h_in)]
    ys = [ops.where(_rows(live, y), y, 0.0) for y in outs[n_h:]]
    return internal_graph(args + [live], carry + ys)


def _rows(mask: Node, value: Node) -> Node:
    """A per-row mask [B] shaped to broadcast against `value` [B, ...]."""
    rank = value.type.rank
    return mask if rank == 1 else ops.reshape(mask, mask.type.shape + (1,) * (rank - 1))


def _like(t: TensorType, name: str) -> Node:
    return ops.input_(t.shape, t.dtype, name=name)


__all__ = ["checkpoint_loops"]
