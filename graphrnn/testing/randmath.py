"""The random generator's elementwise math and table modules (graphrnn/nn_elementwise.py):
`op_math` applies one of the elementwise modules to a value, `op_pair` one of the table
modules to a value and partners it finds in the level. Ops follow randops.py's contract:
`(builder, level, value) -> Value | None`, with intervals that stay true.
"""
from __future__ import annotations

import math
from typing import Callable

from .. import nn, ops
from ..ir import Op
from ..nn_elementwise import greater
from .randbuilder import Builder, Level
from .randvalues import TAME, Value, hull, times


def _softplus(x: float, beta: float = 1.0) -> float:
    return max(x, 0.0) + math.log1p(math.exp(-abs(beta * x))) / beta


def _elu(x: float, alpha: float) -> float:
    return x if x > 0 else alpha * math.expm1(x)


# nondecreasing maps: the interval's ends map to the ends of the result
MONOTONE: dict[str, tuple[Callable[[], nn.Module], Callable[[float], float]]] = {
    "softsign": (nn.SoftSign, lambda x: x / (1.0 + abs(x))),
    "elu": (lambda: nn.ELU(0.7), lambda x: _elu(x, 0.7)),
    "leaky": (lambda: nn.LeakyReLU(0.1), lambda x: x if x > 0 else 0.1 * x),
    "softplus": (lambda: nn.SoftPlus(beta=2.0, threshold=5.0), lambda x: _softplus(x, 2.0)),
    "hardtanh": (nn.HardTanh, lambda x: min(max(x, -1.0), 1.0)),
    "clamp": (lambda: nn.Clamp(-0.5, 2.0), lambda x: min(max(x, -0.5), 2.0)),
    "clamp_min": (lambda: nn.Clamp(min=0.25), lambda x: max(x, 0.25)),
}
GELU_MIN = -0.17           # the minimum of x Phi(x) (-0.1700 at x = -0.75), rounded down


def _shifted(lv: Level, v: Value, c: float = 0.5) -> tuple:
    """v moved up by c when it may come near 0: (node, lo, hi) with lo >= c / 2."""
    if v.lo >= c / 2:
        return lv.take(v), v.lo, v.hi
    return nn.AddConstant(c - v.lo)(lv.take(v)), c, v.hi + c - v.lo


def op_math(b: Builder, lv: Level, v: Value) -> Value | None:
    kind = b.pick(list(MONOTONE) + ["abs", "square", "sqrt", "power", "gelu", "threshold",
                                    "ids"])
    if kind == "ids":                   # integer ids as floats: astype, smooth in v
        ids = ops.astype(lv.take(lv.int_value(v.shape, 3)), "float32")
        return lv.add(ops.add(lv.take(v), ops.mul(ids, 0.25)), v.lo, v.hi + 0.75)
    if kind in MONOTONE:
        module, f = MONOTONE[kind]
        return lv.add(module()(lv.take(v)), f(v.lo), f(v.hi))
    m = max(abs(v.lo), abs(v.hi))
    low = 0.0 if v.lo <= 0.0 <= v.hi else min(abs(v.lo), abs(v.hi))
    if kind == "abs":
        return lv.add(nn.Abs()(lv.take(v)), low, m)
    if kind == "square":
        return lv.add(nn.Square()(lv.take(v)), low * low, m * m) if m <= 5.0 else None
    if kind == "gelu":
        approximate = b.pick(["none", "tanh"])
        return lv.add(nn.GELU(approximate)(lv.take(v)), GELU_MIN, max(v.hi, 0.0))
    if kind == "threshold":
        # value = threshold keeps it continuous: a value that lands on the threshold by
        # construction (cos(x, x) - 1) must not jump on a rounding difference
        th = b.pick([-0.5, 0.0, 0.5])
        return lv.add(nn.Threshold(th, th)(lv.take(v)), max(v.lo, th), max(v.hi, th))
    if kind == "sqrt":
        if v.lo < 0.0:
            return None
        x, lo, hi = _shifted(lv, v)
        return lv.add(nn.Sqrt()(x), math.sqrt(lo), math.sqrt(hi))
    p = b.pick([2.0, 3.0, -1.0, 0.5, 1.5, 2.3, -0.5])
    if p in (2.0, 3.0) and m <= 3.0:         # an integer power of any sign of base
        ends = [v.lo ** p, v.hi ** p] + ([0.0] if p == 2.0 else [])
        return lv.add(nn.Power(p)(lv.take(v)), low ** p if p == 2.0 else min(ends), max(ends))
    if v.lo < 0.0 or v.hi > TAME:
        return None
    x, lo, hi = _shifted(lv, v)
    return lv.add(nn.Power(p)(x), *sorted((lo ** p, hi ** p)))


