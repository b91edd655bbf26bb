"""The random generator's plain ops: one function per module or op family (`randgraph.OPS`
lists them with the cell and loop ops of randcells.py and randloops.py).

Each op is `(builder, level, value) -> Value | None`: it applies its op to `value` (and to
partners it finds in the level) when the shapes allow, and returns None, having made no node,
when they do not. Intervals follow every op, so the bounds of `randvalues.Value` stay true.
"""
from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..gmodule import gModule
from ..ir import Dim, Node
from .randbuilder import Builder, Level
from .randvalues import MAPS, Value, hull, times

LOOKUP_BOUND = 5.0          # embeddings are drawn from N(0, 1)


def _solid(d: Dim) -> bool:
    """A fixed dim with at least one entry (concrete-dims models may have T = 0)."""
    return isinstance(d, int) and d >= 1


def _int_axes(v: Value) -> list[int]:
    return [i for i in range(1, v.rank) if _solid(v.shape[i])]


def _axis_arg(b: Builder, axis: int, rank: int) -> int:
    return axis - rank if b.chance(0.3) else axis


def _nodes(lv: Level, vs: list[Value]) -> list[Node]:
    for v in vs:
        v.used = True
    return [v.node for v in vs]


def _size(b: Builder, shape: tuple[Dim, ...], bound: bool = False) -> int:
    """Elements in `shape` for the drawn inputs, or (bound) for any T the bounds allow."""
    size = b.bound_size if bound else b.size
    return int(np.prod([size(d) for d in shape], dtype=np.int64))


def _broadcasts(u: Value, shape: tuple[Dim, ...]) -> bool:
    """u broadcasts with `shape`: same rank, each dim equal or 1 on one side, and the result
    has at most one dim that grows with the sequence (compiled sizes are linear in T)."""
    if u.rank != len(shape) or not all(a == c or 1 in (a, c) for a, c in zip(u.shape, shape)):
        return False
    result = [c if a == 1 else a for a, c in zip(u.shape, shape)]
    return sum(d == "T" for d in result) <= 1


# ----------------------------------------------------------------------------- plain ops

def op_linear(b: Builder, lv: Level, v: Value, out: int | None = None) -> Value | None:
    if v.rank < 2 or not _solid(v.shape[-1]):
        return None
    k = v.shape[-1]
    mod = b.linear(k, out)
    m = math.sqrt(k) * v.bound + (1 / math.sqrt(k) if mod.bias is not None else 0.0)
    return lv.add(mod(lv.take(v)), -m, m)


def op_map(b: Builder, lv: Level, v: Value, kind: str | None = None) -> Value:
    module, f = MAPS[kind or b.pick(list(MAPS))]
    return lv.add(module()(lv.take(v)), f(v.lo), f(v.hi))


def op_exp(b: Builder, lv: Level, v: Value) -> Value | None:
    if v.hi > 5.0:
        return None
    return lv.add(ops.exp(lv.take(v)), math.exp(max(v.lo, -700.0)), math.exp(v.hi))


def op_log(b: Builder, lv: Level, v: Value) -> Value | None:
    if v.lo < 0.0:
        return None
    x, lo, hi = lv.take(v), v.lo, v.hi
    if lo < 0.1 or b.chance(0.3):
        c = b.pick([0.5, 1.0, 2.0])
        x, lo, hi = nn.AddConstant(c)(x), lo + c, hi + c
    return lv.add(ops.log(x), math.log(lo), math.log(hi))


def op_scale(b: Builder, lv: Level, v: Value) -> Value:
    kind = b.pick(["mul", "add", "neg"])
    if kind == "neg":
        return lv.add(ops.neg(lv.take(v)), -v.hi, -v.lo)
    if kind == "mul":
        c = b.pick([-2.0, -0.5, 0.5, 1.0, 2.0])
        return lv.add(nn.MulConstant(c)(lv.take(v)), *sorted((v.lo * c, v.hi * c)))
    c = b.pick([-1.0, 0.5, 1.0])
    return lv.add(nn.AddConstant(c)(lv.take(v)), v.lo + c, v.hi + c)


