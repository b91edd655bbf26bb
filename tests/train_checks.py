"""A compiled MSE training step checked against the interpreter's, shared by tests."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.train import InterpretedStep


def check_mse_step(model: gr.gModule, x: np.ndarray, y: np.ndarray) -> None:
    """One compiled training step of `model` gives the interpreter's loss and leaves the
    parameters where the interpreted step leaves them (rtol 1e-4)."""
    want_loss = InterpretedStep(model, gr.MSECriterion())(x, target=y)
    want = model.parameters()[1].copy()
    loss = gr.compile(model, loss=gr.MSECriterion(), train=True)(x, target=y)
    assert loss == pytest.approx(want_loss, rel=1e-4)
    np.testing.assert_allclose(model.parameters()[1], want, rtol=1e-4, atol=1e-6)
