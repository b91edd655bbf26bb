"""The summary table: one row per node, Keras style, loop bodies indented under their loop.

    Node              Module     Op      Output shape        Params  Shared with
    input_0                      input   f32[B,T,3]
    loop_0            lstm/loop  loop    (f32[B,4], ...)        176  body params: every step
      lstm.weight_ih  lstm       param   f32[16,3]               48  every step
    ...
    Total parameters: 736 in 16 tensors
"""
from __future__ import annotations

from typing import Any

from ..ir import Graph, Node, Op, type_str
from .inspect import Storage, flat_size, graph_of, param_storages, walk_paths

HEADER = ("Node", "Module", "Op", "Output shape", "Params", "Shared with")
INDENT = "  "


def summary(model: Any) -> str:
    """A Keras-like table of the model's nodes and parameters, then totals: parameters (each
    storage once) and the flat vector's size."""
    graph = graph_of(model)
    storages = param_storages(graph)
    by_path = {p: s for s in storages.values() for p in s.paths}
    readers = _readers(graph)
    rows = [HEADER]
    for pn in walk_paths(graph):
        n = pn.node
        params, shared = "", ""
        if n.op == Op.PARAM:
            s = by_path[pn.path]
            params = f"{s.size:,}"
            shared = _shared_text(s, pn.path, pn.depth, readers.get(id(n), 0))
        elif n.op == Op.LOOP:
            inside = _body_storages(n, storages)
            params = f"{sum(s.size for s in inside):,}" if inside else ""
            shared = f"body params ({len(inside)}): every step" if inside else ""
        rows.append((INDENT * pn.depth + n.name, n.scope, n.op.value, type_str(n.type),
                     params, shared))
    count = getattr(model, "param_count", None)
    total = count() if callable(count) else sum(s.size for s in storages.values())
    size = flat_size(storages)
    name = getattr(model, "name", None)
    title = f'Model "{name}" ({type(model).__name__})' if name else type(model).__name__
    lines = [f"{title}: {_plural(len(graph.inputs), 'input')} -> "
             f"{_plural(len(graph.outputs), 'output')}, "
             f"{_plural(sum(1 for _ in walk_paths(graph)), 'node')} counting loop bodies", ""]
    lines += _table(rows)
    lines += [
        "",
        f"Total parameters: {total:,} in {_plural(len(storages), 'tensor')} "
        "(a shared tensor counts once)",
        f"Flat vector: {size:,} float32 ({4 * size:,} bytes), every parameter a view into it",
        "Inputs:  " + _values(graph.inputs),
        "Outputs: " + _values(graph.outputs),
    ]
    return "\n".join(lines)


def _shared_text(s: Storage, path: str, depth: int, readers: int) -> str:
    """Who else reads this storage: other PARAM nodes, several users, every step of a loop."""
    others = [p for p in s.paths if p != path]
    parts = [", ".join(others)] if others else []
    if readers > 1:
        parts.append(f"{readers} uses")
    if depth > 0:
        parts.append("every step")
    return "; ".join(parts) or "-"


def _readers(graph: Graph) -> dict[int, int]:
    """id(node) -> how many nodes of its own graph take it as an input."""
    count: dict[int, int] = {}
    for n, _ in graph.walk():
        for x in set(map(id, n.inputs)):
            count[x] = count.get(x, 0) + 1
    return count


def _plural(k: int, word: str) -> str:
    return f"{k:,} {word}" + ("" if k == 1 else "s")


def _body_storages(n: Node, storages: dict[int, Storage]) -> list[Storage]:
    body: Graph = n.attrs["body"]
    seen: dict[int, Storage] = {}
    for m, _ in body.walk():
        if m.op == Op.PARAM:
            seen.setdefault(id(m.param.root()), storages[id(m.param.root())])
    return list(seen.values())


def _table(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(HEADER))]
    right = {HEADER.index("Params")}

    def line(r: tuple[str, ...]) -> str:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(r, widths))]
        return "  ".join(cells).rstrip()
    rule = "=" * len(line(tuple("x" * w for w in widths)))
    return [line(rows[0]), rule] + [line(r) for r in rows[1:]] + [rule]


def _values(nodes: tuple[Node, ...]) -> str:
    return ", ".join(f"{x.name} {type_str(x.type)}" for x in nodes) or "-"


__all__ = ["summary"]
