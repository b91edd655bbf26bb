"""A contract block's row tiles: each tile of MR rows of out against every panel of the
block, with the next tile's packing and the prefetches folded into the k-loops.

    pack(tile 0)
    for t in range(rows // MR):
        cur, nxt = tile buffers t % 2, (t + 1) % 2
        for q, panel in enumerate(panels):
            acc = 0
            for k in range(count):
                acc += broadcast(cur[k]) * panel[k]           # the micro-kernel's k-step
                q == 0:      nxt[k] = a[tile t + 1's rows, k]; prefetch(a[tile t + 2's rows, k])
                1 <= q:      prefetch(line k of out's row q - 1 of tile t + 1)
            out[t * MR : t * MR + MR, panel's columns] += acc
    the last rows % MR rows: packed alone, then the same k-loops without the extras

A last panel of at most TAIL_COLUMNS columns (a bias column after full panels) runs with
vectors along the tile's rows instead (_tail).

Packing a tile apart from the products stalls on memory (a is read from memory once, at a
large row stride: a GRU's gate gradients are 39 MB); inside the k-loop of the first panel,
the tile's copy and a prefetch of the tile after it (one line a k-step) run in the slots the
FMAs leave free, so the tile's rows arrive from memory while the products run. The same for
out's rows, read and written once per block: they are in cache when the next tile starts.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from .emit_pack import masked_load, masked_store
from .irbuilder import FLAGS, I32, I64, Emitter, Ref
from .kloop import chained_loop, counted_loop, fma_step
from .prefetch import prefetch_line
from .strides import ONE, Lin
from .tiling import GemmPlan

LINE_FLOATS = 16                # floats per cache line
TAIL_COLUMNS = 4               # at most this many last columns: with vectors along the rows
TAIL_CHAINS = 4
SLACK = 16                      # floats after a tile buffer (its rows read as vectors)

Extra = Callable[[ir.Value], None]      # more work for k-step k of a k-loop


def emit_tiles(em: Emitter, p: GemmPlan, a: Ref, panels: ir.Value, out: Ref,
               count: ir.Value, buffers: tuple[ir.Value, ir.Value]) -> None:
    """out += a.T-tiles @ panels (see the module docstring). a: [rows, count] (the block's
    rows of the left operand), out: [rows, N] contiguous along N, panels: emit_pack's of
    the block (count k-rows), buffers: two tile buffers of count * p.mr floats and SLACK."""
    bld = em.builder
    rows = a.layout.shape[0].c
    full, rest = divmod(rows, p.mr)
    s_r, s_k = a.layout.strides
    s_out = out.layout.strides[0]

    def rows_at(r0: ir.Value) -> ir.Value:
        return em.gep(a.ptr, em.mul(r0, s_r))

    if full:
        _pack(em, a.ptr, s_r, s_k, buffers[0], p.mr, p.mr, count)
        with em.loop(full, "ct_tile") as t:
            r0 = bld.mul(t, ir.Constant(I64, p.mr), flags=["nsw"])
            odd = bld.trunc(t, ir.IntType(1))
            cur = bld.select(odd, buffers[1], buffers[0])
            nxt = bld.select(odd, buffers[0], buffers[1])
            # the next full tile's rows (the last tile copies its own: in bounds, unused)
            more = bld.icmp_signed("<", t, ir.Constant(I64, full - 1))
            r1 = bld.select(more, bld.add(r0, ir.Constant(I64, p.mr), flags=["nsw"]), r0)
            src = rows_at(r1)
            ahead = bld.add(r0, ir.Constant(I64, 3 * p.mr - 1), flags=["nsw"])
            ahead = _min(em, ahead, rows - 1)
            pf_a = em.gep(a.ptr, ahead) if s_r == ONE else None
            out_next = em.gep(out.ptr, em.mul(_min(em, bld.add(
                r0, ir.Constant(I64, p.mr), flags=["nsw"]), max(rows - p.mr, 0)), s_out))

            def first(k: ir.Value) -> None:
                _copy(em, em.gep(src, em.mul(k, s_k)), s_r,
                      em.gep(nxt, bld.mul(k, ir.Constant(I64, p.mr), flags=["nsw"])), p.mr)
                if pf_a is not None:
                    prefetch_line(em, em.gep(pf_a, em.mul(k, s_k)))

            def later(q: ir.Value) -> Extra:
                row = em.gep(out_next, em.mul(_min(em, bld.sub(q, ir.Constant(I64, 1),
                                                                flags=["nsw"]), p.mr - 1), s_out))
                n = out.layout.shape[1].c

                def extra(k: ir.Value) -> None:
                    col = bld.mul(k, ir.Constant(I64, LINE_FLOATS), flags=["nsw"])
                    prefetch_line(em, em.gep(row, _min(em, col, n - 1)))
                return extra
            o = em.gep(out.ptr, em.mul(r0, s_out))
            _panels(em, p, p.mr, cur, o, s_out, panels, count, first, later)
    if rest:
        r0 = ir.Constant(I64, full * p.mr)
        _pack(em, rows_at(r0), s_r, s_k, buffers[0], p.mr, rest, count)
        _panels(em, p, rest, buffers[0], em.gep(out.ptr, em.mul(r0, s_out)), s_out, panels,
                count, None, None)


def _min(em: Emitter, v: ir.Value, bound: int) -> ir.Value:
    c = ir.Constant(I64, bound)
    return em.builder.select(em.builder.icmp_signed("<", v, c), v, c)


def _panels(em: Emitter, p: GemmPlan, mr: int, tile: ir.Value, out: ir.Value, s_out: Lin,
            panels: ir.Value, count: ir.Value, first: Extra | None,
            later: Callable[[ir.Value], Extra] | None) -> None:
    """Rows [0, mr) of a tile (lanes of `tile`, p.mr a k-step) against every panel: the
    first panel's k-loop does `first`, the others' do later(q)."""
    bld = em.builder
    width = p.nv * p.vw
    step = bld.mul(count, ir.Constant(I64, width), flags=["nsw"])
    lanes = [p.vw] * p.nv
    tail = p.seg_len - p.full * width
    last = [min(p.vw, tail - u * p.vw) for u in range(p.last_vectors)]

    def panel(q: ir.Value, nv: int, widths: list[int], extra: Extra | None) -> None:
        ptr = em.gep(panels, bld.mul(q, step, flags=["nsw"]))
        col = em.gep(out, bld.mul(q, ir.Constant(I64, width), flags=["nsw"]))
        _micro(em, p, mr, nv, widths, tile, ptr, col, s_out, count, extra)
    q0 = ir.Constant(I64, 0)
    if p.full:
        panel(q0, p.nv, lanes, first)
        if p.full > 1:
            with em.loop(p.full, "ct_panel", start=1) as q:
                panel(q, p.nv, lanes, later(q) if later else None)
    if p.last_vectors:
        q = ir.Constant(I64, p.full)
        if p.full and p.last_vectors == 1 and tail <= TAIL_COLUMNS:
            _tail(em, p, mr, tile, em.gep(panels, bld.mul(q, step, flags=["nsw"])),
                  em.gep(out, p.full * width), s_out, count, tail)
            return
        extra = (later(q) if later else None) if p.full else first
        panel(q, p.last_vectors, last, extra)


def _tail(em: Emitter, p: GemmPlan, mr: int, tile: ir.Value, panel: ir.Value, out: ir.Value,
          s_out: Lin, count: ir.Value, columns: int) -> None:
    """out[i, j] += sum over k of tile[k * p.mr + i] * panel[k][j] for the last `columns`
    (few) columns, with vectors along the tile's rows: a k-step is a load of the tile's
    row, `columns` broadcasts and FMAs, in TAIL_CHAINS chains (a panel of one vector would
    take a k-loop as long as a full panel's, waiting on the latency of its MR FMAs)."""
    bld = em.builder
    w = next(v for v in (4, 8, 16) if v >= p.mr)

    def step(k: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        row = em.load(em.gep(tile, bld.mul(k, ir.Constant(I64, p.mr), flags=["nsw"])), w)
        at = em.gep(panel, bld.mul(k, ir.Constant(I64, p.vw), flags=["nsw"]))
        return [em.fma(row, em.splat(em.load(em.gep(at, j)), w), acc[j])
                for j in range(columns)]
    total = chained_loop(em, count, [em.const(0.0, w)] * columns, step, TAIL_CHAINS, "ct_k")
    for j, v in enumerate(total):
        for i in range(mr):
            ptr = em.gep(out, em.add(em.lin(s_out * i), ir.Constant(I64, j)))
            lane = bld.extract_element(v, ir.Constant(I32, i))
            em.store(bld.fadd(em.load(ptr), lane, flags=FLAGS), ptr)


def _micro(em: Emitter, p: GemmPlan, mr: int, nv: int, widths: list[int], tile: ir.Value,
           panel: ir.Value, out: ir.Value, s_out: Lin, count: ir.Value,
           extra: Extra | None) -> None:
    """out[i, u * VW + j] += sum over k of tile[k * p.mr + i] * panel[k][u * VW + j]."""
    bld = em.builder
    vw = p.vw
    ptrs = [[em.gep(out, em.add(em.lin(s_out * i), ir.Constant(I64, u * vw)))
             for u in range(nv)] for i in range(mr)]
    acc = [em.const(0.0, vw)] * (mr * nv)

    def step(k: ir.Value, acc: list[ir.Value]) -> list[ir.Value]:
        if extra is not None:
            extra(k)
        kp = em.gep(panel, bld.mul(k, ir.Constant(I64, nv * vw), flags=["nsw"]))
        ka = em.gep(tile, bld.mul(k, ir.Constant(I64, p.mr), flags=["nsw"]))
        return fma_step(em, mr, nv, acc, lambda i: em.splat(em.load(em.gep(ka, i)), vw),
                        lambda u: em.load(em.gep(kp, u * vw), vw))
    # the block's sum is added to out after (a sum per block, then the blocks' sums: less
    # rounding than one running sum over all of M)
    acc = counted_loop(em, ir.Constant(I64, 0), count, acc, step, False, label="ct_k")
    for i in range(mr):
        for u, w in enumerate(widths):
            ptr = ptrs[i][u]
            if w == vw:
                em.store(bld.fadd(em.load(ptr, vw), acc[i * nv + u], flags=FLAGS), ptr)
            else:
                v = bld.fadd(masked_load(em, ptr, vw, w), acc[i * nv + u], flags=FLAGS)
                masked_store(em, v, ptr, w)


def _pack(em: Emitter, a: ir.Value, s_r: Lin, s_k: Lin, dst: ir.Value, mr: int, lanes: int,
          count: ir.Value) -> None:
    """dst[k * mr + i] = a[i * s_r + k * s_k] for i < lanes, k < count: one tile alone."""
    with em.loop(count, "ct_pack") as k:
        _copy(em, em.gep(a, em.mul(k, s_k)), s_r,
              em.gep(dst, em.builder.mul(k, ir.Constant(I64, mr), flags=["nsw"])), lanes)


def _copy(em: Emitter, src: ir.Value, s_r: Lin, dst: ir.Value, lanes: int) -> None:
    """dst[i] = src[i * s_r] for i < lanes, moved as integers (pairs when contiguous): no
    vector register, which the k-loop's tile needs, and nothing read past the lanes."""
    bld = em.builder
    i = 0
    while i < lanes:
        pair = s_r == ONE and i + 1 < lanes
        ty = ir.IntType(64 if pair else 32)
        at = em.gep(src, em.mul(ir.Constant(I64, i), s_r))
        v = bld.load(bld.bitcast(at, ty.as_pointer()), align=4)
        bld.store(v, bld.bitcast(em.gep(dst, i), ty.as_pointer()), align=4)
        i += 2 if pair else 1


__all__ = ["emit_tiles", "LINE_FLOATS"]
