"""The graph IR: one small, immutable node type shared by the API, the passes and the lowering.

A graph is explicitly typed, functional and closed: every value has one defining `Node`, one
printed name and a `TensorType`. Recurrence exists only through the `loop` node, whose body is
itself a `Graph`. Parameters are identified by `Param` objects: two nodes holding the same
`Param` share one storage. The IR is a leaf: it imports nothing of the project but its op codes
(opcodes.py) and holds no run-time state (parameter values live in graphrnn/store.py).
"""
from __future__ import annotations

import dataclasses
import heapq
import itertools
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Sequence, Union

import numpy as np

from . import opcodes

Op = opcodes.Op
ELEMENTWISE_UNARY = opcodes.ELEMENTWISE_UNARY
ELEMENTWISE_BINARY = opcodes.ELEMENTWISE_BINARY
LEAVES = opcodes.LEAVES

Dim = Union[int, str]          # an int, or a symbol such as "B" (batch) or "T" (time)


# ----------------------------------------------------------------------------- errors

class GraphError(ValueError):
    """A graph is malformed: a cycle, a dangling node, a bad arity, a mismatched share."""


class ShapeError(GraphError):
    """A node's input shapes or dtypes do not fit the op."""


class LoweringError(RuntimeError):
    """A node could not be turned into native code."""


class InputError(ValueError):
    """A value passed to a model at run time does not match what the model expects."""


def node_error(node: "Node", message: str, cls: type = GraphError) -> Exception:
    """An error in the project's template: `<name> (<file:line>): <message>`."""
    label = node.name or (f"{node.scope}/{node.op.value}" if node.scope else node.op.value)
    where = f" ({node.where})" if node.where else ""
    error = cls(f"{label}{where}: {message}")
    error.node = node           # for a picture of the error with this node in red (render.py)
    return error


# ----------------------------------------------------------------------------- types

@dataclass(frozen=True)
class TensorType:
    """The type of a value: a shape whose dims are ints or symbols, and a dtype."""
    shape: tuple[Dim, ...]
    dtype: str = "float32"

    def __post_init__(self) -> None:
        if self.dtype not in ("float32", "int64"):
            raise ShapeError(f"unsupported dtype {self.dtype!r}: use float32 or int64")
        for d in self.shape:
            if not (isinstance(d, str) or (isinstance(d, (int, np.integer)) and d >= 0)):
                raise ShapeError(f"bad dimension {d!r} in shape {self.shape}")
        object.__setattr__(self, "shape", tuple(d if isinstance(d, str) else int(d)
                                                for d in self.shape))

    @property
    def rank(self) -> int:
        return len(self.shape)

    def bind(self, sizes: dict[str, int]) -> "TensorType":
        """This type with every bound symbol replaced by its size."""
        return TensorType(tuple(sizes.get(d, d) if isinstance(d, str) else d
                                for d in self.shape), self.dtype)

    def is_concrete(self) -> bool:
        return all(isinstance(d, int) for d in self.shape)

    def __str__(self) -> str:
        short = {"float32": "f32", "int64": "i64"}[self.dtype]
        return f"{short}[{','.join(str(d) for d in self.shape)}]"


NodeType = Union[TensorType, tuple, None]


def type_str(t: NodeType) -> str:
    if t is None:
        return "?"
    if isinstance(t, tuple):
        return "(" + ", ".join(type_str(x) for x in t) + ")"
    return str(t)


# ----------------------------------------------------------------------------- parameters

@dataclass(frozen=True, eq=False)
class Param:
    """A trainable tensor's identity: every node holding this object shares one storage.

    `name` is the local name ("weight"), `owner` the module prefix ("linear"); the graph gives
    the full, unique key ("linear_1.weight"); `token` identifies the owning module. Values
    live in a ParamStore (graphrnn/store.py), never here. The one thing set after creation is
    a declared tie (`Module.share`), made once with `tie` while the model is being built.
    """
    name: str
    shape: tuple[int, ...]
    init: str = "zeros"
    owner: str = "param"
    token: Any = field(default_factory=object, repr=False)
    tied_to: "Param | None" = field(default=None, repr=False)
    tie_where: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "shape", tuple(int(d) for d in self.shape))

    def tie(self, other: "Param", where: str = "") -> None:
        """Declare that this parameter shares `other`'s storage (checked by the tie pass)."""
        object.__setattr__(self, "tied_to", other)
        object.__setattr__(self, "tie_where", where)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))

    def root(self) -> "Param":
        """The Param this one is tied to, followed to the end of the chain."""
        p, seen = self, set()
        while p.tied_to is not None and id(p) not in seen:
            seen.add(id(p))
            p = p.tied_to
        return p

    def __repr__(self) -> str:
        return f"Param({self.owner}.{self.name}, {list(self.shape)})"


