"""The row ops: max, min, logsumexp, normalize and arg_onehot. Their type rules (ROW_OP_TYPES,
registered into shape_rules.TENSOR_RULES) and numpy reference (ROW_OP_EVAL, registered into
interpret.EVAL_RULES).

Each works along rows: one axis (max, min, logsumexp, arg_onehot) or the last dims (normalize).

    max:        out[i] = max(x[i, :])                       (NaN wins, as numpy's max)
    logsumexp:  m = max(x[i, :]) (0 when not finite); out[i] = m + log(sum(exp(x[i, :] - m)))
    normalize:  mu = mean(x[i, :]) (0 without center); v = mean((x[i, :] - mu) ** 2)
                out[i, :] = (x[i, :] - mu) / sqrt(v + eps)
    normalize_grad (x, g), with y = normalize(x) and r = 1 / sqrt(v + eps):
                out[i, :] = r * (g[i, :] - mean(g[i, :]) - y[i, :] * mean(g[i, :] * y[i, :]))
                (no mean(g) term without center)
    arg_onehot: out[i, :] = onehot(argmax(x[i, :]))         (the first of ties; argmin with min)
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .ir import Node, Op, ShapeError, TensorType, node_error

F32 = "float32"


def _float_input(node: Node, t: TensorType) -> None:
    if t.dtype != F32:
        raise node_error(node, f"expected a float32 input, got {t}", ShapeError)


def _axis(node: Node, t: TensorType) -> int:
    axis = node.attrs["axis"]
    if t.rank == 0 or not -t.rank <= axis < t.rank:
        raise node_error(node, f"dim {axis} is out of range for an input of rank {t.rank} "
                         f"({t}): use a dim in [{-t.rank}, {t.rank - 1}]", ShapeError)
    return axis % t.rank


def _along_axis(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    """max, min, logsumexp: the axis dropped (kept as 1 with keepdims)."""
    t = ts[0]
    _float_input(node, t)
    axis = _axis(node, t)
    keep = bool(node.attrs.get("keepdims", False))
    shape = list(t.shape)
    if keep:
        shape[axis] = 1
    else:
        del shape[axis]
    return TensorType(tuple(shape), F32), {"axis": axis, "keepdims": keep}


def _arg_onehot(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    _float_input(node, ts[0])
    return ts[0], {"axis": _axis(node, ts[0]), "min": bool(node.attrs.get("min", False))}


def _normalize(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    _float_input(node, t)
    shape = tuple(node.attrs["shape"])
    if not shape or t.rank < len(shape) or tuple(t.shape[t.rank - len(shape):]) != shape:
        raise node_error(node, f"normalized_shape {list(shape)} does not match the last dims "
                         f"of the input {t}", ShapeError)
    return t, {"shape": shape, "eps": float(node.attrs["eps"]),
               "center": bool(node.attrs.get("center", True))}


def _normalize_grad(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    if ts[1] != ts[0]:
        raise node_error(node, f"expected a gradient of type {ts[0]}, got {ts[1]}", ShapeError)
    return _normalize(node, ts[:1])


ROW_OP_TYPES: dict[Op, Callable[[Node, list], Any]] = {
    Op.MAX: _along_axis, Op.MIN: _along_axis, Op.LOGSUMEXP: _along_axis,
    Op.ARG_ONEHOT: _arg_onehot, Op.NORMALIZE: _normalize, Op.NORMALIZE_GRAD: _normalize_grad,
}
ROW_OP_ARITY = {**{op: (1, 1) for op in ROW_OP_TYPES}, Op.NORMALIZE_GRAD: (2, 2)}


# ----------------------------------------------------------------------------- reference

def _extreme(fn: Callable, empty: float) -> Callable:
    """max or min; over no entries (T = 0) -inf or inf, as the compiled kernel gives."""
    def rule(n: Node, a: list, ctx: Any) -> np.ndarray:
        return fn(a[0], axis=n.attrs["axis"], keepdims=n.attrs["keepdims"], initial=empty)
    return rule


def _logsumexp(n: Node, a: list, ctx: Any) -> np.ndarray:
    x, axis = a[0], n.attrs["axis"]
    m = np.max(x, axis=axis, keepdims=True, initial=-np.inf)
    m = np.where(np.isfinite(m), m, 0).astype(x.dtype)
    out = m + np.log(np.sum(np.exp(x - m), axis=axis, keepdims=True))
    return out if n.attrs["keepdims"] else np.squeeze(out, axis)


def _arg_onehot_eval(n: Node, a: list, ctx: Any) -> np.ndarray:
    x, axis = a[0], n.attrs["axis"]
    idx = (np.argmin if n.attrs["min"] else np.argmax)(x, axis=axis)
    positions = np.arange(x.shape[axis]).reshape((-1,) + (1,) * (x.ndim - axis - 1))
    return (np.expand_dims(idx, axis) == positions).astype(x.dtype)


def _normalized(n: Node, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """(normalize(x), 1 / sqrt(var + eps), the normalised axes)."""
    axes = tuple(range(x.ndim - len(n.attrs["shape"]), x.ndim))
    d = x - np.mean(x, axis=axes, keepdims=True) if n.attrs["center"] else x
    var = np.mean(np.square(d, dtype=np.float64), axis=axes, keepdims=True)
    rstd = (1.0 / np.sqrt(var + n.attrs["eps"])).astype(x.dtype)
    return d * rstd, rstd, axes


def _normalize_grad_eval(n: Node, a: list, ctx: Any) -> np.ndarray:
    (x, g), center = a, n.attrs["center"]
    y, rstd, axes = _normalized(n, x)
    inner = g - y * np.mean(g * y, axis=axes, keepdims=True)
    return rstd * (inner - np.mean(g, axis=axes, keepdims=True) if center else inner)


ROW_OP_EVAL: dict[Op, Callable[[Node, list, Any], Any]] = {
    Op.MAX: _extreme(np.max, -np.inf), Op.MIN: _extreme(np.min, np.inf),
    Op.LOGSUMEXP: _logsumexp,
    Op.ARG_ONEHOT: _arg_onehot_eval, Op.NORMALIZE: lambda n, a, c: _normalized(n, a[0])[0],
    Op.NORMALIZE_GRAD: _normalize_grad_eval,
}

__all__ = ["ROW_OP_TYPES", "ROW_OP_ARITY", "ROW_OP_EVAL"]
