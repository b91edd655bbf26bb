"""Random loop nodes for the graph generator: a body built at its own level from the
carried state, sequence slices and invariants, then closed with `Loop`."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import nn, ops
from ..gmodule import gModule
from ..ir import Dim, Node, TensorType, toposort
from ..loop import Loop
from .randbuilder import Builder, Level
from .randops import _nodes, _size, _solid, lookup_on
from ..close import close_graph
from .randvalues import Value, hull


def _flatten(b: Builder, lv: Level, v: Value) -> tuple[Node, int, float]:
    """v as [B, n]: symbolic dims summed away, the rest reshaped. Returns (node, n, bound)."""
    node, shape, m = lv.take(v), v.shape, v.bound
    sym = [i for i in range(1, v.rank) if not isinstance(shape[i], int)]
    if sym:
        node = ops.sum_(node, axes=sym)
        m *= _size(b, tuple(shape[i] for i in sym), bound=True)
        shape = node.type.shape
    n = _size(b, shape[1:])
    if len(shape) != 2:
        node = nn.Reshape(n)(node)
    return node, n, m


def _to_shape(b: Builder, lv: Level, srcs: list[Value], feat: tuple[int, ...]) -> Node:
    """A value of shape [B, *feat] computed from every source (flatten, join, Linear)."""
    parts = [_flatten(b, lv, s) for s in srcs]
    x = parts[0][0] if len(parts) == 1 else nn.JoinTable(1)([p[0] for p in parts])
    y = b.linear(sum(p[1] for p in parts), int(np.prod(feat)))(x)
    return nn.Reshape(*feat)(y) if len(feat) != 1 else y


def _carry_out(b: Builder, body: Level, h: Value, srcs: list[Value]) -> Node:
    """The body's new value for carry h, inside h's interval (which holds [-1, 1])."""
    mode = b.pick(["squash", "squash", "residual", "sigmoid", "cell", "pass"])
    if mode == "pass" and not srcs:
        return body.take(h)
    srcs = srcs or [h]
    feat = h.shape[1:]
    if mode == "cell" and len(feat) == 1:
        x = _flatten(b, body, srcs[0])[0] if len(srcs) == 1 else \
            _to_shape(b, body, srcs, (b.width(),))
        cell = b.cell(b.pick(["rnn_tanh", "gru"]), x.type.shape[1], feat[0])
        return cell([body.take(h), x])
    z = _to_shape(b, body, srcs, feat)
    if mode == "sigmoid":
        return nn.Sigmoid()(z)
    t = nn.Tanh()(z)
    if mode != "residual":
        return t
    return nn.CAddTable()([nn.MulConstant(0.5)(body.take(h)), nn.MulConstant(0.5)(t)])


def op_loop(b: Builder, lv: Level, v: Value) -> Value | None:
    """gr.Loop with random consts, carries, sequences (float or ids), lengths, reverse,
    an unroll request, and a random body (which may hold loops of its own); or a while loop
    (stop=True) whose rows stop where a random body value passes a threshold."""
    groups: dict[Dim, list[Value]] = {}
    for u in lv.values:
        if u.rank >= 2 and u.shape[0] == b.bdim:     # a sequence has the batch rows
            groups.setdefault(u.shape[1], []).append(u)
    xs: list[Value] = []
    length: Dim | None = None
    if groups and b.chance(0.85):
        dim = v.shape[1] if v.rank >= 2 and b.chance(0.6) else b.pick(list(groups))
        xs = [v] if v.rank >= 2 and dim == v.shape[1] and b.chance(0.7) else []
        xs += [b.pick(groups[dim]) for _ in range(b.int(1 - len(xs), 2 - len(xs)))]
        steps = b.size(dim)
    else:
        top_t = lv.parent is None and b.symbolic and b.has_t and b.chance(0.3)
        length = "T" if top_t else b.int(0, 3)
        steps = b.size(length)
    lengths = lv.int_value((b.bdim,), xs[0].shape[1]) if xs and b.chance(0.35) else None
    until = lengths is None and b.chance(0.25)      # a while loop: rows stop on their own
    over_t = isinstance(xs[0].shape[1] if xs else length, str)
    # a const with the time dim inside a loop over time would make ys of T*T entries, which
    # the compiler does not support (sizes must be linear in T)
    pool = lv.floats(lambda u: not over_t or all(isinstance(d, int) for d in u.shape[1:]))
    consts = [b.pick(pool) for _ in range(b.int(0 if xs or not pool else 1, 2))] if pool else []
    inits = []
    for _ in range(b.int(0 if xs or (consts and not until) else 1, 2)):
        ready = lv.floats(lambda u: u.rank >= 2 and u.shape[0] == b.bdim
                          and all(_solid(d) for d in u.shape[1:]))
        if ready and b.chance(0.4):
            inits.append(b.pick(ready))
            continue
        c = b.pick([0.0, 0.0, 0.5, -1.0])
        like = [u for u in lv.values if u.rank and u.shape[0] == b.bdim] or lv.values
        inits.append(lv.add(ops.fill(b.feat(), c, batch_like=b.pick(like).node), c, c))

    body = Level(b, lv.depth + 1, lv)
    c_in = [body.input_like(c.node.type, c.lo, c.hi) for c in consts]
    h_in = [body.input_like(i.node.type, min(i.lo, -1.0), max(i.hi, 1.0)) for i in inits]
    x_in = [body.input_like(TensorType(x.shape[:1] + x.shape[2:], x.node.type.dtype),
                            x.lo, x.hi, x.high) for x in xs]
    for x in x_in:
        if not x.is_float:
            lookup_on(b, body, x)
    b.grow(body, b.int(1, max(1, b.p.max_ops // 2)))
    # a carry's sources are joined along their features: each needs the batch rows
    pool = [u for u in body.unused() if u.is_float and u.rank >= 1 and u.shape[0] == b.bdim]
    b.rng.shuffle(pool)
    outs = []
    for h in h_in:
        srcs = [pool.pop() for _ in range(b.int(0, min(2, len(pool))))]
        outs.append(_carry_out(b, body, h, srcs))
    ys = [(u.node, u.lo, u.hi) for u in body.unused() if u.is_float]
    if b.chance(0.25) or not (ys or outs):
        u = b.pick(body.floats())
        ys.append((u.node, u.lo, u.hi))
    if outs and b.chance(0.2):
        ys.append((outs[0], h_in[0].lo, h_in[0].hi))
    for u in body.unused():
        u.used = True
    pad = b.pick([0.0, 0.0, -0.5, 2.0])
    if until or lengths is not None:    # rows finish on their own: outputs need the rows
        ys = [y for y in ys if y[0].type.rank and y[0].type.shape[0] == b.bdim]
    out_nodes_stop = [_stop(b, body)] if until else []
    kept_consts = _reach_inputs(b, body, c_in, h_in + x_in, outs + out_nodes_stop, ys,
                                until or lengths is not None)
    consts, c_in = [consts[i] for i in kept_consts], [c_in[i] for i in kept_consts]
    if until:                           # a stopped row emits pad
        ys = [(y, *hull((lo, hi), (pad, pad))) for y, lo, hi in ys]
    ext = body.resolve_externs()
    ins = [c.node for c in c_in] + [x for x, _, _ in body.externs] + \
        [h.node for h in h_in] + [x.node for x in x_in]
    out_nodes = outs + [y[0] for y in ys] + out_nodes_stop
    graph = gModule(ins, out_nodes) if b.chance(0.6) else close_graph(ins, out_nodes)

    unroll: Any = None
    if steps >= 2 and b.chance(0.15):
        unroll = b.pick([True] + [k for k in range(2, steps) if steps % k == 0])
        b.t_fixed |= isinstance(xs[0].shape[1] if xs else length, str)
    if until:
        loop = Loop(graph, n_carry=len(h_in), n_consts=len(consts) + len(ext), unroll=unroll,
                    stop=True, max_steps=length, pad=pad)
    else:
        loop = Loop(graph, n_carry=len(h_in), n_consts=len(consts) + len(ext),
                    reverse=b.chance(0.3), unroll=unroll, length=length)
    parts = loop(consts=_nodes(lv, consts + ext), init=_nodes(lv, inits), xs=_nodes(lv, xs),
                 lengths=lv.take(lengths) if lengths else None)
    ivs = [(h.lo, h.hi) for h in h_in] + [
        hull((lo, hi), (0.0, 0.0)) if lengths else (lo, hi) for _, lo, hi in ys]
    if until:
        ivs.append((0.0, float(steps), steps))   # the rows' lengths, int64 in [0, steps]
    kept = [i for i in range(len(parts)) if b.chance(0.85)] or [b.int(0, len(parts) - 1)]
    return [lv.add(parts[i], *ivs[i]) for i in kept][0]


def _reach_inputs(b: Builder, body: Level, c_in: list[Value], rows: list[Value],
                  outs: list[Node], ys: list[tuple[Node, float, float]],
                  rows_needed: bool) -> list[int]:
    """Make every body input reach an output (an op may have taken a value and then given
    up, or the rows filter dropped its only reader): a const with batch rows, or a carry or
    sequence slice (with batch rows where the outputs need them) becomes one more per-step
    output (ids through a lookup); other consts and extern ids are left out of the loop
    (returns the indices of the consts kept)."""
    reached = {id(n) for n in toposort(outs + [y[0] for y in ys])}
    kept = []
    for i, u in enumerate(c_in + rows):
        if id(u.node) in reached:
            kept.append(i)
            continue
        if (u.rank == 0 or u.shape[0] != b.bdim) and (rows_needed or i < len(c_in)):
            continue
        w = u if u.is_float else lookup_on(b, body, u)
        ys.append((w.node, w.lo, w.hi))
        kept.append(i)
    body.externs = [e for e in body.externs if id(e[0]) in reached]
    return [i for i in kept if i < len(c_in)]


def _stop(b: Builder, body: Level) -> Node:
    """A per-row stop value [B] (a row stops where it is > 0) from a random body value."""
    u = b.pick(body.floats(lambda v: v.rank >= 1) or body.floats())
    node, _, _ = _flatten(b, body, u)
    total = ops.sum_(node, axes=(1,))
    mid = 0.5 * (u.lo + u.hi) * node.type.shape[1]
    return ops.sub(total, float(mid) + b.pick([-0.5, 0.0, 0.5]))
