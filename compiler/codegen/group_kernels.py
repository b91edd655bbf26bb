"""Kernels that compute several nodes at once, for the schedule.

    group_kernels     a product and the cell built on its slices, as one gemm whose tile
                      epilogue computes the cell (epilogue.Group)
    cluster_kernels   the FUSED nodes of one type, as one elementwise loop (epilogue.Cluster)
    placements        concatenations whose pieces are computed in place
    split_operands    concatenations only products read, as their left operand: never
                      written, the products read the pieces
    contract_kernel   a CONTRACT as a blocked, packed gemm (emit_contract.py)

Each takes the scheduler (its positions, buffers, layouts and packs) and returns kernels the
way `ScheduleState.node` does, so the arena plan sees them like any other.
"""
from __future__ import annotations

from graphrnn.ir import Node, Op

from .emit_contract import contract_floats, contract_operands
from .epilogue import Cluster, Group, readers
from .kernel import Home, Kernel, computed
from .schedule_state import ScheduleState
from .strides import ONE, Layout, Lin
from .tiling import operand_layouts, plan

# a contract with fewer output rows stays a plain reduction: packing its other operand (a
# copy of all B*T rows) would cost more than the product
CONTRACT_MIN_ROWS = 8


def group_kernels(s: ScheduleState, g: Group, claims: dict[Node, Home],
                  outside: set[Node]) -> list[Kernel]:
    """One gemm kernel computing the group's members, storing those read outside it; or,
    when the operands' layouts do not allow it, the group's nodes one by one."""
    mm, head = g.matmul, g.head
    first = [x for x in head.inputs if x is not mm] if head is not mm else []
    inside = set(g.nodes)
    ext = [x for m in g.members for x in m.inputs if x not in inside]
    stored = [claims[m].layout if m in claims else Layout.of(m.type)
              for m in g.members if m in outside]
    n, seg = Lin(head.type.shape[-1]), Lin(g.seg_len)
    parts = [(s.layouts[x], n) for x in first] + [(s.layouts[x], seg) for x in ext] + \
        [(lay, seg) for lay in stored]
    if not stored or operand_layouts(s.layouts[mm.inputs[0]].shape[:-1], parts) is None:
        out: list[Kernel] = []
        for x in g.nodes:
            if not (x is mm and head is not mm):
                out.extend(s.node(x, claims.get(x)))
        return out
    out = []
    pos = s.tick()
    if mm not in s.packs:
        out.append(s.pack(mm, pos))
        pos = s.tick()
    for x in (mm.inputs[0], *first, *ext):
        s.use(x, pos)
    packed = s.packed(mm, pos)
    out.append(Kernel(s.name("gemm", g.members[-1]), "gemm", head, None, packed,
                      matmul=mm, segments=g.segments, group=g,
                      stages=_stages(s, g.members, outside, claims, pos)))
    return out


def cluster_kernels(s: ScheduleState, c: Cluster, claims: dict[Node, Home],
                    outside: set[Node], copies: dict[Node, list[Home]] | None = None
                    ) -> list[Kernel]:
    """One elementwise loop computing the cluster's members, storing those read outside
    it (and, from `copies`, a member's value a second time: its part of a second placed
    concatenation)."""
    if not any(m in outside for m in c.members):
        return []
    pos = s.tick()
    for x in c.externals():
        s.use(x, pos)
    copies = copies or {}
    also = tuple((m, h) for m in c.members for h in copies.get(m, ()))
    return [Kernel(s.name("map", c.members[-1]), "map", c.members[-1],
                   stages=_stages(s, c.members, outside, claims, pos), copies=also)]


def _stages(s: ScheduleState, members: tuple[Node, ...], outside: set[Node],
            claims: dict[Node, Home], pos: int) -> tuple[tuple[Node, Home | None], ...]:
    """Each member and where it goes: its claim or a new buffer when it is read outside
    the kernel, None when it only lives in registers."""
    stages = []
    for m in members:
        home = None
        if m in outside:
            home = claims.get(m)
            if home is None:
                layout = Layout.of(m.type)
                home = Home(layout, s.buffer(m.name, layout, pos))
            s.place(m, home)
        stages.append((m, home))
    return tuple(stages)


