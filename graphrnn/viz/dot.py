"""Graphviz DOT text of a model, in the spirit of nngraph's `graph.dot`.

- Graph inputs are drawn as `invhouse` shapes, outputs with a double border; each node shows
  its name and `op (module)`, and every edge the type of the value it carries.
- A loop is a `subgraph cluster_<name>` holding its loop node and its body: dotted edges bring
  the loop's operands to the body's inputs, and dashed edges run back from each carry_out to
  its carry_in. With `unroll=k` the body is drawn k times, one cluster per step, the carried
  edges running from step to step, and the body's parameters drawn once for all steps.
- PARAM nodes are filled with one colour per storage, so every node that reads the same tensor
  has the same colour; the label gives the key, offset and size in the flat vector.
- Nodes whose path is in `highlight` (`loop_0/h_next`; a top-level node's path is its name)
  are drawn red with the line of code that made them (the failing node of an error, say);
  `caption` lines go on top. The shared parameters of an unrolled loop sit beside its node.
"""
from __future__ import annotations

import colorsys
import re
from typing import Any, Iterable

from ..ir import Graph, Node, Op, type_str
from .inspect import (BODY_INPUT_ROLES, Storage, body_of, body_roles, carried, check_unroll,
                      drawn_nodes, graph_of, graph_roles, loop_title, param_storages,
                      tied_params)

INPUT_STYLE = 'shape=invhouse, style=filled, fillcolor="#d6e6ff"'
OUTPUT_STYLE = 'peripheries=2, fillcolor="#d9f2d9"'
BODY_INPUT_STYLE = 'shape=ellipse, fillcolor="#eeeeee"'
HIGHLIGHT_COLOUR = "#d62728"
HIGHLIGHT_STYLE = f'color="{HIGHLIGHT_COLOUR}", penwidth=2.5, fillcolor="#ffd6d6"'
CARRY_STYLE = 'style=dashed, color="#d62728", fontcolor="#d62728", constraint=false'
ENTER_STYLE = 'style=dotted, color="#555555"'


def storage_hue(index: int) -> float:
    """Golden-ratio steps stay distinct for any number of storages; starting at blue keeps
    the first few away from the red of carried state and errors."""
    return (0.6 + index * 0.618033988749895) % 1.0


def storage_colour(index: int, saturation: float = 0.35, value: float = 0.97) -> str:
    """A light colour per storage (darker ones for its edges with other arguments)."""
    r, g, b = colorsys.hsv_to_rgb(storage_hue(index), saturation, value)
    return f"#{round(r * 255):02x}{round(g * 255):02x}{round(b * 255):02x}"


def to_dot(model_or_graph: Any, unroll: int | None = None,
           highlight: Iterable[str] = (), caption: Iterable[str] = ()) -> str:
    """Graphviz DOT text of a gModule or a Graph; `unroll=k` draws the first k steps of every
    loop."""
    check_unroll(unroll)
    graph = graph_of(model_or_graph)
    name = getattr(model_or_graph, "name", None) or "graph"
    writer = _Writer(param_storages(graph), unroll, set(highlight))
    writer.graph(graph, "", "  ", graph_roles(graph), {})
    head = [f"digraph {_q(name)} {{",
            '  graph [rankdir=TB, fontname="Helvetica", fontsize=11];',
            '  node [shape=box, style="rounded,filled", fillcolor="white", fontname="Helvetica",'
            ' fontsize=10];',
            '  edge [fontname="Helvetica", fontsize=9];']
    caption = list(caption)
    if caption:
        colour = HIGHLIGHT_COLOUR if writer.marked else "#222222"
        head.append(f'  label={_label(caption)}; labelloc=t; labeljust=l; '
                    f'fontcolor="{colour}";')
    return "\n".join(head + writer.lines + ["}"]) + "\n"


