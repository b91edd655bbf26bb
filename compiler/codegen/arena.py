"""plan_arena: place buffers in one scratch arena, sharing space between dead and live ones.

Each buffer lives over kernel positions [start, end] (its first writer to its last reader; a
buffer read inside a loop body lives until the loop ends). Buffers whose lifetimes do not
overlap may share memory: greedy first fit in order of first write, every offset 64-byte
aligned. Buffers that scale with the step count T, the batch size B or both sit in regions
of their own after the fixed one, so the arena holds
`fixed + per_step * T + per_row * B + per_row_step * B * T` floats (`Regions`) and every
offset stays a `Lin`. A further time symbol (strides.EXTRA) adds a region per product it
appears in (U, B*U, T*U, B*T*U, ...): the arena's size is a sum of one term per region.
"""
from __future__ import annotations

from bisect import insort
from dataclasses import dataclass
from typing import Callable

from graphrnn.ir import LoweringError

from .strides import BATCH, STEPS, ZERO, Lin, Monomial

ALIGN = 16                      # floats: every buffer starts on a 64-byte line


@dataclass(eq=False)
class Buffer:
    """Memory one or more values live in, over kernel positions [start, end]."""
    name: str
    size: Lin                   # floats (an int64 element takes two)
    start: int
    end: int
    io: int = -1                # >= 0: the entry point's io pointer of that index, not arena
    offset: Lin = ZERO          # arena offset in floats, set by `plan_arena`

    def __repr__(self) -> str:
        return (f"Buffer({self.name}, {self.size} floats @ {self.offset}, "
                f"[{self.start}, {self.end}])")


# the regions in arena order: which monomial of a buffer's size each one holds (the fixed
# one, T, B, B*T; then those of further time symbols, in sorted order)
REGIONS: tuple[Monomial, ...] = ((), (STEPS,), (BATCH,), (BATCH, STEPS))


def plan_arena(buffers: list[Buffer]) -> Lin:
    """Place every arena buffer; returns the arena's size in floats (a Lin in the symbols).

    Greedy first fit in order of first write, per region: a buffer takes the lowest aligned
    offset not used by any placed buffer whose lifetime overlaps its own.
    """
    regions: dict[Monomial, list[Buffer]] = {r: [] for r in REGIONS}
    for b in buffers:
        if b.io >= 0:
            continue
        terms = ([()] if b.size.c else []) + [m for m, _ in b.size.terms]
        if len(terms) > 1:
            raise LoweringError(f"buffer {b.name} has {b.size} floats: sizes must be fixed or "
                                "proportional to one product of the sequence lengths and the "
                                "batch size")
        regions.setdefault(terms[0] if terms else (), []).append(b)
    total = ZERO
    order = [*REGIONS, *sorted(r for r in regions if r not in REGIONS)]
    for r in order:
        placed = regions[r]
        size = _first_fit(placed, lambda b, r=r: b.size.coef(*r) if r else b.size.c)
        unit = Lin(terms={r: 1}) if r else Lin(1)
        for b in placed:
            b.offset = total + unit * b.offset.c
        total = total + unit * size
    return total


def _first_fit(buffers: list[Buffer], size: Callable[[Buffer], int]) -> int:
    """Buffers in order of first write; `live` holds the placed ones still alive, by offset.
    A placed buffer starts no later than the one being placed, so it overlaps it exactly
    when it ends no earlier; one that ended is free for every later buffer too and leaves
    `live` for good (no rescan of all placed buffers: linear in the buffers for a bounded
    number alive at once)."""
    live: list[Buffer] = []
    top = 0
    for b in sorted(buffers, key=lambda b: (b.start, -size(b))):
        live = [p for p in live if p.end >= b.start]
        offset = 0
        for p in live:
            if offset + size(b) <= p.offset.c:
                break
            offset = max(offset, _aligned(p.offset.c + size(p)))
        b.offset = Lin(offset)
        insort(live, b, key=lambda p: p.offset.c)
        top = max(top, _aligned(offset + size(b)))
    return top


def _aligned(n: int) -> int:
    return -(-n // ALIGN) * ALIGN


__all__ = ["Buffer", "plan_arena", "ALIGN"]
