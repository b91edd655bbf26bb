"""Reduction and normalisation modules: Sum, Mean, Max, Min, LogSumExp, LayerNorm, RMSNorm.

PyTorch names and arguments; 0-based dims of the batch-first tensor the module is called on
(`nn.Max(1)(x)` on `x` `[B, F]` is `x.max(1).values`, one value per row). A dim the input does
not have is an error at the line that made the node.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .ir import Node
from .module import Module


def _one(module: Module, x: Any) -> Node:
    if not isinstance(x, Node):
        raise TypeError(f"{type(module).__name__} takes one node, got {type(x).__name__}")
    return x


def _dims(dim: int | Sequence[int]) -> tuple[int, ...]:
    return (int(dim),) if isinstance(dim, (int, np.integer)) else tuple(int(d) for d in dim)


class Sum(Module):
    """`x.sum(dim, keepdim)`: dim is an int or a tuple of ints."""

    def __init__(self, dim: int | Sequence[int], keepdim: bool = False,
                 name: str | None = None):
        super().__init__(name)
        self.dim, self.keepdim = _dims(dim), bool(keepdim)

    def build(self, x: Any) -> Node:
        return ops.sum_(_one(self, x), self.dim, self.keepdim)


class Mean(Sum):
    """`x.mean(dim, keepdim)`."""

    def build(self, x: Any) -> Node:
        return ops.mean(_one(self, x), self.dim, self.keepdim)


class Max(Module):
    """`x.max(dim, keepdim).values`; the gradient goes to the first maximum of each row, as
    PyTorch's does. A NaN in a row is its maximum."""

    def __init__(self, dim: int, keepdim: bool = False, name: str | None = None):
        super().__init__(name)
        self.dim, self.keepdim = int(dim), bool(keepdim)

    def build(self, x: Any) -> Node:
        return ops.max_(_one(self, x), self.dim, self.keepdim)


class Min(Max):
    """`x.min(dim, keepdim).values`; the gradient goes to the first minimum of each row."""

    def build(self, x: Any) -> Node:
        return ops.min_(_one(self, x), self.dim, self.keepdim)


class LogSumExp(Max):
    """`torch.logsumexp(x, dim, keepdim)`, computed stably (the row's max taken out first);
    its gradient is softmax(x) along dim."""

    def build(self, x: Any) -> Node:
        return ops.logsumexp(_one(self, x), self.dim, self.keepdim)


def _shape(normalized_shape: int | Sequence[int]) -> tuple[int, ...]:
    shape = _dims(normalized_shape)
    if not shape or any(d <= 0 for d in shape):
        raise ValueError(f"normalized_shape must be positive sizes, got {normalized_shape!r}")
    return shape


class LayerNorm(Module):
    """`torch.nn.LayerNorm`: y = (x - mean) / sqrt(var + eps) * weight + bias over the last
    len(normalized_shape) dims (biased variance); `weight` ones and `bias` zeros at first."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float = 1e-5,
                 elementwise_affine: bool = True, bias: bool = True, name: str | None = None):
        super().__init__(name)
        self.normalized_shape, self.eps = _shape(normalized_shape), float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        affine = self.elementwise_affine
        self.weight = self._param("weight", self.normalized_shape, "ones") if affine else None
        self.bias = self._param("bias", self.normalized_shape, "zeros") \
            if affine and bias else None

    def _normalize(self, x: Node) -> Node:
        return ops.normalize(x, self.normalized_shape, self.eps, center=True)

    def build(self, x: Any) -> Node:
        y = self._normalize(_one(self, x))
        if self.weight is not None:
            y = ops.mul(y, ops.param(self.weight))
        if self.bias is not None:
            y = ops.add(y, ops.param(self.bias))
        return y


class RMSNorm(LayerNorm):
    """`torch.nn.RMSNorm`: y = x / sqrt(mean(x^2) + eps) * weight over the last
    len(normalized_shape) dims; eps=None is float32's machine epsilon, as in PyTorch."""

    def __init__(self, normalized_shape: int | Sequence[int], eps: float | None = None,
                 elementwise_affine: bool = True, name: str | None = None):
        eps = float(np.finfo(np.float32).eps) if eps is None else float(eps)
        super().__init__(normalized_shape, eps, elementwise_affine, bias=False, name=name)

    def _normalize(self, x: Node) -> Node:
        return ops.normalize(x, self.normalized_shape, self.eps, center=False)


__all__ = ["Sum", "Mean", "Max", "Min", "LogSumExp", "LayerNorm", "RMSNorm"]
