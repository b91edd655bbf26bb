"""Elementwise maps folded into a norm's row kernel (emit_rows.py), one pass and one kernel
less per norm:

    premap:  normalize_grad(x, fused(...)) whose FUSED operand it alone reads evaluates the
             map as it reads each element of the row (the map is never stored);
    postmap: a FUSED map of a normalize's result, of its shape, is written by the normalize's
             kernel in the pass that writes the normalised row (which is still stored).
"""
from __future__ import annotations

from graphrnn.ir import Node, Op


def _users(nodes: tuple[Node, ...], outputs: tuple[Node, ...]) -> dict[Node, int]:
    users: dict[Node, int] = {y: 1 for y in outputs}
    for n in nodes:
        for x in n.inputs:
            users[x] = users.get(x, 0) + 1
    return users


def _floats(n: Node) -> bool:
    return n.type.dtype == "float32" and all(x.type.dtype == "float32" for x in n.inputs)


def premaps(nodes: tuple[Node, ...], outputs: tuple[Node, ...], taken: set[Node]
            ) -> dict[Node, Node]:
    """NORMALIZE_GRAD -> the FUSED map of its second operand that it applies as it reads it:
    a float map of its shape that it alone reads (none of `taken`)."""
    users = _users(nodes, outputs)
    found: dict[Node, Node] = {}
    for n in nodes:
        g = n.inputs[1] if n.op == Op.NORMALIZE_GRAD else None
        if g is None or g.op != Op.FUSED or g in taken or n in taken or users[g] != 1 \
                or g.type.shape != n.type.shape or not _floats(g):
            continue
        found[n] = g
    return found


def postmaps(nodes: tuple[Node, ...], outputs: tuple[Node, ...], taken: set[Node]
             ) -> tuple[dict[Node, Node], set[Node]]:
    """(NORMALIZE -> the first FUSED float map of it, of its shape (none of `taken`), that its
    kernel also writes when the map's other inputs are computed by then (the scheduler
    checks); the norms that map alone reads, which need not be stored)."""
    users = _users(nodes, outputs)
    found: dict[Node, Node] = {}
    for f in nodes:
        if f.op != Op.FUSED or f in taken or not _floats(f):
            continue
        for x in f.inputs:
            if x.op == Op.NORMALIZE and x not in taken and x not in found \
                    and x.type.shape == f.type.shape:
                found[x] = f
                break
    return found, {x for x, f in found.items() if users[x] == f.inputs.count(x)}


__all__ = ["premaps", "postmaps"]
