"""The LLVM function being emitted: its builder, counted loops, pointers and kernel calls.

Every emitter works on `Ref`s, a typed pointer plus a `Layout`. Kernels are separate internal
functions whose pointer arguments are `noalias` (the schedule never lets a kernel's output
overlap its inputs), so LLVM may keep values in registers and vectorise; LLVM inlines them
into the entry point. Integer arithmetic on indices uses `nsw`, never `nuw` (offsets can be
negative, e.g. a reverse loop's t - 1).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
from llvmlite import ir

from graphrnn.ir import LoweringError

from .strides import BATCH, STEPS, Layout, Lin, lin

F32 = ir.FloatType()
I64 = ir.IntType(64)
I32 = ir.IntType(32)
I8 = ir.IntType(8)
VOID = ir.VoidType()
# never nnan / ninf / reassoc; nor contract: LLVM would fuse a mul and an add into an FMA
# where the code's shape allows it, so the same element would round differently in a full
# tile and in a tail (a batch split in parts must give the one-thread result bit for bit).
# FMAs are asked for explicitly (llvm.fma) where they are wanted.
FLAGS = ("nsz", "arcp", "afn")
WIDTH = 8                                       # floats per AVX2 vector


def elem_type(dtype: str) -> ir.Type:
    return I64 if dtype == "int64" else F32


def vec(n: int = WIDTH) -> ir.VectorType:
    return ir.VectorType(F32, n)


@dataclass(frozen=True)
class Ref:
    """A value in memory: pointer to its first element, and its layout."""
    ptr: ir.Value
    layout: Layout


class Emitter:
    """Builds one function. `steps` and `batch` are the function's step count and batch size
    arguments (i64; `batch` is a constant 0 where no size depends on the batch); `more` the
    sizes of the further time symbols (strides.EXTRA), by name."""

    def __init__(self, function: ir.Function, steps: ir.Value, batch: ir.Value | None = None,
                 more: dict[str, ir.Value] | None = None):
        self.function = function
        self.module: ir.Module = function.module
        self.builder = ir.IRBuilder(function.append_basic_block("entry"))
        self.steps = steps
        self.batch = batch if batch is not None else ir.Constant(I64, 0)
        self.more: dict[str, ir.Value] = dict(more or {})

    # -- integers
    def size(self, symbol: str) -> ir.Value:
        """The run-time size of one symbol of a Lin."""
        if symbol == STEPS:
            return self.steps
        if symbol == BATCH:
            return self.batch
        if symbol not in self.more:
            raise LoweringError(f"the size of dim {symbol!r} is not known to this function")
        return self.more[symbol]

    def lin(self, x: Lin | int) -> ir.Value:
        x = lin(x)
        if x.const:
            return ir.Constant(I64, x.c)
        b = self.builder
        v: ir.Value = ir.Constant(I64, 0)
        # steps, batch, batch * steps first, in the order single-time programs always had
        legacy = ((STEPS,), (BATCH,), (BATCH, STEPS))
        terms = [(m, x.coef(*m)) for m in legacy] + [t for t in x.terms if t[0] not in legacy]
        for m, k in terms:
            if k:
                value = self.size(m[0]) if len(m) == 1 else self._product(m)
                term = value if k == 1 else b.mul(value, ir.Constant(I64, k), flags=["nsw"])
                v = self.add(v, term)
        return self.add(v, ir.Constant(I64, x.c))

    def _product(self, m: tuple[str, ...]) -> ir.Value:
        v = self.size(m[0])
        for d in m[1:]:
            v = self.builder.mul(v, self.size(d), flags=["nsw"])
        return v

    def mul(self, a: ir.Value, b: ir.Value | Lin | int) -> ir.Value:
        if isinstance(b, (Lin, int)):
            bl = lin(b)
            if bl.const and bl.c == 0:
                return ir.Constant(I64, 0)
            if bl.const and bl.c == 1:
                return a
            b = self.lin(bl)
        return self.builder.mul(a, b, flags=["nsw"])

    def add(self, a: ir.Value, b: ir.Value) -> ir.Value:
        if isinstance(b, ir.Constant) and b.constant == 0:
            return a
        if isinstance(a, ir.Constant) and a.constant == 0:
            return b
        return self.builder.add(a, b, flags=["nsw"])

    # -- pointers
    def gep(self, ptr: ir.Value, offset: ir.Value | Lin | int) -> ir.Value:
        if isinstance(offset, (Lin, int)):
            offset = lin(offset)
            if offset.const and offset.c == 0:
                return ptr
            offset = self.lin(offset)
        return self.builder.gep(ptr, [offset], inbounds=True)

    def at(self, ref: Ref, index: Sequence[ir.Value]) -> ir.Value:
        """Pointer to ref[index] (index over the leading len(index) dims)."""
        off: ir.Value = ir.Constant(I64, 0)
        for i, s in zip(index, ref.layout.strides):
            off = self.add(off, self.mul(i, s))
        return self.gep(ref.ptr, off)

    def view(self, ref: Ref, offset: Lin | ir.Value, layout: Layout) -> Ref:
        return Ref(self.gep(ref.ptr, offset), layout)

    def cast(self, ptr: ir.Value, dtype: str) -> ir.Value:
        want = elem_type(dtype).as_pointer()
        return ptr if ptr.type == want else self.builder.bitcast(ptr, want)

    # -- loops
    @contextlib.contextmanager
    def loop(self, count: ir.Value | Lin | int, name: str, start: ir.Value | int = 0,
             step: int = 1, until: Callable[[ir.Value], ir.Value] | None = None
             ) -> Iterator[ir.Value]:
        """for i in range(start, count, step): the body is what the caller emits inside;
        with `until`, the loop also leaves before step i when `until(i)` (an i1) is false.
        The index yielded is, after the loop, the step it stopped at."""
        b = self.builder
        count = self.lin(count) if isinstance(count, (Lin, int)) else count
        start = ir.Constant(I64, start) if isinstance(start, int) else start
        pre = b.block
        head = self.function.append_basic_block(f"{name}.head")
        body = self.function.append_basic_block(f"{name}.body")
        done = self.function.append_basic_block(f"{name}.exit")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=name)
        i.add_incoming(start, pre)
        last = b.add(i, ir.Constant(I64, step - 1), flags=["nsw"]) if step > 1 else i
        if until is None:
            b.cbranch(b.icmp_signed("<", last, count), body, done)
        else:
            check = self.function.append_basic_block(f"{name}.until")
            b.cbranch(b.icmp_signed("<", last, count), check, done)
            b.position_at_end(check)
            b.cbranch(until(i), body, done)
        b.position_at_end(body)
        yield i
        i.add_incoming(b.add(i, ir.Constant(I64, step), flags=["nsw"]), b.block)
        b.branch(head)
        b.position_at_end(done)

    @contextlib.contextmanager
    def nest(self, shape: Sequence[Lin], name: str) -> Iterator[list[ir.Value]]:
        """Nested loops over `shape` (outermost first); yields the index list."""
        with contextlib.ExitStack() as stack:
            yield [stack.enter_context(self.loop(d, f"{name}{k}")) for k, d in enumerate(shape)]

    def alloca(self, ty: ir.Type, init: ir.Value | None = None) -> ir.Value:
        """A stack slot in the entry block (where mem2reg turns it into registers)."""
        here = self.builder.block
        self.builder.position_at_start(self.function.entry_basic_block)
        slot = self.builder.alloca(ty)
        self.builder.position_at_end(here)
        if init is not None:
            self.builder.store(init, slot)
        return slot

    def if_then(self, cond: ir.Value) -> contextlib.AbstractContextManager:
        return self.builder.if_then(cond)

    # -- values
    def const(self, value: float, width: int = 0) -> ir.Constant:
        if width:
            return ir.Constant(vec(width), [value] * width)
        return ir.Constant(F32, value)

    def splat(self, x: ir.Value, width: int) -> ir.Value:
        b = self.builder
        one = b.insert_element(ir.Constant(vec(width), ir.Undefined), x, ir.Constant(I32, 0))
        return b.shuffle_vector(one, ir.Constant(vec(width), ir.Undefined),
                                ir.Constant(ir.VectorType(I32, width), [0] * width))

    def load(self, ptr: ir.Value, width: int = 0) -> ir.Value:
        if width:
            p = self.builder.bitcast(ptr, vec(width).as_pointer())
            return self.builder.load(p, align=4)
        return self.builder.load(ptr, align=4 if ptr.type.pointee == F32 else 8)

    def store(self, value: ir.Value, ptr: ir.Value) -> None:
        if isinstance(value.type, ir.VectorType):
            p = self.builder.bitcast(ptr, value.type.as_pointer())
            self.builder.store(value, p, align=4)
        else:
            self.builder.store(value, ptr, align=4 if value.type == F32 else 8)

    def intrinsic(self, name: str, ty: ir.Type, nargs: int) -> ir.Function:
        suffix = f"v{ty.count}f32" if isinstance(ty, ir.VectorType) else "f32"
        full = f"llvm.{name}.{suffix}"
        existing = self.module.globals.get(full)
        if existing is not None:
            return existing
        return ir.Function(self.module, ir.FunctionType(ty, [ty] * nargs), full)

    def fma(self, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
        return self.builder.call(self.intrinsic("fma", a.type, 3), [a, b, c])


def kernel_function(module: ir.Module, name: str, dtypes: Sequence[str],
                    n_scalars: int = 0, more: Sequence[str] = ()
                    ) -> tuple[ir.Function, Emitter, list[ir.Value]]:
    """An internal `void name(T0* noalias, ..., i64 scalars..., i64 steps, i64 batch,
    i64 more...)`: `more` names the further time symbols whose sizes follow the batch.

    Returns the function, an emitter positioned in its entry block, and the scalar args.
    """
    n_sizes = 2 + len(more)
    args = [elem_type(d).as_pointer() for d in dtypes] + [I64] * (n_scalars + n_sizes)
    fn = ir.Function(module, ir.FunctionType(VOID, args), name)
    fn.linkage = "internal"
    fn.attributes.add("nounwind")
    for a in fn.args[:len(dtypes)]:
        a.add_attribute("noalias")
    sizes = fn.args[len(fn.args) - n_sizes:]
    em = Emitter(fn, sizes[0], sizes[1], dict(zip(more, sizes[2:])))
    return fn, em, list(fn.args[len(dtypes):len(fn.args) - n_sizes])


def global_array(module: ir.Module, name: str, value: np.ndarray) -> ir.GlobalVariable:
    """A private constant holding `value` (float32 or int64), 64-byte aligned."""
    flat = np.ascontiguousarray(value).reshape(-1)
    ety = I64 if flat.dtype.kind in "iu" else F32
    data = [int(v) for v in flat] if ety == I64 else [float(v) for v in flat.astype(np.float32)]
    ty = ir.ArrayType(ety, max(len(data), 1))
    g = ir.GlobalVariable(module, ty, name)
    g.global_constant = True
    g.linkage = "private"
    g.unnamed_addr = True
    g.align = 64
    g.initializer = ir.Constant(ty, data or [0])
    return g


__all__ = ["Ref", "Emitter", "kernel_function", "global_array", "F32", "I64", "I8", "I32",
           "VOID", "FLAGS", "WIDTH", "vec", "elem_type"]
