"""What the built-in renderer draws for a model: a Scene of boxes, edges and clusters.

`build_scene` decides what is drawn; `layout.layout` places it; the Box and Edge classes give
the shapes both writers draw (outline polygons, Bezier curves, arrowheads), so the SVG and the
PNG show the same picture.

The picture says what dot.py's DOT text says, in the shapes `layout` and the SVG/PNG writers
know:

- one box per node with its name and `op (module)`; graph inputs point down (`invhouse`, blue),
  outputs have a double green border, the inputs of a body are grey ellipses with their role
  (`carry_in 0`, `x_t 0`, `const 0`); the type a node produces is written under it, on the
  edges it starts;
- a loop (or fused) node is a rounded cluster holding a header box (its operands go in
  there), its body, recursively, and a results box (the final carries and stacked outputs
  come out there); the carried state runs back from each carry_out to its carry_in (dashed,
  red);
- PARAM boxes are filled with one colour per storage (`storage_colour`, as in the DOT) and say
  its key, offset and size in the flat vector; edges out of them have a darker tone of it;
- `unroll=k` draws k step clusters with the carries running from step to step, and each
  parameter of the body once, with an edge to every step that reads it;
- boxes whose path is in `highlight` (`loop_0/h_next`; at top level just the name) are red,
  with the line of the user's code that made them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable

from .dot import logical_path, storage_colour
from ..ir import Graph, Node, Op, type_str
from .inspect import (BODY_INPUT_ROLES, Storage, body_of, body_roles, carried, check_unroll,
                      drawn_nodes, graph_of, graph_roles, loop_title, param_storages,
                      tied_params)

INPUT_FILL, OUTPUT_FILL, BODY_INPUT_FILL = "#d6e6ff", "#d9f2d9", "#eeeeee"
HEADER_FILL, STEP_FILL = "#fff4d6", "#ffffff"
RED, RED_FILL = "#d62728", "#ffd6d6"
ENTER_COLOUR = "#888888"

Point = tuple[float, float]


@dataclass
class Box:
    """A node: text lines (the first in bold), a shape and colours; x, y, w, h once placed."""
    id: str
    lines: list[str]
    fill: str = "#ffffff"
    stroke: str = "#444444"
    shape: str = "rounded"          # rounded | rect | ellipse | invhouse | octagon
    double: bool = False            # a second border (graph outputs)
    stroke_width: float = 1.0
    note: str = ""                  # small text under the box: the type its edges carry
    note_at: Point = (0.0, 0.0)     # set by layout: left end of the note's baseline
    classes: str = "node"
    data: dict[str, str] = field(default_factory=dict)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    def outline(self, grow: float = 0.0) -> list[Point]:
        """The border as a polygon, `grow` units outside the box (rounded corners as arcs)."""
        x, y, w, h = self.x - grow, self.y - grow, self.w + 2 * grow, self.h + 2 * grow
        if self.shape == "invhouse":
            return [(x, y), (x + w, y), (x + w, y + h - 8), (x + w / 2, y + h), (x, y + h - 8)]
        if self.shape == "octagon":
            c = 8.0
            return [(x + c, y), (x + w - c, y), (x + w, y + c), (x + w, y + h - c),
                    (x + w - c, y + h), (x + c, y + h), (x, y + h - c), (x, y + c)]
        if self.shape == "ellipse":
            return [(x + w / 2 + w / 2 * math.cos(a), y + h / 2 + h / 2 * math.sin(a))
                    for a in (2 * math.pi * k / 40 for k in range(40))]
        return rounded_rect(x, y, w, h, 6.0 if self.shape == "rounded" else 0.0)

    def border_y(self, x: float, side: str) -> float:
        """Where the vertical line at x meets the "top" or "bottom" of the shape."""
        cx, half = self.x + self.w / 2, self.w / 2
        off = min(abs(x - cx) / half, 1.0) if half else 0.0
        if self.shape == "ellipse":
            dy = self.h / 2 * (1 - (1 - off * off) ** 0.5)
            return self.y + dy if side == "top" else self.y + self.h - dy
        if self.shape == "invhouse" and side == "bottom":
            return self.y + self.h - 8 * off
        return self.y if side == "top" else self.y + self.h


@dataclass
class Edge:
    """An arrow from src to dst; `back` ones run from a later node up to an earlier one."""
    src: str
    dst: str
    label: str = ""
    color: str = "#555555"
    dash: str = ""                  # "" | "dashed" | "dotted"
    back: bool = False
    classes: str = "edge"
    points: list[Point] = field(default_factory=list)
    label_at: Point = (0.0, 0.0)    # set by layout: left end of the label's baseline

    def curves(self) -> list[tuple[Point, Point, Point, Point]]:
        """Cubic Bezier segments through the points, leaving and entering each vertically."""
        out = []
        for p, q in zip(self.points, self.points[1:]):
            my = (p[1] + q[1]) / 2
            out.append((p, (p[0], my), (q[0], my), q))
        return out

    def polyline(self, steps: int = 10) -> list[Point]:
        """The curves cut into `steps` straight pieces each."""
        line = self.points[:1]
        for p, c1, c2, q in self.curves():
            for k in range(1, steps + 1):
                t = k / steps
                a, b, c, d = (1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t ** 2, t ** 3
                line.append((a * p[0] + b * c1[0] + c * c2[0] + d * q[0],
                             a * p[1] + b * c1[1] + c * c2[1] + d * q[1]))
        return line

    def arrowhead(self, size: float = 8.0) -> list[Point]:
        """The triangle at the end of the last curve, pointing along it."""
        if len(self.points) < 2:
            return []
        p, _, c2, q = self.curves()[-1]
        dx, dy = q[0] - c2[0], q[1] - c2[1]
        if abs(dx) + abs(dy) < 1e-6:
            dx, dy = q[0] - p[0], q[1] - p[1]
        norm = math.hypot(dx, dy) or 1.0
        dx, dy = dx / norm, dy / norm
        bx, by = q[0] - dx * size, q[1] - dy * size
        return [q, (bx - dy * size * 0.42, by + dx * size * 0.42),
                (bx + dy * size * 0.42, by - dx * size * 0.42)]

    def point_at(self, t: float) -> Point:
        """The point a fraction t along the polyline of the points."""
        lengths = [math.dist(p, q) for p, q in zip(self.points, self.points[1:])]
        left = sum(lengths) * t
        for (p, q), d in zip(zip(self.points, self.points[1:]), lengths):
            if left <= d and d > 0:
                return (p[0] + (q[0] - p[0]) * left / d, p[1] + (q[1] - p[1]) * left / d)
            left -= d
        return self.points[-1] if self.points else (0.0, 0.0)


@dataclass
class Cluster:
    """A labelled rounded frame around boxes and nested clusters (a loop and its body)."""
    id: str
    label: list[str] = field(default_factory=list)
    boxes: list[str] = field(default_factory=list)
    clusters: list["Cluster"] = field(default_factory=list)
    fill: str = "#fafafa"
    stroke: str = "#888888"
    dash: str = "dashed"
    classes: str = "cluster"
    data: dict[str, str] = field(default_factory=dict)
    x: float = 0.0
    y: float = 0.0
    w: float = 0.0
    h: float = 0.0

    def walk(self) -> list["Cluster"]:
        return [self] + [c for sub in self.clusters for c in sub.walk()]


@dataclass
class Scene:
    """Everything to draw: the root cluster (its frame is not drawn), boxes, edges, a caption."""
    root: Cluster
    boxes: dict[str, Box]
    edges: list[Edge]
    title: str = ""
    caption: list[str] = field(default_factory=list)
    caption_color: str = "#222222"
    width: float = 0.0
    height: float = 0.0

def rounded_rect(x: float, y: float, w: float, h: float, r: float) -> list[Point]:
    """A rectangle as a polygon, each corner a quarter circle of radius r (none when r = 0)."""
    if r <= 0:
        return [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    r = min(r, w / 2, h / 2)
    out: list[Point] = []
    for cx, cy, start in ((x + w - r, y + r, -90), (x + w - r, y + h - r, 0),
                          (x + r, y + h - r, 90), (x + r, y + r, 180)):
        out += [(cx + r * math.cos(math.radians(start + 15 * k)),
                 cy + r * math.sin(math.radians(start + 15 * k))) for k in range(7)]
    return out




def storage_edge_colour(index: int) -> str:
    """A darker tone of `storage_colour(index)`, for the edges out of that storage."""
    return storage_colour(index, 0.8, 0.62)


def build_scene(model_or_graph: Any, unroll: int | None = None,
                highlight: Iterable[str] = (), caption: Iterable[str] = ()) -> Scene:
    """The boxes, edges and clusters of a gModule or Graph (see the module docstring)."""
    check_unroll(unroll)
    graph = graph_of(model_or_graph)
    builder = _Builder(param_storages(graph), unroll, set(highlight))
    builder.graph(graph, "", builder.root, graph_roles(graph), {})
    caption = list(caption)
    return Scene(builder.root, builder.boxes, builder.edges,
                 title=getattr(model_or_graph, "name", None) or "graph", caption=caption,
                 caption_color=RED if builder.highlighted else "#222222")


class _Builder:
    """Accumulates the scene; one instance per picture."""

    def __init__(self, storages: dict[int, Storage], unroll: int | None, highlight: set[str]):
        self.storages, self.unroll, self.highlight = storages, unroll, highlight
        self.root = Cluster("root")
        self.boxes: dict[str, Box] = {}
        self.edges: list[Edge] = []
        self.highlighted: list[str] = []

    def graph(self, g: Graph, prefix: str, cluster: Cluster, roles: dict[int, list[str]],
              shared: dict[int, str]) -> tuple[dict[int, str], dict[int, str]]:
        """Add g's nodes and edges to `cluster`; returns (into, out_of): id(node) -> the box
        its inputs go into and the box its value comes out of (they differ for a loop)."""
        into: dict[int, str] = {}
        out_of: dict[int, str] = {}
        for n in drawn_nodes(g):
            if n.op == Op.PARAM and id(n.param.root()) in shared:
                into[id(n)] = out_of[id(n)] = shared[id(n.param.root())]
                continue
            path = logical_path(prefix) + n.name
            if body_of(n) is not None:
                into[id(n)], out_of[id(n)] = self.cluster(n, prefix + n.name, path, cluster)
            else:
                into[id(n)] = out_of[id(n)] = self.node(n, prefix + n.name, path, cluster,
                                                        roles.get(id(n), []))
        for n in g.nodes:
            for x in n.inputs:
                self.edge(out_of[id(x)], into[id(n)])
        return into, out_of

    def node(self, n: Node, box_id: str, path: str, cluster: Cluster, roles: list[str]) -> str:
        lines = [n.name, f"{n.op.value} ({n.scope})" if n.scope else n.op.value]
        box = Box(box_id, lines, note=type_str(n.type) if n.type is not None else "",
                  data={"path": path, "op": n.op.value})
        body_roles_here = [r for r in roles if r.split()[0] in BODY_INPUT_ROLES]
        if n.op == Op.PARAM:
            s = self.storages[id(n.param.root())]
            lines += [type_str(n.type), f"{s.key} @{s.offset} +{s.size}"]
            box.fill, box.shape, box.classes = storage_colour(s.index), "rect", "node param"
            box.note = ""
            box.data.update(key=s.key, offset=str(s.offset), size=str(s.size),
                            storage=str(s.index))
        elif body_roles_here:
            lines[1:] = [", ".join(body_roles_here), type_str(n.type)]
            box.fill, box.shape, box.note = BODY_INPUT_FILL, "ellipse", ""
            box.classes = "node body-input"
        if "input" in roles:
            lines.append(type_str(n.type))
            box.fill, box.shape, box.classes, box.note = INPUT_FILL, "invhouse", "node input", ""
        if "output" in roles:
            if "input" not in roles:
                lines.append(type_str(n.type))
            box.fill, box.double, box.classes = OUTPUT_FILL, True, box.classes + " output"
            box.note = ""
        self._mark(box, n, path)
        self.boxes[box_id] = box
        cluster.boxes.append(box_id)
        return box_id

    def _mark(self, box: Box, n: Node, path: str) -> None:
        if path in self.highlight:
            box.fill, box.stroke, box.stroke_width = RED_FILL, RED, 2.5
            box.classes += " highlight"
            if n.where:
                box.lines.append(f"at {n.where}")
            self.highlighted.append(path)

    def edge(self, src: str, dst: str, label: str = "", **style: Any) -> None:
        b = self.boxes.get(src)
        if b is not None and "param" in b.classes.split() and "color" not in style:
            style["color"] = storage_edge_colour(int(b.data["storage"]))
        self.edges.append(Edge(src, dst, label, **style))

    def cluster(self, n: Node, box_id: str, path: str, parent: Cluster) -> tuple[str, str]:
        """A loop or fused node: header, body, results, in one cluster."""
        title = loop_title(n)
        unrolled = n.op == Op.LOOP and self.unroll is not None
        scope = [n.scope] if n.scope and n.scope.split("/")[-1] != n.name else []
        cl = Cluster(f"cluster:{box_id}", [title] + scope,
                     classes="cluster loop" if n.op == Op.LOOP else "cluster fused",
                     data={"path": path, "steps": str(self.unroll) if unrolled else ""})
        parent.clusters.append(cl)
        header = Box(box_id, [n.name, n.op.value], fill=HEADER_FILL, shape="octagon",
                     classes="node header", data={"path": path, "op": n.op.value})
        self._mark(header, n, path)
        self.boxes[box_id] = header
        cl.boxes.append(box_id)
        results = self.unrolled(n, box_id, path, cl) if unrolled else self.rolled(n, box_id, cl)
        types = n.type if isinstance(n.type, tuple) else (n.type,)
        result_id = box_id + "/results"
        self.boxes[result_id] = Box(result_id, [f"{n.name} results"] + [
            f"{i}: {type_str(t)}" for i, t in enumerate(types)], fill=HEADER_FILL,
            classes="node results", data={"path": path + "/results", "op": n.op.value})
        cl.boxes.append(result_id)
        for src in dict.fromkeys(results):
            self.edge(src, result_id, color=ENTER_COLOUR, dash="dotted")
        return box_id, result_id

    def rolled(self, n: Node, box_id: str, cl: Cluster) -> list[str]:
        body: Graph = n.attrs["body"]
        roles = body_roles(n)
        into, out_of = self.graph(body, box_id + "/", cl, roles, {})
        for x in body.inputs:
            self.edge(box_id, into[id(x)], color=ENTER_COLOUR, dash="dotted")
        for i, (y, x) in enumerate(carried(n)):
            self.edge(out_of[id(y)], into[id(x)], f"carry {i}", color=RED, dash="dashed",
                      back=True, classes="edge carry")
        return [out_of[id(y)] for y in body.outputs]

    def unrolled(self, n: Node, box_id: str, path: str, cl: Cluster) -> list[str]:
        body: Graph = n.attrs["body"]
        roles = body_roles(n)
        carry_in = [x for _, x in carried(n)]
        reverse = bool(n.attrs.get("reverse"))
        shared = {id(m.param.root()): self.node(m, f"{box_id}/{m.name}", f"{path}/{m.name}",
                                                cl, [])
                  for m in tied_params(body)}
        previous: dict[int, str] | None = None
        for t in range(self.unroll or 0):
            step = f"T-{t + 1}" if reverse else str(t)
            sc = Cluster(f"cluster:{box_id}@{t}", [f"step t={step}"], fill=STEP_FILL, dash="",
                         classes="cluster step", data={"path": path, "step": str(t)})
            cl.clusters.append(sc)
            into, out_of = self.graph(body, f"{box_id}@{t}/", sc, roles, shared)
            for x in body.inputs:
                if previous is not None and any(x is c for c in carry_in):
                    i = next(k for k, c in enumerate(carry_in) if c is x)
                    self.edge(previous[id(body.outputs[i])], into[id(x)], f"carry {i}",
                              color=RED, classes="edge carry")
                else:
                    self.edge(box_id, into[id(x)], color=ENTER_COLOUR, dash="dotted")
            previous = out_of
        return [previous[id(y)] for y in body.outputs] if previous else []


__all__ = ["build_scene", "storage_edge_colour", "Box", "Edge", "Cluster", "Scene", "Point",
           "rounded_rect"]
