"""Reverse-mode differentiation against finite differences (float64 interpreter)."""
import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradcheck, gradients

rng = np.random.default_rng(0)


def _assert_ok(res):
    assert res.ok, str(res)
    assert res.checked > 0


def test_mlp_softmax_all_parameters_and_inputs():
    x = gr.Input("B", 4)
    m = gr.gModule([x], [nn.SoftMax()(nn.Tanh()(nn.Linear(4, 3)(x)))])
    res = gradcheck(m, rng.standard_normal((2, 4)))
    _assert_ok(res)
    assert set(res.errors) == {"linear.weight", "linear.bias", "input input_0"}


def test_every_elementwise_and_structural_op():
    a, b = gr.Input("B", 6), gr.Input("B", 6)
    s = nn.CAddTable()([nn.Sigmoid()(a), nn.ReLU()(b)])
    d = gr.ops.div(gr.ops.exp(nn.Narrow(1, 0, 3)(s)), gr.ops.add(nn.Narrow(1, 3, 3)(s), 2.0))
    j = nn.JoinTable(1)([d, nn.CSubTable()([nn.Narrow(1, 1, 3)(a), gr.ops.log(
        gr.ops.add(gr.ops.mul(nn.Narrow(1, 2, 3)(b), nn.Narrow(1, 2, 3)(b)), 1.0))])])
    r = nn.Reshape(2, 3)(j)
    out = nn.LogSoftMax()(gr.ops.sum_(r, [1]))
    m = gr.gModule([a, b], [gr.ops.mean(out, [0]), nn.MulConstant(3.0)(nn.Tanh()(r))])
    _assert_ok(gradcheck(m, rng.standard_normal((3, 6)), rng.standard_normal((3, 6))))


def test_nngraph_toy_rnn_tied_step():
    x, h0 = gr.Input("B", 3, 1), gr.Input("B", 5)
    xs, step, h = nn.SplitTable(1)(x), nn.Linear(6, 5), h0
    for t in range(3):
        h = nn.Tanh()(step(nn.JoinTable(1)([h, xs[t]])))
    m = gr.gModule([x, h0], [nn.Linear(5, 1)(h)])
    _assert_ok(gradcheck(m, rng.standard_normal((2, 3, 1)), rng.standard_normal((2, 5))))


@pytest.mark.parametrize("make", [gr.cells.RNN, gr.cells.LSTM, gr.cells.GRU])
def test_single_cell_black_box(make):
    cell = make(3, 4)
    states = [rng.standard_normal((2, 4)) for _ in range(cell.n_states)]
    res = gradcheck(cell, *states, rng.standard_normal((2, 3)), samples=40)
    _assert_ok(res)
    assert {"weight_ih", "weight_hh", "bias_ih", "bias_hh"} <= {
        k.split(".")[-1] for k in res.errors}


@pytest.mark.parametrize("make", [gr.cells.RNN, gr.cells.LSTM, gr.cells.GRU])
def test_stacked_bidirectional_with_lengths(make):
    x, lengths = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
    layer = nn.Recurrent(make(3, 4), num_layers=2, bidirectional=True)
    m = gr.gModule([x, lengths], [layer([x, lengths])])
    _assert_ok(gradcheck(m, rng.standard_normal((3, 5, 3)), np.array([5, 2, 0])))


def test_loss_with_symbolic_time_mean():
    x, target = gr.Input("B", "T", 2), gr.Input("B", "T", 1)
    y = nn.Linear(4, 1)(nn.Recurrent(gr.cells.GRU(2, 4))(x))
    m = gr.gModule([x, target], [gr.MSECriterion()([y, target])])
    _assert_ok(gradcheck(m, rng.standard_normal((2, 6, 2)), rng.standard_normal((2, 6, 1))))


def test_embedding_and_cross_entropy():
    ids, target = gr.Input("B", "T", dtype="int64"), gr.Input("B", "T", dtype="int64")
    h = nn.Recurrent(gr.cells.LSTM(3, 5))(nn.LookupTable(7, 3)(ids))
    m = gr.gModule([ids, target], [gr.CrossEntropyCriterion()([nn.Linear(5, 7)(h), target])])
    _assert_ok(gradcheck(m, rng.integers(0, 7, (2, 4)), rng.integers(0, 7, (2, 4))))


def test_reverse_loop_with_consts_and_two_outputs():
    w = nn.Linear(2, 3)
    c, h, xt = gr.Input("B", 3), gr.Input("B", 3), gr.Input("B", 2)
    hn = nn.Tanh()(nn.CAddTable()([w(xt), nn.CMulTable()([h, c])]))
    body = gr.gModule([c, h, xt], [hn, hn, nn.Sigmoid()(hn)])
    C, H0, X = gr.Input("B", 3), gr.Input("B", 3), gr.Input("B", "T", 2)
    parts = gr.Loop(body, n_carry=1, n_consts=1, reverse=True)([C, H0, X])
    m = gr.gModule([C, H0, X], [parts[0], parts[1], parts[2]])
    _assert_ok(gradcheck(m, rng.standard_normal((2, 3)), rng.standard_normal((2, 3)),
                         rng.standard_normal((2, 4, 2))))


def test_nested_loops():
    lin = nn.Linear(5, 3)
    ih, ix = gr.Input("B", 3), gr.Input("B", 2)
    inner = gr.Loop(gr.gModule([ih, ix], [nn.Tanh()(lin(nn.JoinTable(1)([ix, ih])))]), 1)
    oh, ox = gr.Input("B", 3), gr.Input("B", 4, 2)
    final = inner(init=[oh], xs=[ox])[0]
    outer = gr.Loop(gr.gModule([oh, ox], [final, final]), 1)
    X, H0 = gr.Input("B", "T", 4, 2), gr.Input("B", 3)
    m = gr.gModule([X, H0], [outer(init=[H0], xs=[X])[1]])
    _assert_ok(gradcheck(m, rng.standard_normal((2, 3, 4, 2)), rng.standard_normal((2, 3))))


def test_truncated_bptt_cuts_exactly_at_chunk_borders():
    x = gr.Input("B", "T", 1)
    m = gr.gModule([x], [nn.Recurrent(gr.cells.RNN(1, 3))(x)])
    steps, k = 8, 3
    cot = np.zeros((1, steps, 3))
    cot[0, steps - 1] = 1.0
    xv = rng.standard_normal((1, steps, 1))
    _, _, (gx,) = gradients(m, xv, cotangents=[cot], truncate=k)
    _, _, (full,) = gradients(m, xv, cotangents=[cot])
    # the loss at t=7 reaches back to the chunk [6, 9) only
    assert np.all(gx[0, :6] == 0.0)
    np.testing.assert_allclose(gx[0, 6:], full[0, 6:], rtol=1e-12)
    assert np.all(full[0, :6] != 0.0)


def test_tied_parameters_accumulate_into_one_gradient():
    lin = nn.Linear(3, 3)
    x = gr.Input("B", 3)
    m = gr.gModule([x], [lin(nn.Tanh()(lin(x)))])
    _, grads, _ = gradients(m, rng.standard_normal((2, 3)))
    assert set(grads) == {"linear.weight", "linear.bias"}
    _assert_ok(gradcheck(m, rng.standard_normal((2, 3))))
