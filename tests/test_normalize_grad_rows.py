"""normalize_grad takes its row statistics and its sums in one pass (emit_rows.py): the
same gradients as the interpreter, in a layer-normalised LSTM's training step and for rows
whose mean is large against their spread (exact products, double sums), with and without
centering (LayerNorm, RMSNorm)."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradients
from graphrnn.runtime.cache import KernelCache
from graphrnn.zoo import layernorm_lstm

RNG = np.random.default_rng(23)
D, H = 5, 8


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def check_training_step(model: gr.gModule, cache: KernelCache, x: np.ndarray, y: np.ndarray,
                        dtype: type = np.float32, atol: float = 1e-6) -> None:
    """The compiled step's loss and parameter gradient against the interpreter's."""
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    loss = step(x, y)
    _, want, _ = gradients(model, x, cotangents=[2 * (model(x) - y) / y.size], dtype=dtype)
    views = model.table.views(model.parameters()[1])
    for k, g in want.items():
        np.testing.assert_allclose(views[k], g, rtol=1e-4, atol=atol, err_msg=k)
    np.testing.assert_allclose(loss, np.mean((model(x) - y) ** 2), rtol=1e-5)


def test_the_layer_norm_lstm_training_step_matches_the_interpreter(cache: KernelCache
                                                                    ) -> None:
    model = layernorm_lstm(D, H)
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    for b, t in ((1, 4), (4, 7)):
        check_training_step(model, cache, randn(b, t, D), randn(b, t, H))


@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_normalize_grad_of_rows_far_from_zero(cache: KernelCache, norm: str) -> None:
    """mean(g * y) = rstd * (mean(g * x) - mean(x) * mean(g)) from double sums stays
    accurate when a row's mean is large against its spread."""
    x = gr.Input("B", "T", 16, name="x")
    module = nn.LayerNorm(16) if norm == "layer" else nn.RMSNorm(16)
    model = gr.gModule([x], [module(x)])
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape) * 0.5 + 1.0
    xs = (1000.0 + randn(3, 4, 16)).astype(np.float32)
    check_training_step(model, cache, xs, randn(3, 4, 16), dtype=np.float64, atol=1e-5)
