"""VJP_RULES: the vector-Jacobian product of each op, one line (or one helper) per op.

A rule maps `(node, g)` to one gradient (or None) per input, built from the same primitive
ops as the forward graph. LOOP and GET have no entry: a loop's value is a tuple, and
autodiff.backprop differentiates it as a reverse loop (NO_VJP lists them).
"""
from __future__ import annotations

import math
from typing import Callable

from graphrnn import ops
from graphrnn.ir import GraphError, Node, Op, TensorType, node_error

from .vjp_rows import ROW_VJP_RULES

Grads = tuple  # one Node | None per input
_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)


def unbroadcast(g: Node, t: TensorType) -> Node:
    """Sum `g` over the axes that broadcasting added to a value of type `t`."""
    lead = g.type.rank - t.rank
    axes = list(range(lead)) + [lead + i for i, d in enumerate(t.shape)
                                if d == 1 and g.type.shape[lead + i] != 1]
    if not axes:
        return g
    s = ops.sum_(g, axes)
    return s if s.type.shape == t.shape else ops.reshape(s, t.shape)


def _binary_rule(da: Callable, db: Callable) -> Callable:
    def rule(n: Node, g: Node) -> Grads:
        a, b = n.inputs
        return unbroadcast(da(n, g, a, b), a.type), unbroadcast(db(n, g, a, b), b.type)
    return rule


def _keepdims(g: Node, n: Node) -> Node:
    """A reduction's gradient reshaped so that it broadcasts against the reduced input."""
    if n.attrs["keepdims"]:
        return g
    x = n.inputs[0]
    shape = tuple(1 if i in n.attrs["axes"] else d for i, d in enumerate(x.type.shape))
    return ops.reshape(g, shape)


def _sum(n: Node, g: Node) -> Grads:
    return (ops.expand(_keepdims(g, n), n.inputs[0]),)


def _mean(n: Node, g: Node) -> Grads:
    x = n.inputs[0]
    dims = [x.type.shape[i] for i in n.attrs["axes"]]
    if all(isinstance(d, int) for d in dims):
        count: object = float(max(1, int(math.prod(dims))))
    else:   # a symbolic count (B or T): measured from the shapes at run time
        count = ops.div(ops.sum_(ops.expand(1.0, x)), ops.sum_(ops.expand(1.0, n)))
    return (ops.div(ops.expand(_keepdims(g, n), x), count),)


def _matmul(n: Node, g: Node) -> Grads:
    a, w = n.inputs
    if n.attrs.get("transpose_b"):            # w [N, K]
        return ops.matmul(g, w), ops.contract(g, a)
    return ops.matmul(g, w, transpose_b=True), ops.contract(a, g)


def _contract(n: Node, g: Node) -> Grads:
    a, b = n.inputs
    if n.attrs.get("transpose_out"):          # g [N, K]
        return ops.matmul(b, g), ops.matmul(a, g, transpose_b=True)
    return ops.matmul(b, g, transpose_b=True), ops.matmul(a, g)


def _concat(n: Node, g: Node) -> Grads:
    out, start, axis = [], 0, n.attrs["axis"]
    for x in n.inputs:
        width = x.type.shape[axis]
        out.append(ops.slice_(g, axis, start, width) if width else None)   # empty: no grad
        start += width
    return tuple(out)


def _slice(n: Node, g: Node) -> Grads:
    a = n.attrs
    d = n.inputs[0].type.shape[a["axis"]]
    if not isinstance(d, int):
        raise node_error(n, f"cannot differentiate a slice of symbolic dim {d!r}")
    return (ops.pad(g, a["axis"], a["start"], d - a["start"] - a["length"]),)


def _index(n: Node, g: Node) -> Grads:
    x, axis, i = n.inputs[0], n.attrs["axis"], n.attrs["index"]
    d = x.type.shape[axis]
    if not isinstance(d, int):
        raise node_error(n, f"cannot differentiate an index of symbolic dim {d!r}")
    shape = x.type.shape[:axis] + (1,) + x.type.shape[axis + 1:]
    return (ops.pad(ops.reshape(g, shape), axis, i, d - i - 1),)


