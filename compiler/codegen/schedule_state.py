"""ScheduleState: the bookkeeping of a schedule under construction (kernel positions, buffers,
layouts, packed panels), shared by schedule.py and group_kernels.py through this interface.
"""
from __future__ import annotations

import itertools
import re
from contextlib import contextmanager
from typing import Iterator

from graphrnn.ir import Node, Op

from .arena import Buffer
from .epilogue import Group
from .kernel import VIEWS, Home, Kernel
from .strides import Layout, Lin
from .tiling import packed_floats


class ScheduleState:
    """The state a schedule is built in, shared by the scheduler and the kernels of several
    nodes (group_kernels.py): positions (a clock of kernel order), buffers and their
    lifetimes, each value's layout and the buffer it lives in (`roots`), the packed panels of
    each matmul (`packs`). `node` schedules one node; the scheduler provides it."""

    def __init__(self, training: bool = False) -> None:
        self.training = training
        self.params: Node | None = None
        self.views = VIEWS - {Op.DROPOUT} if training else VIEWS
        self.aliases: dict[Node, Node] = {}
        self.pos = 0
        self.buffers: list[Buffer] = []
        self.layouts: dict[Node, Layout] = {}
        self.offsets: dict[Node, Lin] = {}
        self.roots: dict[Node, Buffer] = {}
        self.parts: dict[tuple[Node, int], tuple[Layout, Buffer | None]] = {}
        self.loop_claims: dict[tuple[Node, int], int] = {}
        self.count = itertools.count()
        self.packs: dict[Node, Buffer] = {}
        # FUSED node -> the matmul it absorbs, per level: the levels of a checkpointed loop
        # and of its recomputation share nodes but not their readers
        self.level_epilogues: dict[tuple[Node, ...], dict[Node, Node]] = {}
        self.epilogues: dict[Node, Node] = {}       # the current level's
        self.skip: set[Node] = set()                # the current level's values computed before it
        self.premaps: dict[Node, Node] = {}         # NORMALIZE_GRAD -> the map it applies
        self.unstored: set[Node] = set()            # norms only their folded map reads
        self.segments: dict[Node, int] = {}         # matmul -> segments of its packed panels
        self.groups: dict[tuple[Node, ...], list[Group]] = {}   # a level's groups
        self.splits: set[Node] = set()              # concatenations never written (pieces read)

    # -- bookkeeping
    @contextmanager
    def at_level(self, nodes: tuple[Node, ...], skip: set[Node]) -> Iterator[None]:
        """Within: `epilogues` and `skip` are those of the level of `nodes` (analysed before),
        the outer level's again after."""
        outer = self.epilogues, self.skip
        self.epilogues, self.skip = self.level_epilogues[nodes], skip
        try:
            yield
        finally:
            self.epilogues, self.skip = outer

    def tick(self) -> int:
        self.pos += 1
        return self.pos

    def name(self, kind: str, n: Node) -> str:
        if n.op == Op.FUSED:
            ops = [m.op.value for m in n.attrs["body"].nodes if m.op not in (Op.INPUT, Op.CONST)]
            what = "_".join(list(dict.fromkeys(ops))[:3]) or "copy"
        else:
            what = n.op.value
        return re.sub(r"\W", "_", f"k{next(self.count)}_{kind}_{what}")

    def buffer(self, name: str, layout: Layout, start: int) -> Buffer:
        per = 2 if layout.dtype == "int64" else 1
        b = Buffer(name, layout.size * per, start, start)
        self.buffers.append(b)
        return b

    def use(self, n: Node, pos: int) -> None:
        if n in self.splits:
            for x in n.inputs:
                self.use(x, pos)
            return
        b = self.roots.get(n)
        if b is not None and b.end < pos:
            b.end = pos

    def place(self, n: Node, home: Home) -> None:
        """Record that `n` is written to `home`: its layout, and its buffer if it has one."""
        self.layouts[n] = home.layout
        if home.buffer is not None:
            self.roots[n] = home.buffer

    def packed(self, mm: Node, pos: int) -> Buffer | None:
        """The packed panels of `mm` (None: not packed), kept alive until `pos`."""
        packed = self.packs.get(mm)
        if packed is not None:
            packed.end = max(packed.end, pos)
        return packed

    def leaf(self, n: Node) -> None:
        if n.op == Op.FILL:
            self.layouts[n] = Layout.broadcast(n.type.shape, n.type.dtype)
        else:
            self.layouts[n] = Layout.of(n.type)

    def pack(self, mm: Node, pos: int) -> Kernel:
        self.use(mm.inputs[1], pos)
        segments = self.segments.get(mm, 1)
        buf = self.buffer(f"{mm.name}.packed",
                          Layout.contiguous((packed_floats(mm, segments),)), pos)
        self.packs[mm] = buf
        return Kernel(self.name("pack", mm), "pack", mm, packed=buf, segments=segments)

    def node(self, n: Node, home: Home | None) -> list[Kernel]:
        """The kernels computing `n` into `home` (None: a new buffer)."""
        raise NotImplementedError


__all__ = ["ScheduleState"]
