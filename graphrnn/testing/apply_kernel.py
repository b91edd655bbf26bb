"""A JIT-able test kernel that applies one inline math emitter (compiler/codegen/mathfns.py)
to an array: for the accuracy tests and tools/check_mathfns.py."""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

F32 = ir.FloatType()
I64 = ir.IntType(64)

Emitter = Callable[[ir.IRBuilder, ir.Value], ir.Value]


def build_apply(module: ir.Module, name: str, emit: Emitter, width: int) -> None:
    """void name(float* src, float* dst, i64 n): dst[i] = f(src[i]) in width-chunks + tail.

        i = 0
        while i + width <= n: dst[i:i+width] = f(src[i:i+width]); i += width
        while i < n: dst[i] = f(src[i]); i += 1
    """
    fp = F32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [fp, fp, I64]), name)
    src, dst, n = fn.args
    entry, tcond, tbody, done = (
        fn.append_basic_block(s) for s in ("entry", "tcond", "tbody", "done")
    )
    b = ir.IRBuilder(entry)
    if width == 1:
        b.branch(tcond)
    else:
        vcond, vbody = fn.append_basic_block("vcond"), fn.append_basic_block("vbody")
        b.branch(vcond)
        vty = ir.VectorType(F32, width)
        b.position_at_end(vcond)
        i = b.phi(I64)
        i.add_incoming(ir.Constant(I64, 0), entry)
        nxt = b.add(i, ir.Constant(I64, width))
        b.cbranch(b.icmp_signed("<=", nxt, n), vbody, tcond)
        b.position_at_end(vbody)
        vsrc = b.bitcast(b.gep(src, [i]), vty.as_pointer())
        vdst = b.bitcast(b.gep(dst, [i]), vty.as_pointer())
        b.store(emit(b, b.load(vsrc, align=4)), vdst, align=4)
        i.add_incoming(nxt, vbody)
        b.branch(vcond)

    b.position_at_end(tcond)
    j = b.phi(I64)
    j.add_incoming(i if width > 1 else ir.Constant(I64, 0), vcond if width > 1 else entry)
    b.cbranch(b.icmp_signed("<", j, n), tbody, done)
    b.position_at_end(tbody)
    b.store(emit(b, b.load(b.gep(src, [j]))), b.gep(dst, [j]))
    j.add_incoming(b.add(j, ir.Constant(I64, 1)), tbody)
    b.branch(tcond)
    b.position_at_end(done)
    b.ret_void()


__all__ = ["build_apply", "Emitter"]