def _bmm(n: Node, g: Node) -> Grads:
    """C = op(A) @ op(B): dA and dB as products of g with the other operand."""
    a, b = n.inputs
    ta, tb = n.attrs["transpose_a"], n.attrs["transpose_b"]
    if not ta:
        da = ops.bmm(g, b, transpose_b=not tb)
        db = ops.bmm(a, g, transpose_a=True) if not tb else ops.bmm(g, a, transpose_a=True)
    else:
        da = ops.bmm(b, g, transpose_a=tb, transpose_b=True)
        db = ops.bmm(a, g) if not tb else ops.bmm(g, a, transpose_a=True, transpose_b=True)
    return da, db


def _pick(n: Node, g: Node) -> Grads:
    x, idx = n.inputs
    hot = ops.onehot(idx, x.type.shape[-1])
    return ops.mul(hot, ops.reshape(g, g.type.shape + (1,))), None


def _view(n: Node, g: Node) -> Grads:
    flat = n.inputs[0]
    size = int(math.prod(n.attrs["shape"]))
    return (ops.assemble([ops.reshape(g, (size,))], [n.attrs["offset"]], flat.type.shape[0]),)


def _assemble(n: Node, g: Node) -> Grads:
    return tuple(ops.slice_(g, 0, off, x.type.shape[0])
                 for x, off in zip(n.inputs, n.attrs["offsets"]))


def _pow(n: Node, g: Node) -> Grads:
    p = n.attrs["p"]
    if p == 0.0:                              # x ** 0 is 1 everywhere (torch: a zero gradient)
        return (None,)
    return (ops.mul(g, ops.mul(p, ops.pow_(n.inputs[0], p - 1.0))),)


def _extremum(sign: float) -> Callable:
    """maximum (sign 1) or minimum (-1) as torch differentiates them: the larger (smaller)
    input takes g, a tie gives g / 2 to each, and a NaN on either side passes g to both
    (torch's masks compare false there). Equal infinities, whose difference is NaN, pass g
    to both as well (torch halves it)."""
    def rule(n: Node, g: Node) -> Grads:
        a, b = n.inputs
        d = ops.sub(a, b)      # != 0 for NaN too, which is what where's mask tests
        wa = ops.where(d, ops.sub(1.0, ops.step(ops.mul(-sign, d))), 0.5)
        wb = ops.where(d, ops.sub(1.0, ops.step(ops.mul(sign, d))), 0.5)
        return unbroadcast(ops.mul(g, wa), a.type), unbroadcast(ops.mul(g, wb), b.type)
    return rule


def _no_grad(n: Node, g: Node) -> Grads:
    return (None,) * len(n.inputs)


def _fused(n: Node, g: Node) -> Grads:
    raise node_error(n, "differentiate before fusing: a fused node has no gradient rule",
                     GraphError)



def _unpad(n: Node, g: Node) -> Node:
    """The part of `g` the padded input gave; an empty input's gradient is empty too."""
    width = n.inputs[0].type.shape[n.attrs["axis"]]
    if width == 0:
        return ops.mul(n.inputs[0], 0.0)
    return ops.slice_(g, n.attrs["axis"], n.attrs["before"], width)