def _partners(lv: Level, v: Value, same: bool) -> list[Value]:
    """Float values of v's shape (same), or of a shape that broadcasts to v's."""
    def fits(u: Value) -> bool:
        if u.rank != v.rank:
            return False
        return all(a == c or (not same and a == 1) for a, c in zip(u.shape, v.shape))
    return lv.floats(fits)


def op_pair(b: Builder, lv: Level, v: Value) -> Value | None:
    kind = b.pick(["max", "min", "div", "masked_fill", "dot", "cosine", "pairwise",
                   "mixture"])
    partners = _partners(lv, v, same=kind in ("dot", "cosine", "pairwise", "mixture"))
    if not partners:
        return None
    u = b.pick(partners)
    if kind in ("max", "min"):
        group = [v, u] + ([b.pick(partners)] if b.chance(0.3) else [])
        table, pick = (nn.CMaxTable, max) if kind == "max" else (nn.CMinTable, min)
        return lv.add(table()(lv.take(*group)), pick(x.lo for x in group),
                      pick(x.hi for x in group))
    if kind == "div":
        if u.lo < 0.0:
            return None
        den, lo, hi = _shifted(lv, u)
        q = [x / y for x in (v.lo, v.hi) for y in (lo, hi)]
        return lv.add(nn.CDivTable()([lv.take(v), den]), min(q), max(q))
    if kind == "masked_fill":
        # the mask compares a drawn model input with the middle of its range: a computed
        # value may sit on the cut by construction and flip on a rounding difference
        if lv.parent is not None or u.node.op != Op.INPUT or u.hi <= u.lo:
            return None
        value = b.pick([-2.0, 0.0, 1.5])
        mask = greater(lv.take(u), (u.lo + u.hi) / 2)
        return lv.add(nn.MaskedFill(value)([lv.take(v), mask]),
                      *hull((v.lo, v.hi), (value, value)))
    d = v.shape[-1]
    if v.rank < 2 or not isinstance(d, int) or d < 1:
        return None
    if kind == "dot":
        lo, hi = times((v.lo, v.hi), (u.lo, u.hi))
        return lv.add(nn.DotProduct()(lv.take(v, u)), d * min(lo, 0.0), d * max(hi, 0.0))
    if kind == "cosine":
        return lv.add(nn.CosineDistance()(lv.take(v, u)), -1.0, 1.0)
    if kind == "pairwise":
        p = b.pick([1.0, 2.0, 3.0])
        span = max(abs(v.hi - u.lo), abs(u.hi - v.lo)) + 1e-6
        return lv.add(nn.PairwiseDistance(p)(lv.take(v, u)), 0.0, d * span)
    return _mixture(b, lv, [v, u] + ([b.pick(partners)] if b.chance(0.4) else []))


def _mixture(b: Builder, lv: Level, experts: list[Value]) -> Value | None:
    """MixtureTable over experts of one shape, as a list or stacked along axis 1, gated by
    sigmoid(Linear(g)) for a [B, k] value g of the level."""
    v = experts[0]
    gaters = lv.floats(lambda g: g.rank == 2 and g.shape[0] == v.shape[0]
                       and isinstance(g.shape[1], int) and g.shape[1] >= 1)
    stackable = all(isinstance(d, int) for d in v.shape[1:])
    if not gaters:
        return None
    g = b.pick(gaters)
    gate = nn.Sigmoid()(b.linear(g.shape[1], len(experts))(lv.take(g)))
    nodes = lv.take(*experts)
    if stackable and b.chance(0.5):
        nodes = nn.JoinTable(1)([nn.Reshape(1, *v.shape[1:])(x) for x in nodes])
    lo = sum(min(x.lo, 0.0) for x in experts)
    hi = sum(max(x.hi, 0.0) for x in experts)
    return lv.add(nn.MixtureTable()([gate, nodes]), lo, hi)


__all__ = ["op_math", "op_pair", "MONOTONE"]
