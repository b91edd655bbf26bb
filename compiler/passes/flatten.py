"""flatten_params: every parameter becomes a view of one flat float32 vector.

After the pass the graph's last input is `params : f32[size]` and each former PARAM is
`view(%params, offset=..., shape=...)`, laid out by `graphrnn.ir.layout_params`, so the
vector is exactly a model's `flat` (Torch `getParameters`, done explicitly):

    %rnn.weight_ih_l0 : f32[26,27] = view(%params, offset=0, shape=(26, 27))

Loop bodies are closed, so a loop whose body uses parameters takes the vector as one more
const, the first, and its body views that input.
"""
from __future__ import annotations

from typing import Sequence

from graphrnn.flat import ParamTable, Slot, layout_params
from graphrnn.ir import Graph, GraphError, Node, Op, Param, TensorType, node_error

from .rewrite import rewrite

FLAT_NAME = "params"


def flatten_params(graph: Graph, order: Sequence[Param] | None = None
                   ) -> tuple[Graph, ParamTable]:
    """(graph reading one `params` input, the table of where each parameter lives).

    `order` is the layout order, by default `graph.params()` (first use), which is the
    order a gModule lays its `flat` out in. The driver passes the parameters of the graph it
    was given, so the layout stays the model's even after passes move nodes around.
    """
    for x in graph.inputs:
        if x.name == FLAT_NAME:
            raise node_error(x, f"an input is already named {FLAT_NAME!r}: the graph has been "
                             "flattened, or rename the input")
    params = [p.root() for p in (graph.params() if order is None else order)]
    table, keys = layout_params(list({id(p): p for p in params}.values()))
    slots = {id(p): (keys[p], table.slots[keys[p]]) for p in params}
    for p in graph.params():
        if id(p) not in slots:
            raise GraphError(f"parameter {p.owner}.{p.name} is used by the graph but missing "
                             "from the layout order")
    flat = Node(Op.INPUT, (), {}, TensorType((table.size,)), name=FLAT_NAME)
    g = _views(graph, flat, slots)
    return g.rebuilt([*g.inputs, flat], g.outputs), table


def _views(graph: Graph, flat: Node, slots: dict[int, tuple[str, Slot]]) -> Graph:
    """`graph` with PARAMs read from `flat`, which loops using parameters take as a const."""
    views: dict[int, Node] = {}

    def visit(n: Node) -> Node:
        if n.op == Op.PARAM:
            p = n.param.root()
            if id(p) not in views:
                key, slot = slots[id(p)]
                views[id(p)] = Node(Op.VIEW, (flat,), {"offset": slot.offset,
                                                       "shape": slot.shape},
                                    TensorType(slot.shape), name=key, scope=n.scope,
                                    where=n.where, doc=n.doc)
            return views[id(p)]
        if n.op == Op.LOOP and any(m.op == Op.PARAM for m, _ in n.attrs["body"].walk()):
            inner = Node(Op.INPUT, (), {}, flat.type, name=FLAT_NAME)
            body = _views(n.attrs["body"], inner, slots)
            body = body.rebuilt([inner, *body.inputs], body.outputs)
            return n.replace(inputs=(flat, *n.inputs),
                             attrs={**n.attrs, "body": body, "n_consts": n.attrs["n_consts"] + 1})
        return n
    return rewrite(graph, visit, into_loops=False)


__all__ = ["flatten_params", "FLAT_NAME"]
