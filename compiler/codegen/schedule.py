"""schedule: a typed, flattened graph -> the kernels to run, in order, and the arena plan.

Every value is a buffer or a view of one. Views (slice, index, contiguous reshape, get,
expand, parameter views, inputs, constants) need no code: they are a pointer offset and a
`Layout`. Everything else is a `Kernel` that writes a *home*: an arena buffer, an output
of the entry point (`io`), or the current step's row of a loop's per-step output (`slot`), so
that results land where they are needed without a copy; the pieces of a concatenation are
written straight into their part of it.

Some kernels compute several nodes (group_kernels.py): a product with the cell built on its slices
as the tile's epilogue (an epilogue group: no gate buffer), the FUSED nodes of one type of a
level as one elementwise loop (a cluster), a CONTRACT as a blocked, packed gemm. Each level's
nodes are put in an order where every group or cluster is one unit (epilogue.py).

A loop kernel holds three lists: its prologue (initial carry copies, the body's
loop-invariant work, packing of invariant matmul weights), its body (run once per step), and,
per carry, where the step's new value comes from. Carried state lives in the loop's own
buffers, which are also the final carry the loop returns.

Weights that depend on the parameters only (a matmul's packed panels, and what they are made
from) are *persistent*: `persist.split_persistent` moves their kernels out of the call into a
separate pack entry point run once per parameter update, their buffers into a region the
Program keeps between calls.

In training mode (`training=True`) dropout is a kernel of its own that draws its mask, and it
and every loop containing one run at each step (never hoisted into a loop's prologue).

Memory: each buffer lives from the kernel that writes it to its last reader; a buffer read
inside a loop body lives until the loop ends. Buffers whose lifetimes do not overlap share
arena space (greedy first fit in schedule order). Buffers that scale with T sit in a second
region after the fixed one, those that scale with B (or B and T) in regions after that: the
arena's size is a Lin in T and B (arena.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from graphrnn.ir import Graph, LoweringError, Node, Op, loop_operands, split

from .arena import Buffer, plan_arena
from .epilogue import (Cluster, Group, absorbable_epilogues, find_clusters, find_groups,
                       schedule_units)
from .invariants import invariants, static_values
from .group_kernels import (cluster_kernels, contract_kernel, group_kernels, placements,
                            read_outside, split_operands)
from .kernel import LEAVES, Home, Kernel, computed
from .schedule_state import ScheduleState
from .strides import VIEW_RULES, ZERO, Layout, Lin
from .persist import split_persistent
from .row_maps import postmaps, premap_reads, premaps, sum_postmaps
from .saved_carry import saved_carries
from .tiling import epilogue_layouts

KIND = {Op.MATMUL: "gemm", Op.CONTRACT: "reduce", Op.BMM: "reduce",
        Op.SUM: "reduce", Op.MEAN: "reduce", Op.SOFTMAX: "reduce", Op.LOG_SOFTMAX: "reduce",
        Op.LOOKUP: "index", Op.PICK: "index", Op.ONEHOT: "index", Op.SCATTER: "index",
        Op.SEQ_MASK: "index", Op.SAMPLE: "index", Op.LOOP: "loop",
        Op.MAX: "reduce", Op.MIN: "reduce", Op.LOGSUMEXP: "reduce", Op.ARG_ONEHOT: "reduce",
        Op.NORMALIZE: "reduce", Op.NORMALIZE_GRAD: "reduce"}


@dataclass
class Schedule:
    kernels: tuple[Kernel, ...]
    layouts: dict[Node, Layout]         # every value's layout
    offsets: dict[Node, Lin]            # views: element offset from their input
    buffers: list[Buffer]
    arena: Lin                          # floats of scratch memory, in T and B
    inputs: tuple[Node, ...]            # io order: the user's inputs, then the outputs
    outputs: tuple[Node, ...]
    params: Node | None
    parts: dict[tuple[Node, int], tuple[Layout, Buffer | None]] = field(default_factory=dict)
    persistent: frozenset[Kernel] = frozenset()     # run by the pack entry, not per call
    persist_buffers: frozenset[Buffer] = frozenset()  # offsets into the persistent region
    persist_floats: int = 0
    aliases: dict[Node, Node] = field(default_factory=dict)   # body const -> outer value

    @property
    def fixed_floats(self) -> int:
        return self.arena.c

    @property
    def step_floats(self) -> int:
        return self.arena.s


def schedule(graph: Graph, params: Node | None = None, *, training: bool = False
             ) -> Schedule:
    """The kernels of `graph` (typed, flattened) in order, with every buffer placed."""
    s = _Scheduler(training)
    s.params = params
    inputs = tuple(x for x in graph.inputs if x is not params)
    for x in graph.inputs:
        s.leaf(x)
    n_in = len(inputs)
    claims: dict[Node, Home] = {}
    loop_claims: dict[tuple[Node, int], int] = {}
    copies: list[tuple[Node, int]] = []
    for j, y in enumerate(graph.outputs):
        io = n_in + j
        if computed(y, s.views) and y not in claims:
            claims[y] = Home(Layout.of(y.type), Buffer(f"out{j}", ZERO, 0, 0, io=io))
        elif y.op == Op.GET and y.inputs[0].op == Op.LOOP \
                and (y.inputs[0], y.attrs["index"]) not in loop_claims:
            loop_claims[(y.inputs[0], y.attrs["index"])] = io
        else:
            copies.append((y, io))
    s.loop_claims = loop_claims
    kernels = s.level(graph.nodes, claims, set(graph.inputs), graph.outputs)
    for y, io in copies:
        pos = s.tick()
        s.use(y, pos)
        home = Home(Layout.of(y.type), Buffer(f"out{io - n_in}", ZERO, pos, pos, io=io))
        kernels.append(Kernel(s.name("copy", y), "copy", y, home))
    persistent, kept, floats = split_persistent(kernels, params, s.aliases)
    s.buffers = [b for b in s.buffers if b not in kept]
    arena = plan_arena(s.buffers)
    return Schedule(tuple(kernels), s.layouts, s.offsets, s.buffers, arena, inputs,
                    graph.outputs, params, s.parts, persistent, kept, floats, s.aliases)


class _Scheduler(ScheduleState):
    """The scheduler proper: levels, nodes, views and loops (bookkeeping in schedule_state.py)."""

    # -- one graph level
    def analyse(self, nodes: tuple[Node, ...], outputs: tuple[Node, ...],
                skip: set[Node]) -> list[Group]:
        """The level's epilogues and epilogue groups (once per level)."""
        if nodes not in self.groups:
            epilogues = self.level_epilogues[nodes] = absorbable_epilogues(nodes, outputs)
            groups = find_groups(nodes, outputs, epilogues, skip)
            for g in groups:
                self.segments[g.matmul] = g.segments
            self.groups[nodes] = groups
        return self.groups[nodes]

    def level(self, nodes: tuple[Node, ...], claims: dict[Node, Home],
              skip: set[Node], outputs: tuple[Node, ...]) -> list[Kernel]:
        groups = self.analyse(nodes, outputs, skip)
        with self.at_level(nodes, skip):
            return self._level(nodes, groups, claims, skip, outputs)

    def _level(self, nodes: tuple[Node, ...], groups: list[Group], claims: dict[Node, Home],
               skip: set[Node], outputs: tuple[Node, ...]) -> list[Kernel]:
        absorbed = set(self.epilogues.values())
        taken = absorbed | set(self.epilogues) | {n for g in groups for n in g.nodes}
        # values of the parameters alone stay kernels of their own: they can move to the
        # pack entry (persist.py), a kernel of several nodes cannot
        static = static_values(nodes, self.params)
        self.premaps.update(premaps(nodes, outputs, taken | static | skip))
        absorbed |= {self.premaps[n] for n in nodes if n in self.premaps}
        posts, alone = postmaps(nodes, outputs, taken | absorbed | static | skip)
        posts.update(sum_postmaps(nodes, self.premaps, taken | absorbed | static | skip |
                                  set(posts) | set(posts.values())))
        self.unstored |= alone
        clusters = find_clusters(nodes, taken | absorbed | static | set(posts.values()), skip)
        units = schedule_units(nodes, groups, clusters) if groups or clusters else nodes
        outside = read_outside(nodes, outputs, [*groups, *clusters])
        claims = dict(claims)
        copies: dict[Node, list[Home]] = {}
        placed = placements(self, nodes, outputs, claims, skip | absorbed,
                            frozenset(m for u in units if isinstance(u, Cluster)
                                      for m in u.members), copies)
        split = split_operands(self, nodes, outputs, claims, skip | absorbed | static | set(placed))
        out: list[Kernel] = []
        done: set[Node] = set()         # maps computed by their norm's kernel
        for n in units:
            if n in done:
                continue
            if isinstance(n, Group):
                out.extend(group_kernels(self, n, claims, outside))
            elif isinstance(n, Cluster):
                out.extend(cluster_kernels(self, n, claims, outside, copies))
            elif n in split:
                self.splits.add(n)
                self.layouts[n] = Layout.of(n.type)
                out.append(Kernel(self.name("split", n), "split", n))
            elif n in placed:
                self.place(n, placed[n])
                out.append(Kernel(self.name("placed", n), "placed", n, placed[n]))
            elif n in posts and self.ready(posts[n], n, out, done, taken):
                out.extend(self.node(n, claims.get(n), (posts[n], claims.get(posts[n]))))
                done.add(posts[n])
            elif n not in skip and n not in absorbed:
                out.extend(self.node(n, claims.get(n)))
        return out

    def ready(self, f: Node, norm: Node, out: list[Kernel], done: set[Node],
              taken: set[Node]) -> bool:
        """Whether the inputs of `f` but `norm` are computed, after scheduling the views
        (of parameters, of constants, of computed values) among them now."""
        for v in f.inputs:
            self._early_view(v, out, done, taken)
        return all(v in self.layouts for v in f.inputs if v is not norm)

    def _early_view(self, v: Node, out: list[Kernel], done: set[Node], taken: set[Node]) -> None:
        if v in self.layouts or v in taken or not (v.op in self.views or v.op == Op.CONST):
            return
        for x in v.inputs:
            self._early_view(x, out, done, taken)
        if all(x in self.layouts for x in v.inputs):
            out.extend(self.node(v, None))
            done.add(v)

    def node(self, n: Node, home: Home | None,
             post: tuple[Node, Home | None] | None = None) -> list[Kernel]:
        """The kernels computing `n` into `home` (and, with `post`, that FUSED map of it)."""
        try:
            return self._node(n, home, post)
        except LoweringError:
            raise
        except Exception as e:      # noqa: BLE001  (any failure is named after its node)
            raise LoweringError(f"lowering {n.name} ({n.op.value}) at {n.where or '?'}: "
                                f"{type(e).__name__}: {e}") from e

    def _node(self, n: Node, home: Home | None,
              post: tuple[Node, Home | None] | None = None) -> list[Kernel]:
        if n.op == Op.PARAM:
            raise LoweringError("a parameter node reached the lowering: flatten the parameters "
                                "first (compiler.prepare does)")
        if n.op in LEAVES:
            self.leaf(n)
            return [Kernel(self.name("view", n), "view", n)]
        if n.op == Op.LOOP:
            return [self.loop(n)]
        if n.op in self.views:
            view = self.view(n)
            if view is not None:
                return [view]
        if n.op == Op.CONTRACT:
            product = contract_kernel(self, n, home)
            if product is not None:
                return [product]
        out: list[Kernel] = []
        mm = self.epilogues.get(n)
        if mm is not None and mm not in self.skip:
            if not self.can_absorb(n, mm, home):
                out.extend(self.node(mm, None))
                mm = None
        elif mm is not None:
            mm = None                   # scheduled already (loop-invariant, in a prologue)
        pos = self.tick()
        if (n.op == Op.MATMUL or mm is not None) and (mm or n) not in self.packs:
            out.append(self.pack(mm or n, pos))
            pos = self.tick()
        pre = self.premaps.get(n)
        reads = premap_reads(n, pre)
        if post is not None:
            reads = (*reads, *post[0].inputs)
        for x in reads if mm is None else (*mm.inputs[:1], *n.inputs):
            self.use(x, pos)
        if home is None and (post is None or n not in self.unstored):
            home = Home(Layout.of(n.type), self.buffer(n.name, Layout.of(n.type), pos))
        if home is not None:
            self.place(n, home)
        stages: tuple[tuple[Node, Home | None], ...] = ()
        if post is not None:
            f, f_home = post
            layout = Layout.of(f.type)
            f_home = f_home or Home(layout, self.buffer(f.name, layout, pos))
            self.place(f, f_home)
            stages = ((f, f_home),)
        packed = self.packed(mm or n, pos)
        kind = "gemm" if mm is not None else KIND.get(n.op, "map")
        out.append(Kernel(self.name(kind, n), kind, n, home, packed, matmul=mm,
                          segments=self.segments.get(mm or n, 1), premap=pre,
                          stages=stages))
        return out

    def can_absorb(self, fused: Node, mm: Node, home: Home | None) -> bool:
        """Whether `fused` can run as the epilogue of `mm` (see gemm.epilogue_layouts)."""
        out = home.layout if home is not None else Layout.of(fused.type)
        extra = [self.layouts[x] for x in fused.inputs if x is not mm]
        return epilogue_layouts(self.layouts[mm.inputs[0]], out, extra) is not None

    def view(self, n: Node) -> Kernel | None:
        x = n.inputs[0]
        if n.op == Op.GET:
            layout, root = self.parts[(x, n.attrs["index"])]
            offset = ZERO
        else:
            got = VIEW_RULES[n.op](n, self.layouts[x])
            if got is None:
                return None
            offset, layout = got
            root = self.roots.get(x)
        self.layouts[n] = layout
        self.offsets[n] = offset
        if root is not None:
            self.roots[n] = root
        return Kernel(self.name("view", n), "view", n)

    # -- loops
    def loop(self, n: Node) -> Kernel:
        consts, carry, xs, lengths = loop_operands(n)
        body: Graph = n.attrs["body"]
        n_h = len(carry)
        start = self.tick()
        homes: list[Home] = []
        for i, t in enumerate(n.type):
            layout = Layout.of(t)
            io = self.loop_claims.get((n, i), -1)
            buf = Buffer(f"{n.name}.{i}", ZERO, start, start, io=io) if io >= 0 \
                else self.buffer(f"{n.name}.{i}", layout, start)
            homes.append(Home(layout, buf))
            self.parts[(n, i)] = (layout, buf)
        b_consts, b_carry, b_xs = split(body.inputs, len(consts), n_h)
        for bx, x in zip(b_consts, consts):
            self._alias(bx, x, self.layouts[x])
            self.aliases[bx] = x
        slots = saved_carries(n, self.views)    # carries read from their saved sequence
        for i, bc in enumerate(b_carry):
            j = slots.get(i)
            home = homes[i] if j is None else homes[n_h + j]
            self.layouts[bc] = home.layout if j is None else home.layout.drop(1)
            self.roots[bc] = home.buffer
        for bx, x in zip(b_xs, xs):
            self._alias(bx, x, self.layouts[x].drop(1))
        first_buffer = len(self.buffers)

        prologue: list[Kernel] = []
        for i, x in enumerate(carry):
            pos = self.tick()
            self.use(x, pos)
            prologue.append(Kernel(self.name("copy", x), "copy", x, homes[i]))
        inv = invariants(body, set(b_consts), self.training)
        inputs = set(body.inputs)
        self.analyse(body.nodes, body.outputs, inv | inputs)
        with self.at_level(body.nodes, inv):
            for bn in body.nodes:
                if bn in inv and bn not in inputs:
                    prologue.extend(self.node(bn, None))
        for bn in body.nodes:
            if bn.op == Op.MATMUL and bn not in inv and bn.inputs[1] in inv:
                prologue.append(self.pack(bn, self.tick()))
        hoisted = self.buffers[first_buffer:]

        claims: dict[Node, Home] = {}
        ys = body.outputs[n_h:]
        for j, y in enumerate(ys):
            if computed(y, self.views) and y not in inv and y not in claims:
                claims[y] = Home(homes[n_h + j].layout.drop(1), homes[n_h + j].buffer, slot=j)
        kernels = self.level(body.nodes, claims, inv | inputs, body.outputs)

        state = {homes[i].buffer for i in range(n_h)} | {homes[n_h + j].buffer
                                                         for j in slots.values()}
        carry_from: list[Node | Kernel | None] = []
        for i, out in enumerate(body.outputs[:n_h]):
            if out is b_carry[i]:
                carry_from.append(None)
            elif self.roots.get(out) in state:
                pos = self.tick()
                self.use(out, pos)
                layout = Layout.of(out.type)
                k = Kernel(self.name("copy", out), "copy", out,
                           Home(layout, self.buffer(f"{out.name}.next", layout, pos)))
                kernels.append(k)
                carry_from.append(k)
            else:
                carry_from.append(out)
        for j, y in enumerate(ys):
            if (claims.get(y) is None or claims[y].slot != j) and j not in slots.values():
                pos = self.tick()
                self.use(y, pos)
                home = Home(homes[n_h + j].layout.drop(1), homes[n_h + j].buffer, slot=j)
                kernels.append(Kernel(self.name("copy", y), "copy", y, home))
        update = self.tick()
        for src in carry_from:
            if isinstance(src, Kernel):
                src.dest.buffer.end = update
            elif src is not None:
                self.use(src, update)
        end = self.tick()
        for x in (*consts, *xs, *([lengths] if lengths is not None else [])):
            self.use(x, end)
        for b in hoisted + [h.buffer for h in homes]:
            b.end = max(b.end, end)
        return Kernel(self.name("loop", n), "loop", n, prologue=tuple(prologue),
                      body=tuple(kernels), homes=tuple(homes), carry_from=tuple(carry_from),
                      carry_slots=tuple(slots.get(i, -1) for i in range(n_h)))

    def _alias(self, inner: Node, outer: Node, layout: Layout) -> None:
        self.layouts[inner] = layout
        if outer in self.roots:
            self.roots[inner] = self.roots[outer]


__all__ = ["schedule", "Schedule", "Kernel", "Buffer", "Home"]
