"""expose_state: make the carried state of the top-level loops an input and an output.

For a stateful model (Keras' stateful RNNs, tiny-dnn's kept state): every top-level loop's
initial carry becomes a new graph input and its final carry a new graph output, so a caller
can feed a long stream in chunks and pass the state from one chunk to the next:

    loop(consts, carry_0, xs)           ->  loop(consts, state_in, xs)
    outputs (*ys,)                      ->  outputs (*ys, *carry_final)

The graph of the original initial values (`carry_0` from the same inputs) is returned too,
so the first chunk can start where an ordinary call would.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphrnn import ops
from graphrnn.ir import Graph, GraphError, Node, Op, loop_operands, node_error


@dataclass(frozen=True)
class StatefulGraph:
    graph: Graph            # inputs (*user inputs, *state); outputs (*user outputs, *state)
    initial: Graph          # user inputs -> the initial state, in the same order
    n_state: int


def expose_state(graph: Graph) -> StatefulGraph:
    """The graph with every top-level loop's carry exposed (see the module docstring)."""
    new: dict[Node, Node] = {x: x for x in graph.inputs}
    states: list[Node] = []
    finals: list[tuple[Node, int]] = []
    initial: list[Node] = []
    for n in graph.nodes:
        if n in new:
            continue
        ins = [new[x] for x in n.inputs]
        if n.op == Op.LOOP and n.attrs["n_carry"]:
            if n.attrs.get("reverse"):
                raise node_error(n, "a reverse loop cannot carry its state from one chunk to "
                                 "the next: compile it without stateful=True", GraphError)
            _, carry, _, _ = loop_operands(n)
            k = n.attrs["n_consts"]
            for i, c in enumerate(carry):
                t = c.type
                x = ops.input_(None if t is None else t.shape,
                               "float32" if t is None else t.dtype,
                               name=f"state_{n.name or 'loop'}_{i}")
                ins[k + i] = x
                states.append(x)
                initial.append(c)
        m = n.replace(inputs=tuple(ins))
        new[n] = m
        if n.op == Op.LOOP and n.attrs["n_carry"]:
            finals.extend((m, i) for i in range(n.attrs["n_carry"]))
    outs = [ops.get(m, i).annotate(name=f"{m.name or 'loop'}_final_{i}") for m, i in finals]
    stateful = graph.rebuilt([*graph.inputs, *states], [new[y] for y in graph.outputs] + outs)
    init = graph.rebuilt(graph.inputs, initial)
    return StatefulGraph(stateful, init, len(states))


__all__ = ["expose_state", "StatefulGraph"]
