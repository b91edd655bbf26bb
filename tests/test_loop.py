"""The loop node against hand-written numpy loops: carries, sequences, consts, outputs, T."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

B, D, H = 3, 4, 5
RNG = np.random.default_rng(11)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def rnn_body() -> tuple[gr.gModule, nn.Linear, nn.Linear]:
    """(h, x_t) -> (h', h'): h' = tanh(x_t U^T + b_u + h W^T + b_w)."""
    h, x = gr.Input("B", H), gr.Input("B", D)
    u, w = nn.Linear(D, H), nn.Linear(H, H)
    h2 = nn.Tanh()(nn.CAddTable()([u(x), w(h)]))
    return gr.gModule([h, x], [h2, h2]), u, w


def rnn_numpy(p: dict, h: np.ndarray, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    ys = np.zeros(xs.shape[:2] + (H,), np.float32)
    for t in range(xs.shape[1]):
        h = np.tanh(xs[:, t] @ p["linear.weight"].T + p["linear.bias"]
                    + h @ p["linear_1.weight"].T + p["linear_1.bias"])
        ys[:, t] = h
    return h, ys


def rnn_model(**loop_kw) -> gr.gModule:
    body, _, _ = rnn_body()
    x, h0 = gr.Input("B", "T", D), gr.Input("B", H)
    last, ys = gr.Loop(body, n_carry=1, **loop_kw)(init=[h0], xs=[x])
    return gr.gModule([x, h0], [last, ys])


def test_one_carry_one_sequence():
    model = rnn_model()
    assert model.param_count() == D * H + H + H * H + H
    xs, h0 = randn(B, 6, D), randn(B, H)
    last, ys = model(xs, h0)
    want_last, want_ys = rnn_numpy(model.named_parameters(), h0, xs)
    np.testing.assert_allclose(last, want_last, atol=1e-5)
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    assert ys.shape == (B, 6, H)


def test_loop_types():
    body, _, _ = rnn_body()
    x, h0 = gr.Input("B", "T", D), gr.Input("B", H)
    parts = gr.Loop(body, n_carry=1)(init=[h0], xs=[x])
    assert [str(p.type) for p in parts] == ["f32[B,5]", "f32[B,T,5]"]
    loop = parts[0].inputs[0]
    assert loop.op == gr.Op.LOOP and gr.ir.type_str(loop.type) == "(f32[B,5], f32[B,T,5])"
    assert (loop.attrs["n_consts"], loop.attrs["n_carry"], loop.attrs["n_xs"]) == (0, 1, 1)
    consts, carry, xs, lengths = gr.ir.loop_operands(loop)
    assert consts == () and carry == (h0,) and xs == (x,) and lengths is None


@pytest.mark.parametrize("steps", [1, 5, 17])
def test_sequence_length_comes_from_the_data(steps):
    model = rnn_model()
    xs, h0 = randn(2, steps, D), randn(2, H)
    last, ys = model(xs, h0)
    want_last, want_ys = rnn_numpy(model.named_parameters(), h0, xs)
    np.testing.assert_allclose(ys, want_ys, atol=1e-5)
    np.testing.assert_allclose(last, want_last, atol=1e-5)


def test_zero_steps_returns_the_initial_carry():
    model = rnn_model()
    h0 = randn(2, H)
    last, ys = model(np.zeros((2, 0, D), np.float32), h0)
    np.testing.assert_array_equal(last, h0)
    assert ys.shape == (2, 0, H)


def test_reverse():
    model = rnn_model(reverse=True)
    xs, h0 = randn(B, 4, D), randn(B, H)
    last, ys = model(xs, h0)
    want_last, want_ys = rnn_numpy(model.named_parameters(), h0, xs[:, ::-1])
    np.testing.assert_allclose(last, want_last, atol=1e-5)
    np.testing.assert_allclose(ys, want_ys[:, ::-1], atol=1e-5)   # ys stay in time order


def rich_body() -> gr.gModule:
    """consts (k), carries (h, s), sequences (a_t, b_t) -> carries (h', s'), outputs (y1, y2).

    h' = tanh(a_t U^T + b_u + h * b_t + k), s' = s + h', y1 = h', y2 = 2 relu(s')."""
    k, h, s = gr.Input("B", H), gr.Input("B", H), gr.Input("B", H)
    a, b = gr.Input("B", D), gr.Input("B", H)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(D, H)(a), nn.CMulTable()([h, b]), k]))
    s2 = nn.CAddTable()([s, h2])
    return gr.gModule([k, h, s, a, b], [h2, s2, h2, nn.MulConstant(2)(nn.ReLU()(s2))])


