"""Import rules for the ONNX ops graphrnn's newer primitives answer: Abs, Sign, Sqrt, Erf,
Softplus, Pow (a constant exponent), Max/Min (elementwise), ReduceMax/ReduceMin/
ReduceLogSumExp and LayerNormalization."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import ops
from ..ir import Node
from .importer import Importer, rule
from .values import Lazy, lazy

_UNARY: dict[str, Callable[[Node], Node]] = {
    "Abs": ops.abs_, "Sign": ops.sign, "Sqrt": ops.sqrt, "Erf": ops.erf,
    "Softplus": ops.softplus}
_REDUCE: dict[str, Callable[..., Node]] = {
    "ReduceMax": ops.max_, "ReduceMin": ops.min_, "ReduceLogSumExp": ops.logsumexp}
_NUMPY_REDUCE = {"ReduceMax": np.max, "ReduceMin": np.min}


def _float_input(imp: Importer, i: int, what: str) -> Lazy:
    x = imp.lazy(i, what)
    if x.dtype != "float32":
        raise imp.error(f"{what} is {x.dtype}; graphrnn computes this op in float32 only")
    return x


@rule("Abs", "Sign", "Sqrt", "Erf", "Softplus")
def _unary(imp: Importer, n: Any) -> list:
    x = _float_input(imp, 0, "input X")
    return [Lazy(_UNARY[n.op_type](x.node), x.perm)]


@rule("Pow")
def _pow(imp: Importer, n: Any) -> list:
    p = imp.static(1, "exponent Y")
    if p is None or np.size(p) != 1:
        raise imp.error("Pow needs a constant scalar exponent (graphrnn's pow has one)")
    x = _float_input(imp, 0, "input X")
    return [Lazy(ops.pow_(x.node, float(np.asarray(p).reshape(()))), x.perm)]


@rule("Max", "Min")
def _extreme(imp: Importer, n: Any) -> list:
    """Elementwise over any number of inputs (numpy broadcasting); NaN wins, as in ONNX
    Runtime and torch.maximum."""
    values = [imp.get(i) for i in range(len(n.input))]
    if not any(isinstance(v, Lazy) for v in values):
        fn = np.maximum if n.op_type == "Max" else np.minimum
        out = imp.concrete(values[0], "input 0")
        for i, v in enumerate(values[1:], 1):
            out = fn(out, imp.concrete(v, f"input {i}"))
        return [np.asarray(out)]
    fn2 = ops.maximum if n.op_type == "Max" else ops.minimum
    nodes = [imp.node_of(_float_input(imp, i, f"input {i}")) for i in range(len(n.input))]
    out = nodes[0]
    for x in nodes[1:]:
        out = fn2(out, x)
    return [lazy(out)]


def _axes(imp: Importer, rank: int) -> list[int]:
    """The reduced axes (attribute before opset 18, input 1 from 18), sorted, non-negative."""
    axes = imp.attr("axes")
    if imp.opset >= 18 and len(imp.node.input) > 1 and imp.node.input[1]:
        got = imp.static(1, "axes")
        if got is None:
            raise imp.error("the axes of a reduction must be constant")
        axes = [int(a) for a in np.asarray(got).reshape(-1)]
    if not axes:
        if imp.attr("noop_with_empty_axes", 0):
            return []
        return list(range(rank))
    return sorted({int(a) % rank for a in axes})


@rule("ReduceMax", "ReduceMin", "ReduceLogSumExp")
def _reduce(imp: Importer, n: Any) -> list:
    x = imp.get(0)
    keep = bool(imp.attr("keepdims", 1))
    if not isinstance(x, Lazy) and n.op_type in _NUMPY_REDUCE:
        arr = imp.concrete(x, "input data")
        axes = _axes(imp, arr.ndim)
        return [np.asarray(_NUMPY_REDUCE[n.op_type](arr, axis=tuple(axes), keepdims=keep))]
    node = imp.node_of(_float_input(imp, 0, "input data"))
    axes = _axes(imp, node.type.rank)
    # one axis at a time, the last first so the others keep their place
    for axis in sorted(axes, reverse=True):
        node = _REDUCE[n.op_type](node, axis, keep)
    return [lazy(node)]


@rule("LayerNormalization")
def _layer_norm(imp: Importer, n: Any) -> list:
    """normalize over the axes from `axis` on, then * Scale (+ B)."""
    if any(len(n.output) > i and n.output[i] for i in (1, 2)):
        raise imp.error("the Mean and InvStdDev outputs of LayerNormalization are not "
                        "supported (inference only)")
    if int(imp.attr("stash_type", 1)) != 1:
        raise imp.error("stash_type other than 1 (float) is not supported")
    node = imp.node_of(_float_input(imp, 0, "input X"))
    rank = node.type.rank
    axis = int(imp.attr("axis", -1)) % rank
    shape = node.type.shape[axis:]
    if not all(isinstance(d, int) for d in shape):
        raise imp.error(f"normalising over the symbolic dims {shape} is not supported")
    y = ops.normalize(node, shape, float(imp.attr("epsilon", 1e-5)))
    y = ops.mul(y, imp.node_of(_float_input(imp, 1, "Scale")))
    if len(n.input) > 2 and n.input[2]:
        y = ops.add(y, imp.node_of(_float_input(imp, 2, "B")))
    return [lazy(y)]


__all__: list[str] = []
