"""A GEMM tile's epilogue, one row and one unit column at a time: what it computes
(`Epilogue`: a `first` body on the product, then a cell's stages on its segments) and the
loads and stores of its operands (masked for the last, partial vector of a segment).

    x_s = first(acc[r][s * U + u], its inputs at column s * L + c)   # e.g. + bias + i2h
    for each stage (a FUSED body on the [.., L] slices, in order):
        value = body(x_s / earlier stage values / inputs at column c)
        store value at [r, c] when it is needed outside          # h, c of an LSTM
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from llvmlite import ir

from graphrnn.ir import Graph, Op

from .emit_map import eval_body
from .emit_pack import masked_load, masked_store
from .irbuilder import I64, Emitter, Ref
from .strides import ZERO, Lin
from .tiling import GemmPlan, registers


@dataclass(frozen=True)
class Arg:
    """An input of a stage: kind "seg" (segment s of the product, after `first`), "stage"
    (an earlier stage's value) or "ref" (Epilogue.stage_refs[index], in [.., L] space)."""
    kind: str
    index: int


@dataclass(frozen=True)
class Stage:
    body: Graph
    args: tuple[Arg, ...]
    store: Ref | None = None        # where the value goes ([.., L]); None: registers only


@dataclass(frozen=True)
class Epilogue:
    """What happens to the accumulators: `first` (a FUSED body whose input `slot` is the
    product, `refs` its other inputs in [.., N] space; None: the product itself), then the
    stages (with segments), else the store of first's value to the output."""
    first: Graph | None = None
    slot: int = 0
    refs: tuple[Ref, ...] = ()
    stages: tuple[Stage, ...] = ()
    stage_refs: tuple[Ref, ...] = ()



# ops whose inline code (mathfns.py) holds a dozen or more temporaries and constants
TRANSCENDENTAL = frozenset({Op.EXP, Op.LOG, Op.TANH, Op.SIGMOID, Op.ERF, Op.SOFTPLUS, Op.POW})


def parked(epi: Epilogue, accumulators: int) -> bool:
    """Whether the epilogue of a tile of `accumulators` vectors runs one row and unit at a
    time from the tile parked in a scratch (a cell's stages; a `first` body with a
    transcendental on more than a quarter of the registers), not on the tile's registers:
    evaluated on every accumulator at once, the temporaries of tens of transcendentals
    would not fit beside them and would spill (a 6 x 4 tile's tanh: -3% on an RNN step)."""
    return bool(epi.stages) or (epi.first is not None and accumulators > registers() // 4
                                and any(n.op in TRANSCENDENTAL for n in epi.first.nodes))


@dataclass
class Operand:
    """A pointer walked by rows and columns: base (after the outer dims), row stride and
    column stride (0: broadcast along the columns, else 1)."""
    base: ir.Value
    ld: Lin
    cs: Lin


def finish_row(em: Emitter, p: GemmPlan, tile: Any, epi: Epilogue, row: ir.Value,
            col: ir.Value, values: list[ir.Value], lanes: int) -> None:
    """The epilogue of one row and one unit column (col: within a segment); `tile` is the
    gemm's tile, whose operands (out, refs, stage_refs, stores) it reads and writes."""
    vw = p.vw
    seg = []
    for s, v in enumerate(values):
        at = em.add(col, ir.Constant(I64, s * p.seg_len))
        if epi.first is not None:
            args = [read(em, o, row, at, vw, lanes) for o in tile.refs]
            args.insert(epi.slot, v)
            v = eval_body(em, epi.first, args, vw)
        if not epi.stages:
            write(em, v, tile.out, row, at, lanes)
        seg.append(v)
    done: list[ir.Value] = []
    for stage, store in zip(epi.stages, tile.stores):
        args = [seg[a.index] if a.kind == "seg" else done[a.index] if a.kind == "stage"
                else read(em, tile.stage_refs[a.index], row, col, vw, lanes)
                for a in stage.args]
        value = eval_body(em, stage.body, args, vw)
        if store is not None:
            write(em, value, store, row, col, lanes)
        done.append(value)


def read(em: Emitter, o: Operand, row: ir.Value, col: ir.Value, vw: int,
          lanes: int) -> ir.Value:
    ptr = em.gep(o.base, em.mul(row, o.ld))
    if o.cs == ZERO:
        return em.splat(em.load(ptr), vw)
    ptr = em.gep(ptr, col)
    return em.load(ptr, vw) if lanes == vw else masked_load(em, ptr, vw, lanes)


def write(em: Emitter, value: ir.Value, o: Operand, row: ir.Value, col: ir.Value,
           lanes: int) -> None:
    ptr = em.gep(em.gep(o.base, em.mul(row, o.ld)), col)
    vw = value.type.count
    if lanes == vw:
        em.store(value, ptr)
    else:
        masked_store(em, value, ptr, lanes)



__all__ = ["Arg", "Stage", "Epilogue", "Operand", "TRANSCENDENTAL", "parked", "finish_row", "read",
           "write"]
