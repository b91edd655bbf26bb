"""find_groups: the elementwise work that can run in a GEMM tile's epilogue, in registers.

A cell slices its gate pre-activations on the last axis and combines the slices with
elementwise ops; after fuse_elementwise that reads

    %g = fused(%matmul, %bias, %i2h)                 # the head: the product (+ a FUSED body)
    %i = slice(%g, axis=-1, start=0, length=H)  ...  # S equal slices covering N = S * H
    %c_next = fused(%i, %f, %gg, %c)                 # members: FUSED nodes of the slices'
    %h_next = fused(%o, %c_next)                     #   shape over slices, members, and
                                                     #   values computed before the head

Such a group is one kernel: the product is computed with its N columns split in S segments
(emit_pack interleaves the weights so that a register tile holds the same columns of every
segment), and the members are evaluated on the accumulators, storing only the members read
outside the group. The gate buffer [.., N] is never written. Nothing is LSTM-specific: the
segments and members are read off the graph, so a GRU or a user's cell takes the same path.

Conditions: the head is read by slices only, on the last axis, of one length L with starts
multiple of L, N = S * L with 2 <= S <= MAX_SEGMENTS; the slices are read by members only;
neither the head nor a slice is an output. A FUSED node is a member when it has the slices'
type and each input is a slice, a member, or a value that does not depend on the head.
`order_units` then gives the level's nodes in an order where each group's nodes are adjacent
(its outside inputs first), so the group can be scheduled as one kernel. `find_clusters`
does the same for FUSED nodes without a product: one elementwise loop per type.
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass

from graphrnn.ir import Node, Op

from .tiling import MAX_SEGMENTS


@dataclass(frozen=True, eq=False)
class Group:
    """A product, its head, slices and the FUSED members of its epilogue (in node order)."""
    matmul: Node
    head: Node
    slices: tuple[Node, ...]
    members: tuple[Node, ...]
    segments: int
    seg_len: int

    @property
    def nodes(self) -> tuple[Node, ...]:
        head = () if self.head is self.matmul else (self.head,)
        return (self.matmul, *head, *self.slices, *self.members)

    def segment(self, piece: Node) -> int:
        return piece.attrs["start"] // self.seg_len

    def externals(self) -> list[Node]:
        """The values the group reads that it does not compute, in first-use order."""
        inside = set(self.nodes)
        out: dict[Node, None] = {}
        for n in self.nodes:
            for x in n.inputs:
                if x not in inside:
                    out[x] = None
        return list(out)


def readers(nodes: tuple[Node, ...]) -> dict[Node, list[Node]]:
    """Each value's readers among `nodes` (a reader once however many times it reads it)."""
    users: dict[Node, list[Node]] = {}
    for n in nodes:
        for x in dict.fromkeys(n.inputs):
            users.setdefault(x, []).append(n)
    return users


def _slices(head: Node, users: list[Node]) -> tuple[int, int] | None:
    """(segments, length) when `users` are last-axis slices tiling head's N; else None."""
    t = head.type
    if not users or t.rank < 1 or not isinstance(t.shape[-1], int):
        return None
    n = t.shape[-1]
    lengths = set()
    for u in users:
        if u.op != Op.SLICE or u.attrs["axis"] % t.rank != t.rank - 1:
            return None
        lengths.add(u.attrs["length"])
    if len(lengths) != 1:
        return None
    length = lengths.pop()
    if length <= 0 or n % length or any(u.attrs["start"] % length for u in users):
        return None
    segments = n // length
    return (segments, length) if 2 <= segments <= MAX_SEGMENTS else None


def find_groups(nodes: tuple[Node, ...], outputs: tuple[Node, ...],
                absorbs: dict[Node, Node], skip: set[Node]) -> list[Group]:
    """The groups of one graph level (see the module docstring), none sharing a node.

    `absorbs`: FUSED node -> the matmul it takes as its first body (schedule's epilogues);
    `skip`: nodes computed elsewhere (inputs, loop invariants).
    """
    users = readers(nodes)
    outs = set(outputs)
    head_of = {mm: f for f, mm in absorbs.items()}
    index = {n: i for i, n in enumerate(nodes)}
    taken: set[Node] = set()
    groups: list[Group] = []
    for mm in nodes:
        if mm.op != Op.MATMUL or mm in skip or mm in taken:
            continue
        head = head_of.get(mm, mm)
        if head in outs or head in skip or (head is mm and len(users.get(mm, [])) == 0):
            continue
        pieces = users.get(head, [])
        found = _slices(head, pieces)
        if found is None or any(p in outs for p in pieces):
            continue
        segments, length = found
        like = pieces[0].type
        members = _members(nodes, head, set(pieces), like, absorbs, skip, users, index)
        chosen = set(members)
        if not members or any(u not in chosen for p in pieces for u in users.get(p, [])):
            continue
        group = Group(mm, head, tuple(sorted(set(pieces), key=index.__getitem__)),
                      tuple(members), segments, length)
        if taken & set(group.nodes):
            continue
        taken |= set(group.nodes)
        groups.append(group)
    return groups


