"""A tile's epilogue operands, fetched while its k-loop runs.

A recurrent step's epilogue reads its rows of the input projection hoisted out of the loop
(T x B x G*H floats: tens of MB at (64, 100, 512, 512), so each step's rows come from
memory). Read at the end of the tile, each of those cache lines would stall the epilogue
for a memory latency, a few hundred cycles a row; prefetched before the k-loop, they
arrive while the FMAs run:

    for each row r of the tile, each epilogue input o with a row of its own:
        prefetch o[r, the tile's columns]
    k-loop; epilogue

(Prefetching the rows the epilogue stores, with write intent, measured no better.)
"""
from __future__ import annotations

from llvmlite import ir

from .irbuilder import I32, I64, Emitter

MIN_K = 64             # with fewer k-steps the tile is too short to hide a memory latency
LOCALITY = 3           # llvm.prefetch locality 3: into every cache level (prefetcht0)


def prefetch_tile(em: Emitter, rows: list[ir.Value], cols: list[ir.Value],
                  operands: list[tuple[ir.Value, ir.Value, list[int]]]) -> None:
    """Prefetch each operand's lines of the tile: operands are (base, row stride in floats,
    column offsets); the lines at base + row * stride + col + offset for every row, column
    and offset."""
    for base, ld, offsets in operands:
        for r in rows:
            at = em.gep(base, em.builder.mul(r, ld, flags=["nsw"]))
            for off in offsets:
                for c in cols:
                    prefetch_line(em, em.gep(at, em.add(c, ir.Constant(I64, off))))


def prefetch_line(em: Emitter, ptr: ir.Value) -> None:
    """Ask for the cache line holding *ptr (any float pointer)."""
    bld = em.builder
    bld.call(_prefetch_fn(em), [bld.bitcast(ptr, ir.IntType(8).as_pointer()),
                                ir.Constant(I32, 0), ir.Constant(I32, LOCALITY),
                                ir.Constant(I32, 1)])


def _prefetch_fn(em: Emitter) -> ir.Function:
    name = "llvm.prefetch.p0"
    found = em.module.globals.get(name)
    if found is not None:
        return found
    return ir.Function(em.module, ir.FunctionType(
        ir.VoidType(), [ir.IntType(8).as_pointer(), I32, I32, I32]), name)


__all__ = ["prefetch_tile", "prefetch_line", "MIN_K"]
