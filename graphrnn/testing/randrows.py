"""The random generator's row ops: nn.Max / nn.Min, nn.LogSumExp, nn.LayerNorm / nn.RMSNorm
(registered in randgraph.OPS). Each is `(builder, level, value) -> Value | None`, as in
randops.py, with intervals that hold for every drawn input."""
from __future__ import annotations

import math

import numpy as np

from .. import nn, ops
from .randbuilder import Builder, Level
from .randvalues import Value


def _row_axes(b: Builder, v: Value) -> list[int]:
    """Fixed non-empty axes past the batch: a max over no entries has no value."""
    return [i for i in range(1, v.rank) if isinstance(v.shape[i], int) and v.shape[i] >= 1]


def op_extreme(b: Builder, lv: Level, v: Value) -> Value | None:
    """Max or Min along one axis, after adding distinct offsets along it: values equal in
    v (zeros of a relu) would make the gradient a choice between ties, which central
    differences cannot check."""
    axes = _row_axes(b, v)
    if not axes:
        return None
    axis = b.pick(axes)
    n = v.shape[axis]
    offsets = b.rng.permutation(n).astype(np.float32) * np.float32(0.25 / max(n, 1))
    x = ops.add(lv.take(v), ops.const(offsets.reshape((n,) + (1,) * (v.rank - axis - 1))))
    module = (nn.Max if b.chance(0.5) else nn.Min)(axis - v.rank if b.chance(0.3) else axis,
                                                 keepdim=b.chance(0.3))
    return lv.add(module(x), v.lo, v.hi + 0.25)


def op_logsumexp(b: Builder, lv: Level, v: Value) -> Value | None:
    axes = _row_axes(b, v)
    if not axes:
        return None
    axis = b.pick(axes)
    node = nn.LogSumExp(axis, keepdim=b.chance(0.3))(lv.take(v))
    return lv.add(node, v.lo, v.hi + math.log(v.shape[axis]))


def op_norm(b: Builder, lv: Level, v: Value) -> Value | None:
    """LayerNorm or RMSNorm over the last dim (its parameters at their ones/zeros init)."""
    if v.rank < 2 or not isinstance(v.shape[-1], int) or v.shape[-1] < 1:
        return None
    n = v.shape[-1]
    affine = b.chance(0.7)
    if b.chance(0.5):
        node = nn.LayerNorm(n, eps=b.pick([1e-5, 1e-2]), elementwise_affine=affine)(
            lv.take(v))
        bound = math.sqrt(max(n - 1, 0))        # the largest |z-score| n values can have
    else:
        node = nn.RMSNorm(n, eps=b.pick([None, 1e-3]), elementwise_affine=affine)(lv.take(v))
        bound = math.sqrt(n)
    return lv.add(node, -bound, bound)


__all__ = ["op_extreme", "op_logsumexp", "op_norm"]