# ----------------------------------------------------------------------------- nodes
_creation_order = itertools.count()

# What the IR asks of the layers above without importing them: "part" of a tuple-valued node
# (ops.get, with its shape rule) and "format", a graph's text (printing.format_graph). Those
# modules fill this in when imported, which importing graphrnn always does.
HOOKS: dict[str, Callable[..., Any]] = {}


@dataclass(frozen=True, eq=False)
class Node:
    """One value of the graph: `op` applied to `inputs`. Equality is identity."""
    op: Op
    inputs: tuple["Node", ...] = ()
    attrs: dict[str, Any] = field(default_factory=dict)
    type: NodeType = None
    param: Param | None = None
    name: str = ""
    scope: str = ""
    where: str = ""
    doc: str = ""
    seq: int = field(default_factory=lambda: next(_creation_order), repr=False, compare=False)

    def replace(self, **changes: Any) -> "Node":
        """A copy with `changes`; `self` when nothing changes."""
        if all(_same(getattr(self, k), v) for k, v in changes.items()):
            return self
        changes.setdefault("seq", self.seq)    # a copy keeps its place in reading order
        return dataclasses.replace(self, **changes)

    def annotate(self, name: str | None = None, doc: str | None = None, **_: Any) -> "Node":
        """Give the node a name and a description (nngraph `annotate`); returns the node."""
        if name is not None:
            object.__setattr__(self, "name", str(name))
        if doc is not None:
            object.__setattr__(self, "doc", str(doc))
        return self

    def split(self, n: int) -> "Table":
        """The first `n` parts of a tuple-valued node (a loop), as GET nodes."""
        return Table(HOOKS["part"](self, i) for i in range(n))

    def __getitem__(self, i: int) -> "Node":
        if not isinstance(self.type, tuple) and self.op != Op.LOOP:
            raise node_error(self, "only a loop node has parts to index")
        return HOOKS["part"](self, i)

    def __repr__(self) -> str:
        label = self.name or self.op.value
        return f"<Node {label} : {type_str(self.type)} = {self.op.value}>"

    __hash__ = object.__hash__


def _same(a: Any, b: Any) -> bool:
    """Identity, or equal plain values; arrays and graphs compare by identity only."""
    if a is b:
        return True
    plain = (type(None), bool, int, float, str)
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, TensorType) and isinstance(b, TensorType):
        return a == b
    return isinstance(a, plain) and type(a) is type(b) and a == b


class Table(tuple):
    """Several nodes returned by one module call (nngraph's table of outputs)."""

    def split(self, n: int) -> "Table":
        if len(self) != n:
            raise GraphError(f"table has {len(self)} entries, split asked for {n}")
        return self


# ----------------------------------------------------------------------------- graphs

def toposort(outputs: Iterable[Node]) -> list[Node]:
    """Every node the outputs depend on, inputs before users (iterative DFS)."""
    order: list[Node] = []
    state: dict[int, int] = {}
    for out in outputs:
        stack = [(out, 0)]
        while stack:
            node, i = stack.pop()
            if i == 0:
                if state.get(id(node)) == 2:
                    continue
                if state.get(id(node)) == 1:
                    raise node_error(node, "the graph has a cycle through this node")
                state[id(node)] = 1
            if i < len(node.inputs):
                stack.append((node, i + 1))
                child = node.inputs[i]
                if state.get(id(child)) != 2:
                    if state.get(id(child)) == 1:
                        raise node_error(child, "the graph has a cycle through this node")
                    stack.append((child, 0))
            else:
                state[id(node)] = 2
                order.append(node)
    return _reading_order(order)


