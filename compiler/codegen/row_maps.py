"""Elementwise maps folded into a norm's row kernel (emit_rows.py), one pass and one kernel
less per norm:

    premap:  normalize_grad(x, fused(...)) whose FUSED operand it alone reads evaluates the
             map as it reads each element of the row (the map is never stored); so does a
             sum or mean over the last axis of a FUSED map it alone reads (emit_sum_map.py:
             a loss reads the prediction and the target, not the per-entry losses);
    postmap: a FUSED map of a normalize's result, of its shape, is written by the normalize's
             kernel in the pass that writes the normalised row (which is still stored); a
             premapped sum's kernel likewise writes a later FUSED map over its operand's
             shape that reads what the premap reads (a loss and its gradient: one pass
             over the prediction and the target).
"""
from __future__ import annotations

from graphrnn.ir import Node, Op, sums_last_axis


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
    a float map of its shape that it alone reads (none of `taken`); SUM / MEAN over the last
    axis -> the FUSED float map it alone reads."""
    users = _users(nodes, outputs)
    found: dict[Node, Node] = {}
    for n in nodes:
        g = _premapped(n)
        if g is None or g.op != Op.FUSED or g in taken or n in taken or users[g] != 1 \
                or not _floats(g):
            continue
        found[n] = g
    return found


def _premapped(n: Node) -> Node | None:
    """The operand of `n` a premap can compute, if `n` can take one."""
    if n.op == Op.NORMALIZE_GRAD:
        g = n.inputs[1]
        return g if g.type.shape == n.type.shape else None
    return n.inputs[0] if sums_last_axis(n) else None


def premap_reads(n: Node, pre: Node | None) -> tuple[Node, ...]:
    """What the kernel of `n` reads: its inputs, the premapped one replaced by its inputs."""
    if pre is None:
        return n.inputs
    return tuple(y for x in n.inputs for y in (pre.inputs if x is pre else (x,)))


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


def sum_postmaps(nodes: tuple[Node, ...], premapped: dict[Node, Node], taken: set[Node]
                 ) -> dict[Node, Node]:
    """Premapped SUM / MEAN -> the first later FUSED float map (none of `taken`) over the
    premap's shape that shares an operand with the premap and does not read the sum; its
    kernel computes the map too when the map's inputs are computed by then (the scheduler
    checks)."""
    order = {n: i for i, n in enumerate(nodes)}
    found: dict[Node, Node] = {}
    chosen: set[Node] = set()
    for n in nodes:
        pre = premapped.get(n)
        if n.op not in (Op.SUM, Op.MEAN) or pre is None or n in taken:
            continue
        for f in nodes[order[n] + 1:]:
            if f.op == Op.FUSED and f not in taken and f not in chosen and _floats(f) \
                    and f.type.shape == pre.type.shape and n not in f.inputs \
                    and set(f.inputs) & set(pre.inputs):
                found[n] = f
                chosen.add(f)
                break
    return found


__all__ = ["premaps", "postmaps", "premap_reads", "sum_postmaps"]
