"""reroll_steps: hand-unrolled steps that are tied copies of one subgraph become a LOOP.

The nngraph idiom writes a recurrence as a Python loop over `SplitTable` outputs, calling
one module at every step, so the graph holds T structurally identical copies of the step
that share their parameters and pass a state along. Compiled as they are, the code and its
compile time grow with T; re-rolled, the steps are one loop whose body is the first step.
Before (the nngraph toy at T = 3; the copies for t = 1, 2 are elided):

    %index_0 : f32[B,1] = index(%x, axis=1, index=0)
    %concat_0 : f32[B,27] = concat(%h0, %index_0, axis=1)
    %matmul_0 : f32[B,26] = matmul(%concat_0, %linear.weight, transpose_b=True)
    %add_0 : f32[B,26] = add(%matmul_0, %linear.bias)
    %h1 : f32[B,26] = tanh(%add_0)
    ...                                                 # the same for t = 1, 2
    %matmul_3 : f32[B,1] = matmul(%h3, %linear_1.weight, transpose_b=True)

After (`graphrnn ir examples/nngraph_toy.py:build --after reroll`):

    %loop_0 : (f32[B,26]) = loop(%h0, %x, n_consts=0, n_carry=1)
      graph(%h0 : f32[B,26], %index_0 : f32[B,1]) {
        %concat_0 : f32[B,27] = concat(%h0, %index_0, axis=1)
        %linear.weight : f32[26,27] = param()
        %matmul_0 : f32[B,26] = matmul(%concat_0, %linear.weight, transpose_b=True)
        %linear.bias : f32[26] = param()
        %add_0 : f32[B,26] = add(%matmul_0, %linear.bias)
        %h1 : f32[B,26] = tanh(%add_0)
        return (%h1)
      }
    %h3 : f32[B,26] = get(%loop_0, index=0)
    %matmul_3 : f32[B,1] = matmul(%h3, %linear_1.weight, transpose_b=True)

How steps are found, in time linear in the graph: the INDEX nodes that read consecutive
steps of one sequence (axis 1) seed a *shift* map, index t -> index t+1 (t -> t-1 for a
chain that runs backwards). Walking the graph once in topological order, a node n whose
input is shifted is matched to the reader of the shifted input, at the same position, with
the same op, attrs, type and parameter (tied: the same root `Param`); its other inputs must
then be shifted, or the same node (a value every step reads: a const of the loop), or a
value from before the steps that the match reads as its counterpart: a carried state's
initial value. The first step is what is shifted but is not itself a shift; step t is the
first shifted t times. A step node reading a step node of another step, a carry whose
next value is not in the step, or a const computed from the steps leaves the node (and what
reads it) out; with fewer than two steps with a carried state, the graph is unchanged.
Values of a step read after the steps become the loop's per-step outputs (or, for the last
step's carry, its final carry), read back with `index` at their step. Inside loop bodies
nothing is re-rolled.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from graphrnn.ir import Graph, Node, Op, TensorType
from graphrnn.ops import apply_rule, internal_graph

from .rewrite import fresh_name, substitute


def reroll_steps(graph: Graph, min_steps: int = 2) -> Graph:
    """`graph` with each chain of >= `min_steps` tied step copies as one LOOP (forward chains
    first, then chains that run backwards in time); `graph` itself when none is found."""
    for direction in (1, -1):
        for _ in range(len(graph.nodes)):       # one chain per round; few rounds in practice
            found = _Chain(graph, direction).loop(min_steps)
            if found is None:
                break
            graph = found
    return graph


class _Chain:
    """The shift map of one graph and direction, and the loop it gives."""

    def __init__(self, graph: Graph, direction: int):
        self.graph, self.d = graph, direction
        self.shift: dict[int, Node] = {}        # id(n) -> n's counterpart one step later
        self.kind: dict[int, str] = {}          # "x" seed, "body", "init" carry, "same" const
        self.images: set[int] = set()           # shifts of something
        self.later: set[int] = set()            # shifts of step nodes: not in the first step
        self.readers: dict[int, list[tuple[Node, int]]] = {}
        for n in graph.nodes:
            for pos, x in enumerate(n.inputs):
                self.readers.setdefault(id(x), []).append((n, pos))
        self._seed()
        for n in graph.nodes:
            if id(n) not in self.kind and n.inputs:
                self._match(n)

    # -- the shift map
    def _seed(self) -> None:
        """index(x, axis=1, t) -> index(x, axis=1, t + d), per sequence x."""
        steps: dict[int, dict[int, Node]] = {}
        for n in self.graph.nodes:
            if n.op == Op.INDEX and n.attrs.get("axis") == 1 and n.attrs["index"] >= 0:
                steps.setdefault(id(n.inputs[0]), {}).setdefault(n.attrs["index"], n)
        for by_t in steps.values():
            for t, n in by_t.items():
                if t + self.d in by_t:
                    self._link(n, by_t[t + self.d], "x")
                elif t - self.d in by_t:
                    self.kind[id(n)] = "x"

    def _link(self, n: Node, image: Node, kind: str) -> None:
        self.shift[id(n)] = image
        self.kind[id(n)] = kind
        self.images.add(id(image))
        if kind != "init":
            self.later.add(id(image))

    def _match(self, n: Node) -> None:
        drive = next(((pos, x) for pos, x in enumerate(n.inputs)
                      if id(x) in self.shift and self.kind[id(x)] != "init"), None)
        if drive is None:
            return
        pos, x = drive
        for cand, at in self.readers.get(id(self.shift[id(x)]), ()):
            if at == pos and id(cand) not in self.images and cand is not n \
                    and _alike(n, cand):
                inits = self._inputs_match(n, cand)
                if inits is not None:
                    self._link_inputs(n, inits)
                    self._link(n, cand, "body")
                    return

    def _link_inputs(self, n: Node, inits: list[tuple[Node, Node]]) -> None:
        """Link the carries a match of `n` introduces, each pulled into the step when its
        value is computed like its counterpart (a step's part that reads only the carry,
        such as W_hh h, comes before anything that reads x_t)."""
        for w, w_next in inits:
            if not self._pull(w, w_next):
                self._link(w, w_next, "init")
        for w in n.inputs:
            self.kind.setdefault(id(w), "same")

    def _pull(self, w: Node, w_next: Node) -> bool:
        if not w.inputs or id(w) in self.kind or id(w_next) in self.images \
                or not _alike(w, w_next):
            return False
        inits = self._inputs_match(w, w_next)
        if inits is None:
            return False
        self._link_inputs(w, inits)
        self._link(w, w_next, "body")
        return True

    def _inputs_match(self, n: Node, cand: Node) -> list[tuple[Node, Node]] | None:
        """The carries n's match introduces, or None when an input does not fit."""
        inits = []
        for w, c in zip(n.inputs, cand.inputs):
            if id(w) in self.shift:
                if self.shift[id(w)] is not c:
                    return None
            elif w is c or _tied(w, c):
                if self.kind.get(id(w)) not in (None, "same"):
                    return None
            elif self.kind.get(id(w)) is None and id(w) not in self.images \
                    and w.type == c.type and not any(w is v for v, _ in inits):
                inits.append((w, c))
            else:
                return None
        return inits

    def _steps(self, n: Node) -> int:
        k = 1
        while id(n) in self.shift and k <= len(self.graph.nodes):
            n, k = self.shift[id(n)], k + 1
        return k

    # -- the steps
    def loop(self, min_steps: int) -> Graph | None:
        """The graph with the chain re-rolled, or None when there is no chain to re-roll."""
        first = [n for n in self.graph.nodes
                 if self.kind.get(id(n)) == "body" and id(n) not in self.later]
        if not first:
            return None
        lengths = {id(n): self._steps(n) for n in first}
        counts: dict[int, int] = {}
        for k in lengths.values():
            counts[k] = counts.get(k, 0) + 1
        k = max(counts, key=lambda k: (counts[k], k))    # most nodes; a longer chain is cut
        if k < min_steps:
            return None
        body = self._closed([n for n in first if lengths[id(n)] >= k], k)
        if body is None:
            return None
        return _Rolled(self, body, k).graph()

    def _closed(self, first: list[Node], k: int) -> list[Node] | None:
        """The nodes of `first` whose inputs fit a loop body; None without a carried state."""
        kept = {id(n) for n in first}
        steps = self._step_sets(first, k)
        tainted = self._depends_on(steps) | steps      # what cannot enter the loop
        changed = True
        while changed:
            changed = False
            for n in first:
                if id(n) in kept and not all(self._fits(x, kept, tainted) for x in n.inputs):
                    kept.discard(id(n))
                    changed = True
        body = [n for n in first if id(n) in kept]
        carried = any(self.kind.get(id(x)) == "init" for n in body for x in n.inputs)
        return body if body and carried else None

    def _fits(self, x: Node, kept: set[int], tainted: set[int]) -> bool:
        kind = self.kind.get(id(x))
        if kind == "body" and id(x) in kept:
            return True
        if kind == "init":
            return id(self.shift[id(x)]) in kept and id(x) not in tainted
        return kind == "x" or id(x) not in tainted

    def _step_sets(self, first: list[Node], k: int) -> set[int]:
        out: set[int] = set()
        for n in first:
            for _ in range(k):
                out.add(id(n))
                n = self.shift.get(id(n), n)
        return out

    def _depends_on(self, steps: set[int]) -> set[int]:
        """Nodes outside `steps` computed from them (they cannot feed the loop)."""
        tainted: set[int] = set()
        for n in self.graph.nodes:
            if id(n) not in steps and any(id(x) in steps or id(x) in tainted
                                          for x in n.inputs):
                tainted.add(id(n))
        return tainted


