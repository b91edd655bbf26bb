"""Torch nn spellings users reach for first: CMul and Add (a peephole LSTM built from them,
against PyTorch), JoinTable(dim, nInputDims), criteria under nn., training steps with a
positional target, compiled input gradients and compile_vjp against PyTorch and the
interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.flat import param_keys
from graphrnn.gradcheck import gradcheck, gradients
from graphrnn.losses import loss_graph
from graphrnn.trainstep import InterpretedStep

B, T, D, H = 3, 4, 2, 3
RNG = np.random.default_rng(1414)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def peephole_lstm() -> tuple[gr.gModule, dict[str, nn.Module]]:
    """An LSTM with peepholes (Gers & Schmidhuber): i, f see c_{t-1}, o sees c_t, the
    peephole weights nn.CMul(H) and the gate biases nn.Add(4H)."""
    h, c, x = gr.Input("B", H), gr.Input("B", H), gr.Input("B", D)
    mods = {"wx": nn.Linear(D, 4 * H, bias=False), "wh": nn.Linear(H, 4 * H, bias=False),
            "b": nn.Add(4 * H), "pi": nn.CMul(H), "pf": nn.CMul(H), "po": nn.CMul(H)}
    z = mods["b"](nn.CAddTable()([mods["wx"](x), mods["wh"](h)]))
    zi, zf, zg, zo = (nn.Narrow(1, k * H, H)(z) for k in range(4))
    i = nn.Sigmoid()(nn.CAddTable()([zi, mods["pi"](c)]))
    f = nn.Sigmoid()(nn.CAddTable()([zf, mods["pf"](c)]))
    c2 = nn.CAddTable()([nn.CMulTable()([f, c]), nn.CMulTable()([i, nn.Tanh()(zg)])])
    o = nn.Sigmoid()(nn.CAddTable()([zo, mods["po"](c2)]))
    h2 = nn.CMulTable()([o, nn.Tanh()(c2)])
    body = gr.gModule([h, c, x], [h2, c2, h2])
    xs = gr.Input("B", "T", D, name="x")
    init = [gr.ops.fill((H,), batch_like=xs) for _ in range(2)]
    _, _, hs = gr.Loop(body, n_carry=2)(init=init, xs=[xs])
    return gr.gModule([xs], [hs]), mods


def torch_peephole(torch, mods: dict, x):
    t = {k: torch.tensor(gr.value(next(iter(m.params().values()))), requires_grad=True)
         for k, m in mods.items()}
    h = c = torch.zeros(x.shape[0], H)
    outs = []
    for s in range(x.shape[1]):
        z = x[:, s] @ t["wx"].T + h @ t["wh"].T + t["b"]
        zi, zf, zg, zo = z.split(H, 1)
        i, f = torch.sigmoid(zi + t["pi"] * c), torch.sigmoid(zf + t["pf"] * c)
        c = f * c + i * torch.tanh(zg)
        h = torch.sigmoid(zo + t["po"] * c) * torch.tanh(c)
        outs.append(h)
    return torch.stack(outs, 1), t


def test_cmul_add_peephole_lstm_matches_torch() -> None:
    torch = pytest.importorskip("torch")
    model, mods = peephole_lstm()
    assert model.named_parameters()["cmul.weight"].shape == (H,)
    assert model.named_parameters()["add.bias"].shape == (4 * H,)
    xs, cot = randn(B, T, D), randn(B, T, H)
    tx = torch.tensor(xs, requires_grad=True)
    want, t = torch_peephole(torch, mods, tx)
    (want * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(model(xs), want.detach().numpy(), rtol=1e-4, atol=1e-6)
    (y,), (dx,) = gr.compile_vjp(model)(xs, cot)
    np.testing.assert_allclose(y, want.detach().numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    views = model.table.views(model.parameters()[1])
    _, oracle, _ = gradients(model, xs, cotangents=[cot], dtype=np.float32)
    keys = param_keys(model.graph.params())
    for k, m in mods.items():
        key = keys[next(iter(m.params().values()))]
        np.testing.assert_allclose(views[key], t[k].grad.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(oracle[key], t[k].grad.numpy(), rtol=1e-4, atol=1e-6)
    assert gradcheck(model, xs).ok


def test_cmul_add_shapes_and_init() -> None:
    x = gr.Input("B", 2, 3)
    cm, ad, sc = nn.CMul(2, 3), nn.Add(3), nn.Add(3, True)
    model = gr.gModule([x], [sc(ad(cm(x)))])
    xs = randn(4, 2, 3)
    want = xs * gr.value(cm.weight) + gr.value(ad.bias) + gr.value(sc.bias)
    np.testing.assert_allclose(model(xs), want, rtol=1e-6)
    np.testing.assert_allclose(gr.compile(model)(xs), want, rtol=1e-5)
    assert np.abs(gr.value(cm.weight)).max() <= 1 / np.sqrt(6)
    assert sc.bias.shape == (1,) and nn.CMul((2, 3)).weight.shape == (2, 3)
    with pytest.raises(ValueError, match="positive int sizes"):
        nn.CMul(0)


def test_join_table_torch_form() -> None:
    a, b = gr.Input("B", 2), gr.Input("B", 3)
    assert nn.JoinTable(1, 1)([a, b]).type.shape == ("B", 5)     # Torch: dim 1 of [F]
    assert nn.JoinTable(1)([a, b]).type.shape == ("B", 5)
    u, v = gr.Input("B", 2, 4), gr.Input("B", 3, 4)
    assert nn.JoinTable(1, 2)([u, v]).type.shape == ("B", 5, 4)
    assert nn.JoinTable(1, 2, name="j").prefix == "j"
    with pytest.raises(TypeError, match="nInputDims, an int"):
        nn.JoinTable(1, "join")
    with pytest.raises(gr.GraphError, match=r"JoinTable\(1, 3\).*rank 2"):
        nn.JoinTable(1, 3)([a, b])


def test_positional_target_and_criteria_under_nn() -> None:
    assert nn.MSECriterion is gr.MSECriterion and nn.ClassNLLCriterion is gr.ClassNLLCriterion
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(H, 1)(nn.Recurrent(gr.cells.RNN(D, H))(x))])
    xs, ys = randn(B, T, D), randn(B, T, 1)
    fast = gr.compile(model, loss=nn.MSECriterion(), train=True)
    slow = InterpretedStep(model, nn.MSECriterion())
    a, b = fast(xs, ys), fast(xs, target=ys)
    assert a == b and slow(xs, ys) == pytest.approx(a, rel=1e-5)
    assert fast.loss(xs, ys) == pytest.approx(a, rel=1e-6)
    with pytest.raises(TypeError, match="2 arguments, got 1"):
        fast(xs)
    hist = gr.train.fit(model, nn.MSECriterion(), xs, ys, epochs=1, progress=False)
    assert hist.epochs == 1


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_input_grads_of_a_training_step_match_torch(cell: str) -> None:
    torch = pytest.importorskip("torch")
    x, h0 = gr.Input("B", "T", D, name="x"), gr.Input(1, "B", H, name="h0")
    rec = nn.Recurrent(getattr(gr.cells, cell)(D, H), return_state="stacked")
    hx = (h0, h0) if cell == "LSTM" else h0
    out, _ = rec(x, hx)
    lin = nn.Linear(H, 2)
    model = gr.gModule([x, h0], [lin(out)])
    torch.manual_seed(0)
    ref = getattr(torch.nn, cell)(D, H, batch_first=True)
    model.load_state_dict({f"{rec.prefix}.{k}": v.detach().numpy()
                           for k, v in ref.state_dict().items()}, strict=False)
    xs, hs, ys = randn(B, T, D), randn(1, B, H), randn(B, T, 2)
    tx, th = torch.tensor(xs, requires_grad=True), torch.tensor(hs, requires_grad=True)
    tw, tb = (torch.tensor(gr.value(p), requires_grad=True) for p in (lin.weight, lin.bias))
    seq, _ = ref(tx, (th, th) if cell == "LSTM" else th)
    want = torch.nn.functional.mse_loss(seq @ tw.T + tb, torch.tensor(ys))
    want.backward()
    step = gr.compile(model, loss=nn.MSECriterion(), train=True, input_grads=True)
    loss, (dx, dh) = step(xs, hs, ys)
    assert loss == pytest.approx(float(want.detach()), rel=1e-4)
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dh, th.grad.numpy(), rtol=1e-4, atol=1e-6)
    views = model.table.views(model.parameters()[1])
    weight_key = param_keys(model.graph.params())[lin.weight]
    np.testing.assert_allclose(views[weight_key], tw.grad.numpy(), rtol=1e-4, atol=1e-6)
    for k, p in ref.named_parameters():
        np.testing.assert_allclose(views[f"{rec.prefix}.{k}"], p.grad.numpy(), rtol=1e-4,
                                   atol=1e-6)
    # the interpreter's oracle (float64) agrees
    _, _, (ix, ih, _) = gradients(loss_graph(model, nn.MSECriterion()), xs, hs, ys)
    np.testing.assert_allclose(dx, ix, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(dh, ih, rtol=1e-4, atol=1e-6)


def test_vjp_of_chosen_outputs_and_errors() -> None:
    x, n = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="n")
    y, h = nn.Recurrent(gr.cells.GRU(D, H), return_state=True)([x, n])
    model = gr.gModule([x, n], [y, nn.Tanh()(h)])
    xs, ns = randn(B, T, D), np.array([T, 1, 0])
    cy, ch = randn(B, T, H), randn(B, H)
    both = gr.compile_vjp(model)
    (oy, oh), (dx, dn) = both(xs, ns, grad_outputs=[cy, ch])
    wy, wh = model(xs, ns)
    np.testing.assert_allclose(oy, wy, atol=1e-5)
    np.testing.assert_allclose(oh, wh, atol=1e-5)
    _, pg, (ig,) = gradients(model, xs, ns, cotangents=[cy, ch], dtype=np.float32)
    np.testing.assert_allclose(dx, ig, rtol=1e-4, atol=1e-6)
    assert dn is None
    views = model.table.views(model.parameters()[1])
    for key, g in pg.items():
        np.testing.assert_allclose(views[key], g, rtol=1e-4, atol=1e-6)
    (only_h,), (dx_h, _) = gr.compile_vjp(model, outputs=[1])(xs, ns, ch)
    _, _, (ig_h,) = gradients(model, xs, ns, cotangents=[np.zeros_like(cy), ch],
                              dtype=np.float32)
    np.testing.assert_allclose(only_h, wh, atol=1e-5)
    np.testing.assert_allclose(dx_h, ig_h, rtol=1e-4, atol=1e-6)
    with pytest.raises(gr.InputError, match="expected 2 grad_outputs"):
        both(xs, ns, grad_outputs=[cy])
    with pytest.raises(TypeError, match="input_grads=True is for training steps"):
        gr.compile(model, input_grads=True)
