"""tie_params: one PARAM node per parameter in each graph, declared sharing checked."""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op, ShapeError, TensorType, node_error
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
            where = f" (shared at {p.tie_where})" if p.tie_where else ""
            raise node_error(n, f"cannot tie {p.owner}.{p.name} {list(p.shape)} to "
                             f"{root.owner}.{root.name}: expected shape {list(root.shape)}"
                             f"{where}", ShapeError)
        if id(root) in first:
            return first[id(root)]
        first[id(root)] = n.replace(param=root, type=TensorType(root.shape))
        return first[id(root)]
    return rewrite(graph, visit, into_loops=False)