class _Writer:
    """Accumulates DOT lines; one instance per drawing."""

    def __init__(self, storages: dict[int, Storage], unroll: int | None, highlight: set[str]):
        self.storages, self.unroll, self.highlight = storages, unroll, highlight
        self.lines: list[str] = []
        self.clusters: set[str] = set()
        self.marked: list[str] = []          # paths of the highlighted nodes drawn

    def graph(self, g: Graph, prefix: str, indent: str, roles: dict[int, list[str]],
              shared: dict[int, str]) -> dict[int, str]:
        """Declare g's nodes and edges; returns id(node) -> DOT id. `shared` maps a root Param
        to a PARAM node already drawn (once for all the steps of an unrolled loop)."""
        ids: dict[int, str] = {}
        for n in drawn_nodes(g):
            if n.op == Op.PARAM and id(n.param.root()) in shared:
                ids[id(n)] = shared[id(n.param.root())]
                continue
            ids[id(n)] = _q(prefix + n.name)
            if body_of(n) is not None:
                self.cluster(n, prefix + n.name, indent)
            else:
                self.node(n, ids[id(n)], indent, roles.get(id(n), []),
                          logical_path(prefix) + n.name)
        for n in g.nodes:
            for x in n.inputs:
                shown = n.type if x.op == Op.LOOP else x.type       # a GET shows its part
                colour = ""
                if x.op == Op.PARAM:
                    index = self.storages[id(x.param.root())].index
                    colour = f'color="{storage_colour(index, 0.8, 0.62)}"'
                self.edge(ids[id(x)], ids[id(n)], indent, _type_label(shown), colour)
        return ids

    def is_marked(self, n: Node, path: str) -> bool:
        if path in self.highlight:
            self.marked.append(path)
            return True
        return False

    def node(self, n: Node, dot_id: str, indent: str, roles: list[str], path: str) -> None:
        lines = [n.name, f"{n.op.value} ({n.scope})" if n.scope else n.op.value]
        style = []
        if n.op == Op.PARAM:
            s = self.storages[id(n.param.root())]
            lines += [type_str(n.type), f"{s.key} @{s.offset} +{s.size}"]
            style.append(f'fillcolor="{storage_colour(s.index)}", tooltip={_q(s.key)}')
        elif "input" in roles or "output" in roles:
            lines.append(type_str(n.type))
        if "input" in roles:
            style.append(INPUT_STYLE)
        if "output" in roles:
            style.append(OUTPUT_STYLE)
        if any(r.split()[0] in BODY_INPUT_ROLES for r in roles):
            style.append(BODY_INPUT_STYLE)
        if self.is_marked(n, path):
            style.append(HIGHLIGHT_STYLE)
            lines += [f"at {n.where}"] if n.where else []
        attrs = ", ".join([f"label={_label(lines)}"] + style)
        self.lines.append(f"{indent}{dot_id} [{attrs}];")

    def edge(self, src: str, dst: str, indent: str, label: str, style: str = "") -> None:
        attrs = ", ".join(a for a in (f"label={_q(label)}" if label else "", style) if a)
        self.lines.append(f"{indent}{src} -> {dst}" + (f" [{attrs}];" if attrs else ";"))

    def cluster(self, n: Node, path: str, indent: str) -> None:
        """A loop or fused node: its node, then its body, inside one labelled cluster."""
        cid = self._cluster_id(path)
        title = loop_title(n)
        inner = indent + "  "
        self.lines += [f"{indent}subgraph {cid} {{",
                       f"{inner}label={_label([title] + ([n.scope] if n.scope else []))};",
                       f'{inner}style="rounded,dashed"; color="#888888"; fontcolor="#222222";']
        loop_id = _q(path)
        shape = "doubleoctagon" if n.op == Op.LOOP else "box3d"
        marked = self.is_marked(n, logical_path(path))
        hl = f", {HIGHLIGHT_STYLE}" if marked else ""
        label = [n.name, n.op.value] + ([f"at {n.where}"] if marked and n.where else [])
        self.lines.append(f"{inner}{loop_id} [label={_label(label)}, "
                          f'shape={shape}, fillcolor="#fff4d6"{hl}];')
        if n.op == Op.LOOP and self.unroll:
            self.unrolled(n, path, cid, inner)
        else:
            self.rolled(n, path, inner)
        self.lines.append(f"{indent}}}")

    def rolled(self, n: Node, path: str, indent: str) -> None:
        body: Graph = n.attrs["body"]
        roles = body_roles(n)
        ids = self.graph(body, path + "/", indent, roles, {})
        loop_id = _q(path)
        for x in body.inputs:
            self.edge(loop_id, ids[id(x)], indent, " ".join(roles[id(x)]), ENTER_STYLE)
        for i, (y, x) in enumerate(carried(n)):
            self.edge(ids[id(y)], ids[id(x)], indent, f"carry {i}", CARRY_STYLE)
        if n.op != Op.LOOP:
            self.edge(ids[id(body.outputs[0])], loop_id, indent, "result",
                      ENTER_STYLE + ", constraint=false")

    def unrolled(self, n: Node, path: str, cid: str, indent: str) -> None:
        body: Graph = n.attrs["body"]
        roles = body_roles(n)
        carry_in = [x for _, x in carried(n)]
        reverse = bool(n.attrs.get("reverse"))
        shared: dict[int, str] = {}
        for m in tied_params(body):
            shared[id(m.param.root())] = _q(f"{path}/{m.name}")
            self.node(m, shared[id(m.param.root())], indent, [], f"{path}/{m.name}")
        if shared:      # beside the loop node, above the steps rather than inside the first
            self.lines.append(f"{indent}{{rank=same; {_q(path)}; {'; '.join(shared.values())};}}")
        loop_id, previous = _q(path), None
        for t in range(self.unroll):
            step = f"T-{t + 1}" if reverse else str(t)
            self.lines += [f"{indent}subgraph {self._cluster_id(f'{cid}_t{t}')} {{",
                           f"{indent}  label={_q(f'step t={step}')}; style=rounded; "
                           'fontcolor="#222222";']
            ids = self.graph(body, f"{path}@{t}/", indent + "  ", roles, shared)
            self.lines.append(f"{indent}}}")
            for x in body.inputs:
                role = roles[id(x)][0]
                if x in carry_in and previous is not None:
                    i = carry_in.index(x)
                    self.edge(previous[id(body.outputs[i])], ids[id(x)], indent,
                              f"carry {i}", 'color="#d62728", fontcolor="#d62728"')
                else:
                    kind, k = role.split()
                    label = {"carry_in": f"init {k}", "x_t": f"xs[{k}][:, {step}]"}.get(kind, role)
                    self.edge(loop_id, ids[id(x)], indent, label, ENTER_STYLE)
            previous = ids

    def _cluster_id(self, path: str) -> str:
        base = "cluster_" + re.sub(r"\W", "_", path.removeprefix("cluster_"))
        cid, k = base, 1
        while cid in self.clusters:
            cid, k = f"{base}_{k}", k + 1
        self.clusters.add(cid)
        return cid


def logical_path(prefix: str) -> str:
    """A node path without the step marks of an unrolled drawing: `loop_0@2/` -> `loop_0/`."""
    return "/".join(p.split("@")[0] for p in prefix.split("/"))


def _q(text: str) -> str:
    """A DOT quoted string."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _label(lines: list[str]) -> str:
    return '"' + "\\n".join(s.replace("\\", "\\\\").replace('"', '\\"') for s in lines) + '"'


def _type_label(t: Any) -> str:
    return "" if t is None else type_str(t)


__all__ = ["to_dot", "storage_colour", "logical_path"]
