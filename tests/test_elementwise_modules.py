"""The elementwise math modules against PyTorch: interpreted and compiled values and
gradients on edge values (0, negatives, bounds, ties, large magnitudes, inf and NaN where
torch defines them), and finite differences away from the kinks."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradcheck, gradients

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(1407)
EDGE = np.array([0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0, 1e-3, -1e-3, 0.7, -3.3,
                 20.0, -20.0, 50.0, -50.0, 1e4, -1e4, 95.0, -120.0], np.float32)
POSITIVE = np.array([0.0, 1e-6, 1e-3, 0.25, 1.0, 2.0, 3.7, 1e4, 1e20, np.inf], np.float32)


def as_batch(values: np.ndarray) -> np.ndarray:
    """[2, n]: the values, and the same values shuffled (two rows of one batch)."""
    return np.stack([values, RNG.permutation(values)]).astype(np.float32)


def close(got, want, rtol: float = 1e-4, atol: float = 1e-6) -> None:
    np.testing.assert_allclose(np.asarray(got, np.float64), np.asarray(want, np.float64),
                               rtol=rtol, atol=atol)


def check_against_torch(model: gr.gModule, torch_fn, arrays: list[np.ndarray],
                        rtol: float = 1e-4, grad: bool = True) -> None:
    """Outputs and input gradients (of sum(y * dy)): interpreter, compiled, torch."""
    ts = [torch.tensor(a, requires_grad=True) for a in arrays]
    want = torch_fn(*ts)
    dy = RNG.uniform(0.5, 1.5, tuple(want.shape)).astype(np.float32)
    close(model(*arrays), want.detach().numpy(), rtol)
    close(gr.compile(model)(*arrays), want.detach().numpy(), rtol)
    if not grad:
        return
    (want * torch.tensor(dy)).sum().backward()
    _, _, interpreted = gradients(model, *arrays, cotangents=[dy], dtype=np.float32)
    _, compiled = gr.compile_vjp(model)(*arrays, grad_outputs=[dy])
    for t, gi, gc in zip(ts, interpreted, compiled):
        want_grad = np.zeros(t.shape) if t.grad is None else t.grad.numpy()   # a mask
        close(gi, want_grad, rtol)
        close(gc, want_grad, rtol)


def unary_model(module: nn.Module, n: int) -> gr.gModule:
    x = gr.Input("B", n, name="x")
    return gr.gModule([x], [module(x)])


UNARY = [
    ("abs", nn.Abs, torch.abs, EDGE),
    ("sqrt", nn.Sqrt, torch.sqrt, POSITIVE),
    ("sqrt_neg", nn.Sqrt, torch.sqrt, -POSITIVE[1:]),
    ("square", nn.Square, torch.square, EDGE[:-2]),
    ("exp", nn.Exp, torch.exp, EDGE),
    ("log", nn.Log, torch.log, POSITIVE),
    ("pow2", lambda: nn.Power(2), lambda x: torch.pow(x, 2), EDGE[:-4]),
    ("pow3", lambda: nn.Power(3), lambda x: torch.pow(x, 3), EDGE[:-4]),
    ("pow_m1", lambda: nn.Power(-1), lambda x: torch.pow(x, -1), EDGE[:-4]),
    ("pow_m2", lambda: nn.Power(-2.0), lambda x: torch.pow(x, -2.0), EDGE[2:-4]),
    ("pow0", lambda: nn.Power(0), lambda x: torch.pow(x, 0), EDGE),
    ("pow_half", lambda: nn.Power(0.5), lambda x: torch.pow(x, 0.5), POSITIVE[:-1]),
    ("pow_3half", lambda: nn.Power(1.5), lambda x: torch.pow(x, 1.5), POSITIVE[:-2]),
    ("pow_m3half", lambda: nn.Power(-1.5), lambda x: torch.pow(x, -1.5), POSITIVE[1:-3]),
    ("pow_frac", lambda: nn.Power(2.3), lambda x: torch.pow(x, 2.3), POSITIVE[:-2]),
    ("pow_frac_neg", lambda: nn.Power(1.7), lambda x: torch.pow(x, 1.7), -POSITIVE[1:-2]),
    ("clamp", lambda: nn.Clamp(-1, 1), lambda x: torch.clamp(x, -1, 1), EDGE),
    ("clamp_min", lambda: nn.Clamp(min=0.5), lambda x: torch.clamp(x, min=0.5), EDGE),
    ("clamp_max", lambda: nn.Clamp(max=-0.5), lambda x: torch.clamp(x, max=-0.5), EDGE),
    ("clamp_crossed", lambda: nn.Clamp(1, -1), lambda x: torch.clamp(x, 1, -1), EDGE),
    ("hardtanh", nn.HardTanh, F.hardtanh, EDGE),
    ("hardtanh_2_3", lambda: nn.HardTanh(-2, 20), lambda x: F.hardtanh(x, -2, 20), EDGE),
    ("leaky", lambda: nn.LeakyReLU(0.1), lambda x: F.leaky_relu(x, 0.1), EDGE),
    ("leaky_default", nn.LeakyReLU, F.leaky_relu, EDGE),
    ("elu", nn.ELU, F.elu, EDGE),
    ("elu_half", lambda: nn.ELU(0.5), lambda x: F.elu(x, 0.5), EDGE),
    ("softplus", nn.SoftPlus, F.softplus, EDGE),
    ("softplus_beta", lambda: nn.Softplus(beta=2, threshold=20),
     lambda x: F.softplus(x, beta=2, threshold=20), np.append(EDGE, [10.0, 10.001, 9.999])),
    ("softsign", nn.SoftSign, F.softsign, EDGE),
    ("gelu", nn.GELU, F.gelu, EDGE),
    ("gelu_tanh", lambda: nn.GELU(approximate="tanh"),
     lambda x: F.gelu(x, approximate="tanh"), EDGE[:-6]),
    ("threshold", lambda: nn.Threshold(0.5, -3), lambda x: F.threshold(x, 0.5, -3), EDGE),
]


@pytest.mark.parametrize("name,make,torch_fn,values", UNARY, ids=[u[0] for u in UNARY])
def test_unary_module_matches_torch(name, make, torch_fn, values):
    x = as_batch(values)
    check_against_torch(unary_model(make(), x.shape[1]), torch_fn, [x])


def test_special_values_match_torch():
    specials = np.array([np.inf, -np.inf, np.nan, 0.0, -0.0, 3.0], np.float32)
    for make, fn in [(nn.Abs, torch.abs), (nn.Exp, torch.exp), (nn.Sqrt, torch.sqrt),
                     (nn.Log, torch.log), (nn.GELU, F.gelu), (nn.SoftPlus, F.softplus),
                     (nn.ELU, F.elu), (nn.SoftSign, F.softsign),
                     (lambda: nn.LeakyReLU(0.2), lambda x: F.leaky_relu(x, 0.2)),
                     (nn.HardTanh, F.hardtanh), (lambda: nn.Clamp(-1, 2),
                                                 lambda x: torch.clamp(x, -1, 2)),
                     (lambda: nn.Threshold(1, 7), lambda x: F.threshold(x, 1, 7)),
                     (lambda: nn.Power(3), lambda x: torch.pow(x, 3)),
                     (lambda: nn.Power(-1.5), lambda x: torch.pow(x, -1.5)),
                     (lambda: nn.Power(2.5), lambda x: torch.pow(x, 2.5))]:
        check_against_torch(unary_model(make(), 6), fn, [specials[None]], grad=False)


@pytest.mark.parametrize("name,make,torch_fn,values", UNARY[:1] + UNARY[4:5] + UNARY[16:],
                         ids=[u[0] for u in UNARY[:1] + UNARY[4:5] + UNARY[16:]])
def test_unary_module_gradcheck(name, make, torch_fn, values):
    # random points, away from the kinks by far more than the finite-difference step
    x = RNG.uniform(-3, 3, (3, 8))
    x[np.abs(x) < 0.05] += 0.3
    x[np.abs(np.abs(x) - 1) < 0.05] += 0.2
    x[np.abs(x - 0.5) < 0.05] += 0.2
    res = gradcheck(unary_model(make(), 8), x.astype(np.float32), rtol=1e-5)
    assert res.ok, str(res)


def test_power_gradcheck_at_fractional_and_negative_exponents():
    x = RNG.uniform(0.3, 3, (2, 6)).astype(np.float32)
    for p in [2.3, -1.5, 0.5, -2, 3]:
        res = gradcheck(unary_model(nn.Power(p), 6), x)
        assert res.ok, (p, str(res))


def test_module_arguments_are_checked():
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU(approximate="fast")
    with pytest.raises(ValueError, match="finite"):
        nn.Power(float("nan"))
    with pytest.raises(ValueError, match="min_val"):
        nn.HardTanh(2, 1)
    with pytest.raises(ValueError, match="min, max"):
        nn.Clamp()
    with pytest.raises(ValueError, match="beta"):
        nn.SoftPlus(beta=0)
    with pytest.raises(TypeError, match="one node"):
        nn.Abs()([gr.Input("B", 2), gr.Input("B", 2)])
