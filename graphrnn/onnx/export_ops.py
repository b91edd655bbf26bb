"""ONNX counterparts of graphrnn's primitive ops (all but the loop): one rule per op.

A rule takes the Emitter, the IR node and its inputs' ONNX names, and returns the node's name.
Sequences stay batch-first `[B, T, ...]`, as in the user's graph.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import LoweringError, Node, Op, node_error
from .emitter import EXPORT_RULES, Emitter

UNARY = {Op.NEG: "Neg", Op.EXP: "Exp", Op.LOG: "Log", Op.TANH: "Tanh", Op.SIGMOID: "Sigmoid",
         Op.RELU: "Relu"}
BINARY = {Op.ADD: "Add", Op.SUB: "Sub", Op.MUL: "Mul", Op.DIV: "Div"}


def _hint(n: Node) -> str:
    return n.name or n.op.value


def _ints(em: Emitter, values: Any, hint: str = "axes") -> str:
    return em.const(np.asarray(values, np.int64).reshape(-1), hint)


def _unary(em: Emitter, n: Node, a: list) -> str:
    return em.one(UNARY[n.op], a, _hint(n))


def _binary(em: Emitter, n: Node, a: list) -> str:
    return em.one(BINARY[n.op], a, _hint(n))


def _matmul(em: Emitter, n: Node, a: list) -> str:
    b = em.one("Transpose", [a[1]], f"{_hint(n)}_wT", perm=[1, 0]) \
        if n.attrs.get("transpose_b") else a[1]
    return em.one("MatMul", [a[0], b], _hint(n))


def _reduce(em: Emitter, n: Node, a: list) -> str:
    axes, keep = n.attrs.get("axes"), int(bool(n.attrs.get("keepdims")))
    if n.op == Op.SUM:
        ins = a + ([_ints(em, axes)] if axes is not None else [])
        return em.one("ReduceSum", ins, _hint(n), keepdims=keep)
    extra = {"axes": list(axes)} if axes is not None else {}
    return em.one("ReduceMean", a, _hint(n), keepdims=keep, **extra)


def _softmax(em: Emitter, n: Node, a: list) -> str:
    kind = "Softmax" if n.op == Op.SOFTMAX else "LogSoftmax"
    return em.one(kind, a, _hint(n), axis=int(n.attrs["axis"]))


def _pick(em: Emitter, n: Node, a: list) -> str:
    """x[..., C], idx[...] -> x[..., idx]."""
    last = _ints(em, [-1])
    idx = em.one("Unsqueeze", [a[1], last], "pick_idx")
    got = em.one("GatherElements", [a[0], idx], "picked", axis=-1)
    return em.one("Squeeze", [got, last], _hint(n))


def _slice(em: Emitter, n: Node, a: list) -> str:
    start, length, axis = n.attrs["start"], n.attrs["length"], n.attrs["axis"]
    return em.one("Slice", [a[0], _ints(em, [start], "starts"),
                            _ints(em, [start + length], "ends"), _ints(em, [axis])], _hint(n))


def _index(em: Emitter, n: Node, a: list) -> str:
    i = em.const(np.int64(n.attrs["index"]), "index")
    return em.one("Gather", [a[0], i], _hint(n), axis=int(n.attrs["axis"]))


def _dims(em: Emitter, n: Node, x: str, dims: tuple, source: tuple) -> str:
    """A shape tensor for `dims`: ints as they are, symbols read from `x` where `source` (x's
    declared shape) has them, so one file serves every batch size and length."""
    if all(isinstance(d, int) for d in dims):
        return _ints(em, dims, "shape")
    shape = em.one("Shape", [x], "shape_of")
    parts = []
    for d in dims:
        if isinstance(d, int):
            parts.append(_ints(em, [d], "dim"))
        elif d in source:
            parts.append(em.one("Gather", [shape, _ints(em, [source.index(d)], "at")], "dim"))
        else:
            raise node_error(n, f"the dim {d!r} is not a dim of the input {source}: no ONNX "
                                "shape for it", LoweringError)
    return em.one("Concat", parts, "shape", axis=0)


def _reshape(em: Emitter, n: Node, a: list) -> str:
    source = n.inputs[0].type.shape if n.inputs[0].type is not None else ()
    shape = tuple(n.attrs["shape"])
    # a 0 in ONNX's shape means "as the input" unless allowzero
    zero = {"allowzero": 1} if 0 in shape else {}
    return em.one("Reshape", [a[0], _dims(em, n, a[0], shape, source)], _hint(n), **zero)


def _fill(em: Emitter, n: Node, a: list) -> str:
    shape = tuple(n.attrs["shape"])
    dtype = np.int64 if n.attrs.get("dtype") == "int64" else np.float32
    if not a:
        if not all(isinstance(d, int) for d in shape):
            raise node_error(n, f"a fill of symbolic shape {shape} needs batch_like",
                             LoweringError)
        return em.const(np.full(shape, n.attrs["value"], dtype), _hint(n))
    batch = em.one("Slice", [em.one("Shape", [a[0]], "shape_of"), _ints(em, [0], "starts"),
                             _ints(em, [1], "ends")], "batch")
    dims = em.one("Concat", [batch, _ints(em, shape, "shape")], "fill_shape", axis=0) \
        if shape else batch
    fill = em.onnx.numpy_helper.from_array(np.array([n.attrs["value"]], dtype))
    return em.one("ConstantOfShape", [dims], _hint(n), value=fill)


def _float(em: Emitter, x: str, hint: str) -> str:
    return em.one("Cast", [x], hint, to=em.onnx.TensorProto.FLOAT)


def _where(em: Emitter, n: Node, a: list) -> str:
    zero = em.const(np.zeros((), np.int64 if n.inputs[0].type and
                             n.inputs[0].type.dtype == "int64" else np.float32), "zero")
    mask = em.one("Not", [em.one("Equal", [a[0], zero], "is_zero")], "mask")
    return em.one("Where", [mask] + a[1:], _hint(n))


def _pad(em: Emitter, n: Node, a: list) -> str:
    rank = n.inputs[0].type.rank
    pads = [0] * (2 * rank)
    axis = n.attrs["axis"] % rank
    pads[axis], pads[rank + axis] = n.attrs["before"], n.attrs["after"]
    return em.one("Pad", [a[0], _ints(em, pads, "pads")], _hint(n))


def _onehot(em: Emitter, n: Node, a: list) -> str:
    values = em.const(np.array([0.0, 1.0], np.float32), "off_on")
    return em.one("OneHot", [a[0], _ints(em, n.attrs["n"], "depth"), values], _hint(n), axis=-1)


def _contract(em: Emitter, n: Node, a: list) -> str:
    """a[..., K], b[..., N] -> a^T b summed over the leading dims: [K, N]."""
    rows = [em.one("Reshape", [x, _ints(em, [-1, t.shape[-1]], "shape")], "rows")
            for x, t in zip(a, (n.inputs[0].type, n.inputs[1].type))]
    if n.attrs.get("transpose_out"):
        rows = rows[::-1]
    return em.one("MatMul", [em.one("Transpose", [rows[0]], "cols", perm=[1, 0]), rows[1]],
                  _hint(n))


def _scatter(em: Emitter, n: Node, a: list) -> str:
    d = n.inputs[0].type.shape[-1]
    rows = em.one("Reshape", [a[0], _ints(em, [-1, d], "shape")], "rows")
    ids = em.one("Reshape", [a[1], _ints(em, [-1, 1], "shape")], "ids")
    zeros = em.const(np.zeros((n.attrs["n"], d), np.float32), "zeros")
    return em.one("ScatterND", [zeros, ids, rows], _hint(n), reduction="add")


def _seq_mask(em: Emitter, n: Node, a: list) -> str:
    """f32[B, T]: 1 where t < lengths[b] (and t % every != 0)."""
    shape = em.one("Shape", [a[0]], "shape_of")
    steps = em.one("Gather", [shape, em.const(np.int64(1), "one")], "steps", axis=0)
    t = em.one("Range", [em.const(np.int64(0), "zero"), steps, em.const(np.int64(1), "one")],
               "t")
    t_row = em.one("Unsqueeze", [t, _ints(em, [0])], "t_row")
    ones = em.one("ConstantOfShape", [em.one("Slice", [shape, _ints(em, [0], "starts"),
                                                       _ints(em, [2], "ends")], "bt")],
                  "ones", value=em.onnx.numpy_helper.from_array(np.ones(1, np.float32)))
    keep = ones
    if len(a) > 1:
        col = em.one("Unsqueeze", [a[1], _ints(em, [1])], "len_col")
        keep = em.one("Mul", [keep, _float(em, em.one("Less", [t_row, col], "live"), "livef")],
                      "keep")
    if n.attrs.get("every"):
        mod = em.one("Mod", [t_row, em.const(np.int64(n.attrs["every"]), "every")], "phase")
        border = em.one("Equal", [mod, em.const(np.int64(0), "zero")], "border")
        keep = em.one("Mul", [keep, _float(em, em.one("Not", [border], "inner"), "innerf")],
                      "keep")
    return em.one("Identity", [keep], _hint(n))


def _get(em: Emitter, n: Node, a: list) -> str:
    return a[0][n.attrs["index"]]


EXPORT_RULES.update({op: _unary for op in UNARY})
EXPORT_RULES.update({op: _binary for op in BINARY})
EXPORT_RULES.update({
    Op.PARAM: lambda em, n, a: em.param(n),
    Op.CONST: lambda em, n, a: em.const(n.attrs["value"], _hint(n)),
    Op.FILL: _fill,
    Op.MATMUL: _matmul,
    Op.SUM: _reduce,
    Op.MEAN: _reduce,
    Op.SOFTMAX: _softmax,
    Op.LOG_SOFTMAX: _softmax,
    Op.LOOKUP: lambda em, n, a: em.one("Gather", a, _hint(n), axis=0),
    Op.PICK: _pick,
    Op.CONCAT: lambda em, n, a: em.one("Concat", a, _hint(n), axis=int(n.attrs["axis"])),
    Op.SLICE: _slice,
    Op.INDEX: _index,
    Op.RESHAPE: _reshape,
    Op.DROPOUT: lambda em, n, a: em.one("Identity", a, _hint(n)),   # inference
    Op.GET: _get,
    Op.STEP: lambda em, n, a: _float(em, em.one("Greater", [a[0], em.const(np.float32(0))],
                                               "positive"), _hint(n)),
    Op.WHERE: _where,
    Op.EXPAND: lambda em, n, a: em.one("Expand", [a[0], em.one("Shape", [a[1]], "shape_of")],
                                       _hint(n)),
    Op.PAD: _pad,
    Op.ONEHOT: _onehot,
    Op.CONTRACT: _contract,
    Op.SCATTER: _scatter,
    Op.SEQ_MASK: _seq_mask,
})

__all__ = ["UNARY", "BINARY"]
