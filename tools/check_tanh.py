"""Exhaustive accuracy check and micro-benchmark of the inline float32 tanh (mathfns).

    python tools/check_tanh.py check [--chunk-bits 24]   # every positive float32 (tanh is odd)
    python tools/check_tanh.py bench [--isa avx2]       # ns per element, 64 x 2048 floats

`check` runs the JIT-compiled emitter (16-wide vectors, scalar tail) over all 2^31 bit patterns
with the sign bit clear, in chunks, against float64 np.tanh, and reports for the current
emitter (`new`) and the one it replaced (`old`, kept here for the comparison): the max distance
in ulps to the correctly rounded float32 result (where |tanh| >= 2^-126 and below), the max
error in ulps of the exact result, and whether +-0, +-inf, NaN and subnormals come out right.
`bench` times each variant over a 64 x 2048 array (L2-resident), CPU time, median of 15 runs.
"""

from __future__ import annotations

import argparse
import ctypes
import time
from typing import Callable

import numpy as np
from llvmlite import ir

from graphrnn.compiler.codegen import mathfns
from graphrnn.compiler.codegen.mathfns import FLAGS, emit_tanh
from graphrnn.isa import resolve_isa
from graphrnn.runtime.jit import Engine

F32 = ir.FloatType()
I64 = ir.IntType(64)
FLT_MIN = float(np.finfo(np.float32).tiny)
Emitter = Callable[[ir.IRBuilder, ir.Value], ir.Value]

_OLD_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
             -3.33332819422e-1)


def old_tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The tanh before the rational one: an odd polynomial for |x| < 0.625, else
    1 - 2 / (exp(2|x|) + 1), signed."""
    like, fma = mathfns._like, mathfns._fma
    a = mathfns._call(builder, "fabs", x)
    z = builder.fmul(a, a, flags=FLAGS)
    az = builder.fmul(a, z, flags=FLAGS)
    small = fma(builder, mathfns._horner(builder, z, _OLD_POLY), az, a)
    e = mathfns._exp_fast(builder, builder.fadd(a, a, flags=FLAGS))
    two_over = builder.fdiv(like(x, 2.0), builder.fadd(e, like(x, 1.0), flags=FLAGS),
                            flags=FLAGS)
    large = builder.fsub(like(x, 1.0), two_over, flags=FLAGS)
    is_small = builder.fcmp_ordered("<", a, like(x, 0.625))
    return mathfns._call(builder, "copysign", builder.select(is_small, small, large), x)


def estrin_tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """emit_tanh's rational with P' and Q' by Estrin's scheme (shorter chains, one more mul)."""
    like, fma = mathfns._like, mathfns._fma
    p, q = mathfns._TANH_P, mathfns._TANH_Q
    c = mathfns._clamp(builder, x, -mathfns._TANH_CLAMP, mathfns._TANH_CLAMP)
    z = builder.fmul(c, c, flags=FLAGS)
    z2 = builder.fmul(z, z, flags=FLAGS)
    e0 = fma(builder, like(x, p[2]), z, like(x, p[1]))
    e1 = fma(builder, like(x, p[4]), z, like(x, p[3]))
    pp = fma(builder, fma(builder, like(x, p[5]), z2, e1), z2, e0)
    f0 = fma(builder, like(x, q[2]), z, like(x, q[1]))
    f1 = fma(builder, like(x, q[4]), z, like(x, q[3]))
    qq = fma(builder, f1, z2, f0)
    num = fma(builder, builder.fmul(c, z, flags=FLAGS), pp, c)
    den = fma(builder, z, qq, like(x, 1.0))
    return builder.fdiv(num, den, flags=FLAGS)


VARIANTS: dict[str, Emitter] = {"old": old_tanh, "new": emit_tanh}


def _build_apply(module: ir.Module, name: str, emit: Emitter, width: int) -> None:
    """void name(float* src, float* dst, i64 n): dst[i] = tanh(src[i]), width at a time, then
    one at a time."""
    fp = F32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(ir.VoidType(), [fp, fp, I64]), name)
    src, dst, n = fn.args
    entry, vcond, vbody, tcond, tbody, done = (fn.append_basic_block(s) for s in (
        "entry", "vcond", "vbody", "tcond", "tbody", "done"))
    b = ir.IRBuilder(entry)
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
    j.add_incoming(i, vcond)
    b.cbranch(b.icmp_signed("<", j, n), tbody, done)
    b.position_at_end(tbody)
    b.store(emit(b, b.load(b.gep(src, [j]))), b.gep(dst, [j]))
    j.add_incoming(b.add(j, ir.Constant(I64, 1)), tbody)
    b.branch(tcond)
    b.position_at_end(done)
    b.ret_void()


def compile_variants(isa: str = "host") -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """name -> f(x: float32 array) -> tanh(x), for every variant, vectors of the ISA's width."""
    engine = Engine(resolve_isa(isa))
    width = engine.isa.vector_width
    module = ir.Module("tanh_check")
    for name, emit in VARIANTS.items():
        _build_apply(module, f"tanh_{name}", emit, width)
    library = engine.load(engine.compile_to_object(str(module)).obj)
    out = {}
    for name in VARIANTS:
        fn = library.function(f"tanh_{name}", None, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int64)

        def run(x: np.ndarray, fn=fn, dst: np.ndarray | None = None) -> np.ndarray:
            x = np.ascontiguousarray(x, dtype=np.float32)
            dst = np.empty_like(x) if dst is None else dst
            fn(x.ctypes.data, dst.ctypes.data, x.size)
            return dst
        out[name] = run
    return out


