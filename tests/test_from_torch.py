"""gr.from_torch / gr.to_torch / gr.load_torch_state against PyTorch: same outputs, final
states and weight gradients (compiled training step and compiled VJP) as torch autograd."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr

torch = pytest.importorskip("torch")

D, H, P = 3, 5, 2
RNG = np.random.default_rng(7)

CASES = [
    # (kind, kwargs); each runs with num_layers 1 and 2, uni- and bidirectional
    ("RNN", {"nonlinearity": "tanh"}),
    ("RNN", {"nonlinearity": "relu", "bias": False}),
    ("LSTM", {}),
    ("LSTM", {"proj_size": P}),
    ("LSTM", {"bias": False, "batch_first": True}),
    ("GRU", {}),
    ("GRU", {"bias": False, "batch_first": True}),
]
SHAPES = [(1, False), (1, True), (2, False), (2, True)]


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def make(kind: str, kw: dict, layers: int, bidirectional: bool):
    torch.manual_seed(3)
    return getattr(torch.nn, kind)(D, H, num_layers=layers, bidirectional=bidirectional, **kw)


def torch_run(m, x: np.ndarray):
    """torch's (out, *states) for a batch-first x, whatever the module's layout."""
    xt = torch.tensor(x, requires_grad=False)
    out, state = m(xt if m.batch_first else xt.transpose(0, 1))
    out = out if m.batch_first else out.transpose(0, 1)
    return [out] + (list(state) if isinstance(state, tuple) else [state])


@pytest.mark.parametrize("kind, kw", CASES)
@pytest.mark.parametrize("layers, bidirectional", SHAPES)
def test_outputs_and_states_equal_torch(kind, kw, layers, bidirectional):
    m = make(kind, kw, layers, bidirectional)
    model = gr.from_torch(m)
    x = randn(4, 6, D)
    with torch.no_grad():
        want = torch_run(m, x)
    got = model(x)
    compiled = gr.compile(model)(x)
    assert len(got) == len(want)
    for g, c, w in zip(got, compiled, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(c, w.numpy(), rtol=1e-4, atol=1e-5)


def torch_grads(m) -> dict[str, np.ndarray]:
    return {k: p.grad.numpy().copy() for k, p in m.named_parameters()}


def assert_grads(ours: dict[str, np.ndarray], want: dict[str, np.ndarray], prefix: str):
    assert sorted(ours) == sorted(f"{prefix}.{k}" for k in want)
    for k, w in want.items():
        g = ours[f"{prefix}.{k}"]
        scale = np.abs(w).max() + 1e-6
        assert np.abs(g - w).max() <= 1e-5 * scale + 1e-7, (k, np.abs(g - w).max(), scale)


@pytest.mark.parametrize("kind, kw", CASES)
@pytest.mark.parametrize("layers, bidirectional", SHAPES)
def test_training_step_gradients_equal_torch_autograd(kind, kw, layers, bidirectional):
    m = make(kind, kw, layers, bidirectional)
    model = gr.from_torch(m)
    x, = model.inputs
    seq_model = gr.gModule([x], [model(x)[0]])             # the output sequence, MSE on it
    x_val = randn(4, 6, D)
    target = randn(4, 6, (2 if bidirectional else 1) * (kw.get("proj_size") or H))
    step = gr.compile(seq_model, loss=gr.MSECriterion(), train=True)
    loss = step(x_val, target)
    out = torch_run(m, x_val)[0]
    want_loss = torch.nn.functional.mse_loss(out, torch.tensor(target))
    want_loss.backward()
    np.testing.assert_allclose(loss, want_loss.item(), rtol=1e-5)
    assert_grads(seq_model.store.grad_views(), torch_grads(m), model.prefix)


@pytest.mark.parametrize("kind, kw", [CASES[0], CASES[3], CASES[5]])
def test_state_gradients_equal_torch_autograd(kind, kw):
    """The compiled VJP through the output and the final states."""
    m = make(kind, kw, 2, True)
    model = gr.from_torch(m)
    x = randn(3, 5, D)
    outs = torch_run(m, x)
    cots = [randn(*o.shape) for o in outs]
    sum(torch.sum(o * torch.tensor(c)) for o, c in zip(outs, cots)).backward()
    vjp = gr.compile_vjp(model)
    vjp(x, grad_outputs=cots)
    assert_grads(model.store.grad_views(), torch_grads(m), model.prefix)


@pytest.mark.parametrize("kind, kw", CASES)
def test_to_torch_gives_back_the_module(kind, kw):
    m = make(kind, kw, 2, True)
    twin = gr.to_torch(gr.from_torch(m), batch_first=m.batch_first)
    assert type(twin) is type(m) and repr(twin) == repr(m)
    want = m.state_dict()
    got = twin.state_dict()
    assert list(got) == list(want)
    for k in want:
        assert torch.equal(got[k], want[k]), k
    x = randn(2, 4, D)
    with torch.no_grad():
        for a, b in zip(torch_run(m, x), torch_run(twin, x)):
            assert torch.equal(a, b)


def test_sequential_of_layers_equals_torch():
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Embedding(11, D), torch.nn.Dropout(0.3),
                            torch.nn.GRU(D, H, batch_first=True)).eval()
    model = gr.from_torch(m)
    assert sorted(model.store.params) == sorted(m.state_dict())
    ids = RNG.integers(0, 11, (3, 7))
    with torch.no_grad():
        want_out, want_h = m(torch.tensor(ids))
    out, h = model(ids)
    np.testing.assert_allclose(out, want_out.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(h, want_h.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("act", ["Tanh", "Sigmoid", "ReLU", "Softmax", "LogSoftmax"])
def test_activations_in_a_sequential(act):
    torch.manual_seed(0)
    extra = {"dim": -1} if "Softmax" in act else {}
    m = torch.nn.Sequential(torch.nn.Linear(D, 4), getattr(torch.nn, act)(**extra),
                            torch.nn.Linear(4, 2, bias=False))
    model = gr.from_torch(m)
    x = randn(5, D)
    with torch.no_grad():
        want = m(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gr.compile(model)(x), want, rtol=1e-4, atol=1e-5)
    twin = gr.to_torch(model)
    assert [type(a) for a in twin] == [type(a) for a in m]
    with torch.no_grad():
        np.testing.assert_array_equal(twin(torch.tensor(x)).numpy(), want)


def test_unsupported_modules_are_named():
    with pytest.raises(TypeError, match="torch.nn.Conv1d.*no graphrnn counterpart"):
        gr.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Conv1d(2, 2, 1)))
    with pytest.raises(ValueError, match="padding_idx"):
        gr.from_torch(torch.nn.Embedding(5, 2, padding_idx=0))
    with pytest.raises(ValueError, match="dim explicitly"):
        gr.from_torch(torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Softmax()))
    with pytest.raises(ValueError, match="input_shape"):
        gr.from_torch(torch.nn.Tanh())
    with pytest.raises(TypeError, match="last module"):
        gr.from_torch(torch.nn.Sequential(torch.nn.LSTM(2, 2), torch.nn.Linear(2, 2)))
    with pytest.raises(TypeError, match="graph, not a chain"):
        x = gr.Input("B", 2)
        gr.to_torch(gr.gModule([x], [gr.nn.Tanh()(x)]))


def test_load_torch_state_by_name(tmp_path):
    torch.manual_seed(5)
    src = torch.nn.LSTM(D, H, num_layers=2)
    model = gr.from_torch(torch.nn.LSTM(D, H, num_layers=2))
    x = randn(2, 4, D)
    assert not np.allclose(model(x)[0], gr.from_torch(src)(x)[0])
    fast = gr.compile(model)
    fast(x)
    path = tmp_path / "lstm.pt"
    torch.save(src.state_dict(), path)
    gr.load_torch_state(model, str(path))              # torch's own keys, weights_only load
    want = gr.from_torch(src)(x)
    for a, b in zip(model(x), want):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(fast(x), want):                    # compiled code sees the new weights
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    numpy_state = {f"lstm.{k}": v.numpy() * 0 for k, v in src.state_dict().items()}
    model.load_state_dict(numpy_state)                 # the model's keys, numpy arrays
    assert not model.flat.any()
    seq = gr.from_torch(torch.nn.Sequential(torch.nn.Linear(D, 4), torch.nn.Tanh()))
    gr.load_torch_state(seq, {"0.weight": torch.ones(4, D), "0.bias": torch.zeros(4)})
    np.testing.assert_array_equal(seq.named_parameters()["0.weight"], np.ones((4, D)))


def test_load_torch_state_errors():
    model = gr.from_torch(torch.nn.GRU(D, H))
    state = {k: v.clone() for k, v in torch.nn.GRU(D, H).state_dict().items()}
    with pytest.raises(KeyError, match=r"missing keys \['gru.bias_hh_l0'\]"):
        gr.load_torch_state(model, {k: v for k, v in state.items() if k != "bias_hh_l0"})
    with pytest.raises(KeyError, match=r"unexpected keys \['gru.weight_ih_l1'\]"):
        gr.load_torch_state(model, {**state, "weight_ih_l1": state["weight_ih_l0"]})
    with pytest.raises(ValueError, match=r"gru.weight_hh_l0 has shape \[15, 4\].*\[15, 5\]"):
        gr.load_torch_state(model, {**state, "weight_hh_l0": torch.zeros(15, 4)})
    with pytest.raises(TypeError, match="state_dict"):
        gr.load_torch_state(model, [1, 2])
    gr.load_torch_state(model, {"weight_ih_l0": state["weight_ih_l0"]}, strict=False)
    np.testing.assert_array_equal(model.named_parameters()["gru.weight_ih_l0"],
                                  state["weight_ih_l0"].numpy())


def test_to_torch_of_graphrnn_modules():
    rec = gr.nn.Recurrent(gr.cells.LSTM(D, H, proj_size=P), num_layers=2, bidirectional=True)
    x = gr.Input("B", "T", D)
    model = gr.gModule([x], [rec(x)])
    xs = randn(2, 5, D)
    twin = gr.to_torch(rec)
    assert twin.batch_first and twin.proj_size == P
    with torch.no_grad():
        np.testing.assert_allclose(twin(torch.tensor(xs))[0].numpy(), model(xs), rtol=1e-5,
                                   atol=1e-6)
    layers = [gr.nn.Linear(D, 4), gr.nn.ReLU(), gr.nn.Linear(4, 2)]
    y = gr.Input("B", D)
    h = y
    for layer in layers:
        h = layer(h)
    mlp = gr.gModule([y], [h])
    seq = gr.to_torch(layers)
    assert isinstance(seq, torch.nn.Sequential) and len(seq) == 3
    with torch.no_grad():
        np.testing.assert_allclose(seq(torch.tensor(xs[:, 0])).numpy(), mlp(xs[:, 0]),
                                   rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="CMul.*no PyTorch counterpart"):
        gr.to_torch(gr.nn.CMul(3))


@pytest.mark.parametrize("kind, kw", [CASES[1], CASES[3], CASES[6]])
def test_lengths_and_initial_state_equal_packed_torch(kind, kw):
    m = make(kind, kw, 2, True)
    model = gr.from_torch(m, lengths=True, initial_state=True)
    assert [x.name for x in model.inputs] == ["x", "lengths", "h0"] + (["c0"] if
                                                                        kind == "LSTM" else [])
    x, lengths = randn(4, 6, D), np.array([6, 2, 5, 1])
    states = [randn(4, 4, s) for s in model_state_sizes(m)]
    got = gr.compile(model)(x, lengths, *states)
    xt = torch.tensor(x if m.batch_first else x.transpose(1, 0, 2))
    packed = torch.nn.utils.rnn.pack_padded_sequence(xt, torch.tensor(lengths),
                                                     batch_first=m.batch_first,
                                                     enforce_sorted=False)
    hx = [torch.tensor(s) for s in states]
    with torch.no_grad():
        out, st = m(packed, tuple(hx) if kind == "LSTM" else hx[0])
    out, _ = torch.nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=6)
    want = [out] + (list(st) if isinstance(st, tuple) else [st])
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-4, atol=1e-5)


def model_state_sizes(m) -> list[int]:
    if isinstance(m, torch.nn.LSTM):
        return [m.proj_size or m.hidden_size, m.hidden_size]
    return [m.hidden_size]
