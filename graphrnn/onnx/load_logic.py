"""Import rules for ONNX booleans: IsNaN, Greater, Less, Equal (with a constant), Not, And, Or,
Where. graphrnn has no bool dtype, so a bool tensor is a float32 mask of 0 and 1, which is what
`where` reads (a nonzero mask picks the first branch) and what a Cast to float gives.

The rules are exact in IEEE float32 (NaN compares false, as ONNX says): a > b is
step(a - b), since a - b > 0 exactly when a > b (inf - inf and NaN give NaN, step 0).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..ir import Node
from .importer import Importer, rule
from .values import Lazy, lazy

_NUMPY = {"Greater": np.greater, "Less": np.less, "Equal": np.equal, "And": np.logical_and,
          "Or": np.logical_or}
FLT_MAX = float(np.finfo(np.float32).max)


def _node(imp: Importer, i: int, what: str) -> Node:
    v = imp.get(i)
    if v is None:
        raise imp.error(f"{what} (input {i}) is missing")
    if not isinstance(v, Lazy):
        v = imp.as_lazy(np.asarray(v).astype(np.float32) if np.asarray(v).dtype == bool else v,
                        imp.node.input[i])
    node = imp.node_of(v)
    if node.type.dtype != "float32":
        raise imp.error(f"{what} is {node.type.dtype}; graphrnn compares float32 tensors only")
    return node


def _folded(imp: Importer, n: Any) -> list | None:
    """Every input known at import time: the numpy answer."""
    values = [imp.get(i) for i in range(len(n.input))]
    if any(isinstance(v, Lazy) for v in values):
        return None
    arrays = [imp.concrete(v, f"input {i}") for i, v in enumerate(values)]
    if n.op_type == "IsNaN":
        return [np.isnan(arrays[0])]
    if n.op_type == "Not":
        return [np.logical_not(arrays[0])]
    if n.op_type == "Where":
        return [np.where(*arrays)]
    return [_NUMPY[n.op_type](arrays[0], arrays[1])]


def is_nan(x: Node) -> Node:
    """1 where x is NaN: x - x is nonzero (NaN) for NaN and inf; inf is told apart by size."""
    return ops.sub(ops.where(ops.sub(x, x), 1.0, 0.0), ops.step(ops.sub(ops.abs_(x), FLT_MAX)))


@rule("IsNaN", "Not")
def _unary(imp: Importer, n: Any) -> list:
    got = _folded(imp, n)
    if got is not None:
        return got
    x = _node(imp, 0, "input X")
    return [lazy(is_nan(x) if n.op_type == "IsNaN" else ops.sub(1.0, x))]


@rule("Greater", "Less", "And", "Or")
def _binary(imp: Importer, n: Any) -> list:
    got = _folded(imp, n)
    if got is not None:
        return got
    a, b = _node(imp, 0, "input A"), _node(imp, 1, "input B")
    if n.op_type == "Greater":
        return [lazy(ops.step(ops.sub(a, b)))]
    if n.op_type == "Less":
        return [lazy(ops.step(ops.sub(b, a)))]
    return [lazy(ops.mul(a, b) if n.op_type == "And" else ops.maximum(a, b))]


@rule("Equal")
def _equal(imp: Importer, n: Any) -> list:
    """a == c for a finite constant c: a - c is 0 exactly then (and NaN or nonzero else)."""
    got = _folded(imp, n)
    if got is not None:
        return got
    known = [i for i in (0, 1) if not isinstance(imp.get(i), Lazy)]
    const = imp.concrete(imp.get(known[0]), "a constant operand") if known else None
    if const is None or const.dtype.kind != "f" or not np.all(np.isfinite(const)):
        raise imp.error("Equal is supported between a float tensor and a finite float constant")
    a, c = _node(imp, 1 - known[0], "the computed operand"), _node(imp, known[0], "constant")
    return [lazy(ops.where(ops.sub(a, c), 0.0, 1.0))]


@rule("Where")
def _where(imp: Importer, n: Any) -> list:
    got = _folded(imp, n)
    if got is not None:
        return got
    branches = [imp.node_of(imp.lazy(i, f"input {i}")) for i in (1, 2)]
    return [lazy(ops.where(_node(imp, 0, "condition"), *branches))]


__all__ = ["is_nan"]
