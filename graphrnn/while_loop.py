"""The while loop: a scan whose rows stop when the body says so (see loop.py's docstring).

`while_loop` builds it as an ordinary loop node with two more carried states, so that every
pass, the interpreter and differentiation see the scan they already know:

    live  f32[B]   1 while the row runs, 0 once it has stopped
    count f32[B]   the steps the row has taken (returned as i64[B], `ops.astype`)

and a body that freezes a stopped row's state and pads its outputs:

    carry', ys, stop = body(consts, carry, x_t)
    carry = where(live, carry', carry);  ys = where(live, ys, pad)
    count = count + live;                live = live * (stop <= 0)

The loop node records `attrs["until"]`, the index of `live` among the carried states: the
native loop reads it before every step and leaves as soon as every row has stopped, padding
the steps it did not run (codegen/emit_loop.py). Without that early exit the loop computes the
same values, so a pass that drops the attribute only loses speed.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .infer import infer_graph
from .ir import Dim, Graph, GraphError, Node, Op, ShapeError, TensorType, node_error, type_str


def is_token(ids: Node, token: int, num_classes: int) -> Node:
    """f32 1 where `ids` (int64) equals `token`, else 0: a stop value for a decoder that stops
    on an end-of-sequence id."""
    return ops.index(ops.onehot(ids, num_classes), -1, int(token))


def _row_mask(m: Node, rank: int) -> Node:
    return m if rank == 1 else ops.reshape(m, m.type.shape + (1,) * (rank - 1))


def _batch_dim(nodes: Sequence[Node]) -> tuple[Node, Dim] | None:
    """The first node with a batch axis, and that axis' size."""
    for x in nodes:
        if isinstance(x.type, TensorType) and x.type.rank >= 1:
            return x, x.type.shape[0]
    return None


def _stop_value(stop: Node, batch: Dim) -> Node:
    """The body's stop output as f32[B], or a clear error at the line that made it."""
    t = stop.type
    if not isinstance(t, TensorType):
        raise node_error(stop, f"the stop value of a while loop must be a tensor, got "
                         f"{type_str(t)}", ShapeError)
    if t.dtype != "float32":
        raise node_error(stop, f"the stop value must be float32 (a row stops where it is > 0), "
                         f"got {t}; for token ids use gr.is_token(ids, eos, num_classes)",
                         ShapeError)
    per_row = (t.rank == 1 or (t.rank == 2 and t.shape[1] == 1)) and t.shape[0] == batch
    if not per_row:
        raise node_error(stop, f"the stop value must be one value per row, [{batch}] or "
                         f"[{batch}, 1], got {t}", ShapeError)
    return stop if t.rank == 1 else ops.reshape(stop, (batch,))


def _pad_for(y: Node, pad: float) -> Node:
    if isinstance(y.type, TensorType) and y.type.dtype == "int64":
        return ops.const(np.int64(int(pad)))
    return ops.const(np.float32(pad))