def _reading_order(order: list[Node]) -> list[Node]:
    """A topological order that follows creation order (the user's code) where it can.

    Kahn's algorithm, always taking the ready node created first; copies made by `replace`
    keep the original's place, so a pass does not reshuffle the printed graph.
    """
    rank = {id(n): (n.seq, i) for i, n in enumerate(order)}
    waiting = {id(n): len(n.inputs) for n in order}
    users: dict[int, list[Node]] = {}
    for n in order:
        for x in n.inputs:
            users.setdefault(id(x), []).append(n)
    ready = [(rank[id(n)], n) for n in order if not n.inputs]
    heapq.heapify(ready)
    out: list[Node] = []
    while ready:
        _, n = heapq.heappop(ready)
        out.append(n)
        for u in users.get(id(n), ()):
            waiting[id(u)] -= 1
            if waiting[id(u)] == 0:
                heapq.heappush(ready, (rank[id(u)], u))
    return out


@dataclass(frozen=True, eq=False)
class Graph:
    """A closed graph: `nodes` in topological order, every node reachable from `outputs`."""
    inputs: tuple[Node, ...]
    outputs: tuple[Node, ...]
    nodes: tuple[Node, ...]

    def rebuilt(self, inputs: Sequence[Node], outputs: Sequence[Node]) -> "Graph":
        """A graph over nodes that a pass made: topological order recomputed, names kept.

        Inputs that no output uses stay in `nodes` (first), so every input is a node."""
        order = toposort(outputs)
        reached = {id(n) for n in order}
        unused = [x for x in inputs if id(x) not in reached]
        return Graph(tuple(inputs), tuple(outputs), tuple(unused + order))

    def remapped(self, new: dict[int, Node]) -> "Graph":
        """The graph whose inputs and outputs are `new[id(old)]`: how a pass that mapped
        every node finishes; the graph itself when every node maps to itself."""
        if all(new.get(id(n)) is n for n in self.nodes):
            return self
        return self.rebuilt([new[id(x)] for x in self.inputs],
                            [new[id(y)] for y in self.outputs])

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise KeyError(f"no node named {name!r}")

    def walk(self) -> Iterator[tuple[Node, "Graph"]]:
        """Every node of this graph and of every loop body, with the graph that holds it."""
        for n in self.nodes:
            yield n, self
            if n.op == Op.LOOP:
                yield from n.attrs["body"].walk()

    def params(self) -> list[Param]:
        """Every distinct parameter (after following ties), in order of first use."""
        seen: dict[int, Param] = {}
        for n, _ in self.walk():
            if n.op == Op.PARAM:
                p = n.param.root()
                seen.setdefault(id(p), p)
        return list(seen.values())

    def __str__(self) -> str:
        return HOOKS["format"](self)


def split(items: Sequence[Any], *counts: int) -> list[tuple]:
    """Cut `items` into consecutive groups of the given sizes, the rest last."""
    out, i = [], 0
    for c in counts:
        out.append(tuple(items[i:i + c]))
        i += c
    out.append(tuple(items[i:]))
    return out


def loop_operands(node: Node) -> tuple[tuple[Node, ...], tuple[Node, ...],
                                       tuple[Node, ...], Node | None]:
    """(consts, carry_init, xs, lengths) of a loop node: the one place that splits them."""
    a = node.attrs
    rest = node.inputs
    lengths = None
    if a.get("has_lengths"):
        rest, lengths = rest[:-1], rest[-1]
    consts, carry, xs = split(rest, a["n_consts"], a["n_carry"])
    return consts, carry, xs, lengths


def sums_last_axis(n: Node) -> bool:
    """Whether `n` is a SUM or MEAN over (among others) the last axis of its operand: the
    reductions that compute an elementwise operand as they read it."""
    if n.op not in (Op.SUM, Op.MEAN):
        return False
    t = n.inputs[0].type
    return isinstance(t, TensorType) and t.rank > 0 and \
        any(a % t.rank == t.rank - 1 for a in n.attrs["axes"])
