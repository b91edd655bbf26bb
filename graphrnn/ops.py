"""Primitive node constructors: one function per op, typed as soon as input types are known.

The type rules themselves (SHAPE_RULES, `apply_rule`, `infer_graph`) live in `infer.py` and
`shape_rules.py` and are re-exported here. Every node records the user's `file:line` and the
module scope. `internal_graph` closes a graph that a builder or a pass made.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterator, Sequence

import numpy as np

from . import printing
from .close import renamed_graph
from .infer import SHAPE_RULES, apply_rule, bind_input, infer_graph
from .ir import (HOOKS, Dim, Graph, Node, NodeType, Op, Param, TensorType, loop_operands,
                 toposort)
from .shape_rules import F32, broadcast_shapes

# ----------------------------------------------------------------------------- provenance

_HERE = os.path.dirname(os.path.abspath(__file__))
_PACKAGE_ROOTS = tuple(os.path.join(d, "") for d in (
    _HERE, os.path.join(os.path.dirname(_HERE), "compiler"),
    os.path.join(os.path.dirname(_HERE), "runtime")))


def creation_site() -> str:
    """`file:line` of the first stack frame outside the graphrnn package."""
    f = sys._getframe(1)
    while f is not None:
        fname = os.path.abspath(f.f_code.co_filename)
        if not fname.startswith(_PACKAGE_ROOTS):
            return f"{os.path.basename(fname)}:{f.f_lineno}"
        f = f.f_back
    return ""


# ----------------------------------------------------------------------------- scopes

_scopes: list[str] = []


@contextlib.contextmanager
def scope(name: str) -> Iterator[None]:
    """Nodes made inside get `name` as (the end of) their module path."""
    _scopes.append(name)
    try:
        yield
    finally:
        _scopes.pop()


def current_scope() -> str:
    return "/".join(_scopes)


# ----------------------------------------------------------------------------- constructors

def make(op: Op, inputs: Sequence[Node] = (), *, type: NodeType = None,
         param: Param | None = None, name: str = "", **attrs: Any) -> Node:
    """A new node, typed right away when its input types are known."""
    for x in inputs:
        if not isinstance(x, Node):
            raise TypeError(f"{op.value}: expected a node as input, got {type_name(x)}")
    node = Node(op, tuple(inputs), attrs, type, param, name, current_scope(), creation_site())
    if op == Op.INPUT or any(x.type is None for x in inputs):
        return node
    return apply_rule(node, [x.type for x in inputs])


def type_name(x: Any) -> str:
    return type(x).__name__


def as_node(x: Any) -> Node:
    if isinstance(x, Node):
        return x
    if isinstance(x, (int, float, np.floating, np.integer)):
        return const(np.float32(x))
    raise TypeError(f"expected a node or a number, got {type_name(x)}")


def input_(shape: Sequence[Dim] | None = None, dtype: str = F32, name: str = "") -> Node:
    t = None if shape is None else TensorType(tuple(shape), dtype)
    return make(Op.INPUT, type=t, name=name)


def param(p: Param) -> Node:
    return make(Op.PARAM, param=p)


def const(value: Any) -> Node:
    v = np.asarray(value)
    v = v.astype(np.int64 if v.dtype.kind in "iub" else np.float32)
    return make(Op.CONST, value=v)


def fill(shape: Sequence[Dim], value: float = 0.0, dtype: str = F32,
         batch_like: Node | None = None) -> Node:
    """A constant tensor; with `batch_like`, its shape is [batch_like.shape[0], *shape]."""
    return make(Op.FILL, [batch_like] if batch_like is not None else [], shape=tuple(shape),
                value=float(value), dtype=dtype)


def unary(op: Op, x: Node) -> Node:
    return make(op, [x])


def binary(op: Op, a: Any, b: Any) -> Node:
    return make(op, [as_node(a), as_node(b)])


def add(a: Any, b: Any) -> Node:
    return binary(Op.ADD, a, b)


def sub(a: Any, b: Any) -> Node:
    return binary(Op.SUB, a, b)


def mul(a: Any, b: Any) -> Node:
    return binary(Op.MUL, a, b)


def div(a: Any, b: Any) -> Node:
    return binary(Op.DIV, a, b)


def neg(x: Node) -> Node:
    return make(Op.NEG, [x])


def exp(x: Node) -> Node:
    return make(Op.EXP, [x])


def log(x: Node) -> Node:
    return make(Op.LOG, [x])


def tanh(x: Node) -> Node:
    return make(Op.TANH, [x])


def sigmoid(x: Node) -> Node:
    return make(Op.SIGMOID, [x])


def relu(x: Node) -> Node:
    return make(Op.RELU, [x])


def abs_(x: Node) -> Node:
    return make(Op.ABS, [x])


def sign(x: Node) -> Node:
    return make(Op.SIGN, [x])


def sqrt(x: Node) -> Node:
    return make(Op.SQRT, [x])


def erf(x: Node) -> Node:
    return make(Op.ERF, [x])


def softplus(x: Node) -> Node:
    """log(1 + exp(x))."""
    return make(Op.SOFTPLUS, [x])


def pow_(x: Node, p: float) -> Node:
    """x ** p for a constant exponent p."""
    if not (isinstance(p, (int, float, np.floating, np.integer)) and np.isfinite(p)):
        raise ValueError(f"pow: the exponent must be a finite number, got {p!r}")
    return make(Op.POW, [x], p=float(p))


def maximum(a: Any, b: Any) -> Node:
    return binary(Op.MAXIMUM, a, b)


def minimum(a: Any, b: Any) -> Node:
    return binary(Op.MINIMUM, a, b)


def matmul(a: Node, b: Node, transpose_b: bool = False) -> Node:
    return make(Op.MATMUL, [a, b], transpose_b=bool(transpose_b))


def bmm(a: Node, b: Node, transpose_a: bool = False, transpose_b: bool = False) -> Node:
    """a[..., n, k] @ b[..., k, m] for every leading index (torch.matmul without broadcasting);
    `transpose_a` / `transpose_b` swap an operand's last two axes first."""
    return make(Op.BMM, [a, b], transpose_a=bool(transpose_a), transpose_b=bool(transpose_b))