def rich_numpy(p, k, h, s, a, b, reverse=False):
    T = a.shape[1]
    y1, y2 = np.zeros((B, T, H), np.float32), np.zeros((B, T, H), np.float32)
    for t in (reversed(range(T)) if reverse else range(T)):
        h = np.tanh(a[:, t] @ p["linear.weight"].T + p["linear.bias"] + h * b[:, t] + k)
        s = s + h
        y1[:, t], y2[:, t] = h, 2 * np.maximum(s, 0)
    return h, s, y1, y2


@pytest.mark.parametrize("reverse", [False, True])
def test_two_carries_two_sequences_a_const_and_two_outputs(reverse):
    k, h0, s0 = gr.Input("B", H), gr.Input("B", H), gr.Input("B", H)
    a, b = gr.Input("B", "T", D), gr.Input("B", "T", H)
    loop = gr.Loop(rich_body(), n_carry=2, n_consts=1, reverse=reverse)
    parts = loop(consts=[k], init=[h0, s0], xs=[a, b])
    assert len(parts) == 4
    model = gr.gModule([k, h0, s0, a, b], list(parts))
    args = [randn(B, H), randn(B, H), randn(B, H), randn(B, 7, D), randn(B, 7, H)]
    got = model(*args)
    want = rich_numpy(model.named_parameters(), *args, reverse=reverse)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_positional_call_splits_consts_init_and_sequences():
    k, h0, s0 = gr.Input("B", H), gr.Input("B", H), gr.Input("B", H)
    a, b = gr.Input("B", "T", D), gr.Input("B", "T", H)
    body = rich_body()
    positional = gr.Loop(body, n_carry=2, n_consts=1)([k, h0, s0, a, b])
    loop = positional[0].inputs[0]
    assert loop.inputs == (k, h0, s0, a, b)
    with pytest.raises(gr.GraphError, match="1 consts, 2 carried states and 2 sequences"):
        gr.Loop(body, n_carry=2, n_consts=1)(consts=[k], init=[h0], xs=[a, b])
    with pytest.raises(TypeError):
        gr.Loop(body, n_carry=2, n_consts=1)([k, h0, s0, a, b], xs=[a])


def test_loop_without_sequences_uses_length():
    """A counter: s' = s + k, y = s' * s'; no sequences, so the length is given."""
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    s2 = nn.CAddTable()([s, k])
    body = gr.gModule([k, s], [s2, nn.CMulTable()([s2, s2])])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    last, ys = gr.Loop(body, n_carry=1, n_consts=1, length=4)(consts=[kk], init=[s0])
    assert str(ys.type) == "f32[B,4,2]"
    model = gr.gModule([kk, s0], [last, ys])
    kv, sv = randn(3, 2), randn(3, 2)
    got_last, got_ys = model(kv, sv)
    want = np.stack([(sv + (t + 1) * kv) ** 2 for t in range(4)], 1)
    np.testing.assert_allclose(got_ys, want, atol=1e-5)
    np.testing.assert_allclose(got_last, sv + 4 * kv, atol=1e-5)


def test_symbolic_length_is_bound_by_another_input():
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([k, s], [nn.CAddTable()([s, k])])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    (last,) = gr.Loop(body, n_carry=1, n_consts=1, length="T")(consts=[kk], init=[s0])
    unbound = gr.gModule([kk, s0], [last])
    with pytest.raises(gr.InputError, match="not bound"):
        unbound(np.ones((1, 2), np.float32), np.zeros((1, 2), np.float32))
    ref = gr.Input("B", "T")
    model = gr.gModule([kk, s0, ref], [last, nn.MulConstant(0)(ref)])
    got, _ = model(np.ones((1, 2), np.float32), np.zeros((1, 2), np.float32), np.zeros((1, 5)))
    np.testing.assert_array_equal(got, [[5, 5]])


def test_loop_without_sequences_or_length_is_refused():
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([k, s], [nn.CAddTable()([s, k])])
    with pytest.raises(gr.ShapeError, match="needs a length"):
        gr.Loop(body, n_carry=1, n_consts=1)(consts=[gr.Input("B", 2)], init=[gr.Input("B", 2)])


def test_nested_loops():
    """The outer body runs an inner RNN over each row's sub-sequence: x[B, T1, T2, D]."""
    inner_body, _, _ = rnn_body()
    acc, seq = gr.Input("B", H), gr.Input("B", "T2", D)
    h0 = gr.ops.fill((H,), 0.0, batch_like=seq)
    inner_last, _ = gr.Loop(inner_body, n_carry=1, name="inner")(init=[h0], xs=[seq])
    acc2 = nn.CAddTable()([acc, inner_last])
    outer_body = gr.gModule([acc, seq], [acc2, inner_last])
    x, a0 = gr.Input("B", "T1", "T2", D), gr.Input("B", H)
    total, lasts = gr.Loop(outer_body, n_carry=1, name="outer")(init=[a0], xs=[x])
    model = gr.gModule([x, a0], [total, lasts])
    assert model.param_count() == D * H + H + H * H + H
    xv, av = randn(2, 3, 4, D), randn(2, H)
    got_total, got_lasts = model(xv, av)
    p = model.named_parameters()
    want_lasts = np.stack([rnn_numpy(p, np.zeros((2, H), np.float32), xv[:, i])[0]
                           for i in range(3)], 1)
    np.testing.assert_allclose(got_lasts, want_lasts, atol=1e-5)
    np.testing.assert_allclose(got_total, av + want_lasts.sum(1), atol=1e-5)


