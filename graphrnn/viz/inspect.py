"""Inspecting a model: the views every picture and table builds on, and a networkx view.

`walk_paths` gives every node with a path that is unique across loop bodies (`loop_0/h_next`),
and `param_storages` where each parameter lives in the flat vector and which PARAM nodes share
it. The summary table (`gr.viz.summary`, in table.py), DOT text (`gr.viz.to_dot`, in dot.py)
and pictures (`gr.viz.render`, in draw.py) build on them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

from ..flat import ALIGN_FLOATS, layout_params
from ..ir import Graph, Node, Op, loop_operands, type_str


def graph_of(model_or_graph: Any) -> Graph:
    """The graph of a gModule, or the Graph itself."""
    graph = model_or_graph if isinstance(model_or_graph, Graph) \
        else getattr(model_or_graph, "graph", None)
    if not isinstance(graph, Graph):
        raise TypeError(f"expected a gModule or a Graph, got {type(model_or_graph).__name__}")
    return graph


def body_of(n: Node) -> Graph | None:
    """The sub-graph of a LOOP or FUSED node."""
    body = n.attrs.get("body")
    return body if isinstance(body, Graph) else None


@dataclass(frozen=True)
class PathNode:
    """A node of the graph or of a body inside it, with where it sits."""
    path: str               # unique across the whole model: "loop_0/h_next"
    node: Node
    depth: int              # 0 at top level, 1 inside a loop body, ...
    parent: str             # path of the enclosing LOOP/FUSED node, "" at top level


def walk_paths(graph: Graph, parent: str = "", depth: int = 0) -> Iterator[PathNode]:
    """Every node in graph order, each loop/fused body right after its node."""
    listed = {id(n) for n in graph.nodes}
    nodes = [x for x in graph.inputs if id(x) not in listed] + list(graph.nodes)
    for n in nodes:
        path = f"{parent}/{n.name}" if parent else n.name
        yield PathNode(path, n, depth, parent)
        body = body_of(n)
        if body is not None:
            yield from walk_paths(body, path, depth + 1)


@dataclass(frozen=True)
class Storage:
    """One parameter tensor in the flat vector, and every PARAM node that reads it."""
    key: str
    offset: int             # in float32 elements
    size: int
    shape: tuple[int, ...]
    index: int              # order of first use: names the storage's colour
    paths: tuple[str, ...]  # PARAM nodes holding it
    in_loop: bool           # read inside a loop body, so shared by every step


def param_storages(model_or_graph: Any) -> dict[int, Storage]:
    """id(root Param) -> its Storage, in the layout order of the model's flat vector."""
    graph = graph_of(model_or_graph)
    params = graph.params()
    table, keys = layout_params(params)
    uses: dict[int, list[PathNode]] = {id(p): [] for p in params}
    for pn in walk_paths(graph):
        if pn.node.op == Op.PARAM:
            uses[id(pn.node.param.root())].append(pn)
    return {id(p): Storage(keys[p], table.slots[keys[p]].offset, p.size, p.shape, i,
                           tuple(u.path for u in uses[id(p)]),
                           any(u.depth > 0 for u in uses[id(p)]))
            for i, p in enumerate(params)}