def sum_(x: Node, axes: Sequence[int] | None = None, keepdims: bool = False) -> Node:
    return make(Op.SUM, [x], axes=None if axes is None else tuple(axes), keepdims=keepdims)


def mean(x: Node, axes: Sequence[int] | None = None, keepdims: bool = False) -> Node:
    return make(Op.MEAN, [x], axes=None if axes is None else tuple(axes), keepdims=keepdims)


def softmax(x: Node, axis: int = -1) -> Node:
    return make(Op.SOFTMAX, [x], axis=axis)


def log_softmax(x: Node, axis: int = -1) -> Node:
    return make(Op.LOG_SOFTMAX, [x], axis=axis)


def max_(x: Node, axis: int, keepdims: bool = False) -> Node:
    return make(Op.MAX, [x], axis=axis, keepdims=keepdims)


def min_(x: Node, axis: int, keepdims: bool = False) -> Node:
    return make(Op.MIN, [x], axis=axis, keepdims=keepdims)


def logsumexp(x: Node, axis: int, keepdims: bool = False) -> Node:
    return make(Op.LOGSUMEXP, [x], axis=axis, keepdims=keepdims)


def arg_onehot(x: Node, axis: int, min: bool = False) -> Node:
    return make(Op.ARG_ONEHOT, [x], axis=axis, min=min)


def normalize(x: Node, shape: Sequence[int], eps: float, center: bool = True) -> Node:
    return make(Op.NORMALIZE, [x], shape=tuple(shape), eps=float(eps), center=center)


def normalize_grad(x: Node, g: Node, shape: Sequence[int], eps: float,
                   center: bool = True) -> Node:
    return make(Op.NORMALIZE_GRAD, [x, g], shape=tuple(shape), eps=float(eps), center=center)


def lookup(weight: Node, ids: Node) -> Node:
    return make(Op.LOOKUP, [weight, ids])


def pick(x: Node, idx: Node) -> Node:
    return make(Op.PICK, [x, idx])


def concat(xs: Sequence[Node], axis: int) -> Node:
    return make(Op.CONCAT, list(xs), axis=axis)


def slice_(x: Node, axis: int, start: int, length: int) -> Node:
    return make(Op.SLICE, [x], axis=axis, start=start, length=length)


def index(x: Node, axis: int, i: int) -> Node:
    return make(Op.INDEX, [x], axis=axis, index=i)


