"""Quick start: build a small LSTM model, run it with the reference interpreter, print its
summary, and save and load it.

    python examples/quickstart.py
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

import graphrnn as gr
from graphrnn import nn


def build_model() -> gr.gModule:
    """x [B, T, 3] -> a 2-layer LSTM (hidden 16) -> one prediction per step [B, T, 1]."""
    gr.manual_seed(0)
    x = gr.Input("B", "T", 3, name="x")
    h = nn.Recurrent(gr.cells.LSTM(3, 16), num_layers=2)(x)
    y = nn.Linear(16, 1, name="readout")(h)
    return gr.gModule([x], [y], name="lstm_reader")


def main() -> None:
    model = build_model()
    print(gr.viz.summary(model))

    xs = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    out = gr.interpret(model, xs)               # the numpy reference interpreter
    print(f"\noutput {out.shape}, first sequence, every step:")
    print(np.array2string(out[0, :, 0], precision=4))

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm_reader.grnn")
        gr.save(model, path)                    # graph as JSON + parameters, one atomic file
        again = gr.load(path)
        same = np.array_equal(gr.interpret(again, xs), out)
        print(f"\nsaved {os.path.getsize(path):,} bytes; loaded model gives the same output: "
              f"{same}")


if __name__ == "__main__":
    main()
