"""fuse_elementwise: trees of elementwise ops become one FUSED node, one pass over the data.

A group grows from a root (an elementwise node that something else reads: a non-elementwise
op, several users, or the graph's outputs) back through every elementwise operand whose only
user is in the group. A value read anywhere else stays a group output: a FUSED node has
exactly one output, so a multi-use intermediate ends a group and starts its own. Scalar
constants are copied into the body instead of being read.

    %fused_sigmoid_tanh_mul_0 : f32[B,5] = fused(%slice_3, %c_next)
        graph(%slice_3, %c_next) { %out_gate = sigmoid(%slice_3); %tanh_0 = tanh(%c_next);
                                    %h_next = mul(%out_gate, %tanh_0) }

Every elementwise op ends up in a FUSED node, a lone one included, so the lowering emits all
maps the same way. Loop bodies are fused too.

A sum or mean over the last axis reads its elementwise operand as it computes it (the
lowering evaluates the FUSED body inside the reduction): a cheap tree it shares with other
readers is copied for it, so `mean((y - t)^2)` and the gradient `2 (y - t) / N` each compute
y - t from y and t and neither (y - t) nor its square is ever written.

First, a sum of zero-padded pieces that tile one axis becomes the concat of the pieces: the
gradient of a cell that slices its gates, `pad(d_i) + pad(d_f) + pad(d_g) + pad(d_o)`, is
`concat(d_i, d_f, d_g, d_o)`, with no padded temporaries and each piece fused on its own.
"""
from __future__ import annotations

from graphrnn.ir import (ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, Node, Op, TensorType,
                         sums_last_axis, toposort)
from graphrnn.ops import apply_rule

from .rewrite import fresh_name, map_nodes, read_counts, users, with_inputs

FUSABLE = ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE}
NAME_OPS = 4            # how many op names a fused node's name lists
# ops a reduction recomputes rather than read from memory: cheaper than a store and a load
CHEAP = frozenset({Op.NEG, Op.ABS, Op.RELU, Op.STEP, Op.SIGN, Op.ADD, Op.SUB, Op.MUL,
                   Op.MAXIMUM, Op.MINIMUM, Op.WHERE})
PRIVATE_MAX_NODES = 8   # the largest tree a reduction copies for itself


def fuse_elementwise(graph: Graph) -> Graph:
    """`graph` with its elementwise groups (and those of loop bodies) as FUSED nodes.

    Returns `graph` itself when there is nothing to fuse.
    """
    graph = _private_reductions(_joined_pads(graph))
    root = _roots(graph)
    members: dict[int, list[Node]] = {}
    for n in graph.nodes:
        if id(n) in root:
            members.setdefault(root[id(n)], []).append(n)
    taken = {n.name for n in graph.nodes}
    new: dict[int, Node] = {}

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        if id(n) in root:       # a group's root becomes its FUSED node; members fold into it
            return _fused(members[id(n)], new, taken) if root[id(n)] == id(n) else n
        m = with_inputs(n, ins)
        if m.op == Op.LOOP:
            m = m.replace(attrs={**m.attrs, "body": fuse_elementwise(m.attrs["body"])})
        return m
    return graph.remapped(map_nodes(graph.nodes, visit, new))


def _joined_pads(graph: Graph) -> Graph:
    """`graph` with every sum of padded pieces that tile an axis replaced by their concat."""
    readers = read_counts(graph.nodes, graph.outputs)
    taken = {n.name for n in graph.nodes}
    new: dict[int, Node] = {}

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        tiles = _tiles(n, readers) if n.op == Op.ADD else None
        if tiles is None:
            return with_inputs(n, ins)
        return Node(Op.CONCAT, tuple(new[id(p.inputs[0])] for p in tiles),
                    {"axis": tiles[0].attrs["axis"]}, n.type, name=fresh_name("concat", taken),
                    scope=n.scope, where=n.where, doc=n.doc)
    return graph.remapped(map_nodes(graph.nodes, visit, new))


def _private_reductions(graph: Graph) -> Graph:
    """`graph` where every sum or mean over the last axis whose operand is a cheap
    elementwise tree shared with other readers reads its own copy of that tree."""
    readers = read_counts(graph.nodes, graph.outputs)
    taken = {n.name for n in graph.nodes}
    new: dict[int, Node] = {}

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if not sums_last_axis(n):
            return m
        tree = _cheap_tree(n.inputs[0])
        if tree is None or all(readers[id(x)] == 1 for x in tree):
            return m
        copies: dict[int, Node] = {}
        for x in tree:      # a copy keeps its original's place in reading order
            copies[id(x)] = x.replace(inputs=tuple(copies.get(id(y), new[id(y)])
                                                   for y in x.inputs),
                                      name=fresh_name(x.name, taken))
        return with_inputs(m, (copies[id(n.inputs[0])],))
    return graph.remapped(map_nodes(graph.nodes, visit, new))


