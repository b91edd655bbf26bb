"""What `graphrnn fuzz --training` compares: compiled training steps against the interpreted
step, with truncated BPTT through loops asking to be unrolled, and with dropout on."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compile import compile as compile_model
from graphrnn.testing.crosscheck import Checks, _rounding_only, check_case
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(3)
B, T = 2, 4


def rnn_after_a_linear(unroll: int | bool | None, dropout: float = 0.0) -> gr.gModule:
    """x0 -> Linear -> h0 (only the initial carry), then an RNN over x[B, T, 2]; the output is
    the per-step states, dropped out when `dropout`."""
    x, x0 = gr.Input("B", T, 2, name="x"), gr.Input("B", 2, name="x0")
    h, x_t = gr.Input("B", 3, name="h"), gr.Input("B", 2, name="x_t")
    h_next = nn.Tanh()(nn.CAddTable()([nn.Linear(3, 3)(h), nn.Linear(2, 3)(x_t)]))
    y = nn.Dropout(dropout)(h_next) if dropout else h_next
    body = gr.gModule([h, x_t], [h_next, y])
    h0 = nn.Linear(2, 3, name="init")(x0)
    _, ys = gr.Loop(body, n_carry=1, unroll=unroll)(init=[h0], xs=[x])
    return gr.gModule([x, x0], [ys])


def grads(step, model: gr.gModule, args: list[np.ndarray], seed: int = 0) -> dict:
    loss = step(*args, target=np.full((B, T, 3), 0.25, np.float32), seed=seed)
    views = model.table.views(model.parameters()[1])
    return {"loss": np.float32(loss), **{k: v.copy() for k, v in views.items()}}


def assert_same(got: dict, want: dict) -> None:
    assert got.keys() == want.keys()
    for key in want:
        np.testing.assert_allclose(got[key], want[key], rtol=1e-4, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("unroll", [True, 2])
def test_truncated_bptt_cuts_loops_that_ask_to_be_unrolled(cache, unroll) -> None:
    model = rnn_after_a_linear(unroll)
    args = [RNG.uniform(-1, 1, (B, T, 2)).astype(np.float32),
            RNG.uniform(-1, 1, (B, 2)).astype(np.float32)]
    crit = gr.MSECriterion()
    full = grads(compile_model(model, loss=crit, train=True, cache=cache), model, args)
    cut = grads(compile_model(model, loss=crit, train=True, bptt_max=2, cache=cache), model,
                args)
    # every path from the loss to h0 crosses the border at t = 0: exactly zero, not small
    assert np.all(cut["init.weight"] == 0.0) and np.all(cut["init.bias"] == 0.0)
    assert np.all(full["init.weight"] != 0.0)
    assert_same(cut, grads(InterpretedStep(model, crit, bptt_max=2), model, args))
    kept = compile_model(model, loss=crit, train=True, bptt_max=2, unroll=False, cache=cache)
    assert_same(cut, grads(kept, model, args))


def test_compiled_step_draws_the_interpreted_steps_dropout_masks(cache) -> None:
    model = rnn_after_a_linear(None, dropout=0.5)
    args = [RNG.uniform(-1, 1, (B, T, 2)).astype(np.float32),
            RNG.uniform(-1, 1, (B, 2)).astype(np.float32)]
    crit = gr.MSECriterion()
    step = compile_model(model, loss=crit, train=True, bptt_max=2, cache=cache)
    for seed in (0, 7):
        assert_same(grads(step, model, args, seed),
                    grads(InterpretedStep(model, crit, bptt_max=2), model, args, seed))
    assert grads(step, model, args, 0)["loss"] != grads(step, model, args, 7)["loss"]


def test_training_mode_runs_the_pass_checks_and_the_training_steps(cache) -> None:
    model = rnn_after_a_linear(None, dropout=0.5)
    args = [RNG.uniform(-1, 1, (B, T, 2)).astype(np.float32),
            RNG.uniform(-1, 1, (B, 2)).astype(np.float32)]
    checks = Checks(training=True, unroll=(False,), disable=((),), symbolic=False,
                    train_configs=((2, None),))
    assert check_case(model, args, checks=checks, cache=cache) == []


def test_training_mode_leaves_out_unrolled_loops_holding_dropout(cache) -> None:
    # the interpreter salts a mask by its loop step; unrolled copies are outside any loop, so
    # they draw other masks. The compiled step refuses them, and the pass check skips them.
    model = rnn_after_a_linear(True, dropout=0.5)
    args = [RNG.uniform(-1, 1, (B, T, 2)).astype(np.float32),
            RNG.uniform(-1, 1, (B, 2)).astype(np.float32)]
    with pytest.raises(gr.InputError, match="is not compiled"):
        compile_model(model, loss=gr.MSECriterion(), train=True, cache=cache)
    checks = Checks(training=True, unroll=(None, True, False), disable=((),), symbolic=False,
                    train_configs=((None, None),))
    assert check_case(model, args, checks=checks, cache=cache) == []


def test_the_training_check_tells_rounding_noise_from_a_wrong_gradient() -> None:
    """A compiled gradient no further from the float64 one than twice the float32
    interpreter's error is noise (an ill-conditioned value); one further off is reported."""
    exact = np.array([1e-12, 0.25, -3.0])
    want = [np.float32(1.0), np.array([6e-4, 0.25, -3.0], np.float32)]
    assert _rounding_only([np.float32(1.0), np.array([-6.4e-4, 0.25, -3.0], np.float32)],
                          want, 1.0, exact)
    assert not _rounding_only([np.float32(1.0), np.array([1e-12, 0.35, -3.0], np.float32)],
                              want, 1.0, exact)


def test_a_float64_interpreted_step_agrees_with_the_float32_one() -> None:
    model = gr.gModule([x := gr.Input("B", "T", 3)],
                       [nn.Recurrent(gr.cells.LSTM(3, 4))(x)])
    args = np.random.default_rng(0).standard_normal((2, 5, 3)).astype(np.float32)
    target = np.zeros((2, 5, 4), np.float32)
    grad = model.parameters()[1]
    loss32 = InterpretedStep(model, gr.MSECriterion())(args, target=target)
    g32 = grad.copy()
    loss64 = InterpretedStep(model, gr.MSECriterion(), dtype=np.float64)(args, target=target)
    assert loss64 == pytest.approx(loss32, rel=1e-5)
    np.testing.assert_allclose(grad, g32, rtol=1e-4, atol=1e-6)
