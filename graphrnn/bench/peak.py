"""`graphrnn bench --peak`: the single-core float32 FMA throughput of this machine, measured.

A JIT-compiled loop (through graphrnn's own llvmlite engine) keeps `chains` independent
`<width x float>` accumulators in registers and applies `llvm.fma` to each of them `unroll`
times per iteration; the chains are independent so the FMA pipes never wait on latency:

    for i in range(n):                      # the reference loop
        for u in range(unroll):
            for k in range(chains):
                acc[k] = acc[k] * 0.75 + 0.25  # one fused multiply-add on `width` lanes

FLOPs = 2 * n * unroll * chains * width. The multiplier, the addend and each chain's start
are read from memory at run time, so the compiler cannot fold a chain whose value it could
predict (a chain starting at 1.0, the fixed point of acc * 0.75 + 0.25, would be folded
away and its FMAs counted without being run); `fma_count` checks the compiled loop. The
peak is the best of many short runs (about a millisecond each): noise only ever slows a run
down, and on a shared machine a short run often fits in one uninterrupted time slice where
a long one never does.
"""
from __future__ import annotations

import ctypes
import functools
import time
from typing import Any, Callable

import numpy as np

from ..engine import shared_engine
from ..isa import current_isa

VARIANTS = ((8, 12), (16, 12), (8, 16))     # (vector width in floats, independent chains)
UNROLL = 4


def fma_ir(width: int, chains: int, unroll: int = UNROLL) -> str:
    """LLVM IR of `void peak_fma(i64 n, float* in, float* out)`: `in` holds the multiplier,
    the addend and the chains' start values (`peak_inputs`); out[0] gets a lane of the sum."""
    vt = f"<{width} x float>"
    mask = f"<{width} x i32> zeroinitializer"

    def splat(name: str, index: int) -> list[str]:
        return [f"  %{name}.p = getelementptr float, float* %in, i64 {index}",
                f"  %{name}.s = load float, float* %{name}.p",
                f"  %{name}.v = insertelement {vt} undef, float %{name}.s, i32 0",
                f"  %{name} = shufflevector {vt} %{name}.v, {vt} undef, {mask}"]
    lines = [f"declare {vt} @llvm.fma.v{width}f32({vt}, {vt}, {vt})",
             "define void @peak_fma(i64 %n, float* noalias %in, float* noalias %out) {",
             "entry:"]
    lines += splat("a", 0) + splat("b", 1)
    for k in range(chains):
        lines += splat(f"start{k}", 2 + k)
    lines += ["  br label %loop", "loop:", "  %i = phi i64 [0, %entry], [%i.next, %loop]"]
    for k in range(chains):
        lines.append(f"  %acc{k}.0 = phi {vt} [%start{k}, %entry], [%acc{k}.{unroll}, %loop]")
    for u in range(1, unroll + 1):
        for k in range(chains):
            lines.append(f"  %acc{k}.{u} = call {vt} @llvm.fma.v{width}f32("
                         f"{vt} %acc{k}.{u - 1}, {vt} %a, {vt} %b)")
    lines += ["  %i.next = add nsw i64 %i, 1",
              "  %more = icmp slt i64 %i.next, %n",
              "  br i1 %more, label %loop, label %done", "done:"]
    total = f"%acc0.{unroll}"
    for k in range(1, chains):
        lines.append(f"  %sum{k} = fadd {vt} {total}, %acc{k}.{unroll}")
        total = f"%sum{k}"
    lines += [f"  %lane = extractelement {vt} {total}, i32 0",
              "  store float %lane, float* %out", "  ret void", "}"]
    return "\n".join(lines) + "\n"


def peak_inputs(chains: int) -> np.ndarray:
    """The loop's `in`: multiplier 0.75, addend 0.25 (every chain converges to 1, never
    subnormal), and distinct start values."""
    return np.array([0.75, 0.25] + [1.0 + (k + 1) / 1024 for k in range(chains)], np.float32)


@functools.lru_cache(maxsize=None)
def _compiled(width: int, chains: int, unroll: int, isa: str) -> Any:
    """The loop's object code and assembly for the ISA named `isa` (the current one)."""
    return shared_engine().compile_to_object(fma_ir(width, chains, unroll), assembly=True)


