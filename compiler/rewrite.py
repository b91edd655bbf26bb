"""The one traversal helper the passes share: rebuild a graph node by node."""
from __future__ import annotations

from typing import Callable

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


def fresh_name(base: str, taken: set[str], *, numbered: bool = True) -> str:
    """A name not in `taken` (which it joins): `{base}_{k}` for the first free k; `base`
    itself when free and not `numbered`."""
    name, k = (base, 0) if not numbered else (f"{base}_0", 1)
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name