def while_body(body: Graph, n_consts: int, n_carry: int, pad: float) -> Graph:
    """`body` (returning `(*carry, *ys, stop)`) as the body of an ordinary loop carrying
    `(*carry, live, count)` and returning `(*carry, live, count, *ys)`."""
    c_in, h_in = body.inputs[:n_consts], body.inputs[n_consts:n_consts + n_carry]
    x_in = body.inputs[n_consts + n_carry:]
    outs = list(body.outputs)
    if len(outs) < n_carry + 1:
        raise GraphError(f"Loop(stop=True): the body returns {len(outs)} values; it must "
                         f"return the {n_carry} carried states, the per-step outputs and last "
                         "the stop value")
    found = _batch_dim(list(h_in) + list(x_in))
    if found is None:
        raise GraphError("Loop(stop=True): the body needs a carried state or a sequence with "
                         "a batch axis, to know the rows that stop")
    batch = found[1]
    for h in h_in:
        if not (isinstance(h.type, TensorType) and h.type.rank and h.type.shape[0] == batch):
            raise node_error(h, f"a while loop's carried states need the batch axis {batch} "
                             f"first (each row stops on its own), got {type_str(h.type)}",
                             ShapeError)
    for y in outs[n_carry:-1]:
        if not (isinstance(y.type, TensorType) and y.type.rank and y.type.shape[0] == batch):
            raise node_error(y, f"a while loop's per-step outputs need the batch axis {batch} "
                             f"first (a stopped row emits the pad value), got "
                             f"{type_str(y.type)}", ShapeError)
    stop = _stop_value(outs[-1], batch)
    live = ops.input_((batch,), name="live")
    count = ops.input_((batch,), name="count")
    carry = [ops.where(_row_mask(live, h.type.rank), c, h) for c, h in zip(outs[:n_carry], h_in)]
    ys = [ops.where(_row_mask(live, y.type.rank), y, _pad_for(y, pad))
          for y in outs[n_carry:-1]]
    live2 = ops.binary(Op.MUL, live, ops.binary(Op.SUB, 1.0, ops.step(stop)))
    count2 = ops.binary(Op.ADD, count, live)
    return ops.internal_graph(list(c_in) + list(h_in) + [live, count] + list(x_in),
                              carry + [live2, count2] + ys)


def while_loop(body: Graph, consts: Sequence[Node], init: Sequence[Node], xs: Sequence[Node],
               *, max_steps: Dim | None, pad: float, name: str = "") -> tuple[Node, ...]:
    """`(*carry_final, *ys, lengths)` of the while loop; `lengths` i64[B] counts the steps
    each row took (the one where it stopped included)."""
    ref = _batch_dim(list(init) + list(xs))
    if ref is None:
        raise GraphError("Loop(stop=True): give a carried state or a sequence with a batch "
                         "axis, to know the rows that stop")
    if max_steps is None and not xs:
        raise GraphError("Loop(stop=True): a while loop without sequences needs max_steps=")
    n_h = len(init)
    wrapped = while_body(_typed(body, consts, init, xs), len(consts), n_h, pad)
    live0 = ops.fill((), 1.0, batch_like=ref[0])
    count0 = ops.fill((), 0.0, batch_like=ref[0])
    node = ops.loop(wrapped, consts, list(init) + [live0, count0], xs, None,
                    length=max_steps, name=name)
    node = node.replace(attrs={**node.attrs, "until": n_h, "pad": float(pad)})
    n_ys = len(wrapped.outputs) - n_h - 2
    parts = [ops.get(node, i) for i in range(n_h)]
    parts += [ops.get(node, n_h + 2 + j) for j in range(n_ys)]
    return tuple(parts) + (ops.astype(ops.get(node, n_h + 1), "int64"),)


def _typed(body: Graph, consts: Sequence[Node], init: Sequence[Node],
           xs: Sequence[Node]) -> Graph:
    """The body typed from the loop's operands when its own inputs are untyped (nngraph's
    `nn.Identity()()`), so that its stop value can be checked here."""
    if all(isinstance(x.type, TensorType) for x in body.inputs):
        return body
    ts = [x.type for x in (*consts, *init)] + \
        [TensorType(x.type.shape[:1] + x.type.shape[2:], x.type.dtype)
         if isinstance(x.type, TensorType) and x.type.rank >= 2 else None for x in xs]
    if any(t is None for t in ts):
        raise GraphError("Loop(stop=True): the body's inputs are untyped and so are some of "
                         "the loop's operands; type one or the other (gr.Input(\"B\", ...))")
    return infer_graph(body, ts)


def check_while_options(stop: bool, reverse: bool, max_steps: Any) -> None:
    """The options a while loop cannot take, refused when the Loop is made."""
    if not stop and max_steps is not None:
        raise GraphError("Loop: max_steps= is for a while loop (stop=True); an ordinary "
                         "loop takes length=")
    if stop and reverse:
        raise GraphError("Loop(stop=True): a while loop runs forward only (reverse=False)")


__all__ = ["is_token", "while_body", "while_loop", "check_while_options"]
