"""Loops that are built-in cells (`nn.Recurrent` of gr.cells.RNN/LSTM/GRU) as ONNX `RNN`,
`LSTM` and `GRU` nodes; every other loop as a `Scan` (export_scan.py).

A loop body is recognised by structure: it must be, node for node, the body nn.Recurrent
builds for a cell of the same kind and sizes (so a model loaded from a file is recognised
too); its parameters then give ONNX's weights, gates reordered (PyTorch's LSTM i,f,g,o to
ONNX's i,o,f,c; GRU r,z,n to z,r,h with linear_before_reset=1). An LSTM with a projection
has no ONNX node and goes through Scan; a loop without sequences is an ONNX Loop. Each sits
in an `If` that answers empty batches and sequences itself (export_guard.py), unless the
export is asked for bare nodes.
"""
from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np

from .. import ops
from ..cells import GRU, LSTM, RNN, Cell
from ..gmodule import gModule
from ..init import generator
from ..ir import Graph, Node, Op, loop_operands
from ..store import value
from .emitter import EXPORT_RULES, Emitter
from .export_guard import guard_empty
from .export_loop import emit_counted
from .export_scan import emit_scan

# ONNX gate blocks, as indexes of PyTorch's blocks
GATE_ORDER = {"LSTM": [0, 3, 1, 2], "GRU": [1, 0, 2], "RNN": [0]}


def canonical(g: Graph) -> tuple[list[Node], tuple]:
    """The nodes in an order fixed by structure alone (inputs first, then a depth-first walk
    from the outputs), and a signature of ops, edges and attrs that ignores names."""
    order: list[Node] = list(g.inputs)
    index = {id(x): i for i, x in enumerate(order)}

    def visit(n: Node) -> None:
        if id(n) in index:
            return
        for x in n.inputs:
            visit(x)
        index[id(n)] = len(order)
        order.append(n)
    for y in g.outputs:
        visit(y)
    sig = []
    for n in order:
        attrs = {k: (v.tolist() if isinstance(v, np.ndarray) else v)
                 for k, v in n.attrs.items() if k not in ("body",)}
        sig.append((n.op.value, tuple(index[id(x)] for x in n.inputs), repr(sorted(attrs.items())),
                    n.param.shape if n.param is not None else None))
    sig.append(tuple(index[id(y)] for y in g.outputs))
    return order, tuple(sig)


def _reference_body(cell: Cell) -> Graph:
    """The loop body nn.Recurrent builds around `cell` (Recurrent._body)."""
    states = [ops.input_(("B", s), name=k) for k, s in zip(("h", "c"), cell.state_sizes)]
    x = ops.input_(("B", cell.input_size), name="x")
    outs = cell(states + [x])
    outs = [outs] if isinstance(outs, Node) else list(outs)
    return gModule(states + [x], outs + [outs[0]], name=cell.prefix).graph


def _candidates(body: Graph, n_carry: int) -> list[Cell]:
    ins = body.inputs
    if any(x.type is None or x.type.rank != 2 for x in ins):
        return []
    d, sizes = ins[-1].type.shape[1], [x.type.shape[1] for x in ins[:-1]]
    if not all(isinstance(s, int) for s in [d] + sizes):
        return []
    bias = any(n.op == Op.PARAM and len(n.param.shape) == 1 for n in body.nodes)
    if n_carry == 2:
        proj = sizes[0] if sizes[0] != sizes[1] else 0
        if proj > sizes[1]:
            return []
        return [LSTM(d, sizes[1], proj_size=proj, bias=bias)]
    h = sizes[0]
    return [RNN(d, h, "tanh", bias=bias), RNN(d, h, "relu", bias=bias), GRU(d, h, bias=bias)]


