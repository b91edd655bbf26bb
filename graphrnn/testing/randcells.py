"""The random generator's recurrent ops: a cell called once on nodes, a cell as a loop's body,
and nn.Recurrent; with the bounds of a cell's states after any number of steps."""
from __future__ import annotations

import math

from .. import nn, ops
from ..ir import Node, TensorType
from ..loop import Loop
from .randbuilder import CELL_KINDS, Builder, Level, make_cell
from .randops import _nodes, _solid, op_linear
from .randvalues import Value, hull


def cell_bounds(kind: str, d: int, h: int, mx: float, h0: tuple[float, float],
                c0: tuple[float, float], steps: int) -> list[tuple[float, float]]:
    """Bounds of a cell's states after `steps` steps from (h0, c0) on inputs bounded by mx."""
    if kind == "rnn_relu":
        m = max(abs(h0[0]), abs(h0[1]))
        for _ in range(steps):
            m = (d * mx + h * m + 2.0) / math.sqrt(h)
        return [(min(h0[0], 0.0), max(h0[1], m))]
    hb = hull(h0, (-1.0, 1.0))
    if kind == "lstm":
        return [hb, (c0[0] - steps, c0[1] + steps)]
    return [hb]


def op_cell_step(b: Builder, lv: Level, v: Value) -> Value | None:
    """A cell called on nodes (inlined, one step): RNN/GRU (h, x), LSTM (h, c, x)."""
    if v.rank != 2 or not _solid(v.shape[1]):
        return None
    kind = b.pick(CELL_KINDS)
    h = b.pick(lv.floats(lambda u: u.rank == 2 and _solid(u.shape[1])
                         and u.shape[0] == v.shape[0]))
    states = [h]
    if kind == "lstm":
        states.append(b.pick(lv.floats(lambda u: u.node.type == h.node.type)))
    cell = b.cell(kind, v.shape[1], h.shape[1])
    out = cell(_nodes(lv, states + [v]))
    outs = [out] if isinstance(out, Node) else list(out)
    c0 = (states[-1].lo, states[-1].hi)
    bounds = cell_bounds(kind, v.shape[1], h.shape[1], v.bound, (h.lo, h.hi), c0, 1)
    return [lv.add(n, *iv) for n, iv in zip(outs, bounds)][0]


def _sequence(v: Value) -> bool:
    return v.is_float and v.rank == 3 and _solid(v.shape[2])


def _widened(b: Builder, lv: Level, v: Value) -> Value:
    """v, or (one time in two) v through a Linear to 5-8 features: inputs wider than the
    4 that stay in the step are hoisted out of the loop, and from 8 rows joined into the
    step product (compiler/passes/join.py)."""
    if not b.chance(0.5):
        return v
    return op_linear(b, lv, v, b.int(5, 8)) or v


def op_cell_loop(b: Builder, lv: Level, v: Value) -> Value | None:
    """A cell as the body of a loop over v[B, S, D]; the final states are the values."""
    if not _sequence(v):
        return None
    v = _widened(b, lv, v)
    kind, d, h = b.pick(CELL_KINDS), v.shape[2], b.width()
    cell = b.cell(kind, d, h)
    t = TensorType((v.shape[0], h))
    inits = []
    for _ in range(cell.n_states):
        same = lv.floats(lambda u: u.node.type == t)
        inits.append(b.pick(same) if same and b.chance(0.5) else
                     lv.add(ops.fill((h,), 0.0, batch_like=v.node), 0.0, 0.0))
    lengths = lv.int_value((b.bdim,), v.shape[1]) if b.chance(0.3) else None
    steps = b.bound_size(v.shape[1])
    loop = Loop(cell, n_carry=cell.n_states, reverse=b.chance(0.3))
    parts = loop(init=_nodes(lv, inits), xs=[lv.take(v)],
                 lengths=lv.take(lengths) if lengths else None)
    c0 = (inits[-1].lo, inits[-1].hi)
    bounds = cell_bounds(kind, d, h, v.bound, (inits[0].lo, inits[0].hi), c0, steps)
    return [lv.add(p, *iv) for p, iv in zip(parts, bounds)][0]


def op_recurrent(b: Builder, lv: Level, v: Value) -> Value | None:
    """nn.Recurrent: layers, directions, sequences or last state, optional lengths."""
    if not _sequence(v):
        return None
    v = _widened(b, lv, v)
    kind, d, h = b.pick(CELL_KINDS), v.shape[2], b.width()
    template = make_cell(kind, d, h, b.chance(0.8))
    layers, bidir = b.int(1, 2), b.chance(0.4)
    seqs, state = b.chance(0.7), b.chance(0.3)
    mod = nn.Recurrent(template, num_layers=layers, bidirectional=bidir,
                       return_sequences=seqs, return_state=state)
    lengths = lv.int_value((b.bdim,), v.shape[1]) if b.chance(0.35) else None
    res = mod(_nodes(lv, [v] + ([lengths] if lengths else [])))
    res = [res] if isinstance(res, Node) else list(res)
    steps, mx, finals = b.bound_size(v.shape[1]), v.bound, []
    for layer in range(layers):
        bounds = cell_bounds(kind, d if layer == 0 else h * (2 if bidir else 1), h, mx,
                             (0.0, 0.0), (0.0, 0.0), steps)
        finals += bounds * (2 if bidir else 1)
        mx = max(abs(bounds[0][0]), abs(bounds[0][1]))
    first = lv.add(res[0], *hull(finals[-len(bounds)], (0.0, 0.0)))
    for node, iv in zip(res[1:], finals):
        lv.add(node, *iv)
    return first
