"""tie_params: one storage per shared parameter, declared sharing checked."""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op, ShapeError, TensorType, node_error
from .rewrite import rewrite


def tie_params(graph: Graph) -> Graph:
    """Every PARAM node holds the root of its tie chain; tied shapes must agree.

    A parameter tied (with `share`/`clone`) to one of another shape raises a GraphError that
    names the node using it and where the sharing was declared.
    """
    def visit(n: Node) -> Node:
        if n.op != Op.PARAM or n.param.tied_to is None:
            return n
        p, root = n.param, n.param.root()
        if root.shape != p.shape:
            where = f" (shared at {p.tie_where})" if p.tie_where else ""
            raise node_error(n, f"cannot tie {p.owner}.{p.name} {list(p.shape)} to "
                             f"{root.owner}.{root.name}: expected shape {list(root.shape)}"
                             f"{where}", ShapeError)
        return n.replace(param=root, type=TensorType(root.shape))
    return rewrite(graph, visit)
