"""The fallback layout: boxes, edges and nested clusters placed on a page without Graphviz.

A layered (Sugiyama) drawing, done cluster by cluster from the inside out. Each cluster is
laid out on its own, then stands as one big item in its parent's layout. At each level:

1. an edge belongs to the innermost cluster holding both its ends; an edge that enters or
   leaves a cluster gets a port on the cluster's top or bottom border, so it is routed inside
   the cluster too (and never runs through the boxes there);
2. layers by longest path from the sources, leaves (parameters, constants) pulled down to
   just above their first user; edges spanning several layers go through dummy points;
3. the order within each layer by barycentre sweeps, keeping the order with fewest crossings;
4. x by isotonic regression (pool adjacent violators): each item as close to the mean of its
   neighbours as the minimum spacing allows, alternately from above and from below.

Back edges (a loop's carried state) are laid out reversed and drawn from the later node back
up to the earlier one. Text is monospace, so sizes come from character counts.
"""
from __future__ import annotations

import numpy as np

from .layers import IN, OUT, Link, add_dummies, assign_layers, order_rows, x_positions
from .scene import Box, Cluster, Point, Scene

CHAR_W = 7.2            # advance of the 12px monospace text
SMALL_W = 6.0           # advance of the 10px text on edges
LINE_H = 15.0
BOX_PAD_X, BOX_PAD_Y = 9.0, 5.0
LAYER_GAP = 36.0        # between layers: room for the type under a box and an arrowhead
CLUSTER_PAD = 12.0
MARGIN = 16.0

Rect = tuple[float, float, float, float]


def text_width(lines: list[str], char_w: float = CHAR_W) -> float:
    return max((len(s) for s in lines), default=0) * char_w


def layout(scene: Scene) -> Scene:
    """Place every box and cluster and route every edge; returns `scene`, sizes filled in."""
    for b in scene.boxes.values():
        b.w = text_width(b.lines) + 2 * BOX_PAD_X + (12 if b.shape in ("ellipse", "octagon") else 0)
        b.h = len(b.lines) * LINE_H + 2 * BOX_PAD_Y + (8 if b.shape == "invhouse" else 0)
    chains = _chains(scene.root)
    plan = _Plan(scene, chains)
    plan.place(scene.root)
    top = MARGIN + len(scene.caption) * LINE_H + (8 if scene.caption else 0)
    plan.absolute(scene.root, MARGIN, top)
    plan.assemble()
    texts = [b.note_at[0] + len(b.note) * SMALL_W for b in scene.boxes.values() if b.note]
    texts += [e.label_at[0] + len(e.label) * SMALL_W + 4 for e in scene.edges if e.label]
    scene.width = max([scene.root.w + MARGIN, text_width(scene.caption) + MARGIN]
                      + texts) + MARGIN
    scene.height = top + scene.root.h + MARGIN
    return scene


def _chains(root: Cluster) -> dict[str, list[Cluster]]:
    """box id -> the clusters holding it, outermost (root) first."""
    out: dict[str, list[Cluster]] = {}

    def visit(c: Cluster, above: list[Cluster]) -> None:
        here = above + [c]
        for b in c.boxes:
            out[b] = here
        for sub in c.clusters:
            visit(sub, here)
    visit(root, [])
    return out


