"""nn.Recurrent's initial states, PyTorch-layout final states and dropout between layers:
against PyTorch's nn.RNN/LSTM/GRU (same weights: outputs, states and every gradient,
compiled and interpreted), the interpreter and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradcheck, gradients

D, H, B, T = 3, 4, 3, 5
RNG = np.random.default_rng(14)
KINDS = {"lstm": (gr.cells.LSTM, {}), "gru": (gr.cells.GRU, {}),
         "rnn": (gr.cells.RNN, {"nonlinearity": "tanh"})}


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def stateful_model(kind: str, layers: int, bidirectional: bool, *, lengths: bool = False,
                   dropout: float = 0.0) -> tuple[gr.gModule, nn.Recurrent, list]:
    """x [, lengths], h0 [, c0] -> output, h_n [, c_n] with PyTorch's state layout."""
    cls, kw = KINDS[kind]
    n = layers * (2 if bidirectional else 1)
    rec = nn.Recurrent(cls(D, H, **kw), num_layers=layers, bidirectional=bidirectional,
                       return_state="stacked", dropout=dropout)
    x = gr.Input("B", "T", D, name="x")
    ins = [x, gr.Input("B", dtype="int64", name="lengths")] if lengths else [x]
    h0 = gr.Input(n, "B", H, name="h0")
    states = [h0, gr.Input(n, "B", H, name="c0")] if kind == "lstm" else [h0]
    out, fin = rec(ins if lengths else x, tuple(states) if kind == "lstm" else h0)
    fins = list(fin) if kind == "lstm" else [fin]
    args = [randn(B, T, D)] + ([np.array([T, 2, 4])] if lengths else []) + \
        [randn(n, B, H) for _ in states]
    return gr.gModule(ins + states, [out] + fins), rec, args


