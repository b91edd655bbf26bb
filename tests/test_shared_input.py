"""One input, two models: an encoder and a full model over the same `gr.Input` (Keras style)."""
from __future__ import annotations

import gc

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

D, H = 3, 5


def parts():
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(gr.cells.GRU(D, H), return_sequences=False, name="gru")(x)
    y = nn.Linear(H, 2)(h)
    return x, h, y


@pytest.mark.parametrize("encoder_first", [True, False])
def test_both_orders_close_and_share_the_weights(encoder_first: bool) -> None:
    x, h, y = parts()
    if encoder_first:
        enc = gr.gModule([x], [h])
        full = gr.gModule([x], [y])
    else:
        full = gr.gModule([x], [y])
        enc = gr.gModule([x], [h])
    gc.collect()
    assert enc.param_count() + 2 * H + 2 == full.param_count()
    v = np.random.default_rng(0).standard_normal((2, 4, D)).astype(np.float32)
    keys = [k for k in enc.state_dict() if k.startswith("gru")]
    for k in keys:
        np.testing.assert_array_equal(enc.state_dict()[k], full.state_dict()[k])
    head = full.named_parameters()
    np.testing.assert_allclose(full(v), enc(v) @ head["linear.weight"].T + head["linear.bias"],
                               rtol=1e-5, atol=1e-6)


def test_a_third_model_over_the_same_nodes() -> None:
    x, h, y = parts()
    enc = gr.gModule([x], [h])
    full = gr.gModule([x], [y])
    again = gr.gModule([x], [y])
    v = np.ones((1, 2, D), np.float32)
    np.testing.assert_array_equal(full(v), again(v))
    assert enc(v).shape == (1, H)


def test_nodes_keep_no_users() -> None:
    x, h, _ = parts()
    assert not hasattr(x, "users") and not hasattr(h, "users")
