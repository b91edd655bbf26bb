"""Carries read from the sequence that saves them (codegen/saved_carry.py): a training step's
forward loop reads h_{t-1} from its saved sequence and writes the next step's there, with no
per-step copy into that sequence; loops that return their carry as a per-step output run it
the same way at any length (0 and 1 included), in both directions. Compiled results against
the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.bench.peers import named_grads, torch_peer
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.interpret import array_type
from graphrnn.ir import Op, TensorType
from graphrnn.train import loss_graph

from train_checks import check_mse_step

RNG = np.random.default_rng(31)
B, D, H = 3, 5, 7


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def loops(sched) -> list:
    return [k for top in sched.kernels for k in top.walk() if k.kind == "loop"]


def layer(cell: str) -> gr.gModule:
    make = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[cell]
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(D, H))(x)])
    model.reset_parameters(seed=8)
    return model


@pytest.mark.parametrize("cell, n_carry", [("rnn", 1), ("gru", 1), ("lstm", 2)])
def test_training_forward_loop_reads_its_carries_from_the_saved_sequences(cell, n_carry):
    g = loss_graph(layer(cell), gr.MSECriterion())
    pg, _, _ = prepare_training(g, [TensorType((B, "T", D)), TensorType((B, "T", H))],
                                unit_cotangent=True)
    forward = [k for k in loops(schedule(pg, pg.inputs[-1], training=True))
               if not k.node.attrs["reverse"]]
    (k,) = forward
    body = k.node.attrs["body"]
    n_in = k.node.attrs["n_consts"]
    assert len(k.carry_slots) == n_carry and all(j >= 0 for j in k.carry_slots)
    for i, j in enumerate(k.carry_slots):           # part j returns the carry received
        assert body.outputs[n_carry + j] is body.inputs[n_in + i]
    assert not [x for x in k.body if x.kind == "copy" and x.node.op == Op.INPUT]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("steps", [1, 2, 7])
def test_training_step_matches_the_interpreter_at_any_length(cell: str, steps: int) -> None:
    model = layer(cell)
    x, y = randn(B, steps, D), randn(B, steps, H)
    check_mse_step(model, x, y)


def previous_state_model(reverse: bool) -> gr.gModule:
    """h' = tanh(W h + x_t); the loop returns h' and the state each step received."""
    hb, xb = gr.Input("B", H), gr.Input("B", H)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(H, H)(hb), xb]))
    body = gr.gModule([hb, xb], [h2, h2, hb])
    x, h0 = gr.Input("B", "T", H, name="x"), gr.Input("B", H, name="h0")
    final, ys, before = gr.Loop(body, n_carry=1, reverse=reverse)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [final, ys, before])
    model.reset_parameters(seed=9)
    return model


@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.parametrize("steps", [0, 1, 2, 6])
def test_forward_program_returning_the_received_state(reverse: bool, steps: int) -> None:
    model = previous_state_model(reverse)
    args = [randn(B, steps, H), randn(B, H)]
    g, _ = prepare(model.graph, [array_type(a) for a in args])
    (k,) = loops(schedule(g, g.inputs[-1]))
    assert k.carry_slots == (1,)
    compiled = gr.compile(model)
    want = gr.interpret(model, *args)
    got = compiled(*args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    if steps == 0:
        np.testing.assert_array_equal(got[0], args[1])      # the initial state comes back


def named_weights(model: gr.gModule) -> dict[str, np.ndarray]:
    """The model's parameters keyed by PyTorch name (`weight_ih_l0`, ...)."""
    return {k.split(".", 1)[1]: v.copy()
            for k, v in model.table.views(model.parameters()[0]).items()}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("steps", [1, 6])
def test_training_step_gradients_equal_torch_autograd(cell: str, steps: int) -> None:
    pytest.importorskip("torch")
    model = layer(cell)
    peer = torch_peer(cell, named_weights(model))
    x, y = randn(B, steps, D), randn(B, steps, H)
    peer.prepare(x, y)
    want_loss = float(peer.run_train())
    loss = gr.compile(model, loss=gr.MSECriterion(), train=True)(x, target=y)
    assert loss == pytest.approx(want_loss, rel=1e-4)
    want, got = peer.grads(), named_grads(model)
    assert set(want) == set(got)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=1e-4, atol=1e-6, err_msg=name)
