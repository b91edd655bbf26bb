"""Empty batches and sequences around the ONNX nodes ONNX Runtime cannot run on them.

ONNX Runtime 1.32 ends the process (a floating-point exception, an abort) on a `GRU`, an
`LSTM` or a `Scan` given a batch of 0 rows or sequences of 0 steps, where graphrnn returns
the initial states and empty outputs. Such a node goes into the else branch of an `If` on
B * T == 0 whose then branch gives graphrnn's answer. (A Scan whose per-step slices are
empty along another dim still aborts there: no answer can be given without running it.)
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir import Node, TensorType, loop_operands
from .emitter import Emitter


def _empty(sub: Emitter, n: Node, t: TensorType, batch_steps: str) -> str:
    """A value of type `t` (batch-first, [B, T, ...]) with B and T those of the sequence."""
    axes = sub.const(np.array([0], np.int64), "axes")
    dims = [batch_steps] + [sub.one("Unsqueeze", [sub.dim(n, d), axes], "dim")
                            for d in t.shape[2:]]
    shape = sub.one("Concat", dims, "empty_shape", axis=0)
    dtype = np.int64 if t.dtype == "int64" else np.float32
    return sub.one("ConstantOfShape", [shape], "empty",
                   value=sub.onnx.numpy_helper.from_array(np.zeros(1, dtype)))


def guard_empty(em: Emitter, n: Node, args: list,
                emit: Callable[[Emitter, Node, list], list[str]]) -> list[str]:
    """`emit(em, n, args)` run only when the loop's sequences are not empty."""
    consts, carry, xs, _ = loop_operands(n)
    nk = len(carry)
    types = list(n.type)
    seq = args[len(consts) + nk]
    batch_steps = em.one("Slice", [em.one("Shape", [seq], "shape_of"),
                                   em.const(np.array([0], np.int64), "starts"),
                                   em.const(np.array([2], np.int64), "ends")], "batch_steps")
    size = em.one("ReduceProd", [batch_steps], "rows_x_steps", keepdims=0)
    empty = em.one("Equal", [size, em.const(np.int64(0), "zero")], "empty")
    helper = em.helper

    def branch(sub: Emitter, outs: list[str], label: str) -> object:
        names = [sub.one("Identity", [o], f"{label}_out") for o in outs]
        infos = [helper.make_tensor_value_info(
            nm, em.onnx.TensorProto.INT64 if t.dtype == "int64" else em.onnx.TensorProto.FLOAT,
            None) for nm, t in zip(names, types)]
        return helper.make_graph(sub.nodes, em.fresh(f"{n.name or 'loop'}_{label}"), [], infos)

    then_em = Emitter(em)
    then_outs = list(args[len(consts):len(consts) + nk]) + [
        _empty(then_em, n, t, batch_steps) for t in types[nk:]]
    else_em = Emitter(em)
    else_outs = emit(else_em, n, args)
    return em.add("If", [empty], n.name or "loop", len(types),
                  then_branch=branch(then_em, then_outs, "empty"),
                  else_branch=branch(else_em, else_outs, "run"))


__all__ = ["guard_empty"]