def recognise(n: Node) -> tuple[Cell, dict[str, np.ndarray]] | None:
    """(the matching reference cell, its weights by role) when the loop runs a built-in cell."""
    body = n.attrs["body"]
    consts, carry, xs, _ = loop_operands(n)
    if consts or len(xs) != 1 or len(carry) not in (1, 2) or len(body.outputs) != len(carry) + 1:
        return None
    rng = generator()
    saved = rng.bit_generator.state      # reference cells draw weights: leave the seed alone
    try:
        cells = _candidates(body, len(carry))
    finally:
        rng.bit_generator.state = saved
    order, sig = canonical(body)
    for cell in cells:
        ref_order, ref_sig = canonical(_reference_body(cell))
        if ref_sig != sig:
            continue
        roles = {id(getattr(cell, r)): r for r in ("weight_ih", "weight_hh", "bias_ih",
                                                    "bias_hh", "weight_hr")
                 if getattr(cell, r, None) is not None}
        weights = {roles[id(a.param)]: np.asarray(value(b.param), np.float32)
                   for a, b in zip(ref_order, order) if a.op == Op.PARAM}
        return cell, weights
    return None


def _blocks(w: np.ndarray, kind: str) -> np.ndarray:
    parts = np.split(w, len(GATE_ORDER[kind]), axis=0)
    return np.concatenate([parts[i] for i in GATE_ORDER[kind]], axis=0)


def emit_cell(em: Emitter, n: Node, args: list, cell: Cell, w: dict[str, np.ndarray]
              ) -> list[str]:
    """The loop as one ONNX RNN/LSTM/GRU node of one direction, batch-first around it."""
    kind = type(cell).__name__
    consts, carry, xs, lengths = loop_operands(n)
    h = cell.hidden_size
    gates = len(GATE_ORDER[kind])
    hint = n.name or kind.lower()
    W = em.const(_blocks(w["weight_ih"], kind)[None], f"{hint}_W")
    R = em.const(_blocks(w["weight_hh"], kind)[None], f"{hint}_R")
    if "bias_ih" in w:
        b = np.concatenate([_blocks(w["bias_ih"], kind), _blocks(w["bias_hh"], kind)])
    else:
        b = np.zeros(2 * gates * h, np.float32)
    B = em.const(b[None], f"{hint}_B")
    x = em.one("Transpose", [args[len(carry)]], "time_major", perm=[1, 0, 2])
    seq_lens = em.one("Cast", [args[-1]], "seq_lens", to=em.onnx.TensorProto.INT32) \
        if lengths is not None else ""
    axis0 = em.const(np.array([0], np.int64), "axes")
    init = [em.one("Unsqueeze", [s, axis0], "initial") for s in args[:len(carry)]]
    attrs: dict[str, Any] = {"hidden_size": h,
                             "direction": "reverse" if n.attrs.get("reverse") else "forward"}
    if kind == "RNN":
        attrs["activations"] = ["Tanh" if cell.nonlinearity == "tanh" else "Relu"]
    if kind == "GRU":
        attrs["linear_before_reset"] = 1
    ins = [x, W, R, B, seq_lens] + init
    outs = em.add(kind, ins, hint, 1 + len(carry), **attrs)
    y = em.one("Transpose", [outs[0]], "batch_major", perm=[2, 0, 1, 3])   # [B, T, 1, H]
    ys = em.one("Squeeze", [y, em.const(np.array([2], np.int64), "axes")], f"{hint}_ys")
    finals = [em.one("Squeeze", [s, axis0], f"{hint}_final") for s in outs[1:]]
    return finals + [ys]


def _loop(em: Emitter, n: Node, args: list) -> list[str]:
    if not loop_operands(n)[2]:
        return emit_counted(em, n, args)
    found = recognise(n)
    emit: Any = emit_scan
    if found is not None and not getattr(found[0], "proj_size", 0):
        cell, weights = found
        emit = partial(emit_cell, cell=cell, w=weights)
    return guard_empty(em, n, args, emit) if em.root.guard else emit(em, n, args)


EXPORT_RULES[Op.LOOP] = _loop

__all__ = ["recognise", "emit_cell", "canonical", "GATE_ORDER"]
