"""The vector-Jacobian products of the row ops (max, min, logsumexp, normalize, arg_onehot),
registered into vjp.VJP_RULES; built from primitives, like every other rule.

    max, min:   dx = g * arg_onehot(x)    (all of g to the first extremum, as torch's max(dim))
    logsumexp:  dx = g * exp(x - out)     (softmax(x))
    normalize:  dx = normalize_grad(x, g), one row kernel: rstd * (g - mean(g) - y * mean(g * y))
                with rstd = (var + eps) ** -0.5 and y the output (no mean(g) without centering)
"""
from __future__ import annotations

from typing import Callable

from graphrnn import ops
from graphrnn.ir import GraphError, Node, Op, node_error

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
    return (ops.normalize_grad(n.inputs[0], g, n.attrs["shape"], n.attrs["eps"],
                               n.attrs["center"]),)


def _second_order(n: Node, g: Node) -> Grads:
    raise node_error(n, "the gradient of a normalisation's gradient (a second derivative of "
                     "LayerNorm / RMSNorm) is not supported", GraphError)


ROW_VJP_RULES: dict[Op, Callable[[Node, Node], Grads]] = {
    Op.MAX: _extreme, Op.MIN: _extreme, Op.LOGSUMEXP: _logsumexp, Op.NORMALIZE: _normalize,
    Op.ARG_ONEHOT: lambda n, g: (None,), Op.NORMALIZE_GRAD: _second_order,
}

__all__ = ["ROW_VJP_RULES"]