class _Rolled:
    """The LOOP made of a chain's first step, and the graph reading it."""

    def __init__(self, chain: _Chain, first: list[Node], k: int):
        self.c, self.first, self.k = chain, first, k
        self.steps = [[n] for n in first]          # per first-step node, its k copies
        for row in self.steps:
            for _ in range(k - 1):
                row.append(chain.shift[id(row[-1])])
        self.member = {id(n) for row in self.steps for n in row}
        self.rows = {id(row[0]): row for row in self.steps}

    def graph(self) -> Graph:
        c, first = self.c, self.first
        inside = {id(n) for n in first}
        consts: dict[int, Node] = {}
        carries: dict[int, Node] = {}
        seqs: dict[int, Node] = {}
        for n in first:
            for x in n.inputs:
                if id(x) in inside:
                    continue
                kind = c.kind.get(id(x))
                group = carries if kind == "init" else seqs if kind == "x" else consts
                group.setdefault(id(x), x)
        taken = {n.name for n, _ in c.graph.walk()}
        leaves = {i: x for i, x in consts.items() if not x.inputs}
        consts = {i: x for i, x in consts.items() if x.inputs}
        env = {i: _input(x.type, x.name) for group in (consts, carries, seqs)
               for i, x in group.items()}
        env.update({i: _leaf_copy(x) for i, x in leaves.items()})
        for n in first:
            env[id(n)] = n.replace(inputs=tuple(env[id(x)] for x in n.inputs))
        carry_out = [c.shift[i] for i in carries]
        outputs = self._outputs()
        body = internal_graph(
            [env[i] for group in (consts, carries, seqs) for i in group],
            [env[id(y)] for y in carry_out] + [env[id(first[j])] for j in outputs])
        xs = [self._sequence(x, taken) for x in seqs.values()]
        loop = _node(Op.LOOP, [*consts.values(), *carries.values(), *xs], first[-1],
                     fresh_name("loop", taken), body=body, n_consts=len(consts),
                     n_carry=len(carries), n_xs=len(xs), has_lengths=False,
                     reverse=c.d < 0, unroll=None, length=None if xs else self.k)
        repl: dict[int, Node] = {}
        for i, y in enumerate(carry_out):         # the last step's carry: the final carry
            last = self._last(y)
            repl[id(last)] = _node(Op.GET, [loop], last, last.name, index=i)
        for i, j in enumerate(outputs, len(carries)):
            row = self.steps[j]
            ys = _node(Op.GET, [loop], row[0], fresh_name(f"{row[0].name}_steps", taken),
                       index=i)
            for t, n in enumerate(row):
                if id(n) not in repl:            # a step's value: its row of the outputs
                    at = t if c.d > 0 else self.k - 1 - t
                    repl[id(n)] = _node(Op.INDEX, [ys], n, n.name, axis=1, index=at)
        outs = substitute(c.graph.outputs, repl)
        return c.graph.rebuilt(c.graph.inputs, outs)

    def _last(self, y: Node) -> Node:
        return self.rows[id(y)][-1]

    def _outputs(self) -> list[int]:
        """First-step nodes whose copies are read after the steps (or are graph outputs),
        other than the last step's carry (the loop's final carry gives that)."""
        c = self.c
        finals = {id(self.rows[id(c.shift[i])][-1]) for i in c.kind
                  if c.kind[i] == "init" and id(c.shift[i]) in self.rows}
        read_out = {id(y) for y in c.graph.outputs}
        for n in c.graph.nodes:
            if id(n) not in self.member:
                read_out.update(id(x) for x in n.inputs)
        return [j for j, row in enumerate(self.steps)
                if any(id(n) in read_out and id(n) not in finals for n in row)]

    def _sequence(self, x_t: Node, taken: set[str]) -> Node:
        """The sequence whose steps the chain reads where the first step reads `x_t`."""
        x, t0 = x_t.inputs[0], x_t.attrs["index"]
        start = t0 if self.c.d > 0 else t0 - self.k + 1
        if start == 0 and x.type.shape[1] == self.k:
            return x
        return _node(Op.SLICE, [x], x_t, fresh_name(f"{x.name}_steps", taken), axis=1,
                     start=start, length=self.k)