VJP_RULES: dict[Op, Callable[[Node, Node], Grads]] = {
    Op.INPUT: _no_grad, Op.PARAM: _no_grad, Op.CONST: _no_grad, Op.FILL: _no_grad,
    Op.NEG: lambda n, g: (ops.neg(g),),
    Op.EXP: lambda n, g: (ops.mul(g, n),),
    Op.LOG: lambda n, g: (ops.div(g, n.inputs[0]),),
    Op.TANH: lambda n, g: (ops.mul(g, ops.sub(1.0, ops.mul(n, n))),),
    Op.SIGMOID: lambda n, g: (ops.mul(g, ops.mul(n, ops.sub(1.0, n))),),
    Op.RELU: lambda n, g: (ops.mul(g, ops.step(n.inputs[0])),),
    Op.STEP: _no_grad,
    Op.ABS: lambda n, g: (ops.mul(g, ops.sign(n.inputs[0])),),
    Op.SIGN: _no_grad,
    Op.SQRT: lambda n, g: (ops.div(g, ops.mul(2.0, n)),),
    Op.ERF: lambda n, g: (ops.mul(g, ops.mul(_TWO_OVER_SQRT_PI, ops.exp(ops.neg(
        ops.mul(n.inputs[0], n.inputs[0]))))),),
    Op.SOFTPLUS: lambda n, g: (ops.mul(g, ops.sigmoid(n.inputs[0])),),
    Op.POW: _pow,
    Op.MAXIMUM: _extremum(1.0),
    Op.MINIMUM: _extremum(-1.0),
    Op.ADD: _binary_rule(lambda n, g, a, b: g, lambda n, g, a, b: g),
    Op.SUB: _binary_rule(lambda n, g, a, b: g, lambda n, g, a, b: ops.neg(g)),
    Op.MUL: _binary_rule(lambda n, g, a, b: ops.mul(g, b), lambda n, g, a, b: ops.mul(g, a)),
    Op.DIV: _binary_rule(lambda n, g, a, b: ops.div(g, b),
                         lambda n, g, a, b: ops.neg(ops.div(ops.mul(g, n), b))),
    Op.MATMUL: _matmul,
    Op.BMM: _bmm,
    Op.CONTRACT: _contract,
    Op.SUM: _sum,
    Op.MEAN: _mean,
    Op.SOFTMAX: lambda n, g: (ops.mul(n, ops.sub(g, ops.sum_(ops.mul(g, n), [n.attrs["axis"]],
                                                               keepdims=True))),),
    Op.LOG_SOFTMAX: lambda n, g: (ops.sub(g, ops.mul(ops.exp(n), ops.sum_(
        g, [n.attrs["axis"]], keepdims=True))),),
    Op.LOOKUP: lambda n, g: (ops.scatter(g, n.inputs[1], n.inputs[0].type.shape[0]), None),
    Op.SCATTER: lambda n, g: (ops.lookup(g, n.inputs[1]), None),
    Op.PICK: _pick,
    Op.ONEHOT: _no_grad,
    Op.ASTYPE: _no_grad,                # an int64 value on one side: nothing to differentiate
    Op.CONCAT: _concat,
    Op.SLICE: _slice,
    Op.INDEX: _index,
    Op.PAD: lambda n, g: (_unpad(n, g),),
    Op.RESHAPE: lambda n, g: (ops.reshape(g, n.inputs[0].type.shape),),
    Op.TRANSPOSE: lambda n, g: (ops.transpose(g, n.attrs["dim0"], n.attrs["dim1"]),),
    Op.SHIFT: lambda n, g: (ops.shift(g, n.attrs["axis"], -n.attrs["by"]),),
    Op.EXPAND: lambda n, g: (unbroadcast(g, n.inputs[0].type), None),
    Op.DROPOUT: lambda n, g: (ops.dropout(g, n.attrs["p"], n.attrs["seed"]),),
    Op.WHERE: lambda n, g: (None,
                            unbroadcast(ops.where(n.inputs[0], g, 0.0), n.inputs[1].type),
                            unbroadcast(ops.where(n.inputs[0], 0.0, g), n.inputs[2].type)),
    Op.SEQ_MASK: _no_grad,
    Op.VIEW: _view,
    Op.ASSEMBLE: _assemble,
    Op.FUSED: _fused,
    Op.SAMPLE: _no_grad,
    **ROW_VJP_RULES,
    # LOOP and GET are handled by backprop itself (a loop's value is a tuple)
}


def total(parts: list[Node]) -> Node | None:
    """The sum of gradient contributions; ASSEMBLE parts of one vector merge into one node."""
    if not parts:
        return None
    if len(parts) > 1 and all(p.op == Op.ASSEMBLE for p in parts) and \
            len({p.attrs["size"] for p in parts}) == 1:
        return ops.assemble([x for p in parts for x in p.inputs],
                            [o for p in parts for o in p.attrs["offsets"]], parts[0].attrs["size"])
    out = parts[0]
    for p in parts[1:]:
        out = ops.add(out, p)
    return out


def is_float(n: Node) -> bool:
    return isinstance(n.type, tuple) or (n.type is not None and n.type.dtype == "float32")


# ops whose gradient backprop handles itself instead of a rule
NO_VJP = frozenset({Op.LOOP, Op.GET})


__all__ = ["VJP_RULES", "NO_VJP", "unbroadcast", "total", "is_float"]
