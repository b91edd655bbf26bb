"""Dropout in compiled training: the interpreter's masks, bit for bit, in and out of loops.

A program lowered for training draws each mask from the call's seed, the node's seed and the
loop-step salt (`outer * 1_000_003 + t + 1`) exactly as `interpret(..., training=True)` does;
inference programs keep dropout as the identity.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compile import CompiledModel
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep
from graphrnn.trainstep import CompiledTrainStep, compile_train

RNG = np.random.default_rng(31)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def training_forward(model: gr.gModule, cache: KernelCache, *inputs: np.ndarray,
                     seed: int) -> np.ndarray:
    """The model's forward lowered in training mode, run with `seed`."""
    fast = CompiledModel(model, cache=cache)
    fast.lowering["training"] = True
    return fast.program_for(inputs)(*inputs, seed=seed)


def masks_model(reverse: bool = False) -> gr.gModule:
    """Dropout on a sequence, on each step's input and carry (reverse loop optional), and
    inside a nested loop."""
    h, x = gr.Input("B", 4), gr.Input("B", 4)
    h2 = nn.CAddTable()([nn.Dropout(0.5)(h), nn.Dropout(0.25)(x)])
    body = gr.gModule([h, x], [h2, nn.Dropout(0.4)(h2)])
    xs, h0 = gr.Input("B", "T", 4, name="xs"), gr.Input("B", 4, name="h0")
    last, ys = gr.Loop(body, n_carry=1, reverse=reverse)(init=[h0], xs=[nn.Dropout(0.3)(xs)])
    return gr.gModule([xs, h0], [nn.Dropout(0.6)(last), ys])


def nested_model() -> gr.gModule:
    acc, seq = gr.Input("B", 3), gr.Input("B", "T2", 3)
    hb, xb = gr.Input("B", 3), gr.Input("B", 3)
    dropped = nn.Dropout(0.5)(xb)
    inner_body = gr.gModule([hb, xb], [nn.CAddTable()([hb, dropped]), dropped])
    h0 = gr.ops.fill((3,), 0.0, batch_like=seq)
    inner_last, inner_ys = gr.Loop(inner_body, n_carry=1)(init=[h0], xs=[seq])
    outer = gr.gModule([acc, seq], [nn.CAddTable()([acc, inner_last]), inner_ys])
    x, a0 = gr.Input("B", "T1", "T2", 3, name="x"), gr.Input("B", 3, name="a0")
    total, all_ys = gr.Loop(outer, n_carry=1)(init=[a0], xs=[x])
    return gr.gModule([x, a0], [total, all_ys])


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("seed", [0, 12345])
def test_masks_equal_the_interpreters_bit_for_bit(reverse: bool, seed: int, cache) -> None:
    model = masks_model(reverse)
    inputs = (randn(3, 7, 4), randn(3, 4))
    got = training_forward(model, cache, *inputs, seed=seed)
    want = gr.interpret(model, *inputs, training=True, seed=seed)
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g == 0, w == 0)         # the same elements dropped
        np.testing.assert_array_equal(g, w)                   # and the same kept values
    assert 0.2 < np.mean(got[1] == 0) < 0.7                   # masks are drawn at all


def test_nested_loops_salt_the_masks_like_the_interpreter(cache) -> None:
    model = nested_model()
    inputs = (randn(2, 3, 4, 3), randn(2, 3))
    got = training_forward(model, cache, *inputs, seed=5)
    want = gr.interpret(model, *inputs, training=True, seed=5)
    np.testing.assert_array_equal(got[1], want[1])            # [B, T1, T2, 3]: every mask
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6)
    assert 0.3 < np.mean(got[1] == 0) < 0.7


def test_inference_keeps_dropout_the_identity(cache) -> None:
    model = masks_model()
    inputs = (randn(2, 5, 4), randn(2, 4))
    got = gr.compile(model, cache=cache)(*inputs)
    for g, w in zip(got, gr.interpret(model, *inputs)):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-6)


def dropout_rnn() -> gr.gModule:
    """An RNN with dropout on its input sequence, inside the step and on the output."""
    hb, xb = gr.Input("B", 8), gr.Input("B", 3)
    h2 = nn.Tanh()(nn.Linear(11, 8)(nn.Dropout(0.4)(nn.JoinTable(1)([hb, xb]))))
    x, h0 = gr.Input("B", "T", 3, name="x"), gr.Input("B", 8, name="h0")
    last, _ = gr.Loop(gr.gModule([hb, xb], [h2, h2]), n_carry=1)(
        init=[h0], xs=[nn.Dropout(0.3)(x)])
    model = gr.gModule([x, h0], [nn.Linear(8, 2)(nn.Dropout(0.5)(last))])
    model.reset_parameters(seed=3)
    return model


@pytest.mark.parametrize("seed", [0, 7])
def test_compiled_training_step_equals_the_interpreted_one(seed: int, cache) -> None:
    model = dropout_rnn()
    x, h0, y = randn(4, 6, 3), randn(4, 8), randn(4, 2)
    step = CompiledTrainStep(model, gr.MSECriterion(), cache=cache)
    oracle = InterpretedStep(model, gr.MSECriterion())
    losses = {}
    for training in (True, False):
        losses[training] = step(x, h0, target=y, seed=seed, training=training)
        grad = model.parameters()[1].copy()
        want = oracle(x, h0, target=y, seed=seed, training=training)
        np.testing.assert_allclose(losses[training], want, rtol=1e-5)
        np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-4, atol=1e-6)
    assert step(x, h0, target=y, seed=seed + 1) != losses[True]   # other seed, other masks


def test_unrolled_loops_with_dropout_fall_back_to_the_interpreter() -> None:
    model = dropout_rnn()
    assert isinstance(compile_train(model, gr.MSECriterion(), unroll=2), InterpretedStep)
    assert isinstance(compile_train(model, gr.MSECriterion()), CompiledTrainStep)
