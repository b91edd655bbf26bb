"""The checks a program's caller makes on the inputs before native code runs: ids in range,
lengths within the steps, enough steps for every entry of the time axis the code reads."""
from __future__ import annotations

from typing import Any

from graphrnn.ir import Graph, LoweringError, Node, Op, loop_operands, split

from .strides import EXTRA, lin


def value_checks(graph: Graph, inputs: tuple[Node, ...], symbol: str | None = None
                 ) -> list[tuple[str, int, Any]]:
    """What the Program checks on its inputs before a call.

    ("ids", i, n): every value of input i lies in [0, n) (it feeds a lookup or pick);
    ("lengths", i, (c, s)): every value lies in [0, c + s * steps] (a loop's lengths, or a
    sequence mask's: what a loop's lengths become in a training graph); (c, s, name) when
    the loop runs over the further time symbol `name` (T2, T3, ...): c + s * its size;
    ("steps", -1, n): the call has at least n steps (an entry or a range of the symbolic time
    axis `symbol` is read: fewer steps would read past the end); (n, name) for the further
    time symbol `name`.
    """
    where = {x: k for k, x in enumerate(inputs)}
    origin: dict[Node, Node] = {}
    checks: list[tuple[str, int, Any]] = []
    steps_needed: dict[str, int] = {}

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
                    add("lengths", lengths, _limit(xs[0].type.shape[1] if xs
                                                   else n.attrs["length"]))
                visit(body)
            elif n.op == Op.SEQ_MASK and len(n.inputs) > 1:
                # differentiation turns a loop's lengths into a mask: the same promise
                add("lengths", n.inputs[1], _limit(n.type.shape[1]))
            elif n.op in (Op.SLICE, Op.INDEX) and isinstance(
                    d := n.inputs[0].type.shape[n.attrs["axis"]], str) \
                    and (d == symbol or EXTRA.fullmatch(d)):
                a = n.attrs
                need = a["start"] + a["length"] if n.op == Op.SLICE else a["index"] + 1
                steps_needed[d] = max(steps_needed.get(d, 0), need)
            elif n.op == Op.LOOKUP:
                add("ids", n.inputs[1], n.inputs[0].type.shape[0])
            elif n.op == Op.PICK:
                add("ids", n.inputs[1], n.inputs[0].type.shape[-1])
    visit(graph)
    return checks + [("steps", -1, need if d == symbol else (need, d))
                     for d, need in steps_needed.items() if need > 0]


def _limit(steps: Any) -> tuple:
    """A loop's step count as a lengths limit: (c, s), or (c, s, name) for a further time
    symbol."""
    x = lin(steps)
    extra = [m[0] for m, _ in x.terms if len(m) == 1 and EXTRA.fullmatch(m[0])]
    if extra:
        if len(x.terms) > 1:
            raise LoweringError(f"a loop of {x} steps: its lengths cannot be checked")
        return (x.c, x.coef(extra[0]), extra[0])
    return (x.c, x.s)