def reshape(x: Node, shape: Sequence[Dim]) -> Node:
    return make(Op.RESHAPE, [x], shape=tuple(shape))


def transpose(x: Node, dim0: int, dim1: int) -> Node:
    """x with axes dim0 and dim1 swapped (torch.transpose)."""
    return make(Op.TRANSPOSE, [x], dim0=int(dim0), dim1=int(dim1))


def shift(x: Node, axis: int, by: int) -> Node:
    """y[..., t, ...] = x[..., t - by, ...] along `axis`, zero where t - by is outside it."""
    return make(Op.SHIFT, [x], axis=int(axis), by=int(by))


def dropout(x: Node, p: float, seed: int = 0) -> Node:
    return make(Op.DROPOUT, [x], p=float(p), seed=int(seed))


def get(x: Node, i: int) -> Node:
    return make(Op.GET, [x], index=int(i))


def view(flat: Node, offset: int, shape: Sequence[int]) -> Node:
    return make(Op.VIEW, [flat], offset=int(offset), shape=tuple(shape))


def loop(body: Graph, consts: Sequence[Node], carry: Sequence[Node], xs: Sequence[Node],
         lengths: Node | None = None, *, reverse: bool = False, unroll: int | None = None,
         length: Dim | None = None, name: str = "") -> Node:
    """The scan node; see `graphrnn.loop.Loop` for its semantics."""
    ins = list(consts) + list(carry) + list(xs) + ([lengths] if lengths is not None else [])
    return make(Op.LOOP, ins, name=name, body=body, n_consts=len(consts), n_carry=len(carry),
                n_xs=len(xs), has_lengths=lengths is not None, reverse=bool(reverse),
                unroll=unroll, length=length)



def step(x: Node) -> Node:
    return make(Op.STEP, [x])


def where(mask: Node, a: Any, b: Any) -> Node:
    return make(Op.WHERE, [mask, as_node(a), as_node(b)])


def seq_mask(like: Node, lengths: Node | None = None, every: int | None = None) -> Node:
    return make(Op.SEQ_MASK, [like] + ([lengths] if lengths is not None else []), every=every)


def contract(a: Node, b: Node, transpose_out: bool = False) -> Node:
    return make(Op.CONTRACT, [a, b], transpose_out=bool(transpose_out))


def expand(x: Any, ref: Node) -> Node:
    return make(Op.EXPAND, [as_node(x), ref])


def pad(x: Node, axis: int, before: int, after: int) -> Node:
    return make(Op.PAD, [x], axis=axis, before=int(before), after=int(after))


def scatter(g: Node, ids: Node, n: int) -> Node:
    return make(Op.SCATTER, [g, ids], n=int(n))


def onehot(idx: Node, n: int) -> Node:
    return make(Op.ONEHOT, [idx], n=int(n))


def assemble(parts: Sequence[Node], offsets: Sequence[int], size: int) -> Node:
    return make(Op.ASSEMBLE, list(parts), offsets=tuple(int(o) for o in offsets), size=int(size))



def astype(x: Node, dtype: str) -> Node:
    """`x` as float32 or int64 (numpy's astype: a float truncates toward zero); `x` itself
    when it already has that dtype."""
    if isinstance(x.type, TensorType) and x.type.dtype == dtype:
        return x
    return make(Op.ASTYPE, [x], dtype=str(dtype))


def sample(logits: Node, u: Node, temperature: Node) -> Node:
    """Draw a class per row from softmax(logits / temperature) using the uniforms `u`."""
    return make(Op.SAMPLE, [logits, u, temperature])


def internal_graph(inputs: Sequence[Node], outputs: Sequence[Node]) -> Graph:
    """A graph made by a pass or a builder: unused inputs allowed, every node given a unique
    name."""
    order = toposort(outputs)
    seen = {id(n) for n in order}
    order = [x for x in inputs if id(x) not in seen] + order
    return renamed_graph(tuple(inputs), tuple(outputs), order)


HOOKS["part"] = get                     # `node[i]` and `node.split(n)` of the IR
HOOKS["format"] = printing.format_graph  # `str(graph)`

__all__ = ["internal_graph", "SHAPE_RULES", "apply_rule", "bind_input", "broadcast_shapes",
           "infer_graph", "make", "scope", "loop_operands", "creation_site"]
