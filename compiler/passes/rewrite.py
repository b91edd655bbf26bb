"""The traversal toolkit the passes share: rebuild a graph node by node, copy a graph onto
new inputs, and count who reads each value.

    rewrite(graph, fn)          each node replaced by fn(node), loop bodies first
    map_nodes(nodes, fn, new)   id(old) -> fn(node, mapped inputs), the loop every pass writes
    with_inputs(n, ins)         n reading ins (itself when unchanged; re-typed on request)
    substitute(outputs, repl)   outputs recomputed with some nodes replaced
    inline(graph, args)         copies of a graph's nodes computing its outputs from args
    internal_graph(ins, outs)   a graph a pass made (unused inputs allowed, names unique)
    users(graph)                the distinct readers of each node of a graph
    read_counts(nodes, outs)    how often each value is read, outputs included
    split_loops(graph, split)   loops replaced part by part, GETs redirected
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

from graphrnn.ir import Graph, Node, Op, node_error, toposort
from graphrnn.ops import apply_rule


def rewrite(graph: Graph, fn: Callable[[Node], Node], *, into_loops: bool = True,
            into_fused: bool = False) -> Graph:
    """A copy of `graph` where each node (inputs already rewritten) is replaced by `fn(node)`.

    Loop bodies are rewritten first when `into_loops` (and FUSED bodies when `into_fused`).
    Returns `graph` itself when `fn` changed nothing, so a pass can tell cheaply whether it
    did any work.
    """
    bodies = ({Op.LOOP} if into_loops else set()) | ({Op.FUSED} if into_fused else set())

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if m.op in bodies:
            body = rewrite(m.attrs["body"], fn, into_loops=into_loops, into_fused=into_fused)
            if body is not m.attrs["body"]:
                m = m.replace(attrs={**m.attrs, "body": body})
        return fn(m)
    return graph.remapped(map_nodes(graph.nodes, visit))


def map_nodes(nodes: Iterable[Node], fn: Callable[[Node, tuple[Node, ...]], Node],
              new: dict[int, Node] | None = None) -> dict[int, Node]:
    """id(old node) -> `fn(node, its inputs already mapped)`, for `nodes` in order; nodes
    already in `new` (replacements given up front) are kept as given. Inputs not mapped
    are read as they are."""
    new = {} if new is None else new
    for n in nodes:
        if id(n) not in new:
            new[id(n)] = fn(n, tuple(new.get(id(x), x) for x in n.inputs))
    return new


def with_inputs(n: Node, ins: tuple[Node, ...], *, retype: bool = False) -> Node:
    """`n` reading `ins`: `n` itself when they are its inputs, else a copy (with `retype`,
    a fresh copy typed by its shape rule, for inputs whose types may differ)."""
    if all(a is b for a, b in zip(ins, n.inputs)):
        return n
    return copy_node(n, ins) if retype else n.replace(inputs=ins)


def copy_node(n: Node, ins: tuple[Node, ...]) -> Node:
    """A new node like `n` reading `ins`, typed by its shape rule."""
    copy = Node(n.op, ins, dict(n.attrs), None, n.param, n.name, n.scope, n.where, n.doc)
    return apply_rule(copy, [x.type for x in ins])


def substitute(outputs: Sequence[Node], repl: dict[int, Node], *, retype: bool = False
               ) -> list[Node]:
    """`outputs` recomputed with the nodes of `repl` (by id) replaced by its values; nodes
    between them are copied (re-typed with `retype`), the others kept."""
    if not repl:
        return list(outputs)
    new = map_nodes(toposort(outputs), lambda n, ins: with_inputs(n, ins, retype=retype),
                    dict(repl))
    return [new[id(y)] for y in outputs]


def inline(graph: Graph, args: Sequence[Node]) -> list[Node]:
    """Copies of `graph`'s nodes (every one, re-typed) computing its outputs from `args`."""
    def copy(n: Node, ins: tuple[Node, ...]) -> Node:
        if n.op == Op.INPUT:
            raise node_error(n, "input is not among the graph's inputs")
        return copy_node(n, ins)
    new = map_nodes(graph.nodes, copy, {id(x): a for x, a in zip(graph.inputs, args)})
    return [new[id(y)] for y in graph.outputs]


def users(graph: Graph) -> dict[int, list[Node]]:
    """id(node) -> the distinct nodes of `graph` that read it, in graph order (loop bodies
    are graphs of their own)."""
    found: dict[int, list[Node]] = {}
    for n in graph.nodes:
        for x in dict.fromkeys(n.inputs):
            found.setdefault(id(x), []).append(n)
    return found


def read_counts(nodes: Iterable[Node], outputs: Iterable[Node]) -> dict[int, int]:
    """id(value) -> how often it is read: once per input slot of `nodes` that holds it, and
    once per place among `outputs`."""
    counts: dict[int, int] = {}
    for n in nodes:
        for x in n.inputs:
            counts[id(x)] = counts.get(id(x), 0) + 1
    for y in outputs:
        counts[id(y)] = counts.get(id(y), 0) + 1
    return counts


def split_loops(graph: Graph, split: Callable[[Node, bool], tuple[Node, Sequence[Node] | None]]
                ) -> tuple[dict[int, Node], bool]:
    """Rebuild `graph` node by node, handing each loop node (inputs already rewritten) to
    `split(loop, whole)`: it returns the loop node to keep and, to replace it, one node per
    element of the loop's value (or None to keep the loop). `whole` tells that the value is
    used other than through GET, so it cannot be replaced. Reads of a replaced loop (its GET
    nodes) become the matching node. Returns id(old node) -> new node, and whether anything
    changed."""
    whole_used = {id(x) for n in graph.nodes if n.op != Op.GET for x in n.inputs}
    whole_used |= {id(y) for y in graph.outputs}
    new: dict[int, Node] = {}
    parts: dict[int, Sequence[Node]] = {}          # id(old loop) -> the parts of its value
    changed = False
    for n in graph.nodes:
        if n.op == Op.GET and id(n.inputs[0]) in parts:
            new[id(n)] = parts[id(n.inputs[0])][n.attrs["index"]]
            changed = True
            continue
        m = n.replace(inputs=tuple(new[id(x)] for x in n.inputs))
        if m.op == Op.LOOP:
            m, split_parts = split(m, id(n) in whole_used)
            if split_parts is not None:
                parts[id(n)] = split_parts
        new[id(n)] = m
        changed |= m is not n
    return new, changed


def fresh_name(base: str, taken: set[str], *, numbered: bool = True) -> str:
    """A name not in `taken` (which it joins): `{base}_{k}` for the first free k; `base`
    itself when free and not `numbered`."""
    name, k = (base, 0) if not numbered else (f"{base}_0", 1)
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