def _alike(a: Node, b: Node) -> bool:
    """Same computation, inputs aside. Not loops, nor dropout: each unrolled copy draws its
    own mask from its seed, which a loop's steps would not reproduce."""
    return (a.op == b.op and a.type == b.type and len(a.inputs) == len(b.inputs)
            and a.op not in (Op.LOOP, Op.DROPOUT) and _same_attrs(a.attrs, b.attrs)
            and (a.param is None) == (b.param is None)
            and (a.param is None or a.param.root() is b.param.root()))


def _same_attrs(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (isinstance(a, np.ndarray) and isinstance(b, np.ndarray)
                and a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes())
    if isinstance(a, Graph) or isinstance(b, Graph):
        return a is b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(map(_same_value, a, b))
    return type(a) is type(b) and a == b


def _tied(a: Node, b: Node) -> bool:
    """Two PARAM nodes of one parameter (after following ties)."""
    return a.op == b.op == Op.PARAM and a.param.root() is b.param.root()


def _input(t: TensorType, name: str) -> Node:
    return Node(Op.INPUT, (), {}, t, name=name)


def _leaf_copy(x: Node) -> Node:
    return Node(x.op, (), dict(x.attrs), x.type, x.param, x.name, x.scope, x.where, x.doc)


def _node(op: Op, inputs: Sequence[Node], like: Node, name: str, **attrs: object) -> Node:
    """A typed node made by this pass, placed at `like`'s scope and source line."""
    n = Node(op, tuple(inputs), dict(attrs), None, None, name, like.scope, like.where)
    return apply_rule(n, [x.type for x in inputs])


__all__ = ["reroll_steps"]
