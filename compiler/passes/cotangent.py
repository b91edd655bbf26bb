"""fix_unit_cotangent: a training graph whose loss cotangent is the constant 1.

`prepare_training` gives a graph `(*inputs, params, d_loss) -> (loss, ..., grads)`: the
gradient of sum(loss * d_loss). For a scalar loss the cotangent is always 1, so the training
step takes no cotangent argument and `params` is again the last input, as the lowering and
the interpreter's steps expect:

    (*inputs, params, d_loss)   ->   (*inputs, params),   d_loss := 1.0
"""
from __future__ import annotations

import numpy as np

from graphrnn import ops
from graphrnn.ir import Graph, Node

from .rewrite import rewrite


def fix_unit_cotangent(graph: Graph) -> Graph:
    """`graph` with its last input (the loss cotangent) replaced by the constant 1."""
    *user, params, cotangent = graph.inputs
    one = ops.const(np.float32(1.0))

    def visit(n: Node) -> Node:
        return one if n is cotangent else n
    g = rewrite(graph, visit, into_loops=False)
    return g.rebuilt(list(user) + [params], g.outputs)


__all__ = ["fix_unit_cotangent"]
