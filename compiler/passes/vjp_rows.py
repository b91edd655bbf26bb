"""The vector-Jacobian products of the row ops (max, min, logsumexp, normalize, arg_onehot),
registered into vjp.VJP_RULES; built from primitives, like every other rule.

    max, min:   dx = g * arg_onehot(x)    (all of g to the first extremum, as torch's max(dim))
    logsumexp:  dx = g * exp(x - out)     (softmax(x))
    normalize:  dx = rstd * (g - mean(g) - y * mean(g * y)), rstd = (var + eps) ** -0.5,
                y the output (no mean(g) term without centering)
"""
from __future__ import annotations

from typing import Callable

from graphrnn import ops
from graphrnn.ir import Node, Op

Grads = tuple


def _kept(n: Node, v: Node) -> Node:
    """A value reduced along n's axis, shaped to broadcast against n's input."""
    if n.attrs["keepdims"]:
        return v
    shape = list(n.inputs[0].type.shape)
    shape[n.attrs["axis"]] = 1
    return ops.reshape(v, shape)


def _extreme(n: Node, g: Node) -> Grads:
    x = n.inputs[0]
    return (ops.mul(_kept(n, g), ops.arg_onehot(x, n.attrs["axis"], n.op == Op.MIN)),)


def _logsumexp(n: Node, g: Node) -> Grads:
    x = n.inputs[0]
    return (ops.mul(_kept(n, g), ops.exp(ops.sub(x, _kept(n, n)))),)


def _normalize(n: Node, g: Node) -> Grads:
    x = n.inputs[0]
    rank = x.type.rank
    axes = list(range(rank - len(n.attrs["shape"]), rank))
    centered = n.attrs["center"]
    d = ops.sub(x, ops.mean(x, axes, keepdims=True)) if centered else x
    var = ops.mean(ops.mul(d, d), axes, keepdims=True)
    rstd = ops.exp(ops.mul(ops.log(ops.add(var, n.attrs["eps"])), -0.5))
    inner = ops.sub(g, ops.mul(n, ops.mean(ops.mul(g, n), axes, keepdims=True)))
    if centered:
        inner = ops.sub(inner, ops.mean(g, axes, keepdims=True))
    return (ops.mul(rstd, inner),)


ROW_VJP_RULES: dict[Op, Callable[[Node, Node], Grads]] = {
    Op.MAX: _extreme, Op.MIN: _extreme, Op.LOGSUMEXP: _logsumexp, Op.NORMALIZE: _normalize,
    Op.ARG_ONEHOT: lambda n, g: (None,),
}

__all__ = ["ROW_VJP_RULES"]
