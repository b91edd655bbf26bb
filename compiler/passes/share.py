"""share_loop_outputs: a loop writes each per-step value into one sequence, however often it
is returned.

A training step's forward loop often returns one step value twice: as the user's output y and
as the value the gradient pass saves for the backward loop, which cse then finds equal. Each
copy is a [B, T, ...] sequence the loop fills at every step. In a one-layer RNN's training
graph, after cse:

    %loop_0 : (f32[B,H], f32[B,T,H], f32[B,T,H], f32[B,T,H]) = loop(%params, %h0, %xw, ...)
      graph(%params, %h, %i2h) {
        %h_new : f32[B,H] = fused(%matmul_1, %rnn.bias_hh_l0, %i2h)
        return (%h_new, %h_new, %h, %h_new)          # carry | y | saved carry | saved
      }
    %get_0 : f32[B,T,H] = get(%loop_0, index=1)
    %get_1 : f32[B,T,H] = get(%loop_0, index=2)
    %get_2 : f32[B,T,H] = get(%loop_0, index=3)

becomes

    %loop_0 : (f32[B,H], f32[B,T,H], f32[B,T,H]) = loop(%params, %h0, %xw, ...)
      graph(%params, %h, %i2h) {
        %h_new : f32[B,H] = fused(%matmul_1, %rnn.bias_hh_l0, %i2h)
        return (%h_new, %h_new, %h)
      }
    %get_0 : f32[B,T,H] = get(%loop_0, index=1)      # also read where %get_2 was
    %get_1 : f32[B,T,H] = get(%loop_0, index=2)

Only per-step outputs (ys) are shared: the first of those returning a body value stays, the
others go and their GETs read it (one GET per part). Carried states stay as they are, and so
does a loop that is used other than through GET. attrs["saved"] keeps counting the saved
values among the last outputs. Loop bodies are rewritten too (nested loops).
"""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op

from .rewrite import map_nodes, with_inputs


def share_loop_outputs(graph: Graph) -> Graph:
    """`graph` with each loop's repeated per-step outputs made one (module docstring).

    Returns `graph` itself when no loop repeats one.
    """
    whole = {id(x) for n in graph.nodes if n.op != Op.GET for x in n.inputs}
    whole |= {id(y) for y in graph.outputs}
    moved: dict[int, list[int]] = {}        # id(new loop) -> new index of each old part
    gets: dict[tuple[int, int], Node] = {}  # (id(new loop), new index) -> its one GET

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if m.op == Op.LOOP:
            body = share_loop_outputs(m.attrs["body"])
            if body is not m.attrs["body"]:
                m = m.replace(attrs={**m.attrs, "body": body})
            if id(n) not in whole:
                m, index = _shared(m)
                if index is not None:
                    moved[id(m)] = index
            return m
        if m.op == Op.GET and id(m.inputs[0]) in moved:
            loop = m.inputs[0]
            j = moved[id(loop)][m.attrs["index"]]
            if (id(loop), j) not in gets:
                gets[(id(loop), j)] = m.replace(attrs={**m.attrs, "index": j})
            return gets[(id(loop), j)]
        return m
    return graph.remapped(map_nodes(graph.nodes, visit))


def _shared(loop: Node) -> tuple[Node, list[int] | None]:
    """`loop` keeping the first of its ys that return each body value, and the new index of
    every old part; (loop, None) when no y repeats another."""
    a = loop.attrs
    body: Graph = a["body"]
    n_h = a["n_carry"]
    first: dict[int, int] = {}              # id(body value) -> new index of its first y
    index: list[int] = list(range(n_h))
    keep: list[int] = list(range(n_h))
    for j, y in enumerate(body.outputs[n_h:], n_h):
        if id(y) in first:
            index.append(first[id(y)])
        else:
            first[id(y)] = len(keep)
            index.append(len(keep))
            keep.append(j)
    n_out = len(body.outputs)
    if len(keep) == n_out:
        return loop, None
    attrs = {**a, "body": body.rebuilt(body.inputs, [body.outputs[j] for j in keep])}
    if a.get("saved"):
        attrs["saved"] = sum(1 for j in keep if j >= n_out - a["saved"])
        if not attrs["saved"]:
            del attrs["saved"]
    new = loop.replace(type=tuple(loop.type[j] for j in keep), attrs=attrs)
    return new, index


__all__ = ["share_loop_outputs"]
