"""The numpy reference interpreter: the executable meaning of every op, and the compiler's oracle.

It is written to be obviously right, not fast: one EVAL_RULES row per op, and the loop as the
plain Python loop that its docstring describes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from .ir import Graph, InputError, Node, Op, TensorType, loop_operands, node_error
from .module import graph_of
from .ops import infer_graph
from .row_ops import ROW_OP_EVAL
from .store import value


@dataclass
class Context:
    """What a run needs besides the inputs."""
    dtype: type = np.float32
    training: bool = False
    seed: int = 0
    step: int = 0                 # the loop step being evaluated (salts dropout masks)
    param_values: dict | None = None   # id(Param) -> array, overriding the stored value


def dropout_mask(shape: tuple[int, ...], p: float, seed: int, node_seed: int,
                 step: int) -> np.ndarray:
    """Keep-mask of a dropout node: a counter-based hash, so native code can reproduce it.

    u = hash(seed, node_seed, step, flat_index) / 2**32; an element is kept when u >= p.
    """
    idx = np.arange(int(np.prod(shape, dtype=np.int64)), dtype=np.uint64)
    with np.errstate(over="ignore"):
        h = (idx * np.uint64(0x9E3779B97F4A7C15)
             + np.uint64((seed * 0x85EBCA6B + node_seed * 0xC2B2AE35 + step * 0x27D4EB2F)
                         & 0xFFFFFFFFFFFFFFFF))
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xFF51AFD7ED558CCD)
        h ^= h >> np.uint64(33)
        h *= np.uint64(0xC4CEB9FE1A85EC53)
        h ^= h >> np.uint64(33)
    u = (h >> np.uint64(32)).astype(np.float64) / 2.0 ** 32
    return (u >= p).reshape(shape)


def _reduce(fn: Callable) -> Callable:
    def rule(n: Node, a: list, ctx: Context) -> np.ndarray:
        return fn(a[0], axis=n.attrs["axes"], keepdims=n.attrs["keepdims"])
    return rule


def _softmax(n: Node, a: list, ctx: Context) -> np.ndarray:
    x = a[0]
    e = np.exp(x - np.max(x, axis=n.attrs["axis"], keepdims=True))
    return e / np.sum(e, axis=n.attrs["axis"], keepdims=True)


def _log_softmax(n: Node, a: list, ctx: Context) -> np.ndarray:
    x = a[0]
    m = np.max(x, axis=n.attrs["axis"], keepdims=True)
    return x - m - np.log(np.sum(np.exp(x - m), axis=n.attrs["axis"], keepdims=True))


def _lookup(n: Node, a: list, ctx: Context) -> np.ndarray:
    w, ids = a
    if ids.size and (ids.min() < 0 or ids.max() >= w.shape[0]):
        raise node_error(n, f"ids must lie in [0, {w.shape[0]}), got {ids.min()}..{ids.max()}",
                         InputError)
    return w[ids]


def _pick(n: Node, a: list, ctx: Context) -> np.ndarray:
    x, idx = a
    if idx.size and (idx.min() < 0 or idx.max() >= x.shape[-1]):
        raise node_error(n, f"class indices must lie in [0, {x.shape[-1]}), got "
                         f"{idx.min()}..{idx.max()}", InputError)
    return np.take_along_axis(x, idx[..., None], axis=-1)[..., 0]


def _slice(n: Node, a: list, ctx: Context) -> np.ndarray:
    s = [slice(None)] * a[0].ndim
    s[n.attrs["axis"]] = slice(n.attrs["start"], n.attrs["start"] + n.attrs["length"])
    return a[0][tuple(s)]


def _index(n: Node, a: list, ctx: Context) -> np.ndarray:
    return np.take(a[0], n.attrs["index"], axis=n.attrs["axis"])


def _dropout(n: Node, a: list, ctx: Context) -> np.ndarray:
    p = n.attrs["p"]
    if not ctx.training or p == 0.0:
        return a[0]
    keep = dropout_mask(a[0].shape, p, ctx.seed, n.attrs["seed"], ctx.step)
    return np.where(keep, a[0] / (1.0 - p), 0.0).astype(a[0].dtype)


def _matmul(n: Node, a: list, ctx: Context) -> np.ndarray:
    x, w = a
    return x @ (w.T if n.attrs.get("transpose_b") else w)


def _fill(n: Node, a: list, ctx: Context) -> np.ndarray:
    dt = np.int64 if n.type.dtype == "int64" else ctx.dtype
    return np.full(n.type.shape, n.attrs["value"], dt)  # the input only lends its batch size


def _const(n: Node, a: list, ctx: Context) -> np.ndarray:
    v = n.attrs["value"]
    return v if v.dtype.kind in "iu" else v.astype(ctx.dtype)


def _view(n: Node, a: list, ctx: Context) -> np.ndarray:
    size = int(np.prod(n.attrs["shape"], dtype=np.int64))
    off = n.attrs["offset"]
    return a[0][off:off + size].reshape(n.attrs["shape"])


def _param(n: Node, a: list, ctx: Context) -> np.ndarray:
    p = n.param.root()
    if ctx.param_values is not None and id(p) in ctx.param_values:
        return ctx.param_values[id(p)]
    return value(p).astype(ctx.dtype, copy=False)


def _loop(n: Node, args: list, ctx: Context) -> tuple:
    """for t in (reversed(range(T)) if reverse else range(T)):
           carry, y = body(consts, carry, [x[:, t] for x in xs]); ys[:, t] = y
    With lengths, row b keeps its carry and gets y = 0 at every step t >= lengths[b]."""
    consts_n, carry_n, xs_n, len_n = loop_operands(n)
    k = 0
    consts = args[k:k + len(consts_n)]
    k += len(consts_n)
    carry = list(args[k:k + len(carry_n)])
    k += len(carry_n)
    xs = args[k:k + len(xs_n)]
    lengths = args[-1] if len_n is not None else None
    body: Graph = n.attrs["body"]
    n_h = len(carry_n)
    ys_types = n.type[n_h:]
    steps = xs[0].shape[1] if xs else n.attrs["length"]
    if not isinstance(steps, (int, np.integer)):
        raise node_error(n, f"the loop's length {steps!r} is not bound by any input: give "
                         "length= as an int, or loop over a sequence", InputError)
    ys = [np.zeros(t.shape, np.int64 if t.dtype == "int64" else ctx.dtype) for t in ys_types]
    if lengths is not None and lengths.size and (lengths.min() < 0 or lengths.max() > steps):
        raise node_error(n, f"lengths must lie in [0, {steps}], got "
                         f"{lengths.min()}..{lengths.max()}", InputError)
    order = range(steps - 1, -1, -1) if n.attrs.get("reverse") else range(steps)
    outer_step = ctx.step
    for t in order:
        ctx.step = outer_step * 1_000_003 + t + 1
        outs = run_graph(body, list(consts) + carry + [x[:, t] for x in xs], ctx)
        new_carry, y = list(outs[:n_h]), list(outs[n_h:])
        if lengths is not None:
            live = t < lengths
            new_carry = [np.where(live.reshape((-1,) + (1,) * (c.ndim - 1)), nc, c)
                         for nc, c in zip(new_carry, carry)]
            y = [np.where(live.reshape((-1,) + (1,) * (v.ndim - 1)), v, 0).astype(v.dtype)
                 for v in y]
        carry = new_carry
        for buf, v in zip(ys, y):
            buf[:, t] = v
    ctx.step = outer_step
    return tuple(carry) + tuple(ys)


def _seq_mask(n: Node, a: list, ctx: Context) -> np.ndarray:
    b, steps = a[0].shape[:2]
    t = np.arange(steps)[None, :]
    keep = np.ones((b, steps), bool)
    if len(a) > 1:
        keep &= t < a[1][:, None]
    if n.attrs.get("every"):
        keep &= (t % n.attrs["every"]) != 0
    return keep.astype(ctx.dtype)


def _contract(n: Node, a: list, ctx: Context) -> np.ndarray:
    x, g = a
    rows = int(np.prod(x.shape[:-1], dtype=np.int64))   # not -1: a last dim may be 0
    out = x.reshape(rows, x.shape[-1]).T @ g.reshape(rows, g.shape[-1])
    return out.T if n.attrs.get("transpose_out") else out


def _bmm(n: Node, a: list, ctx: Context) -> np.ndarray:
    x, y = a
    x = np.swapaxes(x, -1, -2) if n.attrs["transpose_a"] else x
    y = np.swapaxes(y, -1, -2) if n.attrs["transpose_b"] else y
    return np.matmul(x, y)


def _shift(n: Node, a: list, ctx: Context) -> np.ndarray:
    x, axis, by = a[0], n.attrs["axis"], n.attrs["by"]
    out = np.zeros_like(x)
    d = x.shape[axis]
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    src[axis] = slice(max(0, -by), max(0, d - max(by, 0)))
    dst[axis] = slice(max(0, by), max(0, d + min(by, 0)))
    if src[axis].stop > src[axis].start:
        out[tuple(dst)] = x[tuple(src)]
    return out


def _pad(n: Node, a: list, ctx: Context) -> np.ndarray:
    widths = [(0, 0)] * a[0].ndim
    widths[n.attrs["axis"]] = (n.attrs["before"], n.attrs["after"])
    return np.pad(a[0], widths)


def _scatter(n: Node, a: list, ctx: Context) -> np.ndarray:
    g, ids = a
    out = np.zeros((n.attrs["n"], g.shape[-1]), ctx.dtype)
    np.add.at(out, ids.reshape(-1), g.reshape(ids.size, g.shape[-1]))
    return out


def _assemble(n: Node, a: list, ctx: Context) -> np.ndarray:
    out = np.zeros(n.attrs["size"], ctx.dtype)
    for part, off in zip(a, n.attrs["offsets"]):
        out[off:off + part.shape[0]] += part
    return out


def _input(n: Node, a: list, ctx: Context) -> np.ndarray:
    raise node_error(n, "no value was given for this input: list it among the graph's "
                     "inputs (a loop body gets every outer value as a const)", InputError)


def _sample(n: Node, a: list, ctx: Context) -> np.ndarray:
    logits, u, temp = a
    if float(temp) <= 0.0:
        return np.argmax(logits, axis=1).astype(np.int64)
    z = logits / temp
    p = np.exp(z - z.max(axis=1, keepdims=True))
    cdf = np.cumsum(p, axis=1)
    idx = (cdf < (u * cdf[:, -1])[:, None]).sum(axis=1)
    return np.minimum(idx, logits.shape[1] - 1).astype(np.int64)


_ERF = np.frompyfunc(math.erf, 1, 1)      # numpy has no erf; math.erf works in double


def _astype(n: Node, a: list, ctx: Context) -> np.ndarray:
    x = a[0]
    if n.attrs["dtype"] != "int64":
        return x.astype(ctx.dtype)
    x = x.astype(np.float64)
    big, small = x >= 2.0 ** 63, x < -(2.0 ** 63)      # saturate, as the native code does
    out = np.where(np.isnan(x) | big | small, 0.0, x).astype(np.int64)
    info = np.iinfo(np.int64)
    return np.where(big, info.max, np.where(small, info.min, out)).astype(np.int64)


EVAL_RULES: dict[Op, Callable[[Node, list, Context], Any]] = {
    Op.INPUT: _input,                 # inputs are given; reaching this rule is an error
    Op.PARAM: _param,
    Op.CONST: _const,
    Op.FILL: _fill,
    Op.NEG: lambda n, a, c: -a[0],
    Op.EXP: lambda n, a, c: np.exp(a[0]),
    Op.LOG: lambda n, a, c: np.log(a[0]),
    Op.TANH: lambda n, a, c: np.tanh(a[0]),
    Op.SIGMOID: lambda n, a, c: 1.0 / (1.0 + np.exp(-a[0])),
    Op.RELU: lambda n, a, c: np.maximum(a[0], 0),
    Op.ABS: lambda n, a, c: np.abs(a[0]),
    Op.SIGN: lambda n, a, c: np.sign(a[0]),
    Op.SQRT: lambda n, a, c: np.sqrt(a[0]),
    Op.ERF: lambda n, a, c: _ERF(a[0]).astype(a[0].dtype),
    Op.SOFTPLUS: lambda n, a, c: np.logaddexp(a[0], 0),
    Op.POW: lambda n, a, c: np.power(a[0], n.attrs["p"]),
    Op.MAXIMUM: lambda n, a, c: np.maximum(a[0], a[1]),
    Op.MINIMUM: lambda n, a, c: np.minimum(a[0], a[1]),
    Op.ADD: lambda n, a, c: a[0] + a[1],
    Op.SUB: lambda n, a, c: a[0] - a[1],
    Op.MUL: lambda n, a, c: a[0] * a[1],
    Op.DIV: lambda n, a, c: a[0] / a[1],
    Op.MATMUL: _matmul,
    Op.BMM: _bmm,
    Op.SUM: _reduce(np.sum),
    Op.MEAN: _reduce(np.mean),
    Op.SOFTMAX: _softmax,
    Op.LOG_SOFTMAX: _log_softmax,
    Op.LOOKUP: _lookup,
    Op.PICK: _pick,
    Op.CONCAT: lambda n, a, c: np.concatenate(a, axis=n.attrs["axis"]),
    Op.SLICE: _slice,
    Op.INDEX: _index,
    Op.RESHAPE: lambda n, a, c: a[0].reshape(n.type.shape),
    Op.TRANSPOSE: lambda n, a, c: np.swapaxes(a[0], n.attrs["dim0"], n.attrs["dim1"]).copy(),
    Op.SHIFT: _shift,
    Op.DROPOUT: _dropout,
    Op.LOOP: _loop,
    Op.GET: lambda n, a, c: a[0][n.attrs["index"]],
    Op.VIEW: _view,
    Op.FUSED: lambda n, a, c: run_graph(n.attrs["body"], a, c)[0],
    Op.STEP: lambda n, a, c: (a[0] > 0).astype(c.dtype),
    Op.WHERE: lambda n, a, c: np.where(a[0] != 0, a[1], a[2]),
    Op.SEQ_MASK: _seq_mask,
    Op.CONTRACT: _contract,
    Op.EXPAND: lambda n, a, c: np.broadcast_to(a[0], a[1].shape).copy(),
    Op.PAD: _pad,
    Op.SCATTER: _scatter,
    Op.ONEHOT: lambda n, a, c: np.eye(n.attrs["n"], dtype=c.dtype)[a[0]],
    Op.ASSEMBLE: _assemble,
    Op.SAMPLE: _sample,
    **ROW_OP_EVAL,
    Op.ASTYPE: _astype,
}


def run_graph(graph: Graph, inputs: Sequence[np.ndarray], ctx: Context) -> list:
    """Evaluate a typed graph on arrays; returns the output values in order."""
    env: dict[int, Any] = {id(x): v for x, v in zip(graph.inputs, inputs)}
    for n in graph.nodes:
        if id(n) in env:
            continue
        with np.errstate(all="ignore"):
            v = EVAL_RULES[n.op](n, [env[id(x)] for x in n.inputs], ctx)
        if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.dtype != ctx.dtype:
            v = v.astype(ctx.dtype)
        env[id(n)] = v
    return [env[id(y)] for y in graph.outputs]


def array_type(x: np.ndarray) -> TensorType:
    return TensorType(x.shape, "int64" if x.dtype.kind in "iu" else "float32")


def coerce_input(x: Node, value: Any, dtype: type) -> np.ndarray:
    """An input value as an array of the kind the input expects, or a clear error.

    A typed input converts integers to its dtype; an untyped one (`nn.Identity()()`) takes the
    kind of the data: integer arrays stay int64 (ids, lengths), floats become `dtype`.
    """
    arr = np.asarray(value)
    declared = x.type.dtype if x.type is not None else None
    if arr.dtype.kind in "iu" or (arr.dtype.kind == "b" and declared == "int64"):
        return arr.astype(dtype) if declared == "float32" else arr.astype(np.int64)
    if arr.dtype.kind == "f" and declared != "int64":
        return arr.astype(dtype)
    expected = str(x.type) if x.type is not None else "a float or integer array"
    raise node_error(x, f"expected {expected}, got an array of dtype {arr.dtype}", InputError)


def interpret(model: Any, *inputs: Any, training: bool = False, seed: int = 0,
              dtype: type = np.float32) -> Any:
    """Run a model (or a Graph) forward in numpy. One output -> an array, several -> a tuple."""
    graph: Graph = graph_of(model)
    if len(inputs) != len(graph.inputs):
        raise InputError(f"the model takes {len(graph.inputs)} inputs "
                         f"({', '.join(x.name for x in graph.inputs)}), got {len(inputs)}")
    arrays = [coerce_input(x, v, dtype) for x, v in zip(graph.inputs, inputs)]
    typed = infer_graph(graph, [array_type(a) for a in arrays])
    outs = run_graph(typed, arrays, Context(dtype=dtype, training=training, seed=seed))
    return outs[0] if len(outs) == 1 else tuple(outs)
