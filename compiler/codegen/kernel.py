"""The schedule's data: where a kernel writes (Home) and what it computes (Kernel).

Every value is a buffer or a view of one. Views (VIEWS) and leaves (LEAVES) need no code; any
other node is `computed` by a kernel of its own (or of a kernel of several nodes, see
group_kernels.py).
"""
from __future__ import annotations

from dataclasses import dataclass

from graphrnn.ir import Node, Op

from .arena import Buffer
from .epilogue import Group
from .strides import ZERO, Layout, Lin

# ops that are a view of their (first) input, or a leaf with storage of its own
VIEWS = frozenset({Op.SLICE, Op.INDEX, Op.RESHAPE, Op.GET, Op.DROPOUT, Op.EXPAND, Op.VIEW})
LEAVES = frozenset({Op.INPUT, Op.CONST, Op.FILL})
# ops with no emitter of their own: views and leaves (a pointer and a layout) and loops (their
# body's kernels do the work; emit_loop.py); PARAM never reaches the lowering (flattened)
NO_CODE = VIEWS | LEAVES | {Op.LOOP}


def computed(n: Node, views: frozenset[Op] = VIEWS) -> bool:
    """Whether `n` is always written by a kernel of its own (so it can be given a home)."""
    return n.op not in views and n.op not in LEAVES and n.op != Op.LOOP


@dataclass(frozen=True)
class Home:
    """Where a kernel writes: a buffer (arena or io), or row t of a loop's per-step output;
    `offset` elements in (a piece of a concatenation computed in place)."""
    layout: Layout
    buffer: Buffer | None = None
    slot: int = -1              # >= 0: per-step output `slot` of the enclosing loop, at step t
    offset: Lin = ZERO


@dataclass(frozen=True, eq=False)
class Kernel:
    """One unit of emitted work. `kind`: view | map | reduce | gemm | pack | index | copy | loop.

    For a copy, `node` is the value copied into `dest`. A pack writes `node`'s (a matmul's)
    right operand into `packed`; the gemm reads it from there. A gemm whose `node` is a FUSED
    node computes its `matmul` input and applies the fused body to the accumulators before
    storing them (the matmul's result never goes to memory). A gemm with a `group` also
    computes the group's members in the tile's epilogue (codegen/epilogue.py): `stages`
    lists each member and its home (None: kept in registers), `dest` is None.
    """
    name: str
    kind: str
    node: Node
    dest: Home | None = None
    packed: Buffer | None = None
    prologue: tuple["Kernel", ...] = ()
    body: tuple["Kernel", ...] = ()
    homes: tuple[Home, ...] = ()                        # loop: where each part of its value is
    carry_from: tuple["Node | Kernel | None", ...] = ()  # loop: new carry i (None: unchanged)
    carry_slots: tuple[int, ...] = ()   # loop: carry i read from per-step output j (-1: no)
    matmul: Node | None = None                          # gemm: the FUSED node's absorbed matmul
    segments: int = 1                                   # gemm, pack: N split in S segments
    group: Group | None = None                          # gemm: the epilogue group it computes
    stages: tuple[tuple[Node, Home | None], ...] = ()   # gemm with a group: members, homes
    premap: Node | None = None      # reduce (NORMALIZE_GRAD): the FUSED map of its 2nd operand
    copies: tuple[tuple[Node, Home], ...] = ()  # cluster map: a member stored a second time

    def walk(self):
        """This kernel and every kernel inside it."""
        yield self
        for k in self.prologue + self.body:
            yield from k.walk()


__all__ = ["Home", "Kernel", "VIEWS", "LEAVES", "NO_CODE", "computed"]
