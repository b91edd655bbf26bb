"""Two-number addition (tiny-dnn's recurrent example): read two numbers in [-1, 1], one per
step, and output their sum from the last state.

    python examples/number_addition.py
"""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.datasets import number_pairs
from graphrnn.optim import Adam
from graphrnn.train import fit


def main() -> None:
    gr.manual_seed(0)
    x = gr.Input("B", "T", 1, name="numbers")
    last = nn.Recurrent(gr.cells.RNN(1, 32), return_sequences=False)(x)
    model = gr.gModule([x], [nn.Linear(32, 1)(last)], name="adder")
    data, sums = number_pairs(20000, 0)
    history = fit(model, gr.MSECriterion(), data, sums, epochs=20, batch_size=64,
                  optimizer=Adam(model.parameters(), lr=3e-3), progress=False)
    print(f"final training MSE {history.loss[-1]:.5f}")
    for a, b in [(0.1, 0.4), (-0.3, 0.8), (0.5, 0.5), (-1.0, -1.0), (1.0, 1.0)]:
        pred = float(model(np.array([[[a], [b]]], np.float32))[0, 0])
        print(f"{a:+.1f} + {b:+.1f} = {a + b:+.3f}  predicted {pred:+.3f}")


if __name__ == "__main__":
    main()
