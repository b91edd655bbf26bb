"""A loop without sequences (`gr.Loop(..., length=n)`) as an ONNX `Loop` of n iterations.

ONNX stacks a Loop's per-step outputs along axis 0 in iteration order; they are put back in
time order (reversed for `reverse=True`) and batch-first `[B, T, ...]`.
"""
from __future__ import annotations

from functools import partial

import numpy as np

from ..ir import Node, loop_operands
from .emitter import Emitter, emit_graph
from .export_guard import counted_batch_steps, empty_outputs, guard_empty
from .export_scan import body_results

INT64_MIN = np.iinfo(np.int64).min


def emit_counted(em: Emitter, n: Node, args: list) -> list[str]:
    """The loop as an ONNX Loop node (in an If answering 0 steps or rows: ONNX Runtime gives
    per-step outputs of unknown shape for 0 iterations); returns (*final carries, *ys)."""
    length = n.attrs["length"]
    steps = em.dim(n, length)
    batch_steps = counted_batch_steps(em, n, steps)
    if batch_steps is None or (isinstance(length, int) and length > 0):
        return _loop(em, n, args, steps)
    if isinstance(length, int):
        return empty_outputs(em, n, args, batch_steps)
    return guard_empty(em, n, args, partial(_loop, steps=steps), batch_steps)


def _loop(em: Emitter, n: Node, args: list, steps: str) -> list[str]:
    body = n.attrs["body"]
    consts, carry, _, lengths = loop_operands(n)
    nc, nk = len(consts), len(carry)
    sub = Emitter(em)
    t, cond = sub.fresh("t"), sub.fresh("cond")
    state_in = [sub.fresh(f"{x.name or 'carry'}_in") for x in body.inputs[nc:nc + nk]]
    outs = emit_graph(sub, body, list(args[:nc]) + state_in)
    live = None
    if lengths is not None:
        live = sub.one("Less", [t, args[-1]], "live_t")
    results = body_results(sub, body, outs, state_in, live)
    tp, helper = em.onnx.TensorProto, em.helper
    inputs = [helper.make_tensor_value_info(t, tp.INT64, []),
              helper.make_tensor_value_info(cond, tp.BOOL, [])]
    inputs += [sub.value_info(nm, x.type) for nm, x in zip(state_in, body.inputs[nc:nc + nk])]
    cond_out = sub.one("Identity", [cond], "cond_next")
    outputs = [helper.make_tensor_value_info(cond_out, tp.BOOL, [])]
    outputs += [sub.value_info(nm, y.type) for nm, y in zip(results, body.outputs)]
    graph = helper.make_graph(sub.nodes, em.fresh(f"{n.name or 'loop'}_body"), inputs, outputs)
    got = em.add("Loop", [steps, ""] + list(args[nc:nc + nk]), n.name or "loop",
                 len(body.outputs), body=graph)
    finals, ys = got[:nk], []
    for y, stacked in zip(body.outputs[nk:], got[nk:]):
        if n.attrs.get("reverse"):
            stacked = em.one("Slice", [stacked, em.const(np.array([-1], np.int64), "starts"),
                                       em.const(np.array([INT64_MIN], np.int64), "ends"),
                                       em.const(np.array([0], np.int64), "axes"),
                                       em.const(np.array([-1], np.int64), "steps")], "in_order")
        rank = y.type.rank + 1 if y.type is not None else 2
        ys.append(em.one("Transpose", [stacked], f"{n.name or 'loop'}_ys",
                         perm=[1, 0] + list(range(2, rank))))
    return finals + ys


__all__ = ["emit_counted"]