def check(chunk_bits: int) -> None:
    fns = compile_variants()
    stats = {name: {"ulps": 0, "ulps_tiny": 0, "exact_err": 0.0, "worst": 0.0, "bad": 0,
                    "rel": 0.0}
             for name in fns}
    step = 1 << chunk_bits
    for start in range(0, 1 << 31, step):
        x = np.arange(start, start + step, dtype=np.uint32).view(np.float32)
        with np.errstate(invalid="ignore"):      # signalling NaNs
            ref = np.tanh(x.astype(np.float64))
        ref32 = ref.astype(np.float32)
        nan = np.isnan(x)
        normal = ~nan & (ref >= FLT_MIN)
        tiny = ~nan & ~normal
        spacing = np.spacing(np.where(normal, ref32, np.float32(FLT_MIN)).astype(np.float32))
        for name, fn in fns.items():
            y = fn(x)
            s = stats[name]
            s["bad"] += int(np.count_nonzero(np.isnan(y) != nan))
            dist = np.abs(y.view(np.int32).astype(np.int64) - ref32.view(np.int32))
            if normal.any():
                k = int(np.argmax(np.where(normal, dist, -1)))
                if dist[k] > s["ulps"]:
                    s["ulps"], s["worst"] = int(dist[k]), float(x[k])
                err = np.abs(y[normal] - ref[normal]) / spacing[normal].astype(np.float64)
                s["exact_err"] = max(s["exact_err"], float(err.max()))
                rel = np.abs(y[normal] - ref[normal]) / ref[normal]
                s["rel"] = max(s["rel"], float(rel.max()))
            if tiny.any():
                s["ulps_tiny"] = max(s["ulps_tiny"], int(dist[tiny].max()))
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, -1e-40],
                       dtype=np.float32)
    for name, fn in fns.items():
        s = stats[name]
        y = fn(special)
        print(f"{name}: max {s['ulps']} ulp from the correctly rounded result where "
              f"|tanh| >= 2^-126 (at x = {s['worst']!r}), {s['exact_err']:.3f} ulp from the "
              f"exact one, relative error {s['rel']:.3g}; {s['ulps_tiny']} ulp below; NaN "
              f"mismatches {s['bad']}")
        print(f"    tanh({special.tolist()}) = {y.tolist()}")


def bench(isa: str) -> None:
    fns = compile_variants(isa)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 2048)).astype(np.float32) * 3
    dst = np.empty_like(x)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(15):
        for name, fn in fns.items():
            t0 = time.thread_time()
            for _ in range(200):
                fn(x, dst=dst)
            times[name].append((time.thread_time() - t0) / (200 * x.size) * 1e9)
    for name, ts in times.items():
        print(f"{isa} {name}: {np.median(ts):.3f} ns/element (min {min(ts):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("check", "bench"))
    parser.add_argument("--chunk-bits", type=int, default=24)
    parser.add_argument("--isa", default="host")
    args = parser.parse_args()
    if args.what == "check":
        check(args.chunk_bits)
    else:
        bench(args.isa)


if __name__ == "__main__":
    main()
