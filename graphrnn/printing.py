"""Graphs as text, one line per node, in the style of a jaxpr or a torch.fx graph:

    %h2h_0 : f32[B,26] = matmul(%h, %linear.weight)   # rnn/linear  toy.py:12
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .ir import Graph, Node, Op, type_str

_HIDDEN_ATTRS = {"body", "n_xs"}        # a loop body prints indented underneath instead


def _attr(v: Any) -> str:
    if isinstance(v, np.ndarray):
        return f"array{list(v.shape)}" if v.size > 4 else np.array2string(v, separator=",")
    return repr(v)


def format_node(n: Node) -> str:
    args = [f"%{x.name}" for x in n.inputs]
    if n.op == Op.CONST:
        args.append(_attr(n.attrs["value"]))
    args += [f"{k}={_attr(v)}" for k, v in n.attrs.items()
             if k not in _HIDDEN_ATTRS and v is not None and v is not False
             and not (n.op == Op.CONST and k == "value")]
    line = f"%{n.name} : {type_str(n.type)} = {n.op.value}({', '.join(args)})"
    tail = "  ".join(t for t in (n.scope, n.where) if t)
    return f"{line:<71} # {tail}" if tail else line


def format_graph(g: Graph, indent: str = "") -> str:
    ins = ", ".join(f"%{x.name} : {type_str(x.type)}" for x in g.inputs)
    lines = [f"{indent}graph({ins}) {{"]
    for n in g.nodes:
        if n.op == Op.INPUT:
            continue
        lines.append(indent + "  " + format_node(n))
        if n.op == Op.LOOP:
            lines.append(format_graph(n.attrs["body"], indent + "    "))
    outs = ", ".join(f"%{y.name}" for y in g.outputs)
    lines.append(f"{indent}  return ({outs})")
    lines.append(f"{indent}}}")
    return "\n".join(lines)