def fma_count(width: int, chains: int, unroll: int = UNROLL) -> float:
    """How many `width`-lane FMAs the compiled loop holds (chains * unroll when none was
    folded away; a 16-lane FMA built for 8-lane registers is two instructions of 8)."""
    asm = _compiled(width, chains, unroll, current_isa().describe()).asm
    lanes = {"%zmm": 16, "%ymm": 8, "%xmm": 4}
    total = 0
    for line in (asm or "").splitlines():
        if line.strip().startswith("vfmadd"):
            total += next((n for reg, n in lanes.items() if reg in line), 1)
    return total / width


def fma_kernel(width: int, chains: int) -> Callable[[int], float]:
    """The compiled loop as `run(n) -> seconds`."""
    compiled = _compiled(width, chains, UNROLL, current_isa().describe())
    library = shared_engine().load(compiled.obj)
    fn = library.function("peak_fma", None, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p)
    inputs = peak_inputs(chains)
    out = np.zeros(1, np.float32)

    def run(n: int) -> float:
        t0 = time.perf_counter()
        fn(n, inputs.ctypes.data, out.ctypes.data)
        return time.perf_counter() - t0
    return run


def _iterations(run: Callable[[int], float], seconds: float) -> int:
    """Loop iterations that take about `seconds` on this machine."""
    n = 1000
    while run(n) < seconds / 4 and n < 1 << 40:
        n *= 4
    return max(1000, int(n * seconds / max(run(n), 1e-9)))


def measure_peak(seconds: float = 0.001, repeats: int = 60,
                 variants: tuple[tuple[int, int], ...] | None = None) -> dict:
    """GFLOP/s of each (width, chains) variant (best of `repeats` runs of about `seconds`);
    `gflops` is the best of them all. By default the variants whose vectors the current ISA
    has (graphrnn.isa: no 16-float vectors for an AVX2 target), so the peak is the one its
    kernels can reach."""
    if variants is None:
        variants = tuple(v for v in VARIANTS if v[0] <= current_isa().vector_width)
    results = []
    for width, chains in variants:
        run = fma_kernel(width, chains)
        fmas = fma_count(width, chains)         # as compiled: what the loop really runs
        n = _iterations(run, seconds)
        best = min(run(n) for _ in range(repeats))
        results.append({"width": width, "chains": chains, "iterations": n,
                        "fmas_per_iteration": fmas,
                        "gflops": 2 * width * fmas * n / best / 1e9})
    top = max(results, key=lambda r: r["gflops"])
    return {"gflops": top["gflops"], "best": f"<{top['width']} x float> x {top['chains']}",
            "variant": [top["width"], top["chains"]], "variants": results,
            "isa": current_isa().describe()}


def peak_sampler(width: int, chains: int, seconds: float = 0.005
                 ) -> tuple[Callable[[], Any], float]:
    """(call, GFLOP per call): the FMA loop sized to about `seconds` a call, to be timed
    among a row's implementations (its best sample there is the peak under the row's
    conditions: the same minutes, the same clock, the same neighbours)."""
    run = fma_kernel(width, chains)
    n = _iterations(run, seconds)
    return (lambda: run(n)), 2 * width * fma_count(width, chains) * n / 1e9


def format_peak(peak: dict) -> str:
    lines = [f"single-core FMA peak of {peak.get('isa', 'the host')} code (JIT-compiled "
             "llvm.fma chains, best of repeats):"]
    for r in peak["variants"]:
        fmas = r.get("fmas_per_iteration")
        lines.append(f"  <{r['width']:>2} x float> x {r['chains']:>2} chains: "
                     f"{r['gflops']:7.1f} GFLOP/s"
                     + (f"  ({fmas:.0f} FMAs an iteration, as compiled)" if fmas else ""))
    lines.append(f"peak: {peak['gflops']:.1f} GFLOP/s ({peak['best']})")
    return "\n".join(lines)


__all__ = ["measure_peak", "peak_sampler", "format_peak", "fma_ir", "fma_kernel", "fma_count",
           "peak_inputs"]
