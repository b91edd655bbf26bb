"""infer_shapes: bind the input types and type every node, loop bodies included."""
from __future__ import annotations

from typing import Sequence

from graphrnn.ir import Graph, GraphError, Node, TensorType
from graphrnn.ops import infer_graph

from .validate import verify


def infer_shapes(graph: Graph, input_types: Sequence[TensorType] | None = None) -> Graph:
    """`graph` with symbols bound by `input_types` and every node typed by SHAPE_RULES.

    `input_types` gives one TensorType per graph input; dims may be ints (B=20, T=3) or
    symbols ("B", "T") to keep the graph generic. None uses the inputs' declared types.
    Checks each loop's carry (the body must return what it takes), then `verify`s the result:
    arity, topological order, closed bodies, every node typed. Returns `graph` itself when it
    was already typed that way.
    """
    if input_types is None:
        missing = [x.name for x in graph.inputs if x.type is None]
        if missing:
            raise GraphError(f"inputs {', '.join(missing)} have no declared type: pass "
                             "input_types to infer_shapes")
        input_types = [x.type for x in graph.inputs]
    typed = infer_graph(graph, list(input_types))
    verify(typed)
    return graph if _same_types(graph, typed) else typed


def _same_types(a: Graph, b: Graph) -> bool:
    """Whether `b` (a typed copy of `a`) only repeats what `a` already says."""
    left, right = list(a.walk()), list(b.walk())
    return len(left) == len(right) and all(
        m.op == n.op and m.type is not None and m.type == n.type and _same_attrs(m, n)
        for (m, _), (n, _) in zip(left, right))


def _same_attrs(m: Node, n: Node) -> bool:
    if m.attrs.keys() != n.attrs.keys():
        return False
    # bodies were compared node by node in the walk; arrays are carried over unchanged
    return all(m.attrs[k] is n.attrs[k] or m.attrs[k] == n.attrs[k]
               for k in m.attrs if k not in ("body", "value"))


__all__ = ["infer_shapes"]
