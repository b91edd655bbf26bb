"""Import rules for structure: constants, shapes, casts, indexing, joins and reshapes.

Each rule computes in numpy when its data is known at import time (shape arithmetic, folded
constants), and otherwise emits nodes read through the input's lazy transpose (values.py).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx

from .. import ops
from ..ir import Dim
from .importer import Importer, rule
from .proto import tensor_to_array
from .values import MAX_TRANSPOSE_PIECES as MAX_PIECES
from .values import Lazy, lazy, same_layout


def _axes(imp: Importer, attr_input: int, what: str = "axes") -> list[int] | None:
    """Axes from the attribute (old opsets) or the input `attr_input` (new ones)."""
    a = imp.attr(what)
    if a is not None:
        return [int(x) for x in a]
    v = imp.static(attr_input, what)
    return None if v is None else [int(x) for x in imp.concrete(v, what).reshape(-1)]


@rule("Identity")
def _identity(imp: Importer, n: Any) -> list:
    return [imp.get(0)]


@rule("Constant")
def _constant(imp: Importer, n: Any) -> list:
    for a in n.attribute:
        if a.name == "value":
            return [tensor_to_array(a.t, f"{imp.where} value")]
        if a.name in ("value_float", "value_int"):
            return [np.asarray(onnx.helper.get_attribute_value(a),
                               np.float32 if a.name == "value_float" else np.int64)]
        if a.name in ("value_floats", "value_ints"):
            return [np.asarray(list(onnx.helper.get_attribute_value(a)),
                               np.float32 if a.name == "value_floats" else np.int64)]
    raise imp.error("only value, value_float(s) and value_int(s) constants are supported")


_CASTS = {onnx.TensorProto.FLOAT: np.float32, onnx.TensorProto.INT64: np.int64,
          onnx.TensorProto.INT32: np.int64, onnx.TensorProto.DOUBLE: np.float32}


@rule("Cast")
def _cast(imp: Importer, n: Any) -> list:
    to = int(imp.attr("to", 0))
    if to not in _CASTS:
        raise imp.error(f"cast to {onnx.TensorProto.DataType.Name(to)} is not supported "
                        "(float or int64)")
    x = imp.get(0)
    if not isinstance(x, Lazy):
        if x.dtype == object:
            return [x] if _CASTS[to] is np.int64 else [imp.concrete(x, "input").astype(_CASTS[to])]
        return [x.astype(_CASTS[to])]
    want = "float32" if _CASTS[to] is np.float32 else "int64"
    if x.dtype != want:     # graphrnn's astype: NaN gives 0, out-of-range floats saturate
        return [Lazy(ops.astype(x.node, want), x.perm)]
    return [x]


@rule("Shape")
def _shape(imp: Importer, n: Any) -> list:
    x = imp.get(0)
    shape = list(x.shape)
    start, end = int(imp.attr("start", 0)), imp.attr("end")
    shape = shape[start:] if end is None else shape[start:int(end)]
    if all(isinstance(d, int) for d in shape):
        return [np.asarray(shape, np.int64)]
    return [np.asarray(shape, dtype=object)]


@rule("ConstantOfShape")
def _constant_of_shape(imp: Importer, n: Any) -> list:
    shape = list(imp.static(0, "shape").reshape(-1))
    a = next((a for a in n.attribute if a.name == "value"), None)
    value = tensor_to_array(a.t, f"{imp.where} value").reshape(-1) if a is not None \
        else np.zeros(1, np.float32)
    symbols = [i for i, d in enumerate(shape) if isinstance(d, str)]
    if not symbols:
        imp.check_size(shape, "a constant")
        return [np.full([int(d) for d in shape], value[0], dtype=value.dtype)]
    if len(symbols) > 1 or value.dtype.kind != "f":
        raise imp.error(f"a float tensor of shape {shape} needs one symbolic dim, the batch "
                        "dim of an input")
    s = symbols[0]
    rest = tuple(int(d) for i, d in enumerate(shape) if i != s)
    node = ops.fill(rest, float(value[0]), batch_like=imp.batch_like(shape[s]))
    perm = tuple(0 if i == s else i + (i < s) for i in range(len(shape)))
    return [Lazy(node, perm)]


@rule("Gather")
def _gather(imp: Importer, n: Any) -> list:
    data, idx = imp.get(0), imp.get(1)
    axis = int(imp.attr("axis", 0))
    if not isinstance(data, Lazy) and not isinstance(idx, Lazy):
        ids = imp.concrete(idx, "indices")
        axis %= max(data.ndim, 1)
        imp.check_size(data.shape[:axis] + ids.shape + data.shape[axis + 1:], "a folded Gather")
        n = data.shape[axis] if data.ndim else 0
        if ids.size and (ids.min() < -n or ids.max() >= n):
            raise imp.error(f"indices {ids.min()}..{ids.max()} are out of range for dim {n}")
        return [np.asarray(np.take(data, ids, axis=axis), data.dtype)]
    if isinstance(idx, Lazy):
        x = imp.lazy(0, "data")
        if axis % x.rank != 0 or idx.dtype != "int64":
            raise imp.error("gathering computed indices works along axis 0 (an embedding)")
        table = imp.node_of(x)
        shape = table.type.shape
        if len(shape) != 2:
            table = ops.reshape(table, (shape[0], int(np.prod(shape[1:]))))
        out = ops.lookup(table, imp.node_of(idx))
        if len(shape) != 2:
            out = ops.reshape(out, out.type.shape[:-1] + tuple(shape[1:]))
        return [lazy(out)]
    x = imp.lazy(0, "data")
    axis %= x.rank
    ids = imp.concrete(idx, "indices")
    size = x.shape[axis]
    if isinstance(size, int):
        ids = np.where(ids < 0, ids + size, ids)
    ua = x.under_axis(axis)
    imp.check_size(ids.shape, "indices", limit=MAX_PIECES)
    if isinstance(size, int) and ids.size and (ids.min() < 0 or ids.max() >= size):
        raise imp.error(f"indices {ids.min()}..{ids.max()} are out of range for dim {size}")
    picks = [ops.index(x.node, ua, int(i)) for i in ids.reshape(-1)]
    rest = tuple(p - (p > ua) for p in x.perm if p != ua)
    if ids.ndim == 0:
        return [Lazy(picks[0], rest)]
    rows = [ops.reshape(p, p.type.shape[:ua] + (1,) + p.type.shape[ua:]) for p in picks]
    joined = rows[0] if len(rows) == 1 else ops.concat(rows, ua)
    out = Lazy(joined, x.perm)
    if ids.ndim > 1:
        node = imp.node_of(out)
        shape = node.type.shape
        out = lazy(ops.reshape(node, shape[:axis] + ids.shape + shape[axis + 1:]))
    return [out]


def _insert_axes(imp: Importer, v: Any, axes: Sequence[int]) -> Any:
    if not isinstance(v, Lazy):
        return np.expand_dims(v, tuple(axes)) if axes else v
    rank = v.rank + len(axes)
    axes = sorted(a % rank for a in axes)
    shape, perm, under = list(v.node.type.shape), list(v.perm), v.node.type.rank
    for a in axes:
        shape.append(1)
        perm.insert(a, under)
        under += 1
    return Lazy(ops.reshape(v.node, tuple(shape)), tuple(perm))


@rule("Unsqueeze")
def _unsqueeze(imp: Importer, n: Any) -> list:
    return [_insert_axes(imp, imp.get(0), _axes(imp, 1) or [])]


@rule("Squeeze")
def _squeeze(imp: Importer, n: Any) -> list:
    v = imp.get(0)
    axes = _axes(imp, 1)
    shape = list(v.shape)
    if axes is None:
        axes = [i for i, d in enumerate(shape) if d == 1]
    axes = sorted({a % len(shape) for a in axes})
    if any(shape[a] != 1 for a in axes):
        raise imp.error(f"cannot squeeze axes {axes} of shape {shape}")
    if not isinstance(v, Lazy):
        return [np.squeeze(v, tuple(axes))]
    gone = {v.perm[a] for a in axes}
    under = tuple(d for i, d in enumerate(v.node.type.shape) if i not in gone)
    perm = tuple(p - sum(g < p for g in gone) for p in v.perm if p not in gone)
    return [Lazy(ops.reshape(v.node, under), perm)]


@rule("Transpose")
def _transpose(imp: Importer, n: Any) -> list:
    v = imp.get(0)
    perm = imp.attr("perm")
    rank = v.ndim if not isinstance(v, Lazy) else v.rank
    perm = list(range(rank))[::-1] if perm is None else [int(p) for p in perm]
    if not isinstance(v, Lazy) and not (n.input[0] in imp.initializers and v.dtype.kind == "f"):
        return [np.transpose(v, perm)]
    return [imp.lazy(0).transposed(perm)]      # a weight stays a parameter, read transposed


@rule("Concat")
def _concat(imp: Importer, n: Any) -> list:
    vs = [imp.get(i) for i in range(len(n.input))]
    axis = int(imp.attr("axis", 0))
    if not any(isinstance(v, Lazy) for v in vs):
        if any(v.dtype == object for v in vs):
            vs = [v.astype(object) for v in vs]
        return [np.concatenate(vs, axis=axis)]
    ls = [imp.lazy(i) for i in range(len(n.input))]
    ls = [v for v in ls if v.shape[axis % v.rank] != 0]
    nodes, perm = same_layout(ls, imp.where)
    return [Lazy(ops.concat(nodes, perm[axis % len(perm)]), perm)]


def _slice_static(imp: Importer, v: Lazy | np.ndarray, axis: int, start: int, length: int):
    if not isinstance(v, Lazy):
        index = [slice(None)] * v.ndim
        index[axis] = slice(start, start + length)
        return v[tuple(index)]
    if length == v.shape[axis]:
        return v
    return Lazy(ops.slice_(v.node, v.under_axis(axis), start, length), v.perm)


@rule("Slice")
def _slice(imp: Importer, n: Any) -> list:
    v = imp.get(0)
    shape = list(v.shape)
    if imp.opset < 10:
        starts, ends = imp.attr("starts"), imp.attr("ends")
        axes, steps = imp.attr("axes"), None
    else:
        starts = imp.concrete(imp.static(1, "starts"), "starts").reshape(-1)
        ends = imp.concrete(imp.static(2, "ends"), "ends").reshape(-1)
        axes = _axes(imp, 3)
        st = imp.static(4, "steps")
        steps = None if st is None else imp.concrete(st, "steps").reshape(-1)
    axes = list(range(len(starts))) if axes is None else axes
    if steps is not None and any(int(s) != 1 for s in steps):
        raise imp.error(f"steps {[int(s) for s in steps]} are not supported (only 1)")
    for a, s, e in zip(axes, starts, ends):
        a %= len(shape)
        d = shape[a]
        s, e = int(s), int(e)
        if not isinstance(d, int):
            if s == 0 and e >= 2 ** 62:
                continue
            raise imp.error(f"slicing symbolic dim {d!r} of axis {a} is not supported")
        s = min(max(s + d if s < 0 else s, 0), d)
        e = min(max(e + d if e < 0 else e, 0), d)
        if e <= s:
            raise imp.error(f"the slice [{s}, {e}) of axis {a} is empty; graphrnn has no "
                            "empty tensors")
        v = _slice_static(imp, v, a, s, e - s)
    return [v]


@rule("Split")
def _split(imp: Importer, n: Any) -> list:
    v = imp.get(0)
    shape = list(v.shape)
    axis = int(imp.attr("axis", 0)) % len(shape)
    d = shape[axis]
    if not isinstance(d, int):
        raise imp.error(f"cannot split symbolic dim {d!r}")
    sizes = imp.attr("split")
    if sizes is None and imp.opset >= 13:
        s = imp.static(1, "split")
        sizes = None if s is None else list(imp.concrete(s, "split").reshape(-1))
    parts = len(n.output)
    if sizes is None:
        k = int(imp.attr("num_outputs", parts))
        size = -(-d // k)
        sizes = [min(size, d - i * size) for i in range(k)]
    out, start = [], 0
    for s in sizes:
        s = int(s)
        if s <= 0:
            raise imp.error(f"split sizes {[int(x) for x in sizes]}: graphrnn has no empty "
                            "tensors")
        out.append(_slice_static(imp, v, axis, start, s))
        start += s
    return out


def reshape_dims(imp: Importer, shape: Sequence[Dim], spec: Sequence[Any],
                 allowzero: bool) -> tuple[Dim, ...]:
    """ONNX Reshape's target shape (0 copies a dim, -1 is inferred), symbols kept."""
    out: list[Any] = []
    for i, s in enumerate(spec):
        if isinstance(s, str):
            out.append(s)
        elif int(s) == 0 and not allowzero:
            out.append(shape[i])
        else:
            out.append(int(s))
    if -1 in out:
        known_in = int(np.prod([d for d in shape if isinstance(d, int)], dtype=np.int64))
        known_out = int(np.prod([d for d in out if isinstance(d, int) and d != -1],
                                dtype=np.int64))
        sym_in = sorted(d for d in shape if isinstance(d, str))
        sym_out = sorted(d for d in out if isinstance(d, str))
        left = list(sym_in)
        for sy in sym_out:
            if sy in left:
                left.remove(sy)
        if known_out == 0 or known_in % known_out:
            raise imp.error(f"cannot reshape {list(shape)} to {list(spec)}")
        q = known_in // known_out
        if not left:
            out[out.index(-1)] = q
        elif len(left) == 1 and q == 1:
            out[out.index(-1)] = left[0]
        else:
            raise imp.error(f"cannot infer -1 in {list(spec)} from symbolic shape "
                            f"{list(shape)}")
    return tuple(out)


