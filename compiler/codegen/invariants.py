"""Values of a graph level that the schedule computes once: those of the parameters and
constants alone (candidates for the pack entry, persist.py), and a loop body's values that are
the same at every step (its prologue)."""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op

from ..per_step import per_step


def static_values(nodes: tuple[Node, ...], params: Node | None) -> set[Node]:
    """The values computed from the parameters and constants alone."""
    return _closure(nodes, {params} if params is not None else set())


def invariants(body: Graph, consts: set[Node], training: bool = False) -> set[Node]:
    """Body values that are the same at every step: consts, constants, and what they make
    (in training, not a dropout nor a loop holding one: their masks change with the step)."""
    return _closure(body.nodes, set(consts), training)


def _closure(nodes: tuple[Node, ...], known: set[Node], training: bool = False) -> set[Node]:
    """`known`, constants, and every value made of them alone, in place (`training`: never a
    value that changes with the step)."""
    for n in nodes:
        if training and per_step(n):
            continue
        if n in known or n.op in (Op.CONST, Op.FILL) or \
                (n.op != Op.INPUT and n.inputs and all(x in known for x in n.inputs)):
            known.add(n)
    return known


__all__ = ["static_values", "invariants"]
