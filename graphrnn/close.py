"""close_graph: a graph closed from the nodes a user built (nngraph `gModule`'s first step).

The construction handles stay untouched, so one input may serve several models (an encoder
and a full model over the same `gr.Input`). Nodes know their inputs only: a node computed
from an input that reaches no output is simply not part of the graph.
"""
from __future__ import annotations

from typing import Sequence

from .ir import Graph, GraphError, Node, Op, node_error, toposort


def close_graph(inputs: Sequence[Node], outputs: Sequence[Node]) -> Graph:
    """Close a graph: check it, and give each node a unique, stable name.

    Builds fresh nodes, so the construction handles stay untouched and may be reused (one
    input for an encoder and a full model). Nodes know their inputs only, so a node
    computed from an input that reaches no output is simply not part of the graph.
    """
    inputs, outputs = tuple(inputs), tuple(outputs)
    for x in inputs:
        if not isinstance(x, Node) or x.op != Op.INPUT:
            raise node_error(x, "a graph input must be an input node, made with "
                             "nn.Identity()() or gr.Input(...)") if isinstance(x, Node) \
                else GraphError(f"a graph input must be a node, got {type(x).__name__}")
    if len(set(map(id, inputs))) != len(inputs):
        raise GraphError("the same input node is listed twice")
    for y in outputs:
        if not isinstance(y, Node):
            raise GraphError(f"a graph output must be a node, got {type(y).__name__}")
    order = toposort(outputs)
    reached = {id(n) for n in order}
    declared = {id(x) for x in inputs}
    for n in order:
        if n.op == Op.INPUT and id(n) not in declared:
            raise node_error(n, "an output depends on this input, which is not among the "
                             "graph's inputs: add it to gModule's input list")
    for x in inputs:
        if id(x) not in reached:
            raise node_error(x, "this input does not reach any output (dangling input)")
    return renamed_graph(inputs, outputs, order)


def renamed_graph(inputs: tuple[Node, ...], outputs: tuple[Node, ...],
             order: list[Node]) -> Graph:
    """Fresh copies of `order` with unique names, names the user chose kept."""
    taken: set[str] = set()
    given: dict[int, str] = {}      # names the user chose win over generated ones
    for n in order:
        if n.name and n.name not in taken:
            taken.add(n.name)
            given[id(n)] = n.name
    counters: dict[str, int] = {}
    new: dict[int, Node] = {}
    for n in order:
        name = given.get(id(n), "")
        if not name:
            name = n.name
            base = name or (n.op.value if n.op != Op.PARAM else _param_label(n))
            k = counters.get(base, 0)
            while f"{base}_{k}" in taken:
                k += 1
            counters[base] = k + 1
            name = f"{base}_{k}"
        taken.add(name)
        new[id(n)] = n.replace(inputs=tuple(new[id(x)] for x in n.inputs), name=name)
    return Graph(tuple(new[id(x)] for x in inputs), tuple(new[id(y)] for y in outputs),
                 tuple(new[id(n)] for n in order))


def _param_label(n: Node) -> str:
    return f"{n.param.owner}.{n.param.name}" if n.param is not None else "param"
