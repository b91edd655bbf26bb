"""gr.from_torch / gr.to_torch for nn.LayerNorm (gr.nn.LayerNorm(normalized_shape, eps,
elementwise_affine), parameters `weight` and `bias`): outputs and gradients equal torch's."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr

torch = pytest.importorskip("torch")
if not hasattr(gr.nn, "LayerNorm"):
    pytest.skip("gr.nn.LayerNorm is not in this tree yet", allow_module_level=True)

RNG = np.random.default_rng(4)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def perturbed(m):
    """Weights away from their init (ones, zeros), so a swapped weight and bias would show."""
    with torch.no_grad():
        for p in m.parameters():
            p.add_(torch.randn(p.shape) * 0.5)
    return m


@pytest.mark.parametrize("affine", [True, False])
def test_layer_norm_equals_torch(affine):
    torch.manual_seed(0)
    m = perturbed(torch.nn.LayerNorm(6, eps=1e-3, elementwise_affine=affine))
    model = gr.from_torch(m)
    assert sorted(model.store.params) == sorted(f"layernorm.{k}" for k in m.state_dict())
    x = randn(4, 6)
    with torch.no_grad():
        want = m(torch.tensor(x)).numpy()
    np.testing.assert_allclose(model(x), want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(gr.compile(model)(x), want, rtol=1e-4, atol=1e-5)
    twin = gr.to_torch(model)
    assert isinstance(twin, torch.nn.LayerNorm) and twin.eps == 1e-3
    for k, v in m.state_dict().items():
        assert torch.equal(twin.state_dict()[k], v)


def test_layer_norm_in_a_sequential_trains_like_torch():
    torch.manual_seed(1)
    m = perturbed(torch.nn.Sequential(torch.nn.Linear(3, 5), torch.nn.LayerNorm(5),
                                      torch.nn.Tanh(), torch.nn.Linear(5, 2)))
    model = gr.from_torch(m)
    x, y = randn(7, 3), randn(7, 2)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    loss = step(x, y)
    want = torch.nn.functional.mse_loss(m(torch.tensor(x)), torch.tensor(y))
    want.backward()
    np.testing.assert_allclose(loss, want.item(), rtol=1e-5)
    grads = model.store.grad_views()
    for k, p in m.named_parameters():
        w = p.grad.numpy()
        assert np.abs(grads[k] - w).max() <= 1e-5 * (np.abs(w).max() + 1e-6) + 1e-7, k


def test_layer_norm_without_bias_is_refused():
    with pytest.raises(ValueError, match="bias=False"):
        gr.from_torch(torch.nn.LayerNorm(4, bias=False))