def test_stacked_loops():
    """The per-step outputs of one loop are the sequence of the next (a 2-layer RNN)."""
    body1, _, _ = rnn_body()
    h, x = gr.Input("B", H), gr.Input("B", H)
    lin = nn.Linear(H, H)
    h2 = nn.Sigmoid()(nn.CAddTable()([lin(x), h]))
    body2 = gr.gModule([h, x], [h2, h2])
    xs, h0 = gr.Input("B", "T", D), gr.Input("B", H)
    _, ys1 = gr.Loop(body1, n_carry=1)(init=[h0], xs=[xs])
    last2, ys2 = gr.Loop(body2, n_carry=1, reverse=True)(init=[h0], xs=[ys1])
    model = gr.gModule([xs, h0], [last2, ys2])
    xv, hv = randn(B, 5, D), randn(B, H)
    p = model.named_parameters()
    _, want1 = rnn_numpy(p, hv, xv)
    state, want2 = hv, np.zeros((B, 5, H), np.float32)
    for t in reversed(range(5)):
        state = 1 / (1 + np.exp(-(want1[:, t] @ p["linear_2.weight"].T + p["linear_2.bias"]
                                  + state)))
        want2[:, t] = state
    got_last, got_ys = model(xv, hv)
    np.testing.assert_allclose(got_ys, want2, atol=1e-5)
    np.testing.assert_allclose(got_last, state, atol=1e-5)


def test_params_used_inside_and_outside_a_loop_are_one_param():
    body, u, _ = rnn_body()
    x, h0 = gr.Input("B", "T", D), gr.Input("B", D)
    last, _ = gr.Loop(body, n_carry=1)(init=[u(h0)], xs=[x])       # u also outside
    model = gr.gModule([x, h0], [last])
    assert model.param_count() == D * H + H + H * H + H
    inside = {n.param for n, g in model.graph.walk() if n.op == gr.Op.PARAM
              and g is not model.graph}
    outside = {n.param for n in model.graph.nodes if n.op == gr.Op.PARAM}
    assert u.weight in inside and u.weight in outside
    xv, hv = randn(2, 3, D), randn(2, D)
    p = model.named_parameters()
    start = hv @ p["linear.weight"].T + p["linear.bias"]
    np.testing.assert_allclose(model(xv, hv), rnn_numpy(p, start, xv)[0], atol=1e-5)


# ----------------------------------------------------------------------------- the toy RNN

def test_toy_rnn_as_a_loop_equals_the_hand_unrolled_one():
    """nngraph's toy (input 1, hidden 26, length 3): unrolled by hand and as a gr.Loop."""
    lin, out = nn.Linear(27, 26), nn.Linear(26, 1)
    x, h0 = gr.Input("B", 3, 1), gr.Input("B", 26)
    h = h0
    for x_t in nn.SplitTable(1)(x):
        h = nn.Tanh()(lin(nn.JoinTable(1)([h, x_t])))
    unrolled = gr.gModule([x, h0], [out(h)])

    hb, xb = gr.Input("B", 26), gr.Input("B", 1)
    step_h = nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([hb, xb])))
    step = gr.gModule([hb, xb], [step_h])
    x2, h02 = gr.Input("B", "T", 1), gr.Input("B", 26)
    (last,) = gr.Loop(step, n_carry=1)(init=[h02], xs=[x2])
    looped = gr.gModule([x2, h02], [nn.Linear(26, 1)(last)])
    assert looped.param_count() == unrolled.param_count() == 755
    looped.load_state_dict(unrolled.state_dict())
    xv = RNG.standard_normal((4, 3, 1)).astype(np.float32)
    hv = np.zeros((4, 26), np.float32)
    np.testing.assert_allclose(looped(xv, hv), unrolled(xv, hv), atol=1e-6)
    # and sharing the very Params instead of copying them
    (last3,) = gr.Loop(gr.gModule([hb, xb], [nn.Tanh()(lin(nn.JoinTable(1)([hb, xb])))]),
                       n_carry=1)(init=[h02], xs=[x2])
    shared = gr.gModule([x2, h02], [out(last3)])
    assert {id(p) for p in shared.graph.params()} == {id(p) for p in unrolled.graph.params()}
    np.testing.assert_allclose(shared(xv, hv), unrolled(xv, hv), atol=1e-6)
