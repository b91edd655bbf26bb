"""The micro-kernel's k-loop: MR rows of `a` times one panel of NV vectors, in registers.

    acc[i][v] = init[i][v]                      # zeros, or a partial sum of earlier k
    for k in range(count):
        acc[i][v] = fma(broadcast(a[i][k * ak]), panel[k][v], acc[i][v])

The order of a k-step's operations decides the registers it needs beside the MR * NV
accumulators (tiling.vectors_first): the MR broadcasts first, then one panel vector at a time
(MR + 1), or the NV panel vectors first, then one broadcast at a time (NV + 1).

A tile of few accumulators (one row against a panel of 4 vectors: a GEMV, or the only row at
B = 1) would wait on the FMA latency, each accumulator a chain of dependent FMAs. It then
runs C chains (tiling.k_chains): C consecutive k-steps per iteration, each into its own set
of accumulators, summed after the loop; the k-steps left over (count % C) run one at a time.
That sums in another order, so a product whose other tiles may hold the same row (the last
row of a batch) takes the chains only under a run-time test that there is one row.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from .irbuilder import FLAGS, I64, Emitter
from .tiling import vectors_first


def emit_kloop(em: Emitter, a_rows: list[ir.Value], ak, panel: ir.Value, nvec: int, vw: int,
               count: ir.Value, init: list[ir.Value], *, may_be_empty: bool,
               flip: tuple[ir.Value, int] | None = None, chains: int = 1,
               when: ir.Value | None = None) -> list[ir.Value]:
    """The accumulators after `count` k-steps (see the docstring). a_rows: the MR rows'
    first elements; ak: the stride of k in `a` (Lin); panel: its first k-row. With
    may_be_empty, count may be 0. flip = (i1, K): k runs from K - 1 down to 0 when set.
    chains: k-steps side by side (tiling.k_chains). With `when` (i1), flip and chains apply
    only when it is set, else one chain in order: the summation order of every other tile,
    so that a row's result does not depend on the tile it falls in."""
    def run(back: int | None, c: int) -> Callable[[], list[ir.Value]]:
        return lambda: _kloop(em, a_rows, ak, panel, nvec, vw, count, init, may_be_empty,
                              back, c)
    if when is not None:
        return _either(em, when, lambda: emit_kloop(
            em, a_rows, ak, panel, nvec, vw, count, init, may_be_empty=may_be_empty,
            flip=flip, chains=chains), run(None, 1))
    if flip is None:
        return run(None, chains)()
    # two loops, each with a plain induction (a select of k in the loop costs more
    # integer work than its FMAs at one row)
    return _either(em, flip[0], run(flip[1], chains), run(None, chains))


def emit_kloop_parts(em: Emitter, parts: list[tuple[list[ir.Value], object, int]],
                     panel: ir.Value, nvec: int, vw: int, init: list[ir.Value], *,
                     flip: ir.Value | None = None, chains: int = 1,
                     when: ir.Value | None = None) -> list[ir.Value]:
    """emit_kloop over a K split in parts, each (a_rows, ak, k-rows > 0) with rows of its
    own (the pieces of a concatenation never written), against consecutive k-rows of the
    panel. flip (i1): the parts, and k in each, in reverse order when set; chains and `when`
    as for emit_kloop, per part."""
    def run(back: bool, c: int) -> Callable[[], list[ir.Value]]:
        def go() -> list[ir.Value]:
            starts = [sum(k for _, _, k in parts[:i]) for i in range(len(parts))]
            acc = init
            order = list(zip(parts, starts))
            for (a_rows, ak, k), k0 in (order[::-1] if back else order):
                acc = _kloop(em, a_rows, ak, em.gep(panel, k0 * nvec * vw), nvec, vw,
                             ir.Constant(I64, k), acc, False, k if back else None, c)
            return acc
        return go
    if when is not None:
        return _either(em, when, lambda: emit_kloop_parts(
            em, parts, panel, nvec, vw, init, flip=flip, chains=chains), run(False, 1))
    if flip is None:
        return run(False, chains)()
    return _either(em, flip, run(True, chains), run(False, chains))


def _either(em: Emitter, cond: ir.Value, then: Callable[[], list[ir.Value]],
            otherwise: Callable[[], list[ir.Value]]) -> list[ir.Value]:
    """The values of `then` when cond is set, else of `otherwise` (each emitted once)."""
    bld = em.builder
    with bld.if_else(cond) as (yes, no):
        with yes:
            a = then()
            a_end = bld.block
        with no:
            b = otherwise()
            b_end = bld.block
    out = []
    for x, y in zip(a, b):
        merge = bld.phi(x.type)
        merge.add_incoming(x, a_end)
        merge.add_incoming(y, b_end)
        out.append(merge)
    return out


