"""eliminate_dead_code: drop what no output needs, loop parts included."""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op, loop_operands, toposort

from .rewrite import map_nodes, with_inputs


def eliminate_dead_code(graph: Graph) -> Graph:
    """`graph` without nodes that do not reach an output, in every loop body too.

    A loop also loses the per-step outputs (ys) that no GET reads, and the consts its body
    no longer reads. Carried states always stay: the next step reads them even when no GET
    does. Returns `graph` itself when nothing was dropped.
    """
    reached = toposort(graph.outputs)
    seen = {id(n) for n in reached}
    live = [x for x in graph.inputs if id(x) not in seen] + reached   # inputs always stay
    read: dict[int, set[int]] = {}          # id(loop) -> the parts some GET reads
    whole: set[int] = {id(y) for y in graph.outputs}   # loops used other than through GET
    for n in live:
        for x in n.inputs:
            if x.op == Op.LOOP:
                if n.op == Op.GET:
                    read.setdefault(id(x), set()).add(n.attrs["index"])
                else:
                    whole.add(id(x))

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if m.op == Op.LOOP:
            return _prune_loop(m, None if id(n) in whole else read.get(id(n), set()))
        if m.op == Op.GET and m.inputs[0] is not n.inputs[0]:
            loop = n.inputs[0]
            parts = None if id(loop) in whole else read.get(id(loop))
            m = m.replace(attrs={**m.attrs, "index": _new_index(loop, m.attrs["index"], parts)})
        return m
    return graph.remapped(map_nodes(live, visit))     # dead nodes are not in the map


def _new_index(loop: Node, index: int, read: set[int] | None) -> int:
    """Where part `index` of `loop` lands once the unread ys are gone."""
    n_h = loop.attrs["n_carry"]
    if read is None or index < n_h:
        return index
    return n_h + sum(1 for j in read if n_h <= j < index)


def _prune_loop(loop: Node, read: set[int] | None) -> Node:
    """`loop` with unread ys and unused consts removed, its body cleaned."""
    a = loop.attrs
    body: Graph = a["body"]
    n_h = a["n_carry"]
    outs = list(body.outputs)
    keep_parts = list(range(len(outs))) if read is None else \
        [j for j in range(len(outs)) if j < n_h or j in read]
    body_outs = [outs[j] for j in keep_parts]
    pruned = eliminate_dead_code(body.rebuilt(body.inputs, body_outs))
    used = {id(n) for n in toposort(pruned.outputs)}
    consts, carry, xs, lengths = loop_operands(loop)
    n_c = len(consts)
    keep_consts = [i for i in range(n_c) if id(pruned.inputs[i]) in used]
    if len(keep_parts) == len(outs) and len(keep_consts) == n_c and \
            {id(n) for n in pruned.nodes} == {id(n) for n in body.nodes}:
        return loop
    new_body = pruned.rebuilt([pruned.inputs[i] for i in keep_consts] + list(pruned.inputs[n_c:]),
                              pruned.outputs)
    inputs = [consts[i] for i in keep_consts] + list(carry) + list(xs) + \
        ([lengths] if lengths is not None else [])
    return loop.replace(inputs=tuple(inputs), type=tuple(loop.type[j] for j in keep_parts),
                        attrs={**a, "body": new_body, "n_consts": len(keep_consts)})


__all__ = ["eliminate_dead_code"]