def flat_size(storages: dict[int, Storage]) -> int:
    """Length of the flat vector (slots laid out as graphrnn.flat.ALIGN_FLOATS says)."""
    return sum(-(-s.size // ALIGN_FLOATS) * ALIGN_FLOATS for s in storages.values())


BODY_INPUT_ROLES = ("const", "carry_in", "x_t", "operand")     # the kinds of body_roles' inputs


def drawn_nodes(g: Graph) -> list[Node]:
    """The nodes a picture of g shows: inputs that no node reads, then every node in order."""
    listed = {id(n) for n in g.nodes}
    return [x for x in g.inputs if id(x) not in listed] + list(g.nodes)


def loop_title(n: Node) -> str:
    """A loop or fused node's title: `loop_0: loop (reverse, lengths, unroll=2)`, or
    `decoder: while loop (max_steps=50)` for a loop with a stop value."""
    a = n.attrs
    flags = [f for f, on in (("reverse", a.get("reverse")), ("lengths", a.get("has_lengths")),
                             (f"max_steps={a.get('length')}", "until" in a),
                             (f"unroll={a.get('unroll')}", a.get("unroll"))) if on]
    kind = f"while {n.op.value}" if "until" in a else n.op.value
    return f"{n.name}: {kind}" + (f" ({', '.join(flags)})" if flags else "")


def check_unroll(unroll: int | None) -> None:
    """Refuse an `unroll` that is not None or a positive number of steps."""
    if unroll is not None and (isinstance(unroll, bool) or not isinstance(unroll, int)
                               or unroll < 1):
        raise ValueError(f"unroll must be a positive number of steps, got {unroll!r}")


def graph_roles(graph: Graph) -> dict[int, list[str]]:
    """id(node) -> its roles at the top level: "input", "output" (a node may be both)."""
    roles: dict[int, list[str]] = {id(x): ["input"] for x in graph.inputs}
    for y in graph.outputs:
        roles.setdefault(id(y), []).append("output")
    return roles


def body_roles(n: Node) -> dict[int, list[str]]:
    """id(body node) -> its roles in a loop or fused body: "const 0", "carry_in 1", "y_t 0"..."""
    body = body_of(n)
    roles: dict[int, list[str]] = {}
    if body is None:
        return roles
    if n.op == Op.LOOP:
        consts, carry, xs, _ = loop_operands(n)
        kinds = ["const"] * len(consts) + ["carry_in"] * len(carry) + ["x_t"] * len(xs)
        n_carry = len(carry)
    else:
        kinds, n_carry = ["operand"] * len(body.inputs), 0
    counters: dict[str, int] = {}
    for x, kind in zip(body.inputs, kinds):
        roles.setdefault(id(x), []).append(f"{kind} {counters.get(kind, 0)}")
        counters[kind] = counters.get(kind, 0) + 1
    for i, y in enumerate(body.outputs):
        kind, k = ("carry_out", i) if i < n_carry else ("y_t" if n.op == Op.LOOP else "result",
                                                        i - n_carry)
        roles.setdefault(id(y), []).append(f"{kind} {k}")
    return roles


def carried(n: Node) -> list[tuple[Node, Node]]:
    """(carry_out, carry_in) body nodes of a loop node, in carry order; none for a fused body."""
    if n.op != Op.LOOP:
        return []
    body, n_consts, n_carry = n.attrs["body"], n.attrs["n_consts"], n.attrs["n_carry"]
    return list(zip(body.outputs[:n_carry], body.inputs[n_consts:n_consts + n_carry]))


def tied_params(body: Graph) -> list[Node]:
    """The first PARAM node of each distinct parameter of a body: an unrolled drawing shows
    each once, shared by all the steps."""
    seen: dict[int, Node] = {}
    for m in body.nodes:
        if m.op == Op.PARAM:
            seen.setdefault(id(m.param.root()), m)
    return list(seen.values())


def to_networkx(model_or_graph: Any) -> Any:
    """The graph as a `networkx.DiGraph`, loop bodies flattened into it.

    Nodes are keyed by path (`loop_0/h_next`) with attributes op, name, type (text), scope,
    where, loop (path of the enclosing loop or fused node, "" at top level), roles (e.g.
    ("carry_out 0", "y_t 0") inside a body, ("input",) / ("output",) at top level) and param
    (the parameter key of a PARAM node). Edges carry kind "data" (with the operand index and
    the value's type) or "enter" (a loop node to the inputs of its body), so the result is a
    DAG; the carried edges of each loop (carry_out -> carry_in) are listed in
    `G.graph["carries"]` as (source, target, loop) triples.
    """
    import networkx as nx
    graph = graph_of(model_or_graph)
    storages = param_storages(graph)
    G = nx.DiGraph(name=getattr(model_or_graph, "name", None) or "graph", carries=[])
    roles_in: dict[str, dict[int, list[str]]] = {"": graph_roles(graph)}
    path_of: dict[tuple[str, int], str] = {}
    for pn in walk_paths(graph):
        n = pn.node
        path_of[(pn.parent, id(n))] = pn.path
        key = storages[id(n.param.root())].key if n.op == Op.PARAM else ""
        G.add_node(pn.path, op=n.op.value, name=n.name, type=type_str(n.type), scope=n.scope,
                   where=n.where, loop=pn.parent,
                   roles=tuple(roles_in.get(pn.parent, {}).get(id(n), ())), param=key)
        for i, x in enumerate(n.inputs):
            G.add_edge(path_of[(pn.parent, id(x))], pn.path, kind="data", index=i,
                       type=type_str(x.type))
        body = body_of(n)
        if body is not None:
            roles_in[pn.path] = body_roles(n)
            for x in body.inputs:
                G.add_edge(pn.path, f"{pn.path}/{x.name}", kind="enter")
            if n.op == Op.LOOP:
                n_carry = n.attrs["n_carry"]
                G.graph["carries"] += [(f"{pn.path}/{y.name}", f"{pn.path}/{x.name}", pn.path)
                                       for y, x in zip(body.outputs[:n_carry],
                                                       body.inputs[n.attrs["n_consts"]:])]
    return G


__all__ = ["to_networkx", "walk_paths", "param_storages", "Storage",
           "PathNode", "graph_of"]
