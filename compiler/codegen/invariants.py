"""Values of a graph level that the schedule computes once: those of the parameters and
constants alone (candidates for the pack entry, persist.py), and a loop body's values that are
the same at every step (its prologue)."""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op

from ..per_step import per_step


def static_values(nodes: tuple[Node, ...], params: Node | None) -> set[Node]:
    """The values computed from the parameters and constants alone."""
    static: set[Node] = set()
    for n in nodes:
        if n is params or n.op in (Op.CONST, Op.FILL) or \
                (n.op != Op.INPUT and n.inputs and all(x in static for x in n.inputs)):
            static.add(n)
    return static


def invariants(body: Graph, consts: set[Node], training: bool = False) -> set[Node]:
    """Body values that are the same at every step: consts, constants, and what they make
    (in training, not a dropout nor a loop holding one: their masks change with the step)."""
    inv = set(consts)
    for n in body.nodes:
        if training and per_step(n):
            continue
        if n.op in (Op.CONST, Op.FILL) or (n.op != Op.INPUT and n.inputs
                                            and all(x in inv for x in n.inputs)):
            inv.add(n)
    return inv


__all__ = ["static_values", "invariants"]