class _Plan:
    """The state of one layout: local positions per cluster, edge pieces per level."""

    def __init__(self, scene: Scene, chains: dict[str, list[Cluster]]):
        self.scene, self.chains = scene, chains
        self.local: dict[str, Point] = {}                   # item id -> top-left in its parent
        self.ports: dict[tuple[str, str, int], float] = {}  # (cluster, "in"/"out", edge) -> x
        self.pieces: dict[tuple[int, str], list[Point]] = {}
        self.origin: dict[str, Point] = {}

    def ends(self, i: int) -> tuple[str, str]:
        e = self.scene.edges[i]
        return (e.dst, e.src) if e.back else (e.src, e.dst)

    # ------------------------------------------------------------------ one level
    def place(self, c: Cluster) -> None:
        for sub in c.clusters:
            self.place(sub)
        size = {b: (self.scene.boxes[b].w, self.scene.boxes[b].h) for b in c.boxes}
        size.update({s.id: (s.w, s.h) for s in c.clusters})
        items = list(size)
        links: list[Link] = []
        for i, e in enumerate(self.scene.edges):
            if e.src == e.dst or e.src not in self.chains or e.dst not in self.chains:
                continue
            u, v = self.ends(i)
            a, b = self._item(c, u), self._item(c, v)
            if a is not None and b is not None and a != b:
                links.append((a, b, i))
            elif a is None and b is not None:
                links.append((f"{IN}{i}", b, i))
            elif a is not None and b is None:
                links.append((a, f"{OUT}{i}", i))
        layer = assign_layers(items, links)
        dummies, rows = add_dummies(items, links, layer)
        order_rows(rows, dummies)

        def offset(item: str, side: str, i: int) -> float:
            """Where edge i meets an item, from its centre: a sub-cluster's port, else 0."""
            key = (item, side, i)
            return self.ports[key] - size[item][0] / 2 if key in self.ports else 0.0
        xs = x_positions(rows, dummies, size, offset)
        self._finish(c, rows, dummies, size, xs, links)

    def _item(self, c: Cluster, box: str) -> str | None:
        """The item of cluster c that holds box (the box, or a sub-cluster), or None."""
        chain = self.chains[box]
        for k, cl in enumerate(chain):
            if cl is c:
                return box if k == len(chain) - 1 else chain[k + 1].id
        return None

    def _finish(self, c: Cluster, rows: list[list[str]], dummies: dict[Link, list[str]],
                size: dict[str, Point], xs: dict[str, float],
                links: list[Link]) -> None:
        label_h = len(c.label) * LINE_H + (6 if c.label else 0)
        heights = [max((size[n][1] for n in row if n in size), default=0.0) for row in rows]
        left = min((xs[n] - size.get(n, (0, 0))[0] / 2 for row in rows for n in row),
                   default=0.0)
        shift = CLUSTER_PAD - left
        y, tops = CLUSTER_PAD + label_h, []
        for h in heights:
            tops.append(y)
            y += h + LAYER_GAP
        c.h = y - LAYER_GAP + CLUSTER_PAD if rows else label_h + 2 * CLUSTER_PAD
        right = max((xs[n] + size.get(n, (0, 0))[0] / 2 for row in rows for n in row),
                    default=0.0) + shift
        c.w = max(right + CLUSTER_PAD, text_width(c.label) + 2 * CLUSTER_PAD)
        centre: dict[str, Point] = {}
        for row, top, h in zip(rows, tops, heights):
            for n in row:
                x = xs[n] + shift
                if n.startswith(IN):
                    centre[n] = (x, 0.0)
                    self.ports[(c.id, "in", int(n[len(IN):]))] = x
                elif n.startswith(OUT):
                    centre[n] = (x, c.h)
                    self.ports[(c.id, "out", int(n[len(OUT):]))] = x
                elif n in size:
                    w, hh = size[n]
                    self.local[n] = (x - w / 2, top + (h - hh) / 2)
                    centre[n] = (x, top + h / 2)
                else:
                    centre[n] = (x, top)
                    centre[n + "^"] = (x, top + h)
        for a, b, i in links:
            pts = [self._anchor(c, a, i, "out", centre)]
            for d in dummies[(a, b, i)]:
                pts.append(centre[d])
                if centre[d + "^"] != centre[d]:
                    pts.append(centre[d + "^"])
            pts.append(self._anchor(c, b, i, "in", centre))
            self.pieces[(i, c.id)] = pts

    def _anchor(self, c: Cluster, item: str, i: int, side: str,
                centre: dict[str, Point]) -> Point:
        """Where edge i leaves (side "out") or enters (side "in") an item of cluster c."""
        if item.startswith((IN, OUT)):
            return centre[item]
        if item in self.scene.boxes:
            x, y = self.local[item]
            b = self.scene.boxes[item]
            return (x + b.w / 2, y + b.h if side == "out" else y)
        x, y = self.local[item]
        sub = next(s for s in c.clusters if s.id == item)
        return (x + self.ports[(item, side, i)], y + sub.h if side == "out" else y)

    # ------------------------------------------------------------------ whole page
    def absolute(self, c: Cluster, x: float, y: float) -> None:
        c.x, c.y = x, y
        self.origin[c.id] = (x, y)
        for b in c.boxes:
            lx, ly = self.local[b]
            self.scene.boxes[b].x, self.scene.boxes[b].y = x + lx, y + ly
        for sub in c.clusters:
            lx, ly = self.local[sub.id]
            self.absolute(sub, x + lx, y + ly)

    def assemble(self) -> None:
        """Each edge's points: out of the source's clusters, across, into the target's."""
        boxes = self.scene.boxes
        routes: dict[int, list[Point]] = {}
        for i, e in enumerate(self.scene.edges):
            if e.src not in self.chains or e.dst not in self.chains:
                continue
            if e.src == e.dst:
                b = boxes[e.src]
                r, cy = b.x + b.w, b.y + b.h / 2
                e.points = [(r, cy + 5), (r + 16, cy + 5), (r + 16, cy - 5), (r, cy - 5)]
                continue
            u, v = self.ends(i)
            cu, cv = self.chains[u], self.chains[v]
            k = 0
            while k < min(len(cu), len(cv)) and cu[k] is cv[k]:
                k += 1
            levels = list(reversed(cu[k:])) + [cu[k - 1]] + cv[k:]
            pts: list[Point] = []
            for cl in levels:
                ox, oy = self.origin[cl.id]
                for px, py in self.pieces.get((i, cl.id), []):
                    p = (px + ox, py + oy)
                    if not pts or abs(p[0] - pts[-1][0]) + abs(p[1] - pts[-1][1]) > 0.01:
                        pts.append(p)
            if len(pts) >= 2:
                routes[i] = pts
        _spread(routes, [self.ends(i) for i in range(len(self.scene.edges))], boxes)
        for i, pts in routes.items():
            e = self.scene.edges[i]
            e.points = list(reversed(pts)) if e.back else pts
        leaving: dict[str, list[float]] = {}
        for e in self.scene.edges:
            if not e.back and len(e.points) > 1:
                leaving.setdefault(e.src, []).append(e.points[1][0] - e.points[0][0])
        taken = [(b.x, b.y, b.x + b.w, b.y + b.h) for b in boxes.values()]
        lines = np.array([p for e in self.scene.edges for p in e.polyline(6)] or [(0.0, 0.0)])
        for b in boxes.values():
            b.note = b.note if b.id in leaving else ""
            if b.note:
                b.note_at = _note_spot(b, sum(leaving[b.id]) > 0, taken, lines)
        _place_labels(self.scene, taken)