def _kloop(em: Emitter, a_rows: list[ir.Value], ak, panel: ir.Value, nvec: int, vw: int,
           count: ir.Value, init: list[ir.Value], may_be_empty: bool,
           reverse: int | None, chains: int) -> list[ir.Value]:
    """emit_kloop in one order: k from 0 up, or from `reverse` - 1 down to 0."""
    bld = em.builder
    mr = len(a_rows)

    def step(k: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        kk = k if reverse is None else bld.sub(ir.Constant(I64, reverse - 1), k, flags=["nsw"])
        kp = em.gep(panel, bld.mul(kk, ir.Constant(I64, nvec * vw), flags=["nsw"]))
        return fma_step(em, mr, nvec, acc,
                        lambda i: em.splat(em.load(em.gep(a_rows[i], em.mul(kk, ak))), vw),
                        lambda v: em.load(em.gep(kp, v * vw), vw))

    if chains == 1:
        return counted_loop(em, ir.Constant(I64, 0), count, init, step, may_be_empty)
    return chained_loop(em, count, init, step, chains)


def fma_step(em: Emitter, mr: int, nv: int, acc: list[ir.Value],
             bcast: Callable[[int], ir.Value], vector: Callable[[int], ir.Value]
             ) -> list[ir.Value]:
    """One k-step of an MR x NV tile: acc[i * nv + v] += bcast(i) * vector(v), in the order
    tiling.vectors_first picks (the loads emitted where their registers are free)."""
    new = list(acc)
    if vectors_first(mr, nv):
        # e.g. a GRU's 4 x 3 tile in 16 ymm: 12 accumulators, 3 panel vectors, 1 broadcast
        vs = [vector(v) for v in range(nv)]
        for i in range(mr):
            b = bcast(i)
            for v in range(nv):
                new[i * nv + v] = em.fma(b, vs[v], new[i * nv + v])
    else:
        bs = [bcast(i) for i in range(mr)]
        for v in range(nv):
            bv = vector(v)
            for i in range(mr):
                new[i * nv + v] = em.fma(bs[i], bv, new[i * nv + v])
    return new


def chained_loop(em: Emitter, count: ir.Value, init: list[ir.Value],
                 step: Callable[[ir.Value, list[ir.Value]], list[ir.Value]], chains: int,
                 label: str = "mm_k") -> list[ir.Value]:
    """for k in range(count): values = step(k, values), as `chains` consecutive k-steps per
    iteration, each into its own copy of the values (the first from init, the others from
    zero), added together after; the count % chains k-steps left run one at a time."""
    bld = em.builder
    n = len(init)
    zero = ir.Constant(init[0].type, [0.0] * init[0].type.count)
    rounds = bld.sdiv(count, ir.Constant(I64, chains))

    def round_(j: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        k0 = bld.mul(j, ir.Constant(I64, chains), flags=["nsw"])
        out = []
        for c in range(chains):
            k = bld.add(k0, ir.Constant(I64, c), flags=["nsw"])
            out += step(k, acc[c * n:(c + 1) * n])
        return out
    acc = counted_loop(em, ir.Constant(I64, 0), rounds, list(init) + [zero] * (n * (chains - 1)),
                       round_, True, label)
    total = acc[:n]
    for c in range(1, chains):
        total = [bld.fadd(t, a, flags=FLAGS) for t, a in zip(total, acc[c * n:(c + 1) * n])]
    done = bld.mul(rounds, ir.Constant(I64, chains), flags=["nsw"])
    return counted_loop(em, done, count, total, step, True, label)


def counted_loop(em: Emitter, start: ir.Value, count: ir.Value, init: list[ir.Value],
                 body: Callable[[ir.Value, list[ir.Value]], list[ir.Value]],
                 may_be_empty: bool, label: str = "mm_k") -> list[ir.Value]:
    """for k in range(start, count): values = body(k, values), the values in registers
    (phis); with may_be_empty, start may be >= count. Its blocks: `label`.body / .exit."""
    bld = em.builder
    pre = bld.block
    loop = em.function.append_basic_block(f"{label}.body")
    exit_ = em.function.append_basic_block(f"{label}.exit")
    if may_be_empty:
        bld.cbranch(bld.icmp_signed("<", start, count), loop, exit_)
    else:
        bld.branch(loop)
    bld.position_at_end(loop)
    k = bld.phi(I64, name="k")
    k.add_incoming(start, pre)
    phis = [bld.phi(v.type) for v in init]
    for ph, v in zip(phis, init):
        ph.add_incoming(v, pre)
    new = body(k, list(phis))
    end = bld.block
    nxt = bld.add(k, ir.Constant(I64, 1), flags=["nsw"])
    k.add_incoming(nxt, end)
    for ph, val in zip(phis, new):
        ph.add_incoming(val, end)
    bld.cbranch(bld.icmp_signed("<", nxt, count), loop, exit_)
    bld.position_at_end(exit_)
    if not may_be_empty:
        return new
    out = []
    for v, val in zip(init, new):
        merge = bld.phi(v.type)
        merge.add_incoming(v, pre)
        merge.add_incoming(val, end)
        out.append(merge)
    return out


__all__ = ["emit_kloop", "emit_kloop_parts", "counted_loop", "chained_loop", "fma_step"]
