"""Import rules for arithmetic: elementwise ops, activations, softmax, MatMul and Gemm."""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..ir import Node, Op
from .importer import Importer, rule
from .values import Lazy, lazy, same_layout

_NUMPY_BINARY = {"Add": np.add, "Sub": np.subtract, "Mul": np.multiply, "Div": np.divide}
_BINARY = {"Add": Op.ADD, "Sub": Op.SUB, "Mul": Op.MUL, "Div": Op.DIV}
_UNARY = {"Sigmoid": Op.SIGMOID, "Tanh": Op.TANH, "Relu": Op.RELU, "Neg": Op.NEG,
          "Exp": Op.EXP, "Log": Op.LOG}


def _float(imp: Importer, v: Lazy, what: str) -> None:
    if v.dtype != "float32":
        raise imp.error(f"{what} is {v.dtype}; graphrnn computes this op in float32 only")


@rule("Add", "Sub", "Mul", "Div")
def _binary(imp: Importer, n: Any) -> list:
    a, b = imp.get(0), imp.get(1)
    if not isinstance(a, Lazy) and not isinstance(b, Lazy):
        a, b = imp.concrete(a, "operand"), imp.concrete(b, "operand")
        imp.check_size(np.broadcast_shapes(a.shape, b.shape), "a folded result")
        if a.dtype.kind in "iu" and b.dtype.kind in "iu" and n.op_type == "Div":
            return [np.asarray(np.trunc(a / b)).astype(np.int64)]
        return [np.asarray(_NUMPY_BINARY[n.op_type](a, b))]
    x, y = imp.lazy(0, "A"), imp.lazy(1, "B")
    _float(imp, x, "input A")
    _float(imp, y, "input B")
    if x.rank == y.rank:
        (xn, yn), perm = same_layout([x, y], imp.where)
        return [Lazy(ops.make(_BINARY[n.op_type], [xn, yn]), perm)]
    # broadcasting aligns trailing axes: read through a permutation that keeps them in place
    big, small = (x, y) if x.rank > y.rank else (y, x)
    k = small.rank
    if k == 0 or big.perm[big.rank - k:] == tuple(range(big.rank - k, big.rank)):
        sn = imp.node_of(small)
        args = [big.node, sn] if big is x else [sn, big.node]
        return [Lazy(ops.make(_BINARY[n.op_type], args), big.perm)]
    args = [imp.node_of(x), imp.node_of(y)]
    return [lazy(ops.make(_BINARY[n.op_type], args))]


@rule("Sigmoid", "Tanh", "Relu", "Neg", "Exp", "Log")
def _unary(imp: Importer, n: Any) -> list:
    x = imp.lazy(0, "X")
    _float(imp, x, "input X")
    return [Lazy(ops.make(_UNARY[n.op_type], [x.node]), x.perm)]


@rule("Softmax", "LogSoftmax")
def _softmax(imp: Importer, n: Any) -> list:
    x = imp.lazy(0, "input")
    _float(imp, x, "input")
    fn = ops.softmax if n.op_type == "Softmax" else ops.log_softmax
    axis = int(imp.attr("axis", -1 if imp.opset >= 13 else 1)) % max(x.rank, 1)
    if imp.opset < 13 and axis != x.rank - 1:
        # before opset 13 the input is seen as 2-D [prod(dims[:axis]), prod(dims[axis:])]
        node = imp.node_of(x)
        shape = node.type.shape
        tail = shape[axis:]
        if not all(isinstance(d, int) for d in tail):
            raise imp.error(f"axis={axis} (opset {imp.opset}) flattens symbolic dims {tail}")
        flat = ops.reshape(node, shape[:axis] + (int(np.prod(tail)),))
        return [lazy(ops.reshape(fn(flat, -1), shape))]
    return [Lazy(fn(x.node, x.under_axis(axis)), x.perm)]


def _matmul_nodes(imp: Importer, a: Node, b: Node, transpose_b: bool = False) -> Node:
    """a @ b with numpy's rules for 1-D operands; b must be a matrix (or a vector)."""
    if b.type.rank == 1:
        k = b.type.shape[0]
        b2 = ops.reshape(b, (1, k) if transpose_b else (k, 1))
        return _squeeze_last(_matmul_nodes(imp, a, b2, transpose_b))
    if b.type.rank != 2:
        raise imp.error(f"a batched matmul (B of rank {b.type.rank}, {b.type}) is not "
                        "supported: graphrnn's matmul takes a matrix as right operand")
    if a.type.rank == 1:
        out = ops.matmul(ops.reshape(a, (1,) + a.type.shape), b, transpose_b=transpose_b)
        return ops.reshape(out, out.type.shape[1:])
    return ops.matmul(a, b, transpose_b=transpose_b)


def _squeeze_last(x: Node) -> Node:
    return ops.reshape(x, x.type.shape[:-1])


@rule("MatMul")
def _matmul(imp: Importer, n: Any) -> list:
    a, b = imp.lazy(0, "A"), imp.lazy(1, "B")
    _float(imp, a, "input A")
    _float(imp, b, "input B")
    if b.rank == 2 and b.perm == (1, 0):       # a transposed weight: read it as stored
        bn, tb = b.node, True
    else:
        bn, tb = imp.node_of(b), False
    if a.rank >= 2 and a.perm[-1] == a.rank - 1 and b.rank == 2:
        return [Lazy(_matmul_nodes(imp, a.node, bn, tb), a.perm)]
    return [lazy(_matmul_nodes(imp, imp.node_of(a), bn, tb))]


@rule("Gemm")
def _gemm(imp: Importer, n: Any) -> list:
    """Y = alpha * A' @ B' + beta * C, A' = A or A^T, B' = B or B^T."""
    a, b = imp.lazy(0, "A"), imp.lazy(1, "B")
    if a.rank != 2 or b.rank != 2:
        raise imp.error(f"A and B must be matrices, got {list(a.shape)} and {list(b.shape)}")
    _float(imp, a, "input A")
    _float(imp, b, "input B")
    if imp.attr("transA", 0):
        a = a.transposed((1, 0))
    if imp.attr("transB", 0):
        b = b.transposed((1, 0))
    bn, tb = (b.node, True) if b.perm == (1, 0) else (imp.node_of(b), False)
    y = ops.matmul(imp.node_of(a), bn, transpose_b=tb)
    alpha, beta = float(imp.attr("alpha", 1.0)), float(imp.attr("beta", 1.0))
    if alpha != 1.0:
        y = ops.mul(y, alpha)
    c = imp.get(2)
    if c is not None and beta != 0.0:
        cn = imp.node_of(imp.lazy(2, "C"))
        if beta != 1.0:
            cn = ops.mul(cn, beta)
        y = ops.add(y, cn)
    return [lazy(y)]


__all__: list[str] = []
