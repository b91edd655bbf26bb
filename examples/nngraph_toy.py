"""The Torch nngraph tutorial's toy RNN: hidden 26, length 3, one Linear(27, 26) tied across
the three hand-unrolled steps and Linear(26, 1) on the last state: 755 parameters, trained
with plain SGD (batch 20, learning rate 0.02) to regress the sum of the three inputs.

    python examples/nngraph_toy.py
"""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.optim import SGD
from graphrnn.train import InterpretedStep


def build(ni: int = 1, nh: int = 26, no: int = 1, steps: int = 3) -> gr.gModule:
    x = gr.Input("B", steps, ni, name="x")
    h0 = gr.Input("B", nh, name="h0")
    xs = nn.SplitTable(1)(x)
    step = nn.Linear(ni + nh, nh)           # one module, called at every step: tied
    h = h0
    for t in range(steps):
        h = nn.Tanh()(step(nn.JoinTable(1)([h, xs[t]]))).annotate(name=f"h{t + 1}")
    return gr.gModule([x, h0], [nn.Linear(nh, no)(h)], name="toy_rnn")


def main() -> None:
    gr.manual_seed(0)
    model = build()
    params, grads = model.parameters()
    print(f"{params.size} parameters in one flat vector; each of the 4 tensors is a view")
    params[...] = np.random.default_rng(0).uniform(-0.1, 0.1, params.size)
    rng = np.random.default_rng(1)
    step = InterpretedStep(model, gr.MSECriterion())
    opt = SGD(model.parameters(), lr=0.02)
    h0 = np.zeros((20, 26), np.float32)
    for it in range(1, 301):
        x = rng.uniform(-1, 1, (20, 3, 1)).astype(np.float32)
        loss = step(x, h0, target=x.sum(axis=1))
        opt.step()
        if it in (1, 30, 100, 300):
            print(f"iteration {it:3d}: MSE {loss:.4f}")


if __name__ == "__main__":
    main()