def _note_spot(b: Box, left: bool, taken: list[Rect], lines: np.ndarray) -> Point:
    """Where the note under b goes: beside the middle 60% of the box (where its edges leave),
    on the `left` side first, then the other, then a line lower; the spot that covers no box
    or text and the fewest points of the edges' `lines`. Its rectangle joins `taken`."""
    w = len(b.note) * SMALL_W
    spots = []
    for dy in (0.0, 12.0):
        for side in (left, not left):
            x = b.x + b.w * 0.2 - 2 - w if side else b.x + b.w * 0.8 + 2
            spots.append((x, b.y + b.h + 2 + dy, x + w, b.y + b.h + 14 + dy))

    def cost(r: Rect) -> int:
        crossed = ((lines[:, 0] > r[0] - 2) & (lines[:, 0] < r[2] + 2)
                   & (lines[:, 1] > r[1]) & (lines[:, 1] < r[3])).sum()
        return 1000 * sum(_overlap(r, t) for t in taken) + int(crossed)
    rect = min(spots, key=cost)            # the first of equals: min keeps the order
    taken.append(rect)
    return (rect[0], rect[3] - 2)


def _overlap(a: Rect, b: Rect, pad: float = 2.0) -> bool:
    return a[0] < b[2] + pad and b[0] < a[2] + pad and a[1] < b[3] and b[1] < a[3]


def _place_labels(scene: Scene, taken: list[Rect]) -> None:
    """Each edge label beside its edge, where it covers no box and no other text."""
    for e in scene.edges:
        if not e.label or len(e.points) < 2:
            continue
        w = len(e.label) * SMALL_W + 4
        spots = [(t, side) for t in (0.5, 0.35, 0.65, 0.2, 0.8) for side in (1, -1)]
        for t, side in spots:
            x, y = e.point_at(t)
            left = x + 3 if side > 0 else x - 3 - w
            rect = (left, y - 10, left + w, y + 3)
            if left >= MARGIN / 2 and not any(_overlap(rect, r) for r in taken):
                break
        else:
            x, y = e.point_at(0.5)
            left, rect = x + 3, (x + 3, y - 10, x + 3 + w, y + 3)
        e.label_at = (left, y)
        taken.append(rect)


def _spread(routes: dict[int, list[Point]], ends: list[tuple[str, str]],
            boxes: dict[str, Box]) -> None:
    """Edges meeting one side of a box get their own points along it, ordered by where their
    other end lies, so they fan out instead of piling onto the centre."""
    sides: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
    for i, pts in routes.items():
        u, v = ends[i]
        sides.setdefault((u, "bottom"), []).append((pts[1][0], i, 0))
        sides.setdefault((v, "top"), []).append((pts[-2][0], i, len(pts) - 1))
    for (box_id, side), uses in sides.items():
        b = boxes[box_id]
        uses.sort()
        span = min(b.w * 0.6, 14.0 * (len(uses) - 1))
        for k, (_, i, at) in enumerate(uses):
            x = b.x + b.w / 2 + (span * (k / (len(uses) - 1) - 0.5) if len(uses) > 1 else 0)
            routes[i][at] = (x, b.border_y(x, side))


__all__ = ["layout", "text_width", "CHAR_W", "SMALL_W", "LINE_H"]
