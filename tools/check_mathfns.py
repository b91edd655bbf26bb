"""Exhaustive accuracy check and micro-benchmark of the inline float32 tanh and sigmoid.

    python tools/check_mathfns.py check tanh [--chunk-bits 24]  # every positive float32 (odd)
    python tools/check_mathfns.py check sigmoid                 # every float32
    python tools/check_mathfns.py bench tanh [--isa avx2]       # ns per element, 64 x 2048

`check` runs the JIT-compiled emitter of mathfns (`new`: 16-wide vectors, scalar tail) and the
one it replaced (`old`, kept here for the comparison) over all bit patterns (tanh: those with
the sign bit clear, tanh being odd to the bit), in chunks, against float64 numpy, and reports
the max distance in ulps to the correctly rounded float32 result where the result is at least
2^-126, the max error in ulps of the exact result, the max relative error, the error below
2^-126 (ulps for tanh, whose tiny results are exact; absolute for sigmoid), and NaN mismatches.
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
from graphrnn.compiler.codegen.mathfns import FLAGS, emit_sigmoid, emit_tanh
from graphrnn.isa import resolve_isa
from graphrnn.runtime.jit import Engine
from graphrnn.testing.apply_kernel import Emitter, build_apply

FLT_MIN = float(np.finfo(np.float32).tiny)

_OLD_POLY = (-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2, 1.33314422036e-1,
             -3.33332819422e-1)


def _exp_fast(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x) for the old tanh and sigmoid: results below FLT_MIN become FLT_MIN."""
    n, p = mathfns._exp_reduced(builder, mathfns._clamp(builder, x, -87.33654, 89.0))
    return builder.fmul(p, mathfns._pow2(builder, n), flags=FLAGS)


def old_sigmoid(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The sigmoid before the one with a single fma for 1 + 2**n exp(r): 1 / (1 + exp(-x))."""
    one = mathfns._like(x, 1.0)
    e = _exp_fast(builder, builder.fneg(x, flags=FLAGS))
    return builder.fdiv(one, builder.fadd(one, e, flags=FLAGS), flags=FLAGS)


def old_tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The tanh before the rational one: an odd polynomial for |x| < 0.625, else
    1 - 2 / (exp(2|x|) + 1), signed."""
    like, fma = mathfns._like, mathfns._fma
    a = mathfns._call(builder, "fabs", x)
    z = builder.fmul(a, a, flags=FLAGS)
    az = builder.fmul(a, z, flags=FLAGS)
    small = fma(builder, mathfns._horner(builder, z, _OLD_POLY), az, a)
    e = _exp_fast(builder, builder.fadd(a, a, flags=FLAGS))
    two_over = builder.fdiv(like(x, 2.0), builder.fadd(e, like(x, 1.0), flags=FLAGS),
                            flags=FLAGS)
    large = builder.fsub(like(x, 1.0), two_over, flags=FLAGS)
    is_small = builder.fcmp_ordered("<", a, like(x, 0.625))
    return mathfns._call(builder, "copysign", builder.select(is_small, small, large), x)


VARIANTS: dict[str, dict[str, Emitter]] = {
    "tanh": {"old": old_tanh, "new": emit_tanh},
    "sigmoid": {"old": old_sigmoid, "new": emit_sigmoid},
}


def compile_variants(function: str, isa: str = "host"
                     ) -> dict[str, Callable[[np.ndarray], np.ndarray]]:
    """name -> f(x: float32 array) for every variant of `function`, vectors of the ISA's width."""
    engine = Engine(resolve_isa(isa))
    width = engine.isa.vector_width
    module = ir.Module("mathfns_check")
    for name, emit in VARIANTS[function].items():
        build_apply(module, f"{function}_{name}", emit, width)
    library = engine.load(engine.compile_to_object(str(module)).obj)
    out = {}
    for name in VARIANTS[function]:
        fn = library.function(f"{function}_{name}", None, ctypes.c_void_p, ctypes.c_void_p,
                              ctypes.c_int64)

        def run(x: np.ndarray, fn=fn, dst: np.ndarray | None = None) -> np.ndarray:
            x = np.ascontiguousarray(x, dtype=np.float32)
            dst = np.empty_like(x) if dst is None else dst
            fn(x.ctypes.data, dst.ctypes.data, x.size)
            return dst
        out[name] = run
    return out


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


REFERENCE = {"tanh": np.tanh, "sigmoid": _sigmoid64}


def check(function: str, chunk_bits: int) -> None:
    fns = compile_variants(function)
    stats = {name: {"ulps": 0, "tiny": 0.0, "exact": 0.0, "worst": 0.0, "bad": 0, "rel": 0.0}
             for name in fns}
    step = 1 << chunk_bits
    for start in range(0, 1 << (31 if function == "tanh" else 32), step):
        x = np.arange(start, start + step, dtype=np.uint64).astype(np.uint32).view(np.float32)
        with np.errstate(invalid="ignore"):      # signalling NaNs
            ref = REFERENCE[function](x.astype(np.float64))
        ref32 = ref.astype(np.float32)
        nan = np.isnan(x)
        normal = ~nan & (np.abs(ref) >= FLT_MIN)
        tiny = ~nan & ~normal
        spacing = np.spacing(np.where(normal, np.abs(ref32), np.float32(FLT_MIN)))
        for name, fn in fns.items():
            y = fn(x)
            s = stats[name]
            s["bad"] += int(np.count_nonzero(np.isnan(y) != nan))
            dist = np.abs(y.view(np.int32).astype(np.int64) - ref32.view(np.int32))
            if normal.any():
                k = int(np.argmax(np.where(normal, dist, -1)))
                if dist[k] > s["ulps"]:
                    s["ulps"], s["worst"] = int(dist[k]), float(x[k])
                err = np.abs(y[normal] - ref[normal])
                s["exact"] = max(s["exact"], float((err / spacing[normal]).max()))
                s["rel"] = max(s["rel"], float((err / np.abs(ref[normal])).max()))
            if tiny.any():
                below = dist[tiny] if function == "tanh" else np.abs(y[tiny] - ref[tiny])
                s["tiny"] = max(s["tiny"], float(below.max()))
    special = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, 1e-45, -1e-45, 1e-40, -1e-40,
                        100.0, -200.0], dtype=np.float32)
    below = "ulp" if function == "tanh" else "absolute"
    for name, fn in fns.items():
        s = stats[name]
        print(f"{function} {name}: max {s['ulps']} ulp from the correctly rounded result where "
              f"|result| >= 2^-126 (at x = {s['worst']!r}), {s['exact']:.3f} ulp from the exact "
              f"one, relative error {s['rel']:.3g}; below: {s['tiny']:.3g} {below}; NaN "
              f"mismatches {s['bad']}")
        print(f"    at {special.tolist()}: {fn(special).tolist()}")


def bench(function: str, isa: str) -> None:
    fns = compile_variants(function, isa)
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
        print(f"{function} {isa} {name}: {np.median(ts):.3f} ns/element (min {min(ts):.3f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("check", "bench"))
    parser.add_argument("function", choices=sorted(VARIANTS))
    parser.add_argument("--chunk-bits", type=int, default=24)
    parser.add_argument("--isa", default="host")
    args = parser.parse_args()
    if args.what == "check":
        check(args.function, args.chunk_bits)
    else:
        bench(args.function, args.isa)


if __name__ == "__main__":
    main()
