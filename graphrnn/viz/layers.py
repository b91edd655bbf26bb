"""One level of the layered layout: layers, dummy points, the order in each row, x positions.

The items of a level are box ids, sub-cluster ids and ports (IN/OUT + edge index, points on
the cluster's border where an edge enters or leaves); links are (from, to, edge index).
layout.py runs these steps once per cluster, from the innermost out.
"""
from __future__ import annotations

from typing import Callable

Point = tuple[float, float]
Link = tuple[str, str, int]         # (from item, to item, edge index) at one level
IN, OUT, DUMMY = "\x00in", "\x00out", "\x00~"     # ports and dummy points: no box id starts so
ITEM_GAP = 22.0         # between neighbouring boxes of a row
POINT_GAP = 10.0        # next to a dummy point or a port


def assign_layers(items: list[str], links: list[Link]) -> dict[str, int]:
    """Longest-path layers; leaves pulled down to their first user; out-ports at the bottom."""
    import networkx as nx
    g = nx.DiGraph()
    g.add_nodes_from(items)
    g.add_edges_from((a, b) for a, b, _ in links)
    while not nx.is_directed_acyclic_graph(g):      # never for a graph; drawn all the same
        g.remove_edge(*nx.find_cycle(g)[0][:2])
    layer: dict[str, int] = {}
    order = list(nx.lexicographical_topological_sort(g, key=str))
    for n in order:
        layer[n] = max((layer[p] + 1 for p in g.predecessors(n)), default=0)
    for n in reversed(order):
        if g.in_degree(n) == 0 and g.out_degree(n) and not n.startswith(IN):
            layer[n] = min(layer[s] for s in g.successors(n)) - 1
    bottom = max((layer[n] for n in items), default=0) + 1
    for n in g:
        if n.startswith(OUT):
            layer[n] = bottom
    return layer


def add_dummies(items: list[str], links: list[Link], layer: dict[str, int]
            ) -> tuple[dict[Link, list[str]], list[list[str]]]:
    """Dummy points on every layer an edge crosses; the rows of the layout, in first order."""
    rows: dict[int, list[str]] = {}
    ports = [n for a, b, _ in links for n in (a, b) if n.startswith((IN, OUT))]
    for n in items + ports:
        rows.setdefault(layer[n], []).append(n)
    dummies: dict[Link, list[str]] = {}
    for a, b, i in links:
        lo, hi = sorted((layer[a], layer[b]))
        chain = [f"{DUMMY}{i}.{k}" for k in range(lo + 1, hi)]
        for k, d in zip(range(lo + 1, hi), chain):
            rows.setdefault(k, []).append(d)
        dummies[(a, b, i)] = chain if layer[a] < layer[b] else chain[::-1]
    return dummies, [rows[k] for k in sorted(rows)]


Near = dict[str, list[tuple[str, float]]]


def _neighbours(rows: list[list[str]], dummies: dict[Link, list[str]],
                offset: Callable[[str, str, int], float] = lambda *_: 0.0) -> tuple[Near, Near]:
    """(up, down): for each row entry, what it connects to in the row above / below, each with
    the shift that makes the edge vertical: x[entry] = x[other] + shift."""
    row_of = {n: r for r, row in enumerate(rows) for n in row}
    up: Near = {n: [] for row in rows for n in row}
    down: Near = {n: [] for row in rows for n in row}
    for (a, b, i), chain in dummies.items():
        path = [a] + chain + [b]
        oa, ob = offset(a, "out", i), offset(b, "in", i)
        if not chain and oa and ob:
            oa = ob = 0.0           # cluster over cluster (steps): stacked, not staggered
        offs = [oa] + [0.0] * len(chain) + [ob]
        for (p, op), (q, oq) in zip(zip(path, offs), zip(path[1:], offs[1:])):
            if row_of[p] > row_of[q]:
                (p, op), (q, oq) = (q, oq), (p, op)
            if row_of[p] < row_of[q]:
                down[p].append((q, oq - op))
                up[q].append((p, op - oq))
    return up, down


