"""merge_matmuls: matmuls of one input against several weights become one matmul.

A hand-written LSTM with four `Linear(D, H)` modules computes `x @ W_i^T`, `x @ W_f^T`, ... as
four small products; so does any cell whose gates have separate weights. When matmuls share
their left operand and their right operands are parameter-like (a PARAM, or a VIEW of the
flat parameter vector), they become one product against the weights joined along N, and
each old result a SLICE of its last axis:

    %w = concat(%W_i, %W_f, ..., axis=0)      # [N, K] weights (transpose_b) join on axis 0
    %y = matmul(%x, %w, transpose_b=True)
    %matmul_i = slice(%y, axis=-1, start=0, length=H) ...

When every matmul of a group is used only by its own bias add (`+ b` with a parameter-like
b[N]), the biases are joined the same way and added once; the slices then replace the adds.
Inside a loop body the joined weights depend on parameters only, so `hoist_invariants` moves
the concat out of the loop.
"""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op
from graphrnn.ops import apply_rule

from .rewrite import fresh_name, map_nodes, users, with_inputs


def merge_matmuls(graph: Graph) -> Graph:
    """`graph` with matmul groups merged, loop bodies included; `graph` itself if none."""
    readers = users(graph)
    groups = _groups(graph)
    first = {id(g[0]): g for g in groups}
    taken = {n.name for n in graph.nodes}
    new: dict[int, Node] = {}

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        if id(n) in first:          # the group's first matmul: the merged product, sliced
            _merge(first[id(n)], readers, graph.outputs, new, taken)
            return new.get(id(n), n)        # replaced by its bias add's slice: read by none
        m = with_inputs(n, ins)
        if m.op == Op.LOOP:
            m = m.replace(attrs={**m.attrs, "body": merge_matmuls(m.attrs["body"])})
        return m
    return graph.remapped(map_nodes(graph.nodes, visit, new))


def param_like(n: Node) -> bool:
    """A parameter, before flatten_params (PARAM) or after (VIEW of the flat vector input)."""
    return n.op == Op.PARAM or (n.op == Op.VIEW and n.inputs[0].op == Op.INPUT)


def _shape(n: Node) -> tuple:
    if n.type is not None:
        return n.type.shape
    return n.param.shape if n.op == Op.PARAM else tuple(n.attrs["shape"])


def _groups(graph: Graph) -> list[list[Node]]:
    """Matmuls with the same left operand and layout against parameter-like matrices."""
    by_key: dict[tuple, list[Node]] = {}
    for n in graph.nodes:
        # an empty weight (a zero-size input or output) has nothing to share
        if n.op == Op.MATMUL and param_like(n.inputs[1]) and len(_shape(n.inputs[1])) == 2 \
                and 0 not in _shape(n.inputs[1]):
            key = (id(n.inputs[0]), bool(n.attrs.get("transpose_b")))
            by_key.setdefault(key, []).append(n)
    return [g for g in by_key.values() if len(g) > 1]


def _bias_adds(group: list[Node], users: dict[int, list[Node]],
               outputs: tuple[Node, ...]) -> list[tuple[Node, Node]] | None:
    """(add, bias) for every matmul when each one's only use is `+ bias[N]`, else None."""
    out_ids = {id(y) for y in outputs}
    found = []
    for m in group:
        us = users.get(id(m), [])
        if id(m) in out_ids or len(us) != 1 or us[0].op != Op.ADD:
            return None
        add = us[0]
        a, b = add.inputs
        bias = b if a is m else a
        if bias is m or not param_like(bias) or _shape(bias) != (_width(m),):
            return None
        found.append((add, bias))
    return found


def _width(m: Node) -> int:
    """N, the number of output features of matmul `m`."""
    w = _shape(m.inputs[1])
    return w[0] if m.attrs.get("transpose_b") else w[1]


def _make(like: Node, op: Op, inputs: list[Node], name: str, **attrs: object) -> Node:
    """A node of the group's place in the graph (scope and source line of `like`)."""
    n = Node(op, tuple(inputs), attrs, None, None, name, like.scope, like.where)
    return apply_rule(n, [x.type for x in inputs]) if all(x.type for x in inputs) else n


def _merge(group: list[Node], users: dict[int, list[Node]], outputs: tuple[Node, ...],
           new: dict[int, Node], taken: set[str]) -> None:
    """Build the merged product and map each old result (matmul, or its bias add) to a slice."""
    head = group[0]
    transpose = bool(head.attrs.get("transpose_b"))
    adds = _bias_adds(group, users, outputs)
    # one product per distinct weight (a forward copy and a recomputed one read one weight);
    # with bias adds each keeps its own columns
    offsets: dict[int, int] = {}
    parts: list[Node] = []
    for k, m in enumerate(group):
        key = id(m.inputs[1]) if adds is None else k
        if key not in offsets:
            offsets[key] = sum(_width(p) for p in parts)
            parts.append(m)
    weights = [new.get(id(m.inputs[1]), m.inputs[1]) for m in parts]
    w = _make(head, Op.CONCAT, weights, fresh_name("merged_weight", taken),
              axis=0 if transpose else 1)
    y = _make(head, Op.MATMUL, [new[id(head.inputs[0])], w], fresh_name("merged_matmul", taken),
              transpose_b=transpose)
    results = list(group)
    if adds is not None:
        biases = [new.get(id(b), b) for _, b in adds]
        b = _make(head, Op.CONCAT, biases, fresh_name("merged_bias", taken), axis=0)
        y = _make(head, Op.ADD, [y, b], fresh_name("merged_add", taken))
        results = [a for a, _ in adds]
    rank = len(head.type.shape) if head.type is not None else None
    axis = rank - 1 if rank is not None else -1
    for k, (m, r) in enumerate(zip(group, results)):
        start = offsets[id(m.inputs[1]) if adds is None else k]
        new[id(r)] = _make(r, Op.SLICE, [y], r.name, axis=axis, start=start, length=_width(m))


def reuse_merged_products(graph: Graph) -> Graph:
    """`graph` where a product `x @ W` that a merged product `x @ concat(..., W, ...)` already
    computes is a slice of it (hoist can move a loop's own copy of a product next to the
    merged one that accumulate and merge made of it); `graph` itself if there is none."""
    parts: dict[tuple, tuple[Node, int, int]] = {}
    for n in graph.nodes:
        if n.op != Op.MATMUL or n.inputs[1].op != Op.CONCAT or n.type is None:
            continue
        transpose, w = bool(n.attrs.get("transpose_b")), n.inputs[1]
        if w.attrs["axis"] != (0 if transpose else 1) or not all(map(param_like, w.inputs)):
            continue
        start = 0
        for p in w.inputs:
            width = _shape(p)[0 if transpose else 1]
            parts.setdefault((id(n.inputs[0]), id(p), transpose), (n, start, width))
            start += width
    if not parts:
        return graph

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        key = (id(n.inputs[0]), id(n.inputs[1]), bool(n.attrs.get("transpose_b"))) \
            if n.op == Op.MATMUL and len(n.inputs) == 2 else None
        hit = parts.get(key) if key is not None and n.type is not None else None
        if hit is None or hit[0] is n:
            return with_inputs(n, ins)
        merged, start, width = hit
        return _make(n, Op.SLICE, [merged], n.name, axis=len(n.type.shape) - 1, start=start,
                     length=width)
    return graph.remapped(map_nodes(graph.nodes, visit))
