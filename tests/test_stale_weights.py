"""A compiled model never answers with stale weights, whatever wrote them.

Each case writes the parameters by one route after the compiled model has run (and packed its
weights), then checks the next compiled call against the interpreter on the new weights.
"""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn

RNG = np.random.default_rng(5)
D, H = 4, 8


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def lstm() -> gr.gModule:
    x = gr.Input("B", "T", D, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(D, H), name="lstm")(x)])


def same(fast, model, x) -> None:
    np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)


def test_scaling_the_flat_vector_in_place(cache) -> None:
    model, x = lstm(), randn(2, 5, D)
    params, _ = model.parameters()
    fast = gr.compile(model, cache=cache)
    before = fast(x)
    params *= 0.5
    after = fast(x)
    same(fast, model, x)
    assert not np.allclose(before, after)


def test_writing_through_a_named_view_kept_from_earlier(cache) -> None:
    model, x = lstm(), randn(2, 5, D)
    views = model.named_parameters()
    fast = gr.compile(model, cache=cache)
    fast(x)
    views["lstm.weight_hh_l0"][...] = 0
    same(fast, model, x)
    views["lstm.weight_ih_l0"][...] = RNG.uniform(-1, 1, views["lstm.weight_ih_l0"].shape)
    same(fast, model, x)


def test_load_state_dict_and_an_optimiser_step(cache) -> None:
    model, x = lstm(), randn(2, 5, D)
    fast = gr.compile(model, cache=cache)
    fast(x)
    model.load_state_dict({k: v * -1.5 for k, v in model.state_dict().items()})
    same(fast, model, x)
    opt = gr.optim.Adam(model.parameters(), lr=0.1)
    model.parameters()[1][...] = randn(model.table.size)
    opt.step()
    same(fast, model, x)


def test_an_encoder_sharing_a_recurrent_sees_the_trained_weights(cache) -> None:
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(gr.cells.LSTM(D, H), return_sequences=False, name="lstm")(x)
    y = nn.Linear(H, 1)(h)
    enc = gr.gModule([x], [h])
    full = gr.gModule([x], [y])
    xs, ys = randn(16, 5, D), randn(16, 1)
    fast_enc = gr.compile(enc, cache=cache)
    before = fast_enc(xs)
    gr.train.fit(full, gr.MSECriterion(), xs, ys, epochs=3, batch_size=8, progress=False,
                 optimizer=gr.optim.Adam(full.parameters(), lr=0.05))
    after = fast_enc(xs)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, gr.interpret(enc, xs), rtol=1e-4, atol=1e-5)
    # and the other way round: writing the encoder's vector reaches the compiled full model
    fast_full = gr.compile(full, cache=cache)
    first = fast_full(xs)
    enc.parameters()[0][...] *= 0.25
    np.testing.assert_allclose(fast_full(xs), gr.interpret(full, xs), rtol=1e-4, atol=1e-5)
    assert not np.allclose(first, fast_full(xs))
    same(fast_enc, enc, xs)


def test_unchanged_weights_are_not_repacked(cache) -> None:
    model, x = lstm(), randn(2, 5, D)
    fast = gr.compile(model, cache=cache)
    for _ in range(3):
        fast(x)
    (program,) = fast.programs.values()
    assert program.exe.contract.pack is not None and program.packs == 1
    model.parameters()[0][3] += 1.0
    fast(x)
    fast(x)
    assert program.packs == 2
