"""ONNX counterparts of the newer primitives: elementwise math, row reductions, normalisation,
transpose, shift, batched matmul and casts (opset 17).

Where ONNX leaves a case open that graphrnn defines (NaN in a max reduction, a float cast to
int64 out of range or NaN), the rule writes graphrnn's answer out with IsNaN/Where.
"""
from __future__ import annotations

import numpy as np

from ..ir import LoweringError, Node, Op, node_error
from .emitter import EXPORT_RULES, Emitter

UNARY = {Op.ABS: "Abs", Op.SIGN: "Sign", Op.SQRT: "Sqrt", Op.ERF: "Erf",
         Op.SOFTPLUS: "Softplus"}
# ONNX Runtime's Max/Min return NaN when either operand is NaN, as torch.maximum does
BINARY = {Op.MAXIMUM: "Max", Op.MINIMUM: "Min"}
INT64 = np.iinfo(np.int64)


def _hint(n: Node) -> str:
    return n.name or n.op.value


def _ints(em: Emitter, values: list[int], hint: str = "axes") -> str:
    return em.const(np.asarray(values, np.int64).reshape(-1), hint)


def _rank(n: Node) -> int:
    return n.inputs[0].type.rank


def _axis(n: Node) -> int:
    return int(n.attrs["axis"]) % _rank(n)


def _pow(em: Emitter, n: Node, a: list) -> str:
    return em.one("Pow", [a[0], em.const(np.float32(n.attrs["p"]), "exponent")], _hint(n))


def _nan_rows(em: Emitter, x: str, axis: int, keep: int) -> tuple[str, str]:
    """(x's NaN mask as 0/1 floats, bool: the rows along `axis` that hold a NaN)."""
    nan = em.one("Cast", [em.one("IsNaN", [x], "is_nan")], "nan_f", to=em.onnx.TensorProto.FLOAT)
    rows = em.one("ReduceMax", [nan], "nan_rows", axes=[axis], keepdims=keep)
    return nan, em.one("Greater", [rows, em.const(np.float32(0), "zero")], "has_nan")


def _extreme(em: Emitter, n: Node, a: list) -> str:
    """ReduceMax/ReduceMin; a row holding a NaN gives NaN (ONNX Runtime skips NaNs)."""
    axis, keep = _axis(n), int(bool(n.attrs["keepdims"]))
    kind = "ReduceMin" if n.op == Op.MIN else "ReduceMax"
    got = em.one(kind, a, f"{_hint(n)}_value", axes=[axis], keepdims=keep)
    has_nan = _nan_rows(em, a[0], axis, keep)[1]
    return em.one("Where", [has_nan, em.const(np.float32(np.nan), "nan"), got], _hint(n))


def _logsumexp(em: Emitter, n: Node, a: list) -> str:
    return em.one("ReduceLogSumExp", a, _hint(n), axes=[_axis(n)],
                  keepdims=int(bool(n.attrs["keepdims"])))


def _arg_onehot(em: Emitter, n: Node, a: list) -> str:
    """1 at the first max (min) along the axis: ArgMax/ArgMin, then OneHot of the axis' size."""
    axis = _axis(n)
    kind = "ArgMin" if n.attrs.get("min") else "ArgMax"
    idx = em.one(kind, a, "arg", axis=axis, keepdims=0, select_last_index=0)
    # graphrnn (numpy) takes the first NaN of a row that has one; ONNX Runtime skips NaNs
    nan, has_nan = _nan_rows(em, a[0], axis, 0)
    first_nan = em.one("ArgMax", [nan], "first_nan", axis=axis, keepdims=0, select_last_index=0)
    idx = em.one("Where", [has_nan, first_nan, idx], "arg_nan")
    size = em.one("Gather", [em.one("Shape", a, "shape_of"), _ints(em, [axis], "at")], "depth",
                  axis=0)
    values = em.const(np.array([0.0, 1.0], np.float32), "off_on")
    return em.one("OneHot", [idx, size, values], _hint(n), axis=axis)


def _normalize(em: Emitter, n: Node, a: list) -> str:
    """LayerNormalization (no scale or shift) when centred, RMS normalisation written out."""
    shape, eps = tuple(n.attrs["shape"]), float(n.attrs["eps"])
    if not all(isinstance(d, int) for d in shape):
        raise node_error(n, f"normalize over the symbolic dims {shape} has no ONNX counterpart",
                         LoweringError)
    if n.attrs.get("center", True):
        ones = em.const(np.ones(shape, np.float32), "ln_scale")
        zeros = em.const(np.zeros(shape, np.float32), "ln_bias")
        return em.one("LayerNormalization", [a[0], ones, zeros], _hint(n), axis=-len(shape),
                      epsilon=eps)
    axes = list(range(_rank(n) - len(shape), _rank(n)))
    ms = em.one("ReduceMean", [em.one("Mul", [a[0], a[0]], "square")], "mean_square",
                axes=axes, keepdims=1)
    rms = em.one("Sqrt", [em.one("Add", [ms, em.const(np.float32(eps), "eps")], "var")], "rms")
    return em.one("Div", [a[0], rms], _hint(n))


