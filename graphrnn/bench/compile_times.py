"""The bench's "compile" section: cold compile times of whole models, forward and training.

    2-layer bidirectional LSTM with lengths   x[B, T, 32] -> LSTM(32, 64) x 2 x 2 -> Linear
    the nngraph toy unrolled by hand, T = 100  examples/nngraph_toy.py's `build(steps=100)`

Each time is one model built afresh and compiled into an empty kernel cache (a temporary
directory: nothing from an earlier compile is reused), from `gr.compile` to the program
ready to run, in this process (imports and LLVM's one-time set-up excluded); the median of
`repeats` such compiles is reported, the minimum too in --json.
"""
from __future__ import annotations

import statistics
import tempfile
import time
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import nn
from ..runtime.cache import KernelCache

TOY_STEPS = 100
B = 4


def bidirectional_lstm() -> tuple[gr.gModule, list[np.ndarray], np.ndarray]:
    """Two layers, both directions, rows of their own lengths; a linear readout per step."""
    x = gr.Input("B", "T", 32, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    seq = nn.Recurrent(gr.cells.LSTM(32, 64), num_layers=2, bidirectional=True)([x, n])
    model = gr.gModule([x, n], [nn.Linear(128, 1)(seq)], name="bilstm")
    steps = 10
    inputs = [np.zeros((B, steps, 32), np.float32), np.full(B, steps, np.int64)]
    return model, inputs, np.zeros((B, steps, 1), np.float32)


def unrolled_toy(steps: int = TOY_STEPS) -> tuple[gr.gModule, list[np.ndarray], np.ndarray]:
    """The nngraph tutorial's RNN (hidden 26) unrolled by hand over `steps` steps."""
    x, h0 = gr.Input("B", steps, 1, name="x"), gr.Input("B", 26, name="h0")
    xs = nn.SplitTable(1)(x)
    step = nn.Linear(27, 26)
    h = h0
    for t in range(steps):
        h = nn.Tanh()(step(nn.JoinTable(1)([h, xs[t]])))
    model = gr.gModule([x, h0], [nn.Linear(26, 1)(h)], name="toy_rnn")
    inputs = [np.zeros((B, steps, 1), np.float32), np.zeros((B, 26), np.float32)]
    return model, inputs, np.zeros((B, 1), np.float32)


MODELS: dict[str, Callable[[], tuple[gr.gModule, list[np.ndarray], np.ndarray]]] = {
    "lstm 2 layers, bidirectional, lengths": bidirectional_lstm,
    f"nngraph toy unrolled, T={TOY_STEPS}": unrolled_toy,
}


def cold_compile_s(build: Callable[[], Any], train: bool) -> float:
    """Seconds to compile a freshly built model into an empty kernel cache."""
    model, inputs, target = build()
    with tempfile.TemporaryDirectory() as tmp:
        cache = KernelCache(tmp)
        start = time.perf_counter()
        if train:
            step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
            step.program_for(inputs + [target])
        else:
            gr.compile(model, cache=cache).program_for(inputs)
        return time.perf_counter() - start


def compile_section(repeats: int = 3) -> dict[str, Any]:
    """{model: {mode: {"median_s", "min_s", "runs"}}} for every model, forward and training."""
    out: dict[str, Any] = {}
    for name, build in MODELS.items():
        out[name] = {}
        for mode, train in (("forward", False), ("training step", True)):
            runs = [cold_compile_s(build, train) for _ in range(repeats)]
            out[name][mode] = {"median_s": statistics.median(runs), "min_s": min(runs),
                               "runs": runs}
    return out


def bench_compile_section(args: Any) -> dict[str, Any] | None:
    """The section as `graphrnn bench` runs it: 3 compiles each, 1 with --quick."""
    return compile_section(1 if getattr(args, "quick", False) else 3)


def format_compile_section(result: dict[str, Any]) -> str:
    """The section's lines (empty when it did not run), to follow the bench's table."""
    section = result.get("compile_models")
    if not section:
        return ""
    lines = ["", "", "compile (cold: empty kernel cache, median of "
             f"{len(next(iter(next(iter(section.values())).values()))['runs'])})"]
    width = max(len(name) for name in section)
    for name, modes in section.items():
        lines.append(f"  {name:<{width}}  " + "   ".join(
            f"{mode} {m['median_s']:6.2f} s" for mode, m in modes.items()))
    return "\n".join(lines)


__all__ = ["compile_section", "bench_compile_section", "format_compile_section", "MODELS",
           "cold_compile_s"]
