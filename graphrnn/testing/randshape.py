"""The random generator's shape, product and convolution ops (graphrnn/nn_shape.py), in the
form of randops.py: `(builder, level, value) -> Value | None`, intervals kept true."""
from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from ..ir import Dim
from .randbuilder import Builder, Level
from .randvalues import Value, hull


def _solid(d: Dim) -> bool:
    return isinstance(d, int) and d >= 1


def _linear_in_symbols(shape: tuple[Dim, ...]) -> bool:
    """At most one dim per symbol: compiled sizes are linear in T and in B."""
    syms = [d for d in shape if isinstance(d, str)]
    return len(syms) == len(set(syms))


def op_transpose(b: Builder, lv: Level, v: Value) -> Value | None:
    """Two axes after the batch swapped; sometimes the batch axis there and back again."""
    if v.rank < 2:
        return None
    a = b.int(1, v.rank - 1)
    if v.rank >= 3 and b.chance(0.7):
        c = b.pick([i for i in range(1, v.rank) if i != a])
        mod = nn.Transpose(a - v.rank if b.chance(0.3) else a, c)
    else:
        mod = nn.Transpose((0, a), (0, a))
    return lv.add(mod(lv.take(v)), v.lo, v.hi)


def op_view(b: Builder, lv: Level, v: Value) -> Value | None:
    """Unsqueeze, Squeeze or a View with -1 (symbols kept in place)."""
    x = lv.take(v)
    kind = b.pick(["unsqueeze", "squeeze", "view"])
    if kind == "unsqueeze" or (kind == "squeeze" and 1 not in v.shape[1:]):
        at = b.int(1, v.rank) if b.chance(0.6) else -1
        y = nn.Unsqueeze(at)(x)
        return lv.add(nn.Squeeze(at)(y) if b.chance(0.3) else y, v.lo, v.hi)
    if kind == "squeeze":
        ones = [i for i in range(1, v.rank) if v.shape[i] == 1]
        return lv.add(nn.Squeeze(b.pick(ones) if b.chance(0.7) else None)(x), v.lo, v.hi)
    syms = tuple(d for d in v.shape[1:] if isinstance(d, str))
    if not syms and v.rank >= 2 and b.size(v.shape[0]) > 0:
        return lv.add(nn.View(-1)(x), v.lo, v.hi)
    if v.rank >= 3 and isinstance(v.shape[1], str) and all(_solid(d) for d in v.shape[2:]):
        return lv.add(nn.View(v.shape[1], -1)(x), v.lo, v.hi)
    return None


def op_replicate(b: Builder, lv: Level, v: Value) -> Value | None:
    mod = nn.Replicate(b.int(1, 3), b.int(1, v.rank))
    return lv.add(mod(lv.take(v)), v.lo, v.hi)


def op_padding(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = [i for i in range(1, v.rank) if isinstance(v.shape[i], int)]
    if not axes:
        return None
    pad = b.pick([-2, -1, 1, 2])
    value = b.pick([0.0, 0.0, 1.5, -1.0])
    mod = nn.Padding(b.pick(axes), pad, value)
    return lv.add(mod(lv.take(v)), *hull((v.lo, v.hi), (value, value)))


def op_select(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = [i for i in range(1, v.rank) if _solid(v.shape[i])]
    if not axes:
        return None
    axis = b.pick(axes)
    i = b.int(0, v.shape[axis] - 1)
    mod = nn.Select(axis - v.rank if b.chance(0.3) else axis,
                    i - v.shape[axis] if b.chance(0.5) else i)
    return lv.add(mod(lv.take(v)), v.lo, v.hi)


def op_index(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = [i for i in range(1, v.rank) if _solid(v.shape[i])]
    if not axes:
        return None
    axis = b.pick(axes)
    picked = b.rng.integers(0, v.shape[axis], b.int(1, 3))
    ids = ops.const(np.asarray(picked, np.int64))
    return lv.add(nn.Index(axis)([lv.take(v), ids]), v.lo, v.hi)


def op_mm(b: Builder, lv: Level, v: Value) -> Value | None:
    """v times a partner with the same leading dims, flags drawn among those that fit."""
    if v.rank < 2:
        return None
    lead = v.shape[:-2]
    partners = lv.floats(lambda u: u.rank == v.rank and u.shape[:-2] == lead)
    if not partners:
        return None
    u = b.pick(partners)
    fits = []
    for ta in (False, True):
        for tb in (False, True):
            n, k = (v.shape[-1], v.shape[-2]) if ta else v.shape[-2:]
            k2, m = (u.shape[-1], u.shape[-2]) if tb else u.shape[-2:]
            if k == k2 and k != "B" and _linear_in_symbols(lead + (n, m)):
                fits.append((ta, tb, k))
    if not fits:
        return None
    ta, tb, k = b.pick(fits)
    bound = max(b.bound_size(k), 1) * v.bound * u.bound
    node = nn.MM(ta, tb)([lv.take(v), lv.take(u)])
    return lv.add(node, -bound, bound)


def op_bilinear(b: Builder, lv: Level, v: Value) -> Value | None:
    if v.rank < 2 or not _solid(v.shape[-1]):
        return None
    partners = lv.floats(lambda u: u.rank == v.rank and u.shape[:-1] == v.shape[:-1]
                         and _solid(u.shape[-1]))
    if not partners:
        return None
    u = b.pick(partners)
    n1, n2 = v.shape[-1], u.shape[-1]
    mod = nn.Bilinear(n1, n2, b.width(), bias=b.chance(0.7))
    bound = (n1 * n2 * v.bound * u.bound + 1.0) / math.sqrt(n1)
    return lv.add(mod([lv.take(v), lv.take(u)]), -bound, bound)


def op_tconv(b: Builder, lv: Level, v: Value) -> Value | None:
    """A TemporalConvolution over v's axis 1 (causal on any length, valid on fixed ones)."""
    if v.rank != 3 or not _solid(v.shape[-1]):
        return None
    steps, c = v.shape[1], v.shape[2]
    kw = b.int(1, 3)
    fixed = isinstance(steps, int)
    padding = "valid" if fixed and steps >= kw and b.chance(0.5) else "causal"
    dw = b.int(1, 2) if fixed and steps >= 1 else 1
    mod = nn.TemporalConvolution(c, b.width(), kw, dw, padding, bias=b.chance(0.8))
    bound = math.sqrt(kw * c) * v.bound + 1.0 / math.sqrt(kw * c)
    return lv.add(mod(lv.take(v)), -bound, bound)


SHAPE_OPS = {"transpose": op_transpose, "view": op_view, "replicate": op_replicate,
             "padding": op_padding, "select": op_select, "index": op_index, "mm": op_mm,
             "bilinear": op_bilinear, "tconv": op_tconv}
SHAPE_WEIGHTS = {"transpose": 1.0, "view": 0.8, "replicate": 0.5, "padding": 0.6,
                 "select": 0.6, "index": 0.5, "mm": 1.0, "bilinear": 0.5, "tconv": 0.8}

__all__ = ["SHAPE_OPS", "SHAPE_WEIGHTS"]
