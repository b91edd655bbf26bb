"""Elementwise math modules and the elementwise table modules (exported through `graphrnn.nn`).

Each is a macro over primitives (abs, sign, sqrt, erf, softplus, pow, maximum, minimum, step,
where and the arithmetic ops), with PyTorch's argument names and its values and gradients,
kinks and ties included: `Clamp` passes the gradient at its bounds and `HardTanh` does not,
as in torch. Comparisons are `step` of a difference (`a > b`, false for NaN), or of
`sign(a - b) + 0.5` for `a >= b`, so that NaN takes the branch torch's comparison gives it.
"""
from __future__ import annotations

import math
from typing import Any

from . import ops
from .ir import GraphError, Node
from .module import Fold, Map, Module, as_nodes, node_pair, one_node
from .ops import creation_site


def _finite(module: str, **values: float | None) -> None:
    for k, v in values.items():
        if v is not None and not (isinstance(v, (int, float)) and math.isfinite(v)):
            raise ValueError(f"{module}: {k} must be a finite number, got {v!r}")


def greater(a: Any, b: Any) -> Node:
    """1 where a > b, else 0 (0 when either is NaN)."""
    return ops.step(ops.sub(a, b))


def greater_equal(a: Any, b: Any) -> Node:
    """1 where a >= b, else 0 (0 when either is NaN)."""
    return ops.step(ops.add(ops.sign(ops.sub(a, b)), 0.5))


def _last_axis(x: Node, what: str) -> int:
    if x.type is None:
        raise GraphError(f"{what} at {creation_site()}: the input's shape must be known; "
                         "declare it with gr.Input(...)")
    return x.type.rank - 1


# ----------------------------------------------------------------------------- elementwise

class Abs(Map):
    """|x|; the gradient at 0 is 0 (torch)."""
    fn = staticmethod(ops.abs_)


class Sqrt(Map):
    fn = staticmethod(ops.sqrt)


class Exp(Map):
    fn = staticmethod(ops.exp)


class Log(Map):
    fn = staticmethod(ops.log)


class Square(Module):
    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        return ops.mul(x, x)


class Power(Module):
    """x ** p for a constant p (Torch `nn.Power(p)`): a negative x with a non-integer p
    gives NaN, 0 ** p < 0 gives inf; the gradient is p x ** (p - 1) (0 for p = 0)."""

    def __init__(self, p: float, name: str | None = None):
        super().__init__(name)
        _finite("Power", p=p)
        self.p = float(p)

    def build(self, x: Any) -> Node:
        return ops.pow_(one_node(self, x), self.p)


class Clamp(Module):
    """torch.clamp(x, min, max): either bound may be None; the gradient passes where
    min <= x <= max (at the bounds too); NaN stays NaN."""

    def __init__(self, min: float | None = None, max: float | None = None,
                 name: str | None = None):
        super().__init__(name)
        if min is None and max is None:
            raise ValueError("Clamp: give min, max or both")
        _finite("Clamp", min=min, max=max)
        self.min, self.max = min, max

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        y = x
        if self.max is not None:
            y = ops.where(greater(x, self.max), self.max, y)
        if self.min is not None:     # min > max gives max everywhere, as in torch
            low = self.min if self.max is None else min(self.min, self.max)
            y = ops.where(greater(self.min, x), low, y)
        return y


class HardTanh(Module):
    """Clamp to [min_val, max_val] whose gradient is 0 at the bounds (torch Hardtanh)."""

    def __init__(self, min_val: float = -1.0, max_val: float = 1.0, name: str | None = None):
        super().__init__(name)
        _finite("HardTanh", min_val=min_val, max_val=max_val)
        if min_val > max_val:
            raise ValueError(f"HardTanh: min_val {min_val} > max_val {max_val}")
        self.min_val, self.max_val = float(min_val), float(max_val)

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        lo, hi = self.min_val, self.max_val
        inside = ops.mul(ops.sub(1.0, greater_equal(lo, x)), ops.sub(1.0, greater_equal(x, hi)))
        # outside: x <= lo or x >= hi; a mask of its own keeps one reader per mask (one kernel)
        return ops.where(inside, x, ops.where(greater(x, lo), hi, lo))


class LeakyReLU(Module):
    """x where x > 0, else negative_slope * x (the slope's gradient at 0, as torch)."""

    def __init__(self, negative_slope: float = 0.01, name: str | None = None):
        super().__init__(name)
        _finite("LeakyReLU", negative_slope=negative_slope)
        self.negative_slope = float(negative_slope)

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        return ops.where(greater(x, 0.0), x, ops.mul(x, self.negative_slope))