def _cheap_tree(x: Node) -> list[Node] | None:
    """The cheap float elementwise nodes `x` is computed from (operands first, `x` last),
    when `x` is one and they are few; else None. A map of a product stays out: it is the
    product's epilogue, stored once by the gemm."""
    found: dict[int, Node] = {}

    def walk(n: Node) -> bool:
        if id(n) in found:
            return True
        if n.op not in CHEAP or not _fusable(n) or any(y.op == Op.MATMUL for y in n.inputs):
            return False
        for y in n.inputs:
            walk(y)
        found[id(n)] = n
        return len(found) <= PRIVATE_MAX_NODES
    if not walk(x) or len(found) > PRIVATE_MAX_NODES:
        return None
    return list(found.values())


def _tiles(n: Node, readers: dict[int, int]) -> list[Node] | None:
    """The PAD terms of the sum `n` (inner adds read only by it), in order along their axis,
    when they cover it exactly once; else None."""
    terms: list[Node] = []
    stack = [n]
    while stack:
        m = stack.pop()
        if m.op == Op.PAD and m.type == n.type:
            terms.append(m)
        elif m.op == Op.ADD and m.type == n.type and (m is n or readers[id(m)] == 1):
            stack.extend(m.inputs)
        else:
            return None
    axes = {p.attrs["axis"] for p in terms}
    if len(terms) < 2 or len(axes) != 1 or not isinstance(n.type, TensorType):
        return None
    terms.sort(key=lambda p: p.attrs["before"])
    at = 0
    for p in terms:
        if p.attrs["before"] != at:
            return None
        at += p.inputs[0].type.shape[p.attrs["axis"]]
    return terms if at == n.type.shape[axes.pop()] else None


def _fusable(n: Node) -> bool:
    return n.op in FUSABLE and (n.type is None or (isinstance(n.type, TensorType)
                                                    and n.type.dtype == "float32"))


def _roots(graph: Graph) -> dict[int, int]:
    """For every fusable node, the id of its group's root (the node whose value leaves)."""
    readers = users(graph)
    outputs = {id(y) for y in graph.outputs}
    root: dict[int, int] = {}
    for n in reversed(graph.nodes):
        if not _fusable(n):
            continue
        us = readers.get(id(n), [])
        if id(n) not in outputs and len(us) == 1 and _fusable(us[0]):
            root[id(n)] = root[id(us[0])]
            continue
        root[id(n)] = id(n)
    return root


def _scalar_const(n: Node) -> bool:
    return n.op == Op.CONST and n.attrs["value"].size == 1 and n.attrs["value"].dtype.kind == "f"


def _fused(group: list[Node], new: dict[int, Node], taken: set[str]) -> Node:
    """One FUSED node computing `group[-1]` (the root) from the group's outside operands."""
    inside: dict[int, Node] = {}
    body_inputs: list[Node] = []
    operands: list[Node] = []
    for m in group:
        for x in m.inputs:
            if id(x) in inside:
                continue
            if _scalar_const(x):
                inside[id(x)] = Node(Op.CONST, (), dict(x.attrs), x.type, name=x.name)
            else:
                inside[id(x)] = Node(Op.INPUT, (), {}, x.type, name=x.name)
                body_inputs.append(inside[id(x)])
                operands.append(new[id(x)])
        inside[id(m)] = Node(m.op, tuple(inside[id(x)] for x in m.inputs), dict(m.attrs),
                             m.type, name=m.name, scope=m.scope, where=m.where, doc=m.doc)
    out = inside[id(group[-1])]
    body = Graph(tuple(body_inputs), (out,), tuple(toposort([out])))
    ops = list(dict.fromkeys(m.op.value for m in group))[:NAME_OPS]
    name = fresh_name("fused_" + "_".join(ops), taken)
    root = group[-1]
    node = Node(Op.FUSED, tuple(operands), {"body": body}, root.type, name=name,
                scope=root.scope, where=root.where, doc=f"computes {root.name}")
    if all(x.type is not None for x in operands):
        node = apply_rule(node, [x.type for x in operands])
    return node


__all__ = ["fuse_elementwise", "FUSABLE"]
