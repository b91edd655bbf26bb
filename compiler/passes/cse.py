"""eliminate_common_subexpressions: one node for each distinct computation."""
from __future__ import annotations

from typing import Any, Hashable

import numpy as np

from graphrnn.ir import Graph, Node, Op

from .rewrite import map_nodes, with_inputs


def eliminate_common_subexpressions(graph: Graph) -> Graph:
    """Merge nodes with the same op, the same input nodes, equal attrs and the same Param.

    Constants merge when their arrays are equal (dtype, shape and bytes); sub-graphs in attrs
    (loop and fused bodies) compare by identity. Inputs are never merged. Each loop body is
    treated as a graph of its own, so no node is shared between a body and its outside.
    Returns `graph` itself when nothing merged.
    """
    seen: dict[Hashable, Node] = {}
    bodies: dict[int, Graph] = {}       # a body shared by two loops stays shared

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if m.op in (Op.LOOP, Op.FUSED):
            old = m.attrs["body"]
            if id(old) not in bodies:
                bodies[id(old)] = eliminate_common_subexpressions(old)
            if bodies[id(old)] is not old:
                m = m.replace(attrs={**m.attrs, "body": bodies[id(old)]})
        return seen.setdefault(_key(m), m) if m.op != Op.INPUT else m
    return graph.remapped(map_nodes(graph.nodes, visit))


def _key(n: Node) -> Hashable:
    return (n.op, tuple(id(x) for x in n.inputs), id(n.param.root()) if n.param else None,
            n.type, tuple(sorted((k, frozen(v)) for k, v in n.attrs.items())))


def frozen(v: Any) -> Hashable:
    """A hashable stand-in for an attr value, equal exactly when the values are."""
    if isinstance(v, np.ndarray):
        return ("array", v.dtype.str, v.shape, v.tobytes())
    if isinstance(v, Graph):
        return ("graph", id(v))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__, tuple(frozen(x) for x in v))
    if isinstance(v, dict):
        return ("dict", tuple(sorted((k, frozen(x)) for k, x in v.items())))
    if isinstance(v, float) and v != v:
        return ("nan",)
    return (type(v).__name__, v)


__all__ = ["eliminate_common_subexpressions", "frozen"]
