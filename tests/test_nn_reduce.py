"""Reductions and normalisation (nn.Sum, Mean, Max, Min, LogSumExp, LayerNorm, RMSNorm):
interpreted and compiled, forward and gradients against PyTorch with the same weights, the
derived gradients against finite differences, and errors for dims the input does not have."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradients

RNG = np.random.default_rng(11)
SHAPE = (3, 4, 6)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def build(module) -> gr.gModule:
    x = gr.Input("B", *SHAPE[1:], name="x")
    return gr.gModule([x], [module(x)])


def close(got, want, tol: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=tol, atol=tol)


def against_torch(module, reference, x: np.ndarray, params: dict | None = None) -> None:
    """Outputs and gradients (input and parameters) of `module` on `x`, interpreted and
    compiled, equal `reference`'s (a torch function of a tensor); `params` maps our parameter
    keys to the torch parameters."""
    torch = pytest.importorskip("torch")
    model = build(module)
    params = params or {}
    model.load_state_dict({k: p.detach().numpy() for k, p in params.items()})
    tx = torch.tensor(x, requires_grad=True)
    want = reference(tx)
    cot = randn(*want.shape)
    (want * torch.tensor(cot)).sum().backward()
    close(model(x), want.detach().numpy())
    close(gr.compile(model)(x), want.detach().numpy())
    model.parameters()[1][:] = 0.0
    (out,), (dx,) = gr.compile_vjp(model)(x, [cot])
    close(out, want.detach().numpy())
    close(dx, tx.grad.numpy())
    _, pgrads, (idx,) = gradients(model, x, cotangents=[cot], dtype=np.float32)
    close(idx, tx.grad.numpy())
    views = model.table.views(model.parameters()[1])
    for key, p in params.items():
        close(views[key], p.grad.numpy())
        close(pgrads[key], p.grad.numpy())


@pytest.mark.parametrize("dim, keepdim", [(1, False), ((1, 2), True), (-1, False), (0, True)])
def test_sum_and_mean_match_torch(dim, keepdim):
    x = randn(*SHAPE)
    against_torch(nn.Sum(dim, keepdim), lambda t: t.sum(dim, keepdim=keepdim), x)
    against_torch(nn.Mean(dim, keepdim), lambda t: t.mean(dim, keepdim=keepdim), x)


@pytest.mark.parametrize("dim, keepdim", [(1, False), (2, True), (-1, False), (0, False)])
def test_max_and_min_match_torch(dim, keepdim):
    x = randn(*SHAPE)
    against_torch(nn.Max(dim, keepdim), lambda t: t.max(dim, keepdim=keepdim).values, x)
    against_torch(nn.Min(dim, keepdim), lambda t: t.min(dim, keepdim=keepdim).values, x)


@pytest.mark.parametrize("dim", [1, 2])
def test_max_and_min_send_the_gradient_to_the_first_tie_as_torch(dim):
    x = RNG.integers(0, 3, SHAPE).astype(np.float32)     # many ties in every row
    against_torch(nn.Max(dim), lambda t: t.max(dim).values, x)
    against_torch(nn.Min(dim), lambda t: t.min(dim).values, x)


def test_max_of_a_row_with_nan_is_nan_as_in_torch():
    torch = pytest.importorskip("torch")
    x = randn(*SHAPE)
    x[1, 2, 3] = np.nan
    model = build(nn.Max(2))
    want = torch.tensor(x).max(2).values.numpy()
    close(model(x), want)
    close(gr.compile(model)(x), want)
    (_,), (dx,) = gr.compile_vjp(model)(x, [np.ones((3, 4), np.float32)])
    tx = torch.tensor(x, requires_grad=True)
    tx.max(2).values.sum().backward()
    close(dx, tx.grad.numpy())


@pytest.mark.parametrize("dim, keepdim, scale", [(1, False, 1.0), (-1, True, 1.0),
                                                 (2, False, 300.0)])
def test_logsumexp_matches_torch_and_is_stable(dim, keepdim, scale):
    torch = pytest.importorskip("torch")
    x = randn(*SHAPE) * scale                # exp(300 * x) overflows float32 unless shifted
    against_torch(nn.LogSumExp(dim, keepdim), lambda t: torch.logsumexp(t, dim, keepdim), x)


def test_logsumexp_of_rows_of_minus_infinity_is_minus_infinity():
    x = randn(*SHAPE)
    x[0, 1, :] = -np.inf
    model = build(nn.LogSumExp(2))
    with np.errstate(divide="ignore"):
        want = np.log(np.sum(np.exp(x.astype(np.float64)), axis=2))
    close(model(x), want)
    close(gr.compile(model)(x), want)


def _torch_norm(cls, shape, **kw):
    torch = pytest.importorskip("torch")
    ref = cls(shape, **kw)
    with torch.no_grad():
        for p in ref.parameters():
            p.copy_(torch.tensor(randn(*p.shape)))
    return ref


@pytest.mark.parametrize("shape, kw", [(6, {}), ((4, 6), {"eps": 1e-3}),
                                       (6, {"elementwise_affine": False}),
                                       (6, {"bias": False})])
def test_layernorm_matches_torch(shape, kw):
    torch = pytest.importorskip("torch")
    ref = _torch_norm(torch.nn.LayerNorm, shape, **kw)
    mod = nn.LayerNorm(shape, **kw)
    params = {f"{mod.prefix}.{k}": p for k, p in ref.named_parameters()}
    against_torch(mod, ref, randn(*SHAPE) * 3 + 1, params)


@pytest.mark.parametrize("shape, kw", [(6, {}), ((4, 6), {"eps": 1e-3}),
                                       (6, {"elementwise_affine": False}),
                                       (6, {"eps": None})])
def test_rmsnorm_matches_torch(shape, kw):
    torch = pytest.importorskip("torch")
    ref = _torch_norm(torch.nn.RMSNorm, shape, **kw)
    mod = nn.RMSNorm(shape, **kw)
    params = {f"{mod.prefix}.{k}": p for k, p in ref.named_parameters()}
    against_torch(mod, ref, randn(*SHAPE), params)


def test_norms_keep_pytorch_parameter_names_and_initial_values():
    ln, rms = nn.LayerNorm(6), nn.RMSNorm(6)
    model = gr.gModule(*(lambda x: ([x], [ln(x), rms(x)]))(gr.Input("B", 6)))
    named = model.named_parameters()
    assert set(named) == {f"{ln.prefix}.weight", f"{ln.prefix}.bias", f"{rms.prefix}.weight"}
    close(named[f"{ln.prefix}.weight"], np.ones(6))
    close(named[f"{ln.prefix}.bias"], np.zeros(6))
    assert rms.eps == np.finfo(np.float32).eps


@pytest.mark.parametrize("module", [
    nn.Sum(1), nn.Mean((1, 2), keepdim=True), nn.Max(1), nn.Min(-1, keepdim=True),
    nn.LogSumExp(2), nn.LayerNorm(6), nn.LayerNorm((4, 6)), nn.RMSNorm(6)],
    ids=lambda m: type(m).__name__)
def test_gradients_match_finite_differences(module):
    model = build(module)
    for p in model.named_parameters().values():     # away from the ones/zeros init
        p[...] = randn(*p.shape)
    result = gr.gradcheck(model, randn(*SHAPE).astype(np.float64))
    assert result.ok, str(result)


@pytest.mark.parametrize("module", [nn.Max(3), nn.Min(-4), nn.LogSumExp(3), nn.Sum(5),
                                    nn.Mean((0, 3))], ids=lambda m: type(m).__name__)
def test_a_dim_the_input_does_not_have_is_an_error_at_the_users_line(module):
    x = gr.Input("B", 4)
    with pytest.raises(gr.ShapeError, match=r"test_nn_reduce\.py:\d+.*out of range"):
        module(x)


def test_a_normalized_shape_that_does_not_end_the_input_is_an_error():
    x = gr.Input("B", 4, 6)
    with pytest.raises(gr.ShapeError, match=r"test_nn_reduce\.py:\d+.*normalized_shape \[4\]"):
        nn.LayerNorm(4)(x)
    with pytest.raises(gr.ShapeError, match="normalized_shape"):
        nn.RMSNorm((2, 6))(x)
    with pytest.raises(ValueError, match="normalized_shape"):
        nn.LayerNorm(0)


def test_an_untyped_input_fails_when_its_type_is_known():
    x = nn.Identity()()
    model = gr.gModule([x], [nn.Max(2)(x)])
    with pytest.raises(gr.ShapeError, match=r"dim 2 is out of range"):
        model(randn(3, 4))


def test_over_an_empty_time_axis_max_is_minus_infinity_compiled_and_interpreted():
    x = gr.Input("B", "T", 3)
    model = gr.gModule([x], [nn.Max(1)(x), nn.Min(1)(x), nn.LogSumExp(1)(x)])
    empty = np.zeros((2, 0, 3), np.float32)
    for outs in (model(empty), gr.compile(model)(empty)):
        close(outs[0], np.full((2, 3), -np.inf))
        close(outs[1], np.full((2, 3), np.inf))
        close(outs[2], np.full((2, 3), -np.inf))


def test_models_with_the_new_modules_save_and_load(tmp_path):
    x = gr.Input("B", 4, 6)
    model = gr.gModule([x], [nn.LayerNorm(6)(nn.Max(1, keepdim=True)(x)),
                             nn.RMSNorm((4, 6), eps=1e-3)(x), nn.LogSumExp(-1)(x)])
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape)
    gr.save(model, tmp_path / "m.grnn")
    loaded = gr.load(tmp_path / "m.grnn")
    xs = randn(2, 4, 6)
    for a, b in zip(model(xs), gr.compile(loaded)(xs)):
        close(b, a)


def test_row_modules_inside_a_loop_body_compiled_and_differentiated():
    """h' = tanh(RMSNorm(Linear([h, x]))) + Max over x_t's features + LogSumExp of h."""
    h, xt = nn.Identity()(), nn.Identity()()
    lin = nn.Linear(5 + 3, 5)
    z = nn.RMSNorm(5)(lin(nn.JoinTable(1)([h, xt])))
    extra = nn.CAddTable()([nn.Max(1, keepdim=True)(xt), nn.LogSumExp(1, keepdim=True)(h)])
    h_next = nn.CAddTable()([nn.Tanh()(z), nn.MulConstant(0.1)(extra)])
    body = gr.gModule([h, xt], [h_next, h_next])
    seq = gr.Input("B", "T", 3)
    _, hs = gr.Loop(body, n_carry=1)(init=[gr.ops.fill((5,), batch_like=seq)], xs=[seq])
    model = gr.gModule([seq], [hs])
    xs = randn(2, 7, 3)
    close(gr.compile(model)(xs), model(xs))
    cot = randn(2, 7, 5)
    (_,), (dx,) = gr.compile_vjp(model)(xs, [cot])
    _, _, (want,) = gradients(model, xs, cotangents=[cot], dtype=np.float32)
    close(dx, want)
    result = gr.gradcheck(model, xs.astype(np.float64))
    assert result.ok, str(result)
