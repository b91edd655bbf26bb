"""`model(x)` on arrays runs the reference interpreter, as its docstring says."""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn


def test_calling_a_model_on_arrays_is_the_interpreter() -> None:
    x = gr.Input("B", "T", 3, name="x")
    m = gr.gModule([x], [nn.Recurrent(gr.cells.RNN(3, 4))(x)])
    v = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(m(v), gr.interpret(m, v))
    doc = gr.gModule.forward.__doc__ + gr.gModule.__doc__
    assert "interpreter" in doc and "gr.compile" in doc
    assert "compiled model, if any" not in doc