def op_softmax(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = [i for i in range(1, v.rank) if b.size(v.shape[i]) > 0]
    if b.chance(0.1):
        axes.append(0)
    if not axes:
        return None
    axis = b.pick(axes)
    n = b.bound_size(v.shape[axis])
    if b.chance(0.5):
        return lv.add(nn.SoftMax(_axis_arg(b, axis, v.rank))(lv.take(v)), 0.0, 1.0)
    spread = v.hi - v.lo + math.log(max(n, 1))
    return lv.add(nn.LogSoftMax(_axis_arg(b, axis, v.rank))(lv.take(v)), -spread, 0.0)


def op_reduce(b: Builder, lv: Level, v: Value) -> Value | None:
    if v.rank < 2:
        return None
    axes = [a for a in range(1, v.rank) if b.chance(0.5)] or [b.int(1, v.rank - 1)]
    n = _size(b, tuple(v.shape[a] for a in axes), bound=True)
    mean = _size(b, tuple(v.shape[a] for a in axes)) > 0 and b.chance(0.5)
    fn = ops.mean if mean else ops.sum_
    node = fn(lv.take(v), axes=[_axis_arg(b, a, v.rank) for a in axes], keepdims=b.chance(0.4))
    return lv.add(node, v.lo, v.hi) if mean else lv.add(node, min(n * v.lo, 0.0),
                                                         max(n * v.hi, 0.0))


def op_narrow(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = _int_axes(v)
    if not axes:
        return None
    axis = b.pick(axes)
    start = b.int(0, v.shape[axis] - 1)
    length = b.int(1, v.shape[axis] - start)
    return lv.add(nn.Narrow(_axis_arg(b, axis, v.rank), start, length)(lv.take(v)), v.lo, v.hi)


def _factor(b: Builder, n: int) -> tuple[int, ...]:
    """A random shape of n elements, 1-sized dims included (empty only for n == 1)."""
    rank = b.int(0 if n == 1 else 1, 3)
    dims, m = [], n
    for _ in range(rank - 1):
        d = b.pick([d for d in range(1, m + 1) if m % d == 0])
        dims.append(d)
        m //= d
    if rank:
        dims.append(m)
    b.rng.shuffle(dims)
    return tuple(dims)


def op_reshape(b: Builder, lv: Level, v: Value) -> Value | None:
    rest = v.shape[1:]
    if _size(b, rest) == 0:
        return None
    if all(isinstance(d, int) for d in rest):
        new = _factor(b, _size(b, rest))
        return lv.add(nn.Reshape(*new)(lv.take(v)), v.lo, v.hi)
    if v.rank >= 2 and all(isinstance(d, int) for d in v.shape[2:]):
        new = _factor(b, _size(b, v.shape[2:]))
        return lv.add(ops.reshape(lv.take(v), v.shape[:2] + new), v.lo, v.hi)
    return None


def _fold(kind: str, ivs: list[tuple[float, float]]) -> tuple[float, float]:
    out = ivs[0]
    for iv in ivs[1:]:
        if kind == "add":
            out = (out[0] + iv[0], out[1] + iv[1])
        elif kind == "sub":
            out = (out[0] - iv[1], out[1] - iv[0])
        else:
            out = times(out, iv)
    return out


_TABLES = {"add": nn.CAddTable, "sub": nn.CSubTable, "mul": nn.CMulTable}


def op_split(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = [a for a in _int_axes(v) if v.shape[a] <= 4]
    if not axes:
        return None
    axis = b.pick(axes)
    parts = nn.SplitTable(_axis_arg(b, axis, v.rank))(lv.take(v))
    joinable = [a for a in range(1, v.rank - 1) if _solid(parts[0].type.shape[a])]
    mode = b.pick(["select", "combine", "join"])
    if mode == "combine" and len(parts) >= 2:
        kind = b.pick(list(_TABLES))
        return lv.add(_TABLES[kind]()(list(parts)), *_fold(kind, [(v.lo, v.hi)] * len(parts)))
    if mode == "join" and joinable:
        axis2 = b.pick(joinable)
        return lv.add(nn.JoinTable(axis2)(list(parts)), v.lo, v.hi)
    i = b.int(0, len(parts) - 1)
    return lv.add(nn.SelectTable(i - len(parts) if b.chance(0.3) else i)(list(parts)),
                  v.lo, v.hi)


def op_join(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = _int_axes(v)
    if not axes:
        return None
    axis = b.pick(axes)
    partners = lv.floats(lambda u: u.rank == v.rank and _solid(u.shape[axis]) and all(
        u.shape[j] == v.shape[j] for j in range(v.rank) if j != axis))
    group = [v] + [b.pick(partners) for _ in range(b.int(1, 2))]
    b.rng.shuffle(group)
    node = nn.JoinTable(_axis_arg(b, axis, v.rank))(_nodes(lv, group))
    return lv.add(node, *hull(*[(u.lo, u.hi) for u in group]))


def op_cwise(b: Builder, lv: Level, v: Value) -> Value:
    group, shape = [v], v.shape
    for _ in range(b.int(1, 2)):
        u = b.pick(lv.floats(lambda u: _broadcasts(u, shape)))
        shape = tuple(c if a == 1 else a for a, c in zip(u.shape, shape))
        group.append(u)
    b.rng.shuffle(group)
    kind = b.pick(list(_TABLES))
    node = _TABLES[kind]()(_nodes(lv, group))
    return lv.add(node, *_fold(kind, [(u.lo, u.hi) for u in group]))


def op_div(b: Builder, lv: Level, v: Value) -> Value | None:
    partners = lv.floats(lambda u: _broadcasts(u, v.shape) and u.lo >= 0.0)
    if not partners:
        return None
    u = b.pick(partners)
    den, lo, hi = lv.take(u), u.lo, u.hi
    if lo < 0.25:
        den, lo, hi = nn.AddConstant(0.5)(den), lo + 0.5, hi + 0.5
    q = [x / y for x in (v.lo, v.hi) for y in (lo, hi)]
    return lv.add(ops.div(lv.take(v), den), min(q), max(q))


def op_dropout(b: Builder, lv: Level, v: Value) -> Value:
    p = b.pick([0.0, 0.25, 0.5])
    mod = nn.Dropout(p, seed=b.int(1, 10_000))
    # in training mode a kept value is scaled by 1/(1-p), a dropped one is 0
    return lv.add(mod(lv.take(v)), min(v.lo / (1 - p), 0.0), max(v.hi / (1 - p), 0.0))


def op_const(b: Builder, lv: Level, v: Value) -> Value:
    """v combined with a literal: a scalar, or an array broadcast over v's trailing dims,
    sometimes passed through tanh/exp first (a subgraph for constant folding)."""
    k = 0
    while k < v.rank - 1 and _solid(v.shape[v.rank - 1 - k]):
        k += 1
    if k == 0 or b.chance(0.25):
        arr = np.float32(b.pick([-1.5, 0.5, 2.0]))
    else:
        shape = tuple(1 if b.chance(0.25) else d for d in v.shape[v.rank - b.int(1, k):])
        arr = b.rng.uniform(-1, 1, shape).astype(np.float32)
    c = ops.const(arr)
    fn = b.pick(["", "tanh", "exp"])
    if fn:
        c = getattr(ops, fn)(c)
        arr = getattr(np, fn)(arr)
    civ = (float(np.min(arr)), float(np.max(arr)))
    kind = b.pick(list(_TABLES))
    pair = [(lv.take(v), (v.lo, v.hi)), (c, civ)]
    if b.chance(0.5):
        pair.reverse()
    node = {"add": ops.add, "sub": ops.sub, "mul": ops.mul}[kind](pair[0][0], pair[1][0])
    return lv.add(node, *_fold(kind, [pair[0][1], pair[1][1]]))


def lookup_on(b: Builder, lv: Level, ids: Value) -> Value:
    mod = b.lookup_table(b.bound_size(ids.high) + 1)
    return lv.add(mod(lv.take(ids)), -LOOKUP_BOUND, LOOKUP_BOUND)


def op_lookup(b: Builder, lv: Level, v: Value) -> Value:
    shapes = [(b.bdim,)] + ([(b.bdim, b.tdim)] if lv.parent is None and b.has_t else [])
    return lookup_on(b, lv, lv.int_value(b.pick(shapes), b.int(1, 5) - 1))


def op_pick(b: Builder, lv: Level, v: Value) -> Value | None:
    if v.rank < 2 or not _solid(v.shape[-1]):
        return None
    idx = lv.int_value(v.shape[:-1], v.shape[-1] - 1)
    return lv.add(ops.pick(lv.take(v), lv.take(idx)), v.lo, v.hi)


def op_submodule(b: Builder, lv: Level, v: Value) -> Value:
    """A small gModule built on v (and maybe one more value), inlined once or twice."""
    args = [v] + ([b.pick(lv.floats())] if b.chance(0.4) else [])
    child = Level(b, lv.depth + 1, lv)
    for a in args:
        child.input_like(a.node.type, a.lo, a.hi)
    b.grow(child, b.int(1, max(1, b.p.max_ops // 3)))
    outs = [u for u in child.unused() if u.is_float]
    for u in child.unused():
        u.used = True
    sub = gModule(child.inputs + [x for x, _, _ in child.externs], [u.node for u in outs])
    call = args + child.resolve_externs()
    last = None
    for _ in range(2 if b.chance(0.3) else 1):
        res = sub(_nodes(lv, call))
        res = [res] if isinstance(res, Node) else list(res)
        for node, u in zip(res, outs):
            last = lv.add(node, u.lo, u.hi)
    return last

