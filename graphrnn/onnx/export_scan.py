"""A loop node as an ONNX `Scan` over the time axis (axis 1, batch-first), its body a subgraph.

Consts are read from the outer scope, carried states are Scan's state variables, sequences its
scan inputs. Per-row `lengths` become one more scan input, a bool mask `t < lengths[b]`, and
the body keeps a finished row's state and emits zeros for it, as the interpreter does:

    carry = where(live_t, carry_new, carry);  y_t = where(live_t, y_t, 0)
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..ir import Graph, Node, loop_operands
from .emitter import Emitter, emit_graph


def live_mask(em: Emitter, seq: str, lengths: str) -> str:
    """bool [B, T]: t < lengths[b], T read from the sequence `seq` [B, T, ...]."""
    zero = em.const(np.int64(0), "zero")
    steps = em.one("Gather", [em.one("Shape", [seq], "shape_of"), em.const(np.int64(1), "one")],
                   "steps", axis=0)
    t = em.one("Range", [zero, steps, em.const(np.int64(1), "one")], "t")
    t_row = em.one("Unsqueeze", [t, em.const(np.array([0], np.int64), "axes")], "t_row")
    col = em.one("Unsqueeze", [lengths, em.const(np.array([1], np.int64), "axes")], "len_col")
    return em.one("Less", [t_row, col], "live")


def masked(sub: Emitter, live: str, rank: int, new: str, old: str) -> str:
    """where(live, new, old), live [B] broadcast over the trailing dims of a rank-`rank` value."""
    mask = live if rank <= 1 else sub.one(
        "Unsqueeze", [live, sub.const(np.arange(1, rank, dtype=np.int64), "axes")], "live_b")
    return sub.one("Where", [mask, new, old], "kept")


def body_results(sub: Emitter, body: Graph, outs: list[str], state_in: list[str],
                 live: str | None) -> list[str]:
    """The body's outputs under fresh names; with `live` [B], a finished row keeps its state
    and emits zeros."""
    results = []
    nk = len(state_in)
    for i, (y, out) in enumerate(zip(body.outputs, outs)):
        rank = y.type.rank if y.type is not None else 1
        if live is not None:
            if i < nk:
                out = masked(sub, live, rank, out, state_in[i])
            else:
                zero = sub.const(np.zeros((), np.int64 if y.type and y.type.dtype == "int64"
                                          else np.float32), "zero")
                out = masked(sub, live, rank, out, zero)
        results.append(sub.one("Identity", [out], f"{y.name or 'out'}_next"))
    return results


def emit_scan(em: Emitter, n: Node, args: list) -> list[str]:
    """The loop as one Scan node; returns (*final carries, *ys) names.

    Consts enter as state variables handed on unchanged, not as outer-scope names: ONNX
    Runtime 1.32 loses an outer node's output that a Scan body nested in an If passes on."""
    body = n.attrs["body"]
    consts, carry, xs, lengths = loop_operands(n)
    nc, nk, nx = len(consts), len(carry), len(xs)
    x_names = args[nc + nk:nc + nk + nx]
    sub = Emitter(em)
    b_in = body.inputs
    const_in = [sub.fresh(f"{x.name or 'const'}_in") for x in b_in[:nc]]
    state_in = [sub.fresh(f"{x.name or 'carry'}_in") for x in b_in[nc:nc + nk]]
    xs_in = [sub.fresh(f"{x.name or 'x'}_t") for x in b_in[nc + nk:]]
    outs = emit_graph(sub, body, const_in + state_in + xs_in)
    live = sub.fresh("live_t") if lengths is not None else None
    results = [sub.one("Identity", [c], "const_next") for c in const_in]
    results += body_results(sub, body, outs, state_in, live)
    helper, tp = em.helper, em.onnx.TensorProto
    inputs: list[Any] = [sub.value_info(nm, x.type) for nm, x in zip(const_in + state_in,
                                                                        b_in[:nc + nk])]
    inputs += [sub.value_info(nm, x.type) for nm, x in zip(xs_in, b_in[nc + nk:])]
    scan_ins = list(args[:nc + nk]) + list(x_names)
    if live is not None:
        inputs.append(helper.make_tensor_value_info(live, tp.BOOL, None))
        scan_ins.append(live_mask(em, x_names[0], args[-1]))
    outputs = [sub.value_info(nm, x.type) for nm, x in zip(results[:nc], b_in[:nc])]
    outputs += [sub.value_info(nm, y.type) for nm, y in zip(results[nc:], body.outputs)]
    graph = helper.make_graph(sub.nodes, em.fresh(f"{n.name or 'loop'}_body"), inputs, outputs)
    n_state = nc + nk
    n_scan, n_ys = len(scan_ins) - n_state, len(body.outputs) - nk
    rev = int(bool(n.attrs.get("reverse")))
    ys_axes = {"scan_output_axes": [1] * n_ys, "scan_output_directions": [rev] * n_ys} \
        if n_ys else {}
    got = em.add("Scan", scan_ins, n.name or "loop", n_state + n_ys, body=graph,
                 num_scan_inputs=n_scan, scan_input_axes=[1] * n_scan,
                 scan_input_directions=[rev] * n_scan, **ys_axes)
    return got[nc:]


__all__ = ["emit_scan", "live_mask", "masked", "body_results"]