class ELU(Module):
    """x where x > 0, else alpha * (exp(x) - 1); the gradient at 0 is alpha (torch)."""

    def __init__(self, alpha: float = 1.0, name: str | None = None):
        super().__init__(name)
        _finite("ELU", alpha=alpha)
        self.alpha = float(alpha)

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        # exp of the clipped x: exp(x) of a large x is inf, and inf * 0 in the unused
        # branch's gradient would be NaN. The clip has its own mask (x > 0, not x <= 0
        # negated) so that each mask has one reader and the module fuses into one kernel.
        e = ops.exp(ops.where(greater(x, 0.0), 0.0, x))
        return ops.where(greater_equal(0.0, x), ops.mul(self.alpha, ops.sub(e, 1.0)), x)


class SoftPlus(Module):
    """log(1 + exp(beta x)) / beta, and x itself where beta x > threshold (torch Softplus)."""

    def __init__(self, beta: float = 1.0, threshold: float = 20.0, name: str | None = None):
        super().__init__(name)
        _finite("SoftPlus", beta=beta, threshold=threshold)
        if beta == 0:
            raise ValueError("SoftPlus: beta must not be 0")
        self.beta, self.threshold = float(beta), float(threshold)

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        beta = self.beta
        soft = ops.softplus(x) if beta == 1.0 else ops.div(ops.softplus(ops.mul(x, beta)), beta)
        # x > threshold / beta rather than beta x > threshold, so that beta x has one reader
        # (one kernel): the two differ only where beta x rounds across the threshold, where
        # both branches agree to exp(-threshold)
        cut = self.threshold / beta
        big = greater(x, cut) if beta > 0 else greater(cut, x)
        return ops.where(big, x, soft)


class SoftSign(Module):
    """x / (1 + |x|)."""

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        return ops.div(x, ops.add(1.0, ops.abs_(x)))


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


class GELU(Module):
    """x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)); with approximate='tanh',
    0.5 x (1 + tanh(sqrt(2 / pi) (x + 0.044715 x ** 3))) (torch GELU)."""

    def __init__(self, approximate: str = "none", name: str | None = None):
        super().__init__(name)
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        if self.approximate == "tanh":
            inner = ops.mul(_SQRT_2_OVER_PI, ops.add(x, ops.mul(0.044715, ops.pow_(x, 3.0))))
            phi = ops.tanh(inner)
        else:
            phi = ops.erf(ops.mul(x, 1.0 / math.sqrt(2.0)))
        return ops.mul(ops.mul(0.5, x), ops.add(1.0, phi))


class Threshold(Module):
    """x where x > threshold, else value (torch Threshold; NaN stays NaN)."""

    def __init__(self, threshold: float, value: float, name: str | None = None):
        super().__init__(name)
        _finite("Threshold", threshold=threshold)
        self.threshold, self.value = float(threshold), float(value)

    def build(self, x: Any) -> Node:
        x = one_node(self, x)
        return ops.where(greater_equal(self.threshold, x), self.value, x)


Softplus, Hardtanh, Softsign = SoftPlus, HardTanh, SoftSign     # PyTorch's spellings


# ----------------------------------------------------------------------------- tables

class CDivTable(Module):
    """{a, b} -> a / b."""

    def build(self, x: Any) -> Node:
        return ops.div(*node_pair(self, x))


class CMaxTable(Fold):
    """The elementwise maximum of a list of nodes, as torch.maximum folded left to right
    (NaN wins; a tie of two splits the gradient in halves)."""
    op = staticmethod(ops.maximum)


class CMinTable(CMaxTable):
    """The elementwise minimum of a list of nodes, as torch.minimum folded left to right."""
    op = staticmethod(ops.minimum)


class DotProduct(Module):
    """{a, b} -> the sum over the last axis of a * b ([B, D] -> [B])."""

    def build(self, x: Any) -> Node:
        a, b = node_pair(self, x)
        prod = ops.mul(a, b)
        return ops.sum_(prod, [_last_axis(prod, "DotProduct")])


class CosineDistance(Module):
    """{a, b} -> the cosine similarity along the last axis, as torch's
    cosine_similarity(a, b, dim=-1, eps): a.b / (max(|a|, eps) max(|b|, eps))."""

    def __init__(self, eps: float = 1e-8, name: str | None = None):
        super().__init__(name)
        _finite("CosineDistance", eps=eps)
        if eps <= 0:
            raise ValueError(f"CosineDistance: eps must be positive, got {eps}")
        self.eps = float(eps)

    def build(self, x: Any) -> Node:
        a, b = node_pair(self, x)
        axis = [_last_axis(ops.mul(a, b), "CosineDistance")]
        eps2 = self.eps * self.eps

        def norm(v: Node) -> Node:
            # clamp the squared norm: sqrt's gradient at 0 would be inf * 0
            s = ops.sum_(ops.mul(v, v), axis)
            return ops.sqrt(ops.where(greater(eps2, s), eps2, s))
        return ops.div(ops.sum_(ops.mul(a, b), axis), ops.mul(norm(a), norm(b)))


