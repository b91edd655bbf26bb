"""The layer-normalised LSTM (graphrnn.zoo) against the built-in LSTM at the same sizes:
compiled forward and training step, one thread (gr.compile's default), interleaved medians.

    python examples/layernorm_lstm.py                 # (1, 100, 32, 64) and (32, 50, 256, 256)
    python examples/layernorm_lstm.py --repeats 50
    graphrnn profile examples/layernorm_lstm.py:model --batch 32 --steps 50   # per kernel
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.zoo import layernorm_lstm

CONFIGS = ((1, 100, 32, 64), (32, 50, 256, 256))     # (B, T, I, H)


def model() -> gr.gModule:
    """The zoo model at the second configuration's sizes (for `graphrnn profile`)."""
    return layernorm_lstm(256, 256)


def plain_lstm(input_size: int, hidden_size: int) -> gr.gModule:
    x = gr.Input("B", "T", input_size, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(input_size, hidden_size))(x)])


def elapsed_ms(fn, *args) -> float:
    t0 = time.perf_counter()
    fn(*args)
    return (time.perf_counter() - t0) * 1e3


def compare(b: int, t: int, i: int, h: int, repeats: int) -> dict[str, tuple[float, float]]:
    """{'forward' | 'train': (plain ms, layer-norm ms)}, medians of interleaved calls."""
    rng = np.random.default_rng(0)
    xs = rng.standard_normal((b, t, i)).astype(np.float32)
    ys = rng.standard_normal((b, t, h)).astype(np.float32)
    runs = {}
    for name, m in (("plain", plain_lstm(i, h)), ("ln", layernorm_lstm(i, h))):
        runs[name, "forward"] = (gr.compile(m), (xs,))
        runs[name, "train"] = (gr.compile(m, loss=gr.MSECriterion(), train=True), (xs, ys))
    times: dict = {k: [] for k in runs}
    for _ in range(repeats + 2):            # two warm-up rounds, dropped
        for k, (fn, args) in runs.items():
            times[k].append(elapsed_ms(fn, *args))
    return {what: (float(np.median(times["plain", what][2:])),
                   float(np.median(times["ln", what][2:]))) for what in ("forward", "train")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=30)
    args = ap.parse_args()
    print(f"{'(B, T, I, H)':<20} {'step':<8} {'LSTM ms':>9} {'LN-LSTM ms':>11} {'ratio':>6}")
    for cfg in CONFIGS:
        for what, (plain, ln) in compare(*cfg, repeats=args.repeats).items():
            print(f"{str(cfg):<20} {what:<8} {plain:9.3f} {ln:11.3f} {ln / plain:6.2f}")


if __name__ == "__main__":
    main()