def _swap(rank: int, i: int, j: int) -> list[int]:
    perm = list(range(rank))
    perm[i], perm[j] = perm[j], perm[i]
    return perm


def _transpose(em: Emitter, n: Node, a: list) -> str:
    r = _rank(n)
    perm = _swap(r, int(n.attrs["dim0"]) % r, int(n.attrs["dim1"]) % r)
    return em.one("Transpose", a, _hint(n), perm=perm)


def _shift(em: Emitter, n: Node, a: list) -> str:
    """`by` zeros padded at one end of the axis, then the axis' own length sliced back out
    (ends counted from the end, so a symbolic length needs no Shape)."""
    r, axis, by = _rank(n), _axis(n), int(n.attrs["by"])
    if by == 0:
        return em.one("Identity", a, _hint(n))
    pads = [0] * (2 * r)
    pads[axis if by > 0 else r + axis] = abs(by)
    padded = em.one("Pad", [a[0], _ints(em, pads, "pads")], "shift_padded")
    starts, ends = ([0], [-by]) if by > 0 else ([-by], [INT64.max])
    return em.one("Slice", [padded, _ints(em, starts, "starts"), _ints(em, ends, "ends"),
                            _ints(em, [axis])], _hint(n))


def _bmm(em: Emitter, n: Node, a: list) -> str:
    ops = list(a)
    for i, flag in enumerate(("transpose_a", "transpose_b")):
        if n.attrs.get(flag):
            r = n.inputs[i].type.rank
            ops[i] = em.one("Transpose", [ops[i]], "bmm_T", perm=_swap(r, r - 2, r - 1))
    return em.one("MatMul", ops, _hint(n))


def _astype(em: Emitter, n: Node, a: list) -> str:
    """Cast; float -> int64 as graphrnn defines it where ONNX leaves it open: NaN gives 0, values
    past the int64 range saturate."""
    tp = em.onnx.TensorProto
    src = n.inputs[0].type.dtype
    if n.attrs["dtype"] == src:
        return em.one("Identity", a, _hint(n))
    if n.attrs["dtype"] != "int64":
        return em.one("Cast", a, _hint(n), to=tp.FLOAT)
    x = em.one("Where", [em.one("IsNaN", a, "is_nan"), em.const(np.float32(0), "zero"), a[0]],
               "not_nan")
    below = np.nextafter(np.float32(2.0 ** 63), np.float32(0))     # x >= 2^63: x > this
    big = em.one("Greater", [x, em.const(below, "int64_limit")], "too_big")
    small = em.one("Less", [x, em.const(np.float32(-(2.0 ** 63)), "int64_low")], "too_small")
    zero = em.const(np.float32(0), "zero")
    safe = em.one("Where", [em.one("Or", [big, small], "out_of_range"), zero, x], "in_range")
    cast = em.one("Cast", [safe], "truncated", to=tp.INT64)
    cast = em.one("Where", [small, em.const(np.int64(INT64.min), "int64_min"), cast], "low")
    return em.one("Where", [big, em.const(np.int64(INT64.max), "int64_max"), cast], _hint(n))


def _normalize_grad(em: Emitter, n: Node, a: list) -> str:
    raise node_error(n, "normalize_grad only appears in training graphs (the derivative of "
                        "normalize); export the model itself, not its gradient graph",
                     LoweringError)


EXPORT_RULES.update({op: (lambda em, n, a: em.one(UNARY[n.op], a, _hint(n))) for op in UNARY})
EXPORT_RULES.update({op: (lambda em, n, a: em.one(BINARY[n.op], a, _hint(n)))
                     for op in BINARY})
EXPORT_RULES.update({
    Op.POW: _pow,
    Op.MAX: _extreme,
    Op.MIN: _extreme,
    Op.LOGSUMEXP: _logsumexp,
    Op.ARG_ONEHOT: _arg_onehot,
    Op.NORMALIZE: _normalize,
    Op.NORMALIZE_GRAD: _normalize_grad,
    Op.TRANSPOSE: _transpose,
    Op.SHIFT: _shift,
    Op.BMM: _bmm,
    Op.ASTYPE: _astype,
})

__all__ = ["UNARY", "BINARY"]