@rule("Reshape")
def _reshape(imp: Importer, n: Any) -> list:
    v = imp.get(0)
    spec = list(imp.static(1, "shape").reshape(-1))
    target = reshape_dims(imp, list(v.shape), spec, bool(imp.attr("allowzero", 0)))
    if not isinstance(v, Lazy):
        return [v.reshape([int(d) for d in target])]
    shape = v.shape
    j = 0                          # the axes before j are kept as they are
    while j < min(len(shape), len(target)) and shape[j] == target[j]:
        j += 1
    if v.perm[j:] == tuple(range(j, v.rank)) and sorted(v.perm[:j]) == list(range(j)):
        under = v.node.type.shape[:j] + tuple(target[j:])
        return [Lazy(ops.reshape(v.node, under), v.perm[:j] + tuple(range(j, len(target))))]
    return [lazy(ops.reshape(imp.node_of(v), target))]


@rule("Dropout")
def _dropout(imp: Importer, n: Any) -> list:
    """Inference: the identity (a model imported for training gets graphrnn's dropout from
    `nn.Dropout`, not from the file)."""
    training = imp.static(2, "training_mode")
    if training is not None and bool(np.asarray(training).reshape(-1)[0]):
        raise imp.error("training_mode = true is not supported: the import is for inference")
    x = imp.get(0)
    if len(n.output) < 2 or not n.output[1]:
        return [x]
    shape = list(x.shape)
    if not all(isinstance(d, int) for d in shape):
        raise imp.error(f"the mask output of symbolic shape {shape} is not supported")
    imp.check_size(shape, "the mask")
    return [x, np.ones(shape, np.int64)]          # inference keeps every element


__all__ = ["reshape_dims"]
