"""The type rules of the ops without a body (TENSOR_RULES), and each op's arity (ARITY).

Each rule takes the node and its input types and returns the node's type (and, for a few ops,
normalised attrs such as a non-negative axis). infer.py completes the table with the rules of
LOOP and FUSED, which type their bodies, as SHAPE_RULES, and runs it over whole graphs.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .ir import (ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Dim, Node, NodeType, Op, ShapeError,
                 TensorType, node_error, type_str)
from .row_ops import ROW_OP_ARITY, ROW_OP_TYPES

F32, I64 = "float32", "int64"

# ----------------------------------------------------------------------------- rules

def _dims_equal(a: Dim, b: Dim) -> bool:
    return a == b


def broadcast_shapes(a: tuple[Dim, ...], b: tuple[Dim, ...], node: Node) -> tuple[Dim, ...]:
    """numpy broadcasting, with symbols: equal dims, or a 1 on one side."""
    out: list[Dim] = []
    for i in range(1, max(len(a), len(b)) + 1):
        x = a[-i] if i <= len(a) else 1
        y = b[-i] if i <= len(b) else 1
        if _dims_equal(x, y) or y == 1:
            out.append(x)
        elif x == 1:
            out.append(y)
        else:
            raise node_error(node, f"cannot broadcast shapes {list(a)} and {list(b)}",
                             ShapeError)
    return tuple(reversed(out))


def _axis(node: Node, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise node_error(node, f"axis {axis} is out of range for rank {rank}", ShapeError)
    return axis % rank


def _need(node: Node, t: TensorType, dtype: str, what: str = "input") -> None:
    if t.dtype != dtype:
        raise node_error(node, f"expected {what} of dtype {dtype}, got {t}", ShapeError)


def _unary(node: Node, ts: list[TensorType]) -> TensorType:
    _need(node, ts[0], F32)
    return ts[0]


def _binary(node: Node, ts: list[TensorType]) -> TensorType:
    for t in ts:
        _need(node, t, F32)
    return TensorType(broadcast_shapes(ts[0].shape, ts[1].shape, node), F32)


def _matmul(node: Node, ts: list[TensorType]) -> TensorType:
    a, b = ts
    _need(node, a, F32)
    _need(node, b, F32)
    if a.rank < 1 or b.rank != 2:
        raise node_error(node, f"matmul needs a[..., K] and a matrix, got {a} and {b}",
                         ShapeError)
    k, n = (b.shape[1], b.shape[0]) if node.attrs.get("transpose_b") else b.shape
    if not _dims_equal(a.shape[-1], k):
        raise node_error(node, f"expected input with last dim {k}, got {a} "
                         f"(weight {b}{', transposed' if node.attrs.get('transpose_b') else ''})",
                         ShapeError)
    return TensorType(a.shape[:-1] + (n,), F32)


def _bmm(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    a, b = ts
    _need(node, a, F32)
    _need(node, b, F32)
    ta, tb = bool(node.attrs.get("transpose_a")), bool(node.attrs.get("transpose_b"))
    if a.rank < 2 or b.rank != a.rank or a.shape[:-2] != b.shape[:-2]:
        raise node_error(node, f"a batched matrix product needs a[..., n, k] and b[..., k, m] "
                         f"with the same leading dims, got {a} and {b}", ShapeError)
    n, k = (a.shape[-1], a.shape[-2]) if ta else a.shape[-2:]
    k2, m = (b.shape[-1], b.shape[-2]) if tb else b.shape[-2:]
    if not _dims_equal(k, k2):
        raise node_error(node, f"inner dims differ: {a}{' transposed' if ta else ''} @ "
                         f"{b}{' transposed' if tb else ''} ({k} against {k2})", ShapeError)
    return TensorType(a.shape[:-2] + (n, m), F32), {"transpose_a": ta, "transpose_b": tb}


def _reduce(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    _need(node, t, F32)
    axes = node.attrs.get("axes")
    axes = tuple(range(t.rank)) if axes is None else tuple(sorted(
        _axis(node, a, t.rank) for a in axes))
    keep = bool(node.attrs.get("keepdims", False))
    shape = tuple((1 if keep else None) if i in axes else d for i, d in enumerate(t.shape))
    return TensorType(tuple(d for d in shape if d is not None), F32), {"axes": axes,
                                                                      "keepdims": keep}


def _softmax(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    _need(node, ts[0], F32)
    return ts[0], {"axis": _axis(node, node.attrs.get("axis", -1), ts[0].rank)}


def _lookup(node: Node, ts: list[TensorType]) -> TensorType:
    w, ids = ts
    _need(node, w, F32, "weight")
    _need(node, ids, I64, "ids")
    if w.rank != 2:
        raise node_error(node, f"lookup table must be a matrix, got {w}", ShapeError)
    return TensorType(ids.shape + (w.shape[1],), F32)


def _pick(node: Node, ts: list[TensorType]) -> TensorType:
    x, idx = ts
    _need(node, x, F32)
    _need(node, idx, I64, "class indices")
    if x.shape[:-1] != idx.shape:
        raise node_error(node, f"expected indices of shape {list(x.shape[:-1])}, got {idx}",
                         ShapeError)
    return TensorType(x.shape[:-1], F32)


def _concat(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    if not ts:
        raise node_error(node, "concat needs at least one input", ShapeError)
    r = ts[0].rank
    axis = _axis(node, node.attrs["axis"], r)
    total = 0
    for i, t in enumerate(ts):
        if t.rank != r or t.dtype != ts[0].dtype:
            raise node_error(node, f"input {i} is {t}, expected rank {r} {ts[0].dtype}",
                             ShapeError)
        for j, (x, y) in enumerate(zip(t.shape, ts[0].shape)):
            if j != axis and not _dims_equal(x, y):
                raise node_error(node, f"input {i} is {t}, expected dim {j} = {y} like "
                                 f"input 0 ({ts[0]})", ShapeError)
        if not isinstance(t.shape[axis], int):
            raise node_error(node, f"cannot join along symbolic dim {t.shape[axis]!r}",
                             ShapeError)
        total += t.shape[axis]
    shape = list(ts[0].shape)
    shape[axis] = total
    return TensorType(tuple(shape), ts[0].dtype), {"axis": axis}


def _slice(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    axis = _axis(node, node.attrs["axis"], t.rank)
    start, length = int(node.attrs["start"]), int(node.attrs["length"])
    d = t.shape[axis]
    if start < 0 or length < 1 or (isinstance(d, int) and start + length > d):
        raise node_error(node, f"cannot take [{start}, {start + length}) of dim {axis} of {t}",
                         ShapeError)
    shape = list(t.shape)
    shape[axis] = length
    return TensorType(tuple(shape), t.dtype), {"axis": axis, "start": start, "length": length}


def _index(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    axis = _axis(node, node.attrs["axis"], t.rank)
    i, d = int(node.attrs["index"]), t.shape[axis]
    if i < 0 or (isinstance(d, int) and i >= d):
        raise node_error(node, f"index {i} is out of range for dim {axis} of {t}", ShapeError)
    return TensorType(t.shape[:axis] + t.shape[axis + 1:], t.dtype), {"axis": axis, "index": i}


def _reshape(node: Node, ts: list[TensorType]) -> TensorType:
    t = ts[0]
    shape = tuple(node.attrs["shape"])
    sym_in = sorted(d for d in t.shape if isinstance(d, str))
    sym_out = sorted(d for d in shape if isinstance(d, str))
    size_in = int(np.prod([d for d in t.shape if isinstance(d, int)], dtype=np.int64))
    size_out = int(np.prod([d for d in shape if isinstance(d, int)], dtype=np.int64))
    if sym_in != sym_out or size_in != size_out:
        raise node_error(node, f"cannot reshape {t} to {list(shape)}", ShapeError)
    return TensorType(shape, t.dtype)


def _transpose(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    if t.rank < 2:
        raise node_error(node, f"transpose needs at least 2 dims, got {t}", ShapeError)
    d0 = _axis(node, node.attrs["dim0"], t.rank)
    d1 = _axis(node, node.attrs["dim1"], t.rank)
    shape = list(t.shape)
    shape[d0], shape[d1] = shape[d1], shape[d0]
    return TensorType(tuple(shape), t.dtype), {"dim0": d0, "dim1": d1}


def _shift(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    _need(node, t, F32)
    if t.rank < 1:
        raise node_error(node, f"cannot shift a scalar {t}", ShapeError)
    return t, {"axis": _axis(node, node.attrs["axis"], t.rank), "by": int(node.attrs["by"])}


def _dropout(node: Node, ts: list[TensorType]) -> TensorType:
    _need(node, ts[0], F32)
    return ts[0]


def _leaf(node: Node, ts: list[TensorType]) -> NodeType:
    return node.type


def _param(node: Node, ts: list[TensorType]) -> TensorType:
    return TensorType(node.param.shape, F32)


def _const(node: Node, ts: list[TensorType]) -> TensorType:
    v = node.attrs["value"]
    return TensorType(v.shape, I64 if v.dtype.kind in "iu" else F32)


def _fill(node: Node, ts: list[TensorType]) -> TensorType:
    lead = (ts[0].shape[0],) if ts else ()
    return TensorType(lead + tuple(node.attrs["shape"]), node.attrs.get("dtype", F32))


def _get(node: Node, ts: list[NodeType]) -> TensorType:
    t, i = ts[0], node.attrs["index"]
    if not isinstance(t, tuple) or not 0 <= i < len(t):
        raise node_error(node, f"cannot take part {i} of {type_str(t)}", ShapeError)
    return t[i]


def _view(node: Node, ts: list[TensorType]) -> TensorType:
    return TensorType(tuple(node.attrs["shape"]), F32)


def _where(node: Node, ts: list[TensorType]) -> TensorType:
    """A float mask choosing between two float values, or two int64 values (ids)."""
    _need(node, ts[0], F32)
    dtype = ts[1].dtype
    for t in ts[1:]:
        _need(node, t, dtype)
    shape = broadcast_shapes(broadcast_shapes(ts[0].shape, ts[1].shape, node), ts[2].shape, node)
    return TensorType(shape, dtype)


def _seq_mask(node: Node, ts: list[TensorType]) -> TensorType:
    like = ts[0]
    if like.rank < 2:
        raise node_error(node, f"expected a sequence [B, T, ...], got {like}", ShapeError)
    if len(ts) > 1 and (ts[1].dtype != I64 or ts[1].rank != 1):
        raise node_error(node, f"lengths must be i64[B], got {ts[1]}", ShapeError)
    return TensorType(like.shape[:2], F32)


def _contract(node: Node, ts: list[TensorType]) -> TensorType:
    a, b = ts
    _need(node, a, F32)
    _need(node, b, F32)
    if a.rank < 1 or a.shape[:-1] != b.shape[:-1]:
        raise node_error(node, f"contract needs equal leading dims, got {a} and {b}", ShapeError)
    k, n = a.shape[-1], b.shape[-1]
    return TensorType((n, k) if node.attrs.get("transpose_out") else (k, n), F32)


def _expand(node: Node, ts: list[TensorType]) -> TensorType:
    x, ref = ts
    if broadcast_shapes(x.shape, ref.shape, node) != ref.shape:
        raise node_error(node, f"cannot expand {x} to {ref}", ShapeError)
    return TensorType(ref.shape, x.dtype)


def _pad(node: Node, ts: list[TensorType]) -> tuple[TensorType, dict]:
    t = ts[0]
    axis = _axis(node, node.attrs["axis"], t.rank)
    d = t.shape[axis]
    if not isinstance(d, int):
        raise node_error(node, f"cannot pad symbolic dim {d!r} of {t}", ShapeError)
    shape = list(t.shape)
    shape[axis] = d + int(node.attrs["before"]) + int(node.attrs["after"])
    return TensorType(tuple(shape), t.dtype), {"axis": axis}


def _scatter(node: Node, ts: list[TensorType]) -> TensorType:
    g, ids = ts
    _need(node, g, F32)
    _need(node, ids, I64, "ids")
    if g.shape[:-1] != ids.shape:
        raise node_error(node, f"expected rows for ids {ids}, got {g}", ShapeError)
    return TensorType((int(node.attrs["n"]), g.shape[-1]), F32)


def _onehot(node: Node, ts: list[TensorType]) -> TensorType:
    _need(node, ts[0], I64, "class indices")
    return TensorType(ts[0].shape + (int(node.attrs["n"]),), F32)


def _assemble(node: Node, ts: list[TensorType]) -> TensorType:
    size = int(node.attrs["size"])
    for t, off in zip(ts, node.attrs["offsets"]):
        if t.rank != 1 or not isinstance(t.shape[0], int) or off + t.shape[0] > size:
            raise node_error(node, f"part {t} at {off} does not fit f32[{size}]", ShapeError)
    return TensorType((size,), F32)


def _sample(node: Node, ts: list[TensorType]) -> TensorType:
    logits, u, temp = ts
    for t in ts:
        _need(node, t, F32)
    if logits.rank != 2 or u.shape != logits.shape[:1] or temp.rank != 0:
        raise node_error(node, f"expected logits [B, C], u [B] and a scalar temperature, got "
                         f"{logits}, {u}, {temp}", ShapeError)
    return TensorType(logits.shape[:1], I64)


def _astype(node: Node, ts: list[TensorType]) -> TensorType:
    dtype = node.attrs["dtype"]
    if dtype not in (F32, I64) or dtype == ts[0].dtype:
        raise node_error(node, f"astype turns float32 into int64 or back, not {ts[0]} into "
                         f"{dtype}", ShapeError)
    return TensorType(ts[0].shape, dtype)


# The rules of the ops without a body; infer.py adds LOOP and FUSED, whose rules type the body.
TENSOR_RULES: dict[Op, Callable[[Node, list], Any]] = {
    Op.INPUT: _leaf, Op.PARAM: _param, Op.CONST: _const, Op.FILL: _fill,
    **{op: _unary for op in ELEMENTWISE_UNARY},
    **{op: _binary for op in ELEMENTWISE_BINARY},
    Op.MATMUL: _matmul, Op.BMM: _bmm, Op.SUM: _reduce, Op.MEAN: _reduce,
    Op.SOFTMAX: _softmax, Op.LOG_SOFTMAX: _softmax,
    Op.LOOKUP: _lookup, Op.PICK: _pick,
    Op.CONCAT: _concat, Op.SLICE: _slice, Op.INDEX: _index, Op.RESHAPE: _reshape,
    Op.TRANSPOSE: _transpose, Op.SHIFT: _shift,
    Op.DROPOUT: _dropout, Op.GET: _get, Op.VIEW: _view,
    Op.WHERE: _where, Op.SEQ_MASK: _seq_mask, Op.CONTRACT: _contract, Op.EXPAND: _expand,
    Op.PAD: _pad, Op.SCATTER: _scatter, Op.ONEHOT: _onehot, Op.ASSEMBLE: _assemble,
    Op.SAMPLE: _sample, **ROW_OP_TYPES, Op.ASTYPE: _astype,
}

# (fewest, most) inputs of each op; None: any number.
ARITY: dict[Op, tuple[int, int | None]] = {
    Op.INPUT: (0, 0), Op.PARAM: (0, 0), Op.CONST: (0, 0), Op.FILL: (0, 1),
    **{op: (1, 1) for op in ELEMENTWISE_UNARY},
    **{op: (2, 2) for op in ELEMENTWISE_BINARY},
    Op.WHERE: (3, 3),
    Op.MATMUL: (2, 2), Op.BMM: (2, 2), Op.SUM: (1, 1), Op.MEAN: (1, 1),
    Op.SOFTMAX: (1, 1), Op.LOG_SOFTMAX: (1, 1),
    Op.LOOKUP: (2, 2), Op.PICK: (2, 2),
    Op.CONCAT: (1, None), Op.SLICE: (1, 1), Op.INDEX: (1, 1), Op.RESHAPE: (1, 1),
    Op.TRANSPOSE: (1, 1), Op.SHIFT: (1, 1),
    Op.DROPOUT: (1, 1), Op.LOOP: (0, None), Op.GET: (1, 1), Op.VIEW: (1, 1),
    Op.FUSED: (0, None),
    Op.SEQ_MASK: (1, 2), Op.CONTRACT: (2, 2), Op.EXPAND: (2, 2), Op.PAD: (1, 1),
    Op.SCATTER: (2, 2), Op.ONEHOT: (1, 1), Op.ASSEMBLE: (0, None), Op.SAMPLE: (3, 3),
    **ROW_OP_ARITY,
    Op.ASTYPE: (1, 1),
}


__all__ = ["TENSOR_RULES", "ARITY", "broadcast_shapes", "F32", "I64"]
