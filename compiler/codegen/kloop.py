"""The micro-kernel's k-loop: MR rows of `a` times one panel of NV vectors, in registers.

    acc[i][v] = init[i][v]                      # zeros, or a partial sum of earlier k
    for k in range(count):
        acc[i][v] = fma(broadcast(a[i][k * ak]), panel[k][v], acc[i][v])

The order of a k-step's operations decides the registers it needs beside the MR * NV
accumulators (tiling.vectors_first): the MR broadcasts first, then one panel vector at a time
(MR + 1), or the NV panel vectors first, then one broadcast at a time (NV + 1).
"""
from __future__ import annotations

from llvmlite import ir

from .irbuilder import I64, Emitter
from .tiling import vectors_first


def emit_kloop(em: Emitter, a_rows: list[ir.Value], ak, panel: ir.Value, nvec: int, vw: int,
               count: ir.Value, init: list[ir.Value], *, may_be_empty: bool,
               flip: tuple[ir.Value, int] | None = None) -> list[ir.Value]:
    """The accumulators after `count` k-steps (see the docstring). a_rows: the MR rows'
    first elements; ak: the stride of k in `a` (Lin); panel: its first k-row. With
    may_be_empty, count may be 0. flip = (i1, K): k runs from K - 1 down to 0 when set."""
    bld = em.builder
    mr = len(a_rows)
    pre = bld.block
    body = em.function.append_basic_block("mm_k.body")
    done = em.function.append_basic_block("mm_k.exit")
    if may_be_empty:
        bld.cbranch(bld.icmp_signed(">", count, ir.Constant(I64, 0)), body, done)
    else:
        bld.branch(body)
    bld.position_at_end(body)
    k = bld.phi(I64, name="k")
    k.add_incoming(ir.Constant(I64, 0), pre)
    phis = [bld.phi(v.type) for v in init]
    for ph, v in zip(phis, init):
        ph.add_incoming(v, pre)
    kk = k if flip is None else bld.select(
        flip[0], bld.sub(ir.Constant(I64, flip[1] - 1), k, flags=["nsw"]), k)
    kp = em.gep(panel, bld.mul(kk, ir.Constant(I64, nvec * vw), flags=["nsw"]))
    new = list(phis)

    def bcast(i: int) -> ir.Value:
        return em.splat(em.load(em.gep(a_rows[i], em.mul(kk, ak))), vw)
    if vectors_first(mr, nvec):
        # e.g. a GRU's 4 x 3 tile in 16 ymm: 12 accumulators, 3 panel vectors, 1 broadcast
        bvs = [em.load(em.gep(kp, v * vw), vw) for v in range(nvec)]
        for i in range(mr):
            b = bcast(i)
            for v in range(nvec):
                new[i * nvec + v] = em.fma(b, bvs[v], new[i * nvec + v])
    else:
        bs = [bcast(i) for i in range(mr)]
        for v in range(nvec):
            bv = em.load(em.gep(kp, v * vw), vw)
            for i in range(mr):
                new[i * nvec + v] = em.fma(bs[i], bv, new[i * nvec + v])
    nxt = bld.add(k, ir.Constant(I64, 1), flags=["nsw"])
    k.add_incoming(nxt, body)
    for ph, val in zip(phis, new):
        ph.add_incoming(val, body)
    bld.cbranch(bld.icmp_signed("<", nxt, count), body, done)
    bld.position_at_end(done)
    if not may_be_empty:
        return new
    acc = []
    for v, val in zip(init, new):
        merge = bld.phi(v.type)
        merge.add_incoming(v, pre)
        merge.add_incoming(val, body)
        acc.append(merge)
    return acc


__all__ = ["emit_kloop"]
