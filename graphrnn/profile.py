"""gr.profile: where the time of a compiled model goes, kernel by kernel, node by node.

    report = gr.profile(model, x, repeats=20)
    print(report)            # a table sorted by time, with percentages of the native call
    report.rows[0].nodes     # the IR nodes of the most expensive kernel

    graphrnn profile MODEL [--batch B --steps T --repeats N]     (cli.py)

The model is compiled in an instrumented variant: every kernel call, and every loop as a
whole, is bracketed by the CPU's cycle counter, and the cycles go into a counters array the
program receives in its io block (compiler/codegen/emit_profile.py). Kernels inside a loop body add
up over the steps (the `calls` column counts them per run). A loop's row is its own time (step
control, index arithmetic) without the kernels inside it, and `(entry)` is what the entry
point spends outside every kernel, so the rows add up to the whole native call. Weight packing
runs once per parameter update, outside the timed calls. The counters cost a few dozen cycles
per kernel call, which shows in models made of many tiny kernels.
"""
from __future__ import annotations

import ctypes
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from .compile import CompiledModel

CALIBRATE_SECONDS = 0.005


@dataclass(frozen=True)
class ProfileRow:
    """One kernel (or a loop's own time): its time per run and share of the native call."""
    kernel: str
    kind: str
    nodes: tuple[str, ...]
    calls: float                # per run
    ms: float                   # per run
    percent: float


@dataclass(frozen=True)
class Profile:
    """Rows sorted by time (largest first); `native_ms` is the entry point's time per run,
    `call_ms` the whole Python call's (validation and output allocation included)."""
    rows: tuple[ProfileRow, ...]
    native_ms: float
    call_ms: float
    repeats: int
    label: str = ""

    def __str__(self) -> str:
        head = (f"{self.label}{self.repeats} runs: {self.call_ms:.4f} ms per call, "
                f"{self.native_ms:.4f} ms in native code")
        lines = [head, f"{'ms':>10} {'%':>6} {'calls':>7}  {'kind':<6} {'kernel':<28} nodes"]
        for r in self.rows:
            calls = f"{r.calls:.0f}" if r.calls == int(r.calls) else f"{r.calls:.1f}"
            lines.append(f"{r.ms:10.4f} {r.percent:6.1f} {calls:>7}  {r.kind:<6} "
                         f"{r.kernel:<28} {', '.join(r.nodes)}")
        return "\n".join(lines)

    def by_node(self) -> dict[str, float]:
        """Percent of the native call per IR node (a kernel's share split over its nodes;
        the `(entry)` row belongs to no node)."""
        out: dict[str, float] = {}
        for r in self.rows:
            for name in r.nodes:
                out[name] = out.get(name, 0.0) + r.percent / len(r.nodes)
        return out


def profile(model: Any, *inputs: Any, repeats: int = 10, warmup: int = 2,
            cache: Any = None, specialize: Any = False) -> Profile:
    """Time every kernel of `model` compiled for `inputs` over `repeats` calls (`specialize`
    as for gr.compile: the program of the inputs' batch size)."""
    if repeats < 1:
        raise ValueError("repeats must be at least 1")
    compiled = CompiledModel(model, profile=True, cache=cache, specialize=specialize)
    program = compiled.program_for(inputs)
    for _ in range(max(warmup, 1)):             # the first call also packs the weights
        compiled(*inputs)
    program.counters[...] = 0
    start = time.perf_counter()
    for _ in range(repeats):
        compiled(*inputs)
    call_s = (time.perf_counter() - start) / repeats
    hz = _cycles_per_second(program)
    return summarize(program.exe.contract.profile, program.counters, hz, repeats, call_s * 1e3,
                     label=_label(model, inputs))


def summarize(records: Sequence[tuple[str, str, tuple[str, ...], int]], counters: np.ndarray,
              hz: float, repeats: int, call_ms: float, label: str = "") -> Profile:
    """Rows of own time from the counters: a loop's total minus its children's."""
    cycles = counters[0::2].astype(np.float64)
    calls = counters[1::2].astype(np.float64)
    own = cycles.copy()
    for i, (_, _, _, parent) in enumerate(records):
        if parent >= 0:
            own[parent] -= cycles[i]
    total = max(cycles[0], 1.0)
    to_ms = 1e3 / hz / repeats
    rows = []
    for i, (kernel, kind, nodes, _) in enumerate(records):
        name = "(entry)" if i == 0 else kernel
        if i == 0:
            kind, nodes = "", ()
        rows.append(ProfileRow(name, kind, tuple(nodes), calls[i] / repeats,
                               max(own[i], 0.0) * to_ms, 100.0 * own[i] / total))
    rows.sort(key=lambda r: -r.ms)
    return Profile(tuple(rows), cycles[0] * to_ms, call_ms, repeats, label)


def _cycles_per_second(program: Any) -> float:
    """The cycle counter's rate, measured against perf_counter over a few milliseconds."""
    clock = program.library.function(program.exe.contract.clock, ctypes.c_int64)
    t0, c0 = time.perf_counter(), clock()
    while time.perf_counter() - t0 < CALIBRATE_SECONDS:
        pass
    t1, c1 = time.perf_counter(), clock()
    return max(c1 - c0, 1) / (t1 - t0)


def _label(model: Any, inputs: Sequence[Any]) -> str:
    name = getattr(model, "name", None) or type(model).__name__
    shapes = ", ".join(str(tuple(np.shape(v))) for v in inputs)
    return f"profile of {name} on {shapes}: "


__all__ = ["profile", "Profile", "ProfileRow", "summarize"]