def placements(s: ScheduleState, nodes: tuple[Node, ...], outputs: tuple[Node, ...],
               claims: dict[Node, Home], skip: set[Node], clustered: frozenset[Node] = frozenset(),
               copies: dict[Node, list[Home]] | None = None) -> dict[Node, Home]:
    """Concatenations computed in place: each piece written by its own kernel straight
    into its part of the result (its home added to `claims`), so the concat itself is
    only a name for that memory. The pieces must be values a kernel of this level
    computes, distinct, and neither claimed nor outputs; but a piece of a concatenation
    placed already that an elementwise cluster computes (`clustered`) may be one too: the
    cluster stores it twice (its second home added to `copies`), as a GRU's backward step
    does with the two gate-gradient concatenations its weight gradients read."""
    outs = set(outputs)
    placed: dict[Node, Home] = {}
    in_place: set[Node] = set()             # pieces placed in a concatenation above
    for c in reversed(nodes):
        if c.op != Op.CONCAT or c in skip:
            continue
        pieces = c.inputs
        twice = {x for x in pieces if x in in_place and x in clustered} \
            if copies is not None else set()
        if len(set(pieces)) != len(pieces) or any(
                x in skip or (x in claims and x not in twice) or x in outs
                or not computed(x, s.views) or x.op == Op.GET for x in pieces):
            continue
        home = claims.get(c)
        if home is None:
            layout = Layout.of(c.type)
            home = Home(layout, s.buffer(c.name, layout, s.pos + 1))
        axis, start = c.attrs["axis"], 0
        for x in pieces:
            length = x.type.shape[axis]
            offset, layout = home.layout.slice(axis, start, length)
            part = Home(layout, home.buffer, home.slot, home.offset + offset)
            if x in twice:
                copies.setdefault(x, []).append(part)
            else:
                claims[x] = part
                in_place.add(x)
            start += length
        placed[c] = home
    return placed


def split_operands(s: ScheduleState, nodes: tuple[Node, ...], outputs: tuple[Node, ...],
                   claims: dict[Node, Home], skip: set[Node]) -> set[Node]:
    """Concatenations along the last axis that only products read, as their left operand
    [.., K] (a joined step product's [x_t, h]): no kernel writes them, each product walks
    its k-loop over the pieces in turn (gemm.py, "split `a`"). Their pieces are float32 of
    fixed, nonzero widths, and the products' panels are walked whole (no k blocks)."""
    users = readers(nodes)
    outs = set(outputs)
    found = set()
    for c in nodes:
        if c.op != Op.CONCAT or c in skip or c in claims or c in outs or c not in users \
                or c.attrs["axis"] % c.type.rank != c.type.rank - 1 or c.type.dtype != "float32":
            continue
        widths = [x.type.shape[-1] for x in c.inputs]
        if any(not isinstance(w, int) or w <= 0 for w in widths) or any(
                u.op != Op.MATMUL or u.inputs[0] is not c or u.inputs[1] is c
                or plan(u, s.segments.get(u, 1)).kc for u in users[c]):
            continue
        found.add(c)
    return found


def contract_kernel(s: ScheduleState, n: Node, home: Home | None) -> Kernel | None:
    """A CONTRACT as a gemm kernel with a scratch buffer for its packed operand; None
    when its operands do not allow it (see emit_contract.contract_operands)."""
    found = contract_operands(n, *(s.layouts[x] for x in n.inputs))
    out = home.layout if home is not None else Layout.of(n.type)
    if found is None or out.strides[-1] != ONE or not found[0].shape[0].const \
            or found[0].shape[0].c < CONTRACT_MIN_ROWS:
        return None
    floats = contract_floats(found[0], found[1])
    pos = s.tick()
    for x in n.inputs:
        s.use(x, pos)
    if home is None:
        home = Home(out, s.buffer(n.name, out, pos))
    s.place(n, home)
    scratch = s.buffer(f"{n.name}.packed", Layout.contiguous((floats,)), pos)
    return Kernel(s.name("gemm", n), "gemm", n, home, scratch)


def read_outside(nodes: tuple[Node, ...], outputs: tuple[Node, ...],
                 groups: list[Group | Cluster]) -> set[Node]:
    """Members of the groups and clusters read by a node outside their own, or outputs of
    the level."""
    member_of = {m: g for g in groups for m in g.members}
    found = {y for y in outputs if y in member_of}
    for n in nodes:
        for x in n.inputs:
            g = member_of.get(x)
            if g is not None and n not in g.members:
                found.add(x)
    return found


__all__ = ["group_kernels", "cluster_kernels", "placements", "split_operands", "contract_kernel",
           "read_outside"]
