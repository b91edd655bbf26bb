"""Dropout in training: the interpreter's counter-based hash mask, drawn in native code.

    for every element, at flat (C-order) index i of the value's logical shape:
        h = i * 0x9E3779B97F4A7C15 + (seed * 0x85EBCA6B + node_seed * 0xC2B2AE35
                                      + step * 0x27D4EB2F)          (all mod 2**64)
        h ^= h >> 33; h *= 0xFF51AFD7ED558CCD; h ^= h >> 33; h *= 0xC4CEB9FE1A85EC53
        h ^= h >> 33
        out[i] = x[i] / (1 - p) if (h >> 32) / 2**32 >= p else 0

exactly `interpret.dropout_mask`, so a compiled training step drops the same elements as
the interpreter. `seed` is the call's, `step` the loop-step salt (0 outside loops; inside,
`outer * 1_000_003 + t + 1`, computed by emit_loop). The division has no fast-math flags, so
the kept values are the interpreter's to the bit. With `training` 0 the kernel copies.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from graphrnn.ir import Node

from .irbuilder import F32, I64, Emitter, Ref
from .strides import Layout

GOLDEN = 0x9E3779B97F4A7C15
SEED_MUL, NODE_MUL, STEP_MUL = 0x85EBCA6B, 0xC2B2AE35, 0x27D4EB2F
MIX1, MIX2 = 0xFF51AFD7ED558CCD, 0xC4CEB9FE1A85EC53
SALT_MUL = 1_000_003                  # interpret: step = outer * 1_000_003 + t + 1


def _u64(v: int) -> ir.Constant:
    """A 64-bit constant given as an unsigned value (LLVM prints it as signed)."""
    v &= (1 << 64) - 1
    return ir.Constant(I64, v - (1 << 64) if v >= 1 << 63 else v)


def step_salt(bld: ir.IRBuilder, outer: ir.Value, t: ir.Value) -> ir.Value:
    """outer * 1_000_003 + t + 1, wrapping like the interpreter's masked arithmetic."""
    return bld.add(bld.add(bld.mul(outer, ir.Constant(I64, SALT_MUL)), t), ir.Constant(I64, 1))


def emit_dropout(em: Emitter, node: Node, out: Ref, ins: list[Ref]) -> None:
    """out = dropout(x) over out's logical shape; scalar args (seed, training, step)."""
    bld = em.builder
    x = ins[0]
    seed, training, step = em.function.args[2:5]       # after the pointers out and x
    p = float(node.attrs["p"])
    threshold = math.ceil(p * 2.0 ** 32)          # (h >> 32) / 2**32 >= p, in integers
    # numpy divides a float32 array by the Python float 1 - p rounded to float32
    scale = ir.Constant(F32, float(np.float32(1.0 - p)))
    base = bld.add(bld.add(bld.mul(seed, _u64(SEED_MUL)),
                           _u64(int(node.attrs["seed"]) * NODE_MUL)),
                   bld.mul(step, _u64(STEP_MUL)))
    logical = Layout.contiguous(out.layout.shape)
    live = bld.icmp_signed("!=", training, ir.Constant(I64, 0))
    with em.nest(out.layout.shape, "drop") as idx:
        flat = ir.Constant(I64, 0)
        for i, s in zip(idx, logical.strides):
            flat = em.add(flat, em.mul(i, s))
        h = bld.add(bld.mul(flat, _u64(GOLDEN)), base)
        h = _mix(bld, h)
        keep = bld.icmp_unsigned(">=", bld.lshr(h, ir.Constant(I64, 32)),
                                 ir.Constant(I64, threshold))
        v = em.load(em.at(x, idx))
        dropped = bld.select(keep, bld.fdiv(v, scale), ir.Constant(F32, 0.0))
        em.store(bld.select(live, dropped, v), em.at(out, idx))


def _mix(bld: ir.IRBuilder, h: ir.Value) -> ir.Value:
    h = bld.xor(h, bld.lshr(h, ir.Constant(I64, 33)))
    h = bld.mul(h, _u64(MIX1))
    h = bld.xor(h, bld.lshr(h, ir.Constant(I64, 33)))
    h = bld.mul(h, _u64(MIX2))
    return bld.xor(h, bld.lshr(h, ir.Constant(I64, 33)))


__all__ = ["emit_dropout", "step_salt", "SALT_MUL"]
