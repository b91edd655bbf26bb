"""tie_params: one PARAM node per parameter in each graph, declared sharing checked."""
from __future__ import annotations

from graphrnn.flat import param_keys
from graphrnn.ir import Graph, Node, Op, Param, ShapeError, TensorType, node_error
from .rewrite import rewrite


def tie_params(graph: Graph) -> Graph:
    """Every PARAM node holds the root of its tie chain, and each graph (and each loop body)
    has one PARAM node per root parameter, shared by all its uses.

    A parameter tied (with `share`/`clone`) to one of another shape raises a ShapeError (a
    GraphError) that names the node using it and where the sharing was declared.
    """
    first: dict[int, Node] = {}        # root Param id -> this graph's PARAM node for it

    def visit(n: Node) -> Node:
        if n.op == Op.LOOP:
            return n.replace(attrs={**n.attrs, "body": tie_params(n.attrs["body"])})
        if n.op != Op.PARAM:
            return n
        p, root = n.param, n.param.root()
        if root.shape != p.shape:
            raise _mismatch(graph, n, p, root)
        if id(root) in first:
            return first[id(root)]
        first[id(root)] = n.replace(param=root, type=TensorType(root.shape))
        return first[id(root)]
    return rewrite(graph, visit, into_loops=False)


def _mismatch(graph: Graph, n: Node, p: Param, root: Param) -> Exception:
    """The error for a tie between shapes, naming both parameters by their keys."""
    used = {id(m.param): m.param for m, _ in graph.walk() if m.op == Op.PARAM}
    keys = param_keys([*used.values(), root] if id(root) not in used else list(used.values()))
    where = f" (shared at {p.tie_where})" if p.tie_where else ""
    return node_error(n, f"cannot tie {keys[p]} {list(p.shape)} to {keys[root]} "
                      f"{list(root.shape)}: tied parameters need the same shape{where}",
                      ShapeError)