class PairwiseDistance(Module):
    """{a, b} -> the p-norm of a - b + eps along the last axis (torch PairwiseDistance)."""

    def __init__(self, p: float = 2.0, eps: float = 1e-6, keepdim: bool = False,
                 name: str | None = None):
        super().__init__(name)
        _finite("PairwiseDistance", p=p, eps=eps)
        if p <= 0:
            raise ValueError(f"PairwiseDistance: p must be positive, got {p}")
        self.p, self.eps, self.keepdim = float(p), float(eps), bool(keepdim)

    def build(self, x: Any) -> Node:
        a, b = node_pair(self, x)
        d = ops.add(ops.sub(a, b), self.eps)
        axis = [_last_axis(d, "PairwiseDistance")]
        if self.p == 2.0:
            return ops.sqrt(ops.sum_(ops.mul(d, d), axis, keepdims=self.keepdim))
        if self.p == 1.0:
            return ops.sum_(ops.abs_(d), axis, keepdims=self.keepdim)
        s = ops.sum_(ops.pow_(ops.abs_(d), self.p), axis, keepdims=self.keepdim)
        return ops.pow_(s, 1.0 / self.p)


class MixtureTable(Module):
    """Torch's mixture of experts: {gater [B, n], experts} -> sum_i gater[:, i] * expert_i,
    the experts a list of n nodes [B, ...] or one node with the n experts along `axis`
    ([B, n, ...] for the default axis 1)."""

    def __init__(self, axis: int = 1, name: str | None = None):
        super().__init__(name)
        self.axis = axis

    def build(self, x: Any) -> Node:
        if not (isinstance(x, (list, tuple)) and len(x) == 2 and isinstance(x[0], Node)):
            raise TypeError("MixtureTable takes [gater, experts], experts a node or a list")
        gater, experts = x
        g = gater.type
        if g is None or g.rank != 2:
            raise GraphError(f"MixtureTable at {creation_site()}: the gater must be a known "
                             f"[B, n], got {g}")
        if isinstance(experts, Node):
            return self._tensor(gater, experts)
        experts = as_nodes(experts)
        if g.shape[1] != len(experts):
            raise GraphError(f"MixtureTable at {creation_site()}: the gater has {g.shape[1]} "
                             f"columns for {len(experts)} experts")
        out = None
        for i, e in enumerate(experts):
            if e.type is None:
                raise GraphError(f"MixtureTable at {creation_site()}: expert {i}'s shape "
                                 "must be known")
            w = ops.reshape(ops.index(gater, 1, i), (g.shape[0],) + (1,) * (e.type.rank - 1))
            term = ops.mul(w, e)
            out = term if out is None else ops.add(out, term)
        return out

    def _tensor(self, gater: Node, experts: Node) -> Node:
        t = experts.type
        axis = self.axis + t.rank if t is not None and self.axis < 0 else self.axis
        if t is None or not 1 <= axis < t.rank or t.shape[axis] != gater.type.shape[1]:
            raise GraphError(f"MixtureTable at {creation_site()}: experts {t} need the "
                             f"gater's {gater.type.shape[1]} experts along axis {self.axis}")
        b, n = gater.type.shape
        shape = (b,) + (1,) * (axis - 1) + (n,) + (1,) * (t.rank - 1 - axis)
        return ops.sum_(ops.mul(ops.reshape(gater, shape), experts), [axis])


class MaskedFill(Module):
    """{x, mask} -> value where mask != 0, else x (torch masked_fill; the mask broadcasts)."""

    def __init__(self, value: float, name: str | None = None):
        super().__init__(name)
        self.value = float(value)       # -inf included, as attention masks use it

    def build(self, x: Any) -> Node:
        x, mask = node_pair(self, x)
        return ops.where(mask, self.value, x)


__all__ = ["Abs", "Sqrt", "Square", "Power", "Exp", "Log", "Clamp", "HardTanh", "Hardtanh",
           "LeakyReLU", "ELU", "SoftPlus", "Softplus", "SoftSign", "Softsign", "GELU",
           "Threshold", "CDivTable", "CMaxTable", "CMinTable", "MixtureTable", "DotProduct",
           "CosineDistance", "PairwiseDistance", "MaskedFill", "greater", "greater_equal"]
