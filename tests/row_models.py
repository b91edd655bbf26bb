"""Models and data shared by the tests of batch splits (threads.py, micro_batch.py)."""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn


def tagger(d: int, h: int) -> gr.gModule:
    """LSTM over rows of their own lengths, a Linear to 3 classes per step."""
    gr.manual_seed(4)
    x = gr.Input("B", "T", d, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    return gr.gModule([x, n], [nn.Linear(h, 3)(nn.Recurrent(gr.cells.LSTM(d, h))([x, n]))])


def sequences(rng: np.random.Generator, b: int, t: int, d: int) -> np.ndarray:
    """[b, t, d] float32 normal draws."""
    return rng.standard_normal((b, t, d)).astype(np.float32)


def grads(model: gr.gModule) -> np.ndarray:
    """A copy of the model's flat gradient."""
    return model.parameters()[1].copy()
