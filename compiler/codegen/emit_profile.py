"""Cycle counters around kernels, for `gr.profile`: an instrumented variant of a program.

    t0 = llvm.readcyclecounter()
    k3_gemm_add(...)                       # one kernel call (or a whole loop)
    counters[2 * i]     += readcyclecounter() - t0
    counters[2 * i + 1] += 1

The sums live in stack slots of the entry point (registers, after mem2reg) and are added to
`counters`, an i64 array the Program passes in the io block, once at the end: stores to
memory inside the loops would make LLVM reload values around every kernel. Counter 0
brackets the whole entry point; each record names its kernel, its kind, the IR nodes it
computes and the counter of the loop it runs in (its parent), so a loop's own time is its
total minus its children's.
Counters inside loop bodies add up over the steps.
"""
from __future__ import annotations

from dataclasses import dataclass

from llvmlite import ir

from .irbuilder import I64, Emitter


@dataclass(frozen=True)
class CounterRecord:
    kernel: str                 # function name (k<i>_<kind>_<ops>) or "total"
    kind: str                   # map, gemm, reduce, loop, copy, carry, ...
    nodes: tuple[str, ...]      # the IR nodes it computes
    parent: int                 # the enclosing loop's counter, -1 for the entry point


class Profiler:
    """Hands out counters and emits the code that bumps them."""

    def __init__(self, base: ir.Value):
        self.base = base                            # i64*: the counters array
        self.records: list[CounterRecord] = []
        self.stack: list[int] = [-1]
        self.sums: list[ir.Value] = []              # per counter: cycles, calls (allocas)

    def begin(self, em: Emitter, kernel: str, kind: str, nodes: tuple[str, ...]
              ) -> tuple[int, ir.Value]:
        """A new counter (child of the innermost open one) and the starting cycle count."""
        index = len(self.records)
        self.records.append(CounterRecord(kernel, kind, nodes, self.stack[-1]))
        self.stack.append(index)
        zero = ir.Constant(I64, 0)
        self.sums += [em.alloca(I64), em.alloca(I64)]
        entry = em.function.entry_basic_block
        for slot in self.sums[-2:]:
            with em.builder.goto_block(entry):
                em.builder.position_after(slot)
                em.builder.store(zero, slot)
        return index, em.builder.call(_clock(em.module), [])

    def end(self, em: Emitter, index: int, start: ir.Value) -> None:
        """Add the cycles since `start` and one call to counter `index`."""
        bld = em.builder
        spent = bld.sub(bld.call(_clock(em.module), []), start)
        for slot, value in ((2 * index, spent), (2 * index + 1, ir.Constant(I64, 1))):
            bld.store(bld.add(bld.load(self.sums[slot]), value), self.sums[slot])
        self.stack.pop()

    def flush(self, em: Emitter) -> None:
        """counters[k] += sum k, for every counter: emit just before the entry returns."""
        bld = em.builder
        for k, slot in enumerate(self.sums):
            ptr = bld.gep(self.base, [ir.Constant(I64, k)], inbounds=True)
            bld.store(bld.add(bld.load(ptr, align=8), bld.load(slot)), ptr, align=8)

    def meta(self) -> tuple[tuple[str, str, tuple[str, ...], int], ...]:
        """The records as plain tuples, for the Executable's contract."""
        return tuple((r.kernel, r.kind, r.nodes, r.parent) for r in self.records)


def clock_function(module: ir.Module, name: str) -> ir.Function:
    """`i64 name()`: the cycle counter, so the caller can measure its rate."""
    fn = ir.Function(module, ir.FunctionType(I64, []), name)
    fn.attributes.add("nounwind")
    bld = ir.IRBuilder(fn.append_basic_block("entry"))
    bld.ret(bld.call(_clock(module), []))
    return fn


def _clock(module: ir.Module) -> ir.Function:
    existing = module.globals.get("llvm.readcyclecounter")
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(I64, []), "llvm.readcyclecounter")


__all__ = ["Profiler", "CounterRecord", "clock_function"]