@pytest.mark.parametrize("kind", sorted(KINDS))
@pytest.mark.parametrize("layers,bidirectional", [(1, False), (2, True)])
def test_states_match_torch_outputs_and_gradients(kind: str, layers: int,
                                                  bidirectional: bool) -> None:
    torch = pytest.importorskip("torch")
    model, rec, args = stateful_model(kind, layers, bidirectional)
    cls = {"lstm": torch.nn.LSTM, "gru": torch.nn.GRU, "rnn": torch.nn.RNN}[kind]
    torch.manual_seed(3)
    ref = cls(D, H, num_layers=layers, bidirectional=bidirectional, batch_first=True)
    model.load_state_dict({f"{rec.prefix}.{k}": v.detach().numpy()
                           for k, v in ref.state_dict().items()})
    tx = [torch.tensor(a, requires_grad=True) for a in args]
    hx = (tx[1], tx[2]) if kind == "lstm" else tx[1]
    out, fin = ref(tx[0], hx)
    want = [out] + (list(fin) if kind == "lstm" else [fin])
    cots = [randn(*w.shape) for w in want]
    sum((w * torch.tensor(c)).sum() for w, c in zip(want, cots)).backward()
    interpreted = model(*args)
    compiled = gr.compile(model)(*args)
    for w, got, fast in zip(want, interpreted, compiled):
        np.testing.assert_allclose(got, w.detach().numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(fast, w.detach().numpy(), rtol=1e-4, atol=1e-5)
    # gradients: the compiled VJP and the interpreter's, against torch's
    outs, grads = gr.compile_vjp(model)(*args, cots)
    _, pgrads, igrads = gradients(model, *args, cotangents=cots, dtype=np.float32)
    for t, g, ig in zip(tx, grads, igrads):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(ig, t.grad.numpy(), rtol=1e-4, atol=1e-5)
    flat_grad = model.parameters()[1]
    views = model.table.views(flat_grad)
    for k, p in ref.named_parameters():
        key = f"{rec.prefix}.{k}"
        np.testing.assert_allclose(views[key], p.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pgrads[key], p.grad.numpy(), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_states_as_lists_and_gradcheck(kind: str) -> None:
    cls, kw = KINDS[kind]
    rec = nn.Recurrent(cls(D, H, **kw), num_layers=2, return_state=True)
    x, n = gr.Input("B", "T", D), gr.Input("B", dtype="int64")
    states = [gr.Input("B", H) for _ in range(2 * rec.n_states)]
    hs, cs = states[0::rec.n_states], states[1::rec.n_states]
    hx = (hs, cs) if kind == "lstm" else hs
    out = rec([x, n], hx)
    model = gr.gModule([x, n] + states, list(out))
    args = [randn(B, T, D), np.array([T, 0, 3])] + [randn(B, H) for _ in states]
    interpreted = model(*args)
    for got, fast in zip(interpreted, gr.compile(model)(*args)):
        np.testing.assert_allclose(fast, got, rtol=1e-4, atol=1e-5)
    for k in range(len(states)):        # the row of length 0 keeps its initial states
        np.testing.assert_allclose(interpreted[1 + k][1], args[2 + k][1], atol=1e-6)
    assert gradcheck(model, *args).ok


def test_state_errors_name_the_layout() -> None:
    rec = nn.Recurrent(gr.cells.LSTM(D, H), num_layers=2)
    x = gr.Input("B", "T", D)
    with pytest.raises(gr.GraphError, match=r"\(h0, c0\)"):
        rec(x, gr.Input(2, "B", H))
    with pytest.raises(gr.GraphError, match=r"\[2, B, 4\]"):
        rec(x, (gr.Input(3, "B", H), gr.Input(2, "B", H)))
    with pytest.raises(ValueError, match="return_state"):
        nn.Recurrent(gr.cells.GRU(D, H), return_state="yes")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_dropout_between_layers(kind: str) -> None:
    model, rec, args = stateful_model(kind, 3, False, lengths=True, dropout=0.5)
    drops = [n for n, _ in model.graph.walk() if n.op == gr.Op.DROPOUT]
    assert len(drops) == 2                           # between layers, not after the last
    # inference: the identity, in the interpreter and compiled
    plain, _, _ = stateful_model(kind, 3, False, lengths=True)
    plain.load_state_dict(model.state_dict())
    for a, b, c in zip(model(*args), plain(*args), gr.compile(model)(*args)):
        np.testing.assert_allclose(a, b, atol=1e-6)
        np.testing.assert_allclose(c, b, rtol=1e-4, atol=1e-5)
    # training: the compiled step draws the interpreter's masks
    out = gr.gModule(model.graph.inputs, [model.graph.outputs[0]])
    crit = nn.MSECriterion(lengths="lengths")
    target = randn(B, T, H)
    fast = gr.compile(out, loss=crit, train=True)
    slow = gr.train.InterpretedStep(out, crit)
    losses, grads = [], []
    for step in (fast, slow):
        losses.append(step(*args, target, seed=7))
        grads.append(out.parameters()[1].copy())
    np.testing.assert_allclose(losses[0], losses[1], rtol=1e-4)
    np.testing.assert_allclose(grads[0], grads[1], rtol=1e-4, atol=1e-6)
    # masks applied: training-mode outputs differ from inference (not the losses: two scalars
    # may come close by chance, whatever seed the model's dropout nodes drew)
    trained = gr.interpret(out, *args, training=True, seed=7)
    assert not np.allclose(trained, out(*args), rtol=1e-3, atol=1e-6)


def test_dropout_matches_torch_in_eval_mode() -> None:
    torch = pytest.importorskip("torch")
    model, rec, args = stateful_model("gru", 2, True, dropout=0.3)
    torch.manual_seed(5)
    ref = torch.nn.GRU(D, H, num_layers=2, bidirectional=True, batch_first=True, dropout=0.3)
    model.load_state_dict({f"{rec.prefix}.{k}": v.detach().numpy()
                           for k, v in ref.state_dict().items()})
    ref.eval()
    with torch.no_grad():
        out, h_n = ref(torch.tensor(args[0]), torch.tensor(args[1]))
    for got in (model(*args), gr.compile(model)(*args)):
        np.testing.assert_allclose(got[0], out.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got[1], h_n.numpy(), rtol=1e-4, atol=1e-5)
