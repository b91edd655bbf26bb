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
    dims = [batch_steps] + [
        sub.one("Unsqueeze", [sub.dim(n, d), sub.const(np.array([0], np.int64), "axes")], "dim")
        for d in t.shape[2:]]
    shape = sub.one("Concat", dims, "empty_shape", axis=0)
    dtype = np.int64 if t.dtype == "int64" else np.float32
    return sub.one("ConstantOfShape", [shape], "empty",
                   value=sub.onnx.numpy_helper.from_array(np.zeros(1, dtype)))


def empty_outputs(em: Emitter, n: Node, args: list, batch_steps: str) -> list[str]:
    """What the loop gives for 0 steps or 0 rows: the initial carries and empty outputs."""
    consts, carry, _, _ = loop_operands(n)
    return list(args[len(consts):len(consts) + len(carry)]) + [
        _empty(em, n, t, batch_steps) for t in list(n.type)[len(carry):]]


def counted_batch_steps(em: Emitter, n: Node, steps: str) -> str | None:
    """[B, T] of a loop without sequences (B of its first per-step output), None without
    per-step outputs."""
    nk = n.attrs["n_carry"]
    ys = list(n.type)[nk:]
    if not ys:
        return None
    axes = em.const(np.array([0], np.int64), "axes")
    batch = em.one("Unsqueeze", [em.dim(n, ys[0].shape[0]), axes], "batch")
    return em.one("Concat", [batch, em.one("Unsqueeze", [steps, axes], "steps")],
                  "batch_steps", axis=0)


def _static_size(n: Node, xs: tuple) -> int | None:
    """B * T when both are known at export time (from the first sequence, or from a loop's
    fixed length and first per-step output), else None."""
    if xs:
        t = xs[0].type
        dims = t.shape[:2] if t is not None else ("B", "T")
    else:
        ys = list(n.type)[n.attrs["n_carry"]:]
        dims = (ys[0].shape[0], n.attrs["length"]) if ys else ("B", "T")
    if all(isinstance(d, int) for d in dims):
        return int(dims[0]) * int(dims[1])
    return None


def _shape_bt(em: Emitter, seq: str) -> str:
    return em.one("Slice", [em.one("Shape", [seq], "shape_of"),
                            em.const(np.array([0], np.int64), "starts"),
                            em.const(np.array([2], np.int64), "ends")], "batch_steps")


def guard_empty(em: Emitter, n: Node, args: list,
                emit: Callable[[Emitter, Node, list], list[str]],
                batch_steps: str | None = None) -> list[str]:
    """`emit(em, n, args)` run only when the loop's batch and sequences are not empty;
    `batch_steps` [B, T] (read from the first sequence by default)."""
    consts, carry, xs, _ = loop_operands(n)
    nk = len(carry)
    types = list(n.type)
    static = _static_size(n, xs)
    if static is not None:
        # no If to fold: ONNX Runtime 1.32 inlines an If of constant condition and loses the
        # outer values a Scan body inside it reads
        return emit(em, n, args) if static else empty_outputs(em, n, args, batch_steps or
                                                              _shape_bt(em, args[len(consts) + nk]))
    if batch_steps is None:
        batch_steps = _shape_bt(em, args[len(consts) + nk])
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
    then_outs = empty_outputs(then_em, n, args, batch_steps)
    else_em = Emitter(em)
    else_outs = emit(else_em, n, args)
    return em.add("If", [empty], n.name or "loop", len(types),
                  then_branch=branch(then_em, then_outs, "empty"),
                  else_branch=branch(else_em, else_outs, "run"))


__all__ = ["guard_empty", "counted_batch_steps", "empty_outputs"]
