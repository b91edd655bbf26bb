"""The traversal helpers the passes share: rebuild a graph node by node."""
from __future__ import annotations

from typing import Callable, Sequence

from graphrnn.ir import Graph, Node, Op


def rewrite(graph: Graph, fn: Callable[[Node], Node], *, into_loops: bool = True) -> Graph:
    """A copy of `graph` where each node (inputs already rewritten) is replaced by `fn(node)`.

    Loop bodies are rewritten first when `into_loops`. Returns `graph` itself when `fn`
    changed nothing, so a pass can tell cheaply whether it did any work.
    """
    new: dict[int, Node] = {}
    changed = False
    for n in graph.nodes:
        ins = tuple(new[id(x)] for x in n.inputs)
        m = n.replace(inputs=ins) if any(a is not b for a, b in zip(ins, n.inputs)) else n
        if into_loops and m.op == Op.LOOP:
            body = rewrite(m.attrs["body"], fn, into_loops=True)
            if body is not m.attrs["body"]:
                m = m.replace(attrs={**m.attrs, "body": body})
        m = fn(m)
        changed |= m is not n
        new[id(n)] = m
    if not changed:
        return graph
    return graph.remapped(new)


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