def order_rows(rows: list[list[str]], dummies: dict[Link, list[str]]) -> None:
    """Barycentre sweeps down and up; keeps the order with the fewest crossings (in place)."""
    up, down = _neighbours(rows, dummies)
    best = [list(r) for r in rows]
    best_cross = _crossings(rows, down)
    for sweep in range(8):
        forward = sweep % 2 == 0
        seq = range(1, len(rows)) if forward else range(len(rows) - 2, -1, -1)
        for r in seq:
            ref = rows[r - 1] if forward else rows[r + 1]
            pos = {n: k for k, n in enumerate(ref)}
            nbrs = up if forward else down
            here = {n: k for k, n in enumerate(rows[r])}

            def bary(n: str) -> float:
                ks = [pos[m] for m, _ in nbrs[n] if m in pos]
                return sum(ks) / len(ks) if ks else here[n]
            rows[r].sort(key=bary)
        cross = _crossings(rows, down)
        if cross < best_cross:
            best, best_cross = [list(r) for r in rows], cross
    rows[:] = best


def _crossings(rows: list[list[str]], down: Near) -> int:
    total = 0
    for r in range(len(rows) - 1):
        below = {n: k for k, n in enumerate(rows[r + 1])}
        segs = [(k, below[m]) for k, n in enumerate(rows[r]) for m, _ in down[n] if m in below]
        if len(segs) > 600:
            continue                    # too many to count cheaply; the order stays as is
        total += sum(1 for i, (a, b) in enumerate(segs) for c, d in segs[i + 1:]
                     if (a - c) * (b - d) < 0)
    return total


def x_positions(rows: list[list[str]], dummies: dict[Link, list[str]], size: dict[str, Point],
                 offset: Callable[[str, str, int], float]) -> dict[str, float]:
    """Centre x of every row entry: spacing kept, each entry near its neighbours' mean (ports
    of sub-clusters lined up with what they connect to)."""
    up, down = _neighbours(rows, dummies, offset)
    width = {n: size[n][0] if n in size else 0.0 for row in rows for n in row}
    x: dict[str, float] = {}
    for row in rows:
        at = 0.0
        for n in row:
            x[n] = at + width[n] / 2
            at += width[n] + _gap(n, n, size)
    for sweep in range(10):
        nbrs = [up, down, None][sweep % 3]
        for row in (rows if nbrs is not down else rows[::-1]):
            want = []
            for n in row:
                ms = (up[n] + down[n]) if nbrs is None else nbrs[n]
                want.append(sum(x[m] + shift for m, shift in ms) / len(ms) if ms else x[n])
            weights = [1.0 if n in size else 2.0 for n in row]
            seps = [(width[p] + width[q]) / 2 + _gap(p, q, size) for p, q in zip(row, row[1:])]
            for n, v in zip(row, _isotonic(want, weights, seps)):
                x[n] = v
    return x


def _gap(p: str, q: str, size: dict[str, Point]) -> float:
    return ITEM_GAP if p in size and q in size else POINT_GAP


def _isotonic(want: list[float], weights: list[float], seps: list[float]) -> list[float]:
    """Positions closest to `want` (weighted least squares) with x[i+1] - x[i] >= seps[i]."""
    offsets = [0.0]
    for s in seps:
        offsets.append(offsets[-1] + s)
    blocks: list[list[float]] = []          # [value, weight, count]
    for w, wt, off in zip(want, weights, offsets):
        blocks.append([w - off, wt, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            v2, w2, n2 = blocks.pop()
            v1, w1, n1 = blocks.pop()
            blocks.append([(v1 * w1 + v2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    out: list[float] = []
    for v, _, n in blocks:
        out += [v] * n
    return [v + off for v, off in zip(out, offsets)]


__all__ = ["assign_layers", "add_dummies", "order_rows", "x_positions", "Link", "IN", "OUT"]
