"""The layer-normalised LSTM of graphrnn.zoo (LayerNorm inside a loop body) against a PyTorch
LayerNorm-LSTM written here with the same weights: outputs and every gradient, interpreted
and compiled, and its gradients against finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.gradcheck import gradients
from graphrnn.torch_interop import to_torch_recurrent
from graphrnn.zoo import LayerNormLSTM, layernorm_lstm

RNG = np.random.default_rng(5)
B, T, D, H = 3, 6, 5, 8


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def torch_layernorm_lstm(torch, weights: dict, x):
    """h for every step of Ba et al.'s LSTM, written with torch ops (zero initial states)."""
    def norm(v, name):
        return torch.nn.functional.layer_norm(v, v.shape[-1:], weights[f"{name}_weight"],
                                              weights[f"{name}_bias"], eps=1e-5)
    h = torch.zeros(x.shape[0], H)
    c = torch.zeros(x.shape[0], H)
    hs = []
    for t in range(x.shape[1]):
        z = norm(x[:, t] @ weights["weight_ih"].T, "ln_ih") + \
            norm(h @ weights["weight_hh"].T, "ln_hh")
        i, f, g, o = z.split(H, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h = torch.sigmoid(o) * torch.tanh(norm(c, "ln_c"))
        hs.append(h)
    return torch.stack(hs, 1)


def random_weights(model: gr.gModule) -> dict[str, np.ndarray]:
    """Every parameter set to random values (the norms away from ones and zeros)."""
    named = model.named_parameters()
    for p in named.values():
        p[...] = randn(*p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    return {k: v.copy() for k, v in named.items()}


def test_layernorm_lstm_matches_torch_outputs_and_every_gradient():
    torch = pytest.importorskip("torch")
    model = layernorm_lstm(D, H, name="ln")
    values = random_weights(model)
    weights = {k.split(".", 1)[1].removesuffix("_l0"): torch.tensor(v, requires_grad=True)
               for k, v in values.items()}
    assert set(weights) == {"weight_ih", "weight_hh", "ln_ih_weight", "ln_ih_bias",
                            "ln_hh_weight", "ln_hh_bias", "ln_c_weight", "ln_c_bias"}
    x = randn(B, T, D)
    tx = torch.tensor(x, requires_grad=True)
    want = torch_layernorm_lstm(torch, weights, tx)
    cot = randn(*want.shape)
    (want * torch.tensor(cot)).sum().backward()
    np.testing.assert_allclose(model(x), want.detach().numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gr.compile(model)(x), want.detach().numpy(), rtol=1e-4,
                               atol=1e-5)
    model.parameters()[1][:] = 0.0
    (out,), (dx,) = gr.compile_vjp(model)(x, [cot])
    _, pgrads, (idx,) = gradients(model, x, cotangents=[cot], dtype=np.float32)
    np.testing.assert_allclose(out, want.detach().numpy(), rtol=1e-4, atol=1e-5)
    for got in (dx, idx):
        np.testing.assert_allclose(got, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    views = model.table.views(model.parameters()[1])
    for key in values:
        want_grad = weights[key.split(".", 1)[1].removesuffix("_l0")].grad.numpy()
        scale = max(1.0, float(np.abs(want_grad).max()))
        for got in (views[key], pgrads[key]):
            assert np.abs(got - want_grad).max() / scale < 1e-4, key


def test_layernorm_lstm_gradients_match_finite_differences_over_two_layers():
    model = layernorm_lstm(D, H, num_layers=2)
    random_weights(model)
    result = gr.gradcheck(model, randn(2, 4, D).astype(np.float64))
    assert result.ok, str(result)


def test_layernorm_lstm_trains_compiled_for_any_batch_and_length():
    model = layernorm_lstm(D, H)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    params, grads = model.parameters()
    for b, t in ((1, 3), (4, 9)):
        x, y = randn(b, t, D), randn(b, t, H)
        loss = step(x, y)
        _, want, _ = gradients(model, x, cotangents=[2 * (model(x) - y) / y.size],
                               dtype=np.float32)
        views = model.table.views(grads)
        for k, g in want.items():
            np.testing.assert_allclose(views[k], g, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(loss, np.mean((model(x) - y) ** 2), rtol=1e-5)
    assert params.size > 0


def test_a_given_cell_keeps_its_norm_weights_in_recurrent():
    cell = LayerNormLSTM(D, H)
    gr.value(cell.ln_c_weight)[...] = 3.0
    x = gr.Input("B", "T", D)
    rec = gr.nn.Recurrent(cell)
    model = gr.gModule([x], [rec(x)])
    np.testing.assert_allclose(model.named_parameters()[f"{rec.prefix}.ln_c_weight_l0"], 3.0)


def test_the_layer_norm_lstm_is_not_exported_as_a_plain_torch_lstm():
    pytest.importorskip("torch")
    with pytest.raises(TypeError, match="LayerNormLSTM"):
        to_torch_recurrent(gr.nn.Recurrent(LayerNormLSTM(D, H)))


def test_the_layer_norm_lstm_saves_and_loads(tmp_path):
    model = layernorm_lstm(D, H)
    random_weights(model)
    gr.save(model, tmp_path / "ln.grnn")
    x = randn(2, 5, D)
    np.testing.assert_allclose(gr.load(tmp_path / "ln.grnn")(x), model(x), rtol=1e-6)
