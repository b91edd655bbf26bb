"""RNN, LSTM and GRU cells and the Recurrent layer against the published equations in numpy."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.generate import sample_ids, sampler

D, H = 3, 4
RNG = np.random.default_rng(21)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def sigmoid(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v))


# PyTorch's documented equations, one step, for parameters p (keys without the prefix)

def rnn_step(p: dict, x, h, act=np.tanh, sfx: str = ""):
    return (act(x @ p["weight_ih" + sfx].T + p["bias_ih" + sfx]
                + h @ p["weight_hh" + sfx].T + p["bias_hh" + sfx]),)


def lstm_step(p: dict, x, h, c, sfx: str = ""):
    z = x @ p["weight_ih" + sfx].T + p["bias_ih" + sfx] + h @ p["weight_hh" + sfx].T \
        + p["bias_hh" + sfx]
    i, f, g, o = np.split(z, 4, axis=-1)
    i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
    c2 = f * c + i * g
    return o * np.tanh(c2), c2


def gru_step(p: dict, x, h, sfx: str = ""):
    xr, xz, xn = np.split(x @ p["weight_ih" + sfx].T + p["bias_ih" + sfx], 3, axis=-1)
    hr, hz, hn = np.split(h @ p["weight_hh" + sfx].T + p["bias_hh" + sfx], 3, axis=-1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = np.tanh(xn + r * hn)                    # r multiplies (W_hn h + b_hn)
    return ((1 - z) * n + z * h,)


def local(params: dict) -> dict:
    """`lstm.weight_ih` -> `weight_ih`."""
    return {k.split(".", 1)[1]: v for k, v in params.items()}


@pytest.mark.parametrize("kind, gates, step", [
    ("RNN", 1, rnn_step), ("LSTM", 4, lstm_step), ("GRU", 3, gru_step)])
def test_cell_parameters_are_named_and_shaped_like_pytorch(kind, gates, step):
    cell = getattr(gr.cells, kind)(D, H)
    shapes = {k: v.shape for k, v in cell.named_parameters().items()}
    prefix = kind.lower()
    assert shapes == {f"{prefix}.weight_ih": (gates * H, D), f"{prefix}.weight_hh": (gates * H, H),
                      f"{prefix}.bias_ih": (gates * H,), f"{prefix}.bias_hh": (gates * H,)}
    k = 1 / np.sqrt(H)
    assert all(np.abs(v).max() <= k for v in cell.named_parameters().values())
    assert cell.weight_ih.shape == (gates * H, D)


@pytest.mark.parametrize("nonlinearity, act", [("tanh", np.tanh),
                                               ("relu", lambda v: np.maximum(v, 0))])
def test_rnn_cell(nonlinearity, act):
    cell = gr.cells.RNN(D, H, nonlinearity=nonlinearity)
    h, x = randn(5, H), randn(5, D)
    want = rnn_step(local(cell.named_parameters()), x, h, act)[0]
    np.testing.assert_allclose(cell(h, x), want, atol=1e-6)


def test_rnn_rejects_unknown_nonlinearity():
    with pytest.raises(ValueError):
        gr.cells.RNN(D, H, nonlinearity="gelu")


def test_lstm_cell():
    cell = gr.cells.LSTM(D, H)
    h, c, x = randn(5, H), randn(5, H), randn(5, D)
    got_h, got_c = cell(h, c, x)
    want_h, want_c = lstm_step(local(cell.named_parameters()), x, h, c)
    np.testing.assert_allclose(got_h, want_h, atol=1e-6)
    np.testing.assert_allclose(got_c, want_c, atol=1e-6)
    names = {n.name for n in cell.graph.nodes}
    assert {"in_gate", "forget_gate", "cell_input", "out_gate", "c_next", "h_next"} <= names


def test_gru_cell():
    cell = gr.cells.GRU(D, H)
    h, x = randn(5, H), randn(5, D)
    want = gru_step(local(cell.named_parameters()), x, h)[0]
    np.testing.assert_allclose(cell(h, x), want, atol=1e-6)


def test_cell_without_bias():
    cell = gr.cells.GRU(D, H, bias=False)
    assert set(cell.named_parameters()) == {"gru.weight_ih", "gru.weight_hh"}
    p = {**local(cell.named_parameters()), "bias_ih": 0.0, "bias_hh": 0.0}
    h, x = randn(2, H), randn(2, D)
    np.testing.assert_allclose(cell(h, x), gru_step(p, x, h)[0], atol=1e-6)


def test_cell_is_a_loop_body():
    cell = gr.cells.LSTM(D, H)
    x, h0 = gr.Input("B", "T", D), gr.Input("B", H)
    h_last, c_last = gr.Loop(cell, n_carry=2)(init=[h0, h0], xs=[x])
    model = gr.gModule([x, h0], [h_last, c_last])
    xv, hv = randn(2, 5, D), randn(2, H)
    h, c = hv, hv
    p = local(model.named_parameters())
    for t in range(5):
        h, c = lstm_step(p, xv[:, t], h, c)
    got_h, got_c = model(xv, hv)
    np.testing.assert_allclose(got_h, h, atol=1e-5)
    np.testing.assert_allclose(got_c, c, atol=1e-5)


# ----------------------------------------------------------------------------- Recurrent

STEPS = {"rnn": rnn_step, "lstm": lstm_step, "gru": gru_step}


def recurrent_numpy(kind, p, x, layers, dirs, lengths=None):
    """Per row, per layer, per direction; returns (sequence output, finals by layer/dir)."""
    rows, steps = x.shape[:2]
    lengths = np.full(rows, steps) if lengths is None else lengths
    n_states = 2 if kind == "lstm" else 1
    finals = []
    seq = x
    for layer in range(layers):
        outs = []
        for d in range(dirs):
            sfx = f"_l{layer}" + ("_reverse" if d else "")
            ys = np.zeros((rows, steps, H), np.float32)
            fin = [np.zeros((rows, H), np.float32) for _ in range(n_states)]
            for b in range(rows):
                state = [np.zeros(H, np.float32) for _ in range(n_states)]
                order = range(lengths[b])
                for t in (reversed(order) if d else order):
                    state = list(STEPS[kind](p, seq[b, t], *state, sfx=sfx))
                    ys[b, t] = state[0]
                for f, s in zip(fin, state):
                    f[b] = s
            outs.append(ys)
            finals.append(fin)
        seq = np.concatenate(outs, -1)
    return seq, finals


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_recurrent_against_numpy(kind, layers, bidirectional):
    cell = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[kind](D, H)
    rec = nn.Recurrent(cell, num_layers=layers, bidirectional=bidirectional,
                       return_state=True)
    x, lengths = gr.Input("B", "T", D), gr.Input("B", dtype="int64")
    parts = rec([x, lengths])
    model = gr.gModule([x, lengths], list(parts))
    xv, lv = randn(3, 5, D), np.array([5, 2, 4])
    got = model(xv, lv)
    dirs = 2 if bidirectional else 1
    want_seq, finals = recurrent_numpy(kind, local(model.named_parameters()), xv, layers,
                                       dirs, lv)
    assert got[0].shape == (3, 5, dirs * H)
    np.testing.assert_allclose(got[0], want_seq, atol=1e-5)
    flat_finals = [s for fin in finals for s in fin]
    assert len(got) == 1 + len(flat_finals)
    for g, w in zip(got[1:], flat_finals):
        np.testing.assert_allclose(g, w, atol=1e-5)


def test_recurrent_parameter_keys_follow_pytorch():
    rec = nn.Recurrent(gr.cells.LSTM(D, H), num_layers=2, bidirectional=True)
    x = gr.Input("B", "T", D)
    model = gr.gModule([x], [rec(x)])
    keys = [f"{w}_l{layer}{sfx}" for layer in range(2) for sfx in ("", "_reverse")
            for w in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")]
    assert list(model.state_dict()) == [f"lstm.{k}" for k in keys]
    shapes = {k: v.shape for k, v in local(model.state_dict()).items()}
    assert shapes["weight_ih_l0"] == (4 * H, D) and shapes["weight_ih_l1"] == (4 * H, 2 * H)
    assert shapes["weight_hh_l1_reverse"] == (4 * H, H)


@pytest.mark.parametrize("bidirectional", [False, True])
def test_recurrent_last_state(bidirectional):
    rec = nn.Recurrent(gr.cells.GRU(D, H), num_layers=2, bidirectional=bidirectional,
                       return_sequences=False)
    x = gr.Input("B", "T", D)
    model = gr.gModule([x], [rec(x)])
    xv = randn(2, 4, D)
    dirs = 2 if bidirectional else 1
    _, finals = recurrent_numpy("gru", local(model.named_parameters()), xv, 2, dirs)
    want = np.concatenate([f[0] for f in finals[-dirs:]], -1)
    got = model(xv)
    assert got.shape == (2, dirs * H)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_single_layer_recurrent_keeps_the_cells_weights():
    cell = gr.cells.RNN(D, H, nonlinearity="relu")
    rec = nn.Recurrent(cell)
    x = gr.Input("B", "T", D)
    model = gr.gModule([x], [rec(x)])
    np.testing.assert_array_equal(model.named_parameters()["rnn.weight_ih_l0"],
                                  cell.named_parameters()["rnn.weight_ih"])
    xv = randn(2, 3, D)
    p = local(model.named_parameters())
    h, ys = np.zeros((2, H), np.float32), []
    for t in range(3):
        h = rnn_step(p, xv[:, t], h, lambda v: np.maximum(v, 0), "_l0")[0]
        ys.append(h)
    np.testing.assert_allclose(model(xv), np.stack(ys, 1), atol=1e-5)


def test_two_recurrent_layers_get_distinct_keys():
    x = gr.Input("B", "T", D)
    y = nn.Recurrent(gr.cells.GRU(H, H))(nn.Recurrent(gr.cells.GRU(D, H))(x))
    model = gr.gModule([x], [y])
    assert "gru.weight_ih_l0" in model.state_dict() and "gru_1.weight_ih_l0" in model.state_dict()


def test_recurrent_call_shape():
    with pytest.raises(gr.GraphError):
        x = gr.Input("B", "T", D)
        nn.Recurrent(gr.cells.GRU(D, H))([x, x, x])


def test_lstm_projection_cell_and_layer():
    """proj_size=P: h' = (o * tanh(c')) @ weight_hr.T, h is [B, P], weight_hh [4H, P]."""
    cell = gr.cells.LSTM(D, H, proj_size=2)
    p = local(cell.named_parameters())
    assert p["weight_hh"].shape == (4 * H, 2) and p["weight_hr"].shape == (2, H)
    h, c, x = randn(5, 2), randn(5, H), randn(5, D)
    got_h, got_c = cell(h, c, x)
    want_h, want_c = lstm_step(p, x, h, c)
    np.testing.assert_allclose(got_h, want_h @ p["weight_hr"].T, atol=1e-6)
    np.testing.assert_allclose(got_c, want_c, atol=1e-6)
    with pytest.raises(ValueError, match="proj_size"):
        gr.cells.LSTM(D, H, proj_size=H)
    rec = nn.Recurrent(gr.cells.LSTM(D, H, proj_size=2), num_layers=2, bidirectional=True,
                       return_state="stacked")
    xs = gr.Input("B", "T", D)
    out, (h_n, c_n) = rec(xs)
    assert out.type.shape[-1] == 4 and h_n.type.shape[-1] == 2 and c_n.type.shape[-1] == H
    assert rec.cells[2].weight_ih.shape == (4 * H, 4)          # layer 2 reads [B, 2P]


def test_sampler_of_a_projected_lstm():
    rec = nn.Recurrent(gr.cells.LSTM(3, 6, proj_size=2), num_layers=2)
    model = sampler(nn.LookupTable(7, 3), rec, nn.Linear(2, 7))
    prime = np.array([[1, 2, 3], [4, 0, 6]])
    want = sample_ids(model, prime, 5, 0.5, seed=3)
    np.testing.assert_array_equal(sample_ids(gr.compile(model), prime, 5, 0.5, seed=3), want)
