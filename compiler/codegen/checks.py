"""The checks a program's caller makes on the inputs before native code runs: ids in range,
lengths within the steps, enough steps for every entry of the time axis the code reads."""
from __future__ import annotations

from typing import Any

from graphrnn.ir import Graph, LoweringError, Node, Op, loop_operands, split

from .strides import lin


def value_checks(graph: Graph, inputs: tuple[Node, ...], symbol: str | None = None
                 ) -> list[tuple[str, int, Any]]:
    """What the Program checks on its inputs before a call.

    ("ids", i, n): every value of input i lies in [0, n) (it feeds a lookup or pick);
    ("lengths", i, (c, s)): every value lies in [0, c + s * steps] (a loop's lengths, or a
    sequence mask's: what a loop's lengths become in a training graph);
    ("steps", -1, n): the call has at least n steps (an entry or a range of the symbolic time
    axis `symbol` is read: fewer steps would read past the end).
    """
    where = {x: k for k, x in enumerate(inputs)}
    origin: dict[Node, Node] = {}
    checks: list[tuple[str, int, Any]] = []
    steps_needed = [0]

    def trace(n: Node) -> Node:
        while True:
            if n in origin:
                n = origin[n]
            elif n.op in (Op.SLICE, Op.INDEX, Op.RESHAPE, Op.EXPAND, Op.DROPOUT):
                n = n.inputs[0]
            else:
                return n

    def add(kind: str, n: Node, limit: Any) -> None:
        src = trace(n)
        if src in where and (kind, where[src], limit) not in checks:
            checks.append((kind, where[src], limit))
        elif src.op == Op.CONST:
            v = src.attrs["value"]
            hi = limit if kind == "ids" else lin(limit[0]).c
            if v.size and (v.min() < 0 or v.max() >= hi + (kind != "ids")):
                raise LoweringError(f"{n.name} ({n.where or '?'}): constant {kind} out of "
                                    f"range [0, {hi})")

    def visit(g: Graph) -> None:
        for n in g.nodes:
            if n.op == Op.LOOP:
                consts, carry, xs, lengths = loop_operands(n)
                body = n.attrs["body"]
                b_consts, _, b_xs = split(body.inputs, len(consts), len(carry))
                origin.update(zip(b_consts, consts))
                origin.update(zip(b_xs, xs))
                if lengths is not None:
                    steps = lin(xs[0].type.shape[1] if xs else n.attrs["length"])
                    add("lengths", lengths, (steps.c, steps.s))
                visit(body)
            elif n.op == Op.SEQ_MASK and len(n.inputs) > 1:
                # differentiation turns a loop's lengths into a mask: the same promise
                steps = lin(n.type.shape[1])
                add("lengths", n.inputs[1], (steps.c, steps.s))
            elif n.op in (Op.SLICE, Op.INDEX) and symbol is not None \
                    and n.inputs[0].type.shape[n.attrs["axis"]] == symbol:
                a = n.attrs
                need = a["start"] + a["length"] if n.op == Op.SLICE else a["index"] + 1
                steps_needed[0] = max(steps_needed[0], need)
            elif n.op == Op.LOOKUP:
                add("ids", n.inputs[1], n.inputs[0].type.shape[0])
            elif n.op == Op.PICK:
                add("ids", n.inputs[1], n.inputs[0].type.shape[-1])
    visit(graph)
    return checks + ([("steps", -1, steps_needed[0])] if steps_needed[0] > 0 else [])
