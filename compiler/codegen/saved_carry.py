"""Carried states that live in the sequence that saves them.

A training step's forward loop returns the carry each step received as a per-step output
(the saved carry h_{t-1} the backward loop and the weight gradients read). Kept in a buffer of
its own, the carry is copied twice per step: the new value into the carry buffer, then, at
the start of the next step, the carry buffer into the saved sequence. A carry whose saved
sequence is such an output is read straight from that sequence instead:

    ys_j[:, first] = carry_init                  # before the loop (when it runs a step)
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        body reads the carry from ys_j[:, t]
        if s < steps - 1: ys_j[:, t ± 1] = new carry       # the next step's carry
        else:             carry = new carry                # the loop's final carry

one copy per step instead of two, and the loop's carry buffer holds the final carry only.
Loops with lengths or a stop value (whose carries a finished row keeps) and checkpointed ones
keep the carry buffer; so does a carry whose new value is not a value computed by the step.
"""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op

from .kernel import computed


def saved_carries(loop: Node, views: frozenset[Op]) -> dict[int, int]:
    """carry i -> the per-step output j (0-based among the ys) that returns the carry the
    step received, for the carries that can live in that sequence (module docstring)."""
    a = loop.attrs
    if a.get("has_lengths") or a.get("until") is not None or a.get("checkpoint"):
        return {}
    body: Graph = a["body"]
    n_c, n_h = a["n_consts"], a["n_carry"]
    b_carry = body.inputs[n_c:n_c + n_h]
    found: dict[int, int] = {}
    for j, y in enumerate(body.outputs[n_h:]):
        for i, bc in enumerate(b_carry):
            if y is bc and i not in found and computed(body.outputs[i], views):
                found[i] = j
    return found


__all__ = ["saved_carries"]