def _members(nodes: tuple[Node, ...], head: Node, pieces: set[Node], like,
             absorbs: dict[Node, Node], skip: set[Node], users: dict[Node, list[Node]],
             index: dict[Node, int]) -> list[Node]:
    """FUSED nodes after the head computing on the slices (see the module docstring). The
    scan stops after the last reader of a slice or member: no later node can be one."""
    down = {head} | pieces
    members: list[Node] = []
    inside = set(pieces)
    limit = max(index[u] for p in pieces for u in users.get(p, []))
    at = index[head] + 1
    while at <= limit:
        n = nodes[at]
        at += 1
        if not any(x in down for x in n.inputs):
            continue
        down.add(n)
        if n.op == Op.FUSED and n.type == like and n not in absorbs and n not in skip \
                and all(x in inside or x not in down for x in n.inputs):
            members.append(n)
            inside.add(n)
            limit = max([limit] + [index[u] for u in users.get(n, [])])
    return members


@dataclass(frozen=True, eq=False)
class Cluster:
    """FUSED nodes of one type computed by one elementwise loop (no product)."""
    members: tuple[Node, ...]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return self.members

    def externals(self) -> list[Node]:
        inside = set(self.members)
        return list(dict.fromkeys(x for m in self.members for x in m.inputs
                                  if x not in inside))


def find_clusters(nodes: tuple[Node, ...], taken: set[Node], skip: set[Node]
                  ) -> list[Cluster]:
    """The level's FUSED nodes of each type, not `taken` (by a product's epilogue), as one
    elementwise loop per type: the per-step pointwise work of a backward cell, a dozen maps,
    reads its operands once and writes only what leaves it. A node that reads a value
    depending on the cluster through a non-member stays out of it (the cluster could not be
    one unit then)."""
    by_type: dict[object, list[Node]] = {}
    for n in nodes:
        if n.op == Op.FUSED and n not in taken and n not in skip:
            by_type.setdefault(n.type, []).append(n)
    clusters = []
    for like, candidates in by_type.items():
        if len(candidates) < 2:
            continue
        eligible = set(candidates)
        members: dict[Node, None] = {}
        tainted: set[Node] = set()
        for n in nodes:
            if n in skip:
                continue
            if n in eligible and not any(x in tainted for x in n.inputs):
                members[n] = None
            elif any(x in members or x in tainted for x in n.inputs):
                tainted.add(n)
        if len(members) > 1:
            clusters.append(Cluster(tuple(members)))
    return clusters


def order_units(nodes: tuple[Node, ...], groups: list[Group | Cluster]
                ) -> list[Node | Group | Cluster] | None:
    """The level's nodes with each group as one unit, in a topological order that keeps
    the original order wherever the dependencies allow (a unit goes where its first node
    was, once every value it reads is computed); None when the units depend on each other
    in a cycle."""
    unit_of: dict[Node, int] = {}
    units: list[Node | Group | Cluster] = []
    for g in groups:
        for n in g.nodes:
            unit_of[n] = len(units)
        units.append(g)
    for n in nodes:
        if n not in unit_of:
            unit_of[n] = len(units)
            units.append(n)
    index = {n: i for i, n in enumerate(nodes)}
    members = [g.nodes if isinstance(g, (Group, Cluster)) else (g,) for g in units]
    key = [min(index[n] for n in ns) for ns in members]
    deps: list[set[int]] = []
    for u, ns in enumerate(members):
        deps.append({unit_of[x] for n in ns for x in n.inputs if x in unit_of} - {u})
    waiting = [len(d) for d in deps]
    readers: dict[int, list[int]] = {}
    for u, d in enumerate(deps):
        for v in d:
            readers.setdefault(v, []).append(u)
    ready = [(key[u], u) for u in range(len(units)) if not waiting[u]]
    heapq.heapify(ready)
    order: list[Node | Group | Cluster] = []
    while ready:
        _, u = heapq.heappop(ready)
        order.append(units[u])
        for r in readers.get(u, []):
            waiting[r] -= 1
            if not waiting[r]:
                heapq.heappush(ready, (key[r], r))
    return order if len(order) == len(units) else None


def schedule_units(nodes: tuple[Node, ...], groups: list[Group], clusters: list[Cluster]
                   ) -> list[Node | Group | Cluster]:
    """order_units with every group, and as many clusters as keep the units acyclic."""
    clusters = list(clusters)
    while True:
        order = order_units(nodes, [*groups, *clusters])
        if order is not None:
            return order
        if not clusters:
            raise AssertionError("epilogue groups made the level cyclic")
        clusters.pop()


def absorbable_epilogues(nodes: tuple[Node, ...], outputs: tuple[Node, ...]) -> dict[Node, Node]:
    """FUSED node -> a matmul input it can absorb: one the FUSED node alone reads, of its shape."""
    users: dict[Node, int] = {}
    for n in nodes:
        for x in n.inputs:
            users[x] = users.get(x, 0) + 1
    for y in outputs:
        users[y] = users.get(y, 0) + 1
    found: dict[Node, Node] = {}
    for n in nodes:
        if n.op != Op.FUSED:
            continue
        for x in n.inputs:
            if x.op == Op.MATMUL and users[x] == 1 and x.type.shape == n.type.shape:
                found[n] = x
                break
    return found


__all__ = ["Group", "Cluster", "find_groups", "find_clusters", "order_units",
           "schedule_units", "readers", "absorbable_epilogues"]
