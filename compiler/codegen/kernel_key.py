"""kernel_key: what a kernel's code is made from, as one hashable value (or None).

Kernels whose keys are equal have the same code but for their names, so a twin found by its
key (kernel_twins.py) is neither emitted nor printed: a layer's two directions and the tied
steps of an unrolled graph cost one emission each. The key holds everything the emitter is
handed:

    kernel_key(rule, node, layouts, n_scalars, more) =
        (the rule: its code, and what its closure holds, described recursively,
         the node: op, attrs, type, and its inputs' ops, types, attrs and coincidences,
         the operands' layouts, the number of scalar arguments, the time symbols)

FUSED bodies and other graphs are described node by node (inputs as positions), never by
name. A value this module cannot describe exactly (an LLVM value of the calling function, a
set, an object it does not know) makes the key None: that kernel is emitted and compared by
its text. Tests compile with `kernel_twins.CHECK_KEYS` on, which emits every kernel and fails
on two keys that are equal while their code is not.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import types
from typing import Any, Hashable, Sequence

import numpy as np
from llvmlite import ir

from graphrnn.ir import Graph, Node, Param

from .strides import Lin

_PLAIN = (bool, int, str, bytes, type(None))


class _Unknown(Exception):
    """A value the key cannot describe exactly."""


class KeyMemo:
    """Descriptions of the graphs and nodes of one lowering, each made once (their objects
    are held, so an id is never reused while the memo lives)."""

    def __init__(self) -> None:
        self.done: dict[int, tuple[Any, Hashable]] = {}
        self.active: set[int] = set()


def kernel_key(rule: Any, node: Node, layouts: Sequence[Any], n_scalars: int,
               more: Sequence[str], memo: KeyMemo) -> Hashable | None:
    """The key of the kernel `rule(em, node, out, ins)` emits, or None (see the module)."""
    try:
        return (_value(rule, memo), _value(node, memo),
                tuple(_value(x, memo) for x in layouts), n_scalars, tuple(more))
    except _Unknown:
        return None


def _value(v: Any, memo: KeyMemo) -> Hashable:
    if isinstance(v, float):
        return ("float", v.hex())           # -0.0 is not 0.0; a NaN equals itself
    if isinstance(v, _PLAIN):
        return (type(v).__name__, v)       # 1 and True are different keys
    if isinstance(v, Lin):
        return ("Lin", v.c, v.terms)
    if isinstance(v, enum.Enum):
        return (type(v).__module__, type(v).__qualname__, _value(v.value, memo))
    if isinstance(v, (tuple, list)):
        return (type(v).__name__, tuple(_value(x, memo) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple((_value(k, memo), _value(x, memo)) for k, x in v.items()))
    if isinstance(v, Node):
        return _once(v, memo, _node)
    if isinstance(v, Graph):
        return _once(v, memo, _graph)
    if isinstance(v, Param):
        return ("param", v.shape)
    if isinstance(v, (np.ndarray, np.generic)):
        a = np.asarray(v)
        return ("array", a.dtype.str, a.shape, a.tobytes())
    if isinstance(v, types.FunctionType):
        return _once(v, memo, _function)
    if isinstance(v, functools.partial):
        return ("partial", _value(v.func, memo), _value(v.args, memo),
                _value(v.keywords, memo))
    if isinstance(v, types.MethodType):
        return ("method", _value(v.__func__, memo), _value(v.__self__, memo))
    if isinstance(v, types.BuiltinFunctionType):
        return ("builtin", v.__module__, v.__qualname__)
    if isinstance(v, type):
        return ("class", v.__module__, v.__qualname__)
    if isinstance(v, ir.Constant):
        return ("ir.Constant", str(v))
    if isinstance(v, ir.Type):
        return ("ir.Type", str(v))
    if dataclasses.is_dataclass(v):
        return (type(v).__module__, type(v).__qualname__,
                tuple(_value(getattr(v, f.name), memo) for f in dataclasses.fields(v)))
    raise _Unknown(type(v).__qualname__)


def _once(v: Any, memo: KeyMemo, describe: Any) -> Hashable:
    hit = memo.done.get(id(v))
    if hit is not None:
        return hit[1]
    if id(v) in memo.active:               # a cycle (a function that holds itself)
        raise _Unknown("cycle")
    memo.active.add(id(v))
    try:
        key = describe(v, memo)
    finally:
        memo.active.discard(id(v))
    memo.done[id(v)] = (v, key)
    return key


def _function(f: types.FunctionType, memo: KeyMemo) -> Hashable:
    code = f.__code__
    cells = []
    for cell in f.__closure__ or ():
        try:
            cells.append(_value(cell.cell_contents, memo))
        except ValueError:                  # an empty cell
            raise _Unknown("empty cell") from None
    return ("function", code.co_filename, code.co_firstlineno, code.co_qualname, code,
            tuple(cells), _value(f.__defaults__, memo), _value(f.__kwdefaults__, memo))


def _node(n: Node, memo: KeyMemo) -> Hashable:
    first: dict[int, int] = {}
    inputs = tuple((x.op.value, _value(x.type, memo), _value(x.attrs, memo),
                    _value(x.param, memo), first.setdefault(id(x), i))
                   for i, x in enumerate(n.inputs))
    return ("node", n.op.value, _value(n.attrs, memo), _value(n.type, memo),
            _value(n.param, memo), inputs)


def _graph(g: Graph, memo: KeyMemo) -> Hashable:
    index = {id(x): i for i, x in enumerate(g.nodes)}

    def at(x: Node) -> int:
        if id(x) not in index:
            raise _Unknown("a node outside its graph")
        return index[id(x)]
    nodes = tuple((x.op.value, _value(x.attrs, memo), _value(x.type, memo),
                   _value(x.param, memo), tuple(at(y) for y in x.inputs)) for x in g.nodes)
    return ("graph", nodes, tuple(at(x) for x in g.inputs), tuple(at(x) for x in g.outputs))


__all__ = ["kernel_key", "KeyMemo"]
