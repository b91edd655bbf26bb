"""The compiled optimiser updates (fused_update.py) against the numpy ones, and PyTorch."""
import numpy as np
import pytest

from graphrnn import optim
from graphrnn.fused_update import FusedUpdate

CONFIGS = [
    (optim.Adam, {}),
    (optim.Adam, {"weight_decay": 0.01, "betas": (0.8, 0.99), "eps": 1e-6}),
    (optim.Adam, {"clip_norm": 1.0, "lr": optim.cosine_decay(1e-2, 10)}),
    (optim.SGD, {"lr": 0.1}),
    (optim.SGD, {"lr": 0.1, "weight_decay": 1e-3}),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9}),
    (optim.SGD, {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-2}),
    (optim.RMSProp, {"weight_decay": 0.05}),
    (optim.Adagrad, {}),
]


def _run(cls, kw, fused, n, steps=6, seed=0):
    rng = np.random.default_rng(seed)
    p, g = rng.standard_normal(n).astype(np.float32), np.zeros(n, np.float32)
    opt = cls((p, g), fused=fused, **kw)
    for _ in range(steps):
        g[...] = rng.standard_normal(n).astype(np.float32)
        opt.step()
    return p, opt


@pytest.mark.parametrize("cls,kw", CONFIGS, ids=lambda c: getattr(c, "__name__", str(c)))
@pytest.mark.parametrize("n", [1, 17, 1000, 41701])
def test_the_compiled_update_is_the_numpy_update_bit_for_bit(cls, kw, n):
    p_np, o_np = _run(cls, kw, False, n)
    p_jit, o_jit = _run(cls, kw, True, n)
    assert o_jit._kernel is not None and o_jit._kernel.usable
    np.testing.assert_array_equal(p_jit, p_np)
    a, b = o_np.state_dict(), o_jit.state_dict()
    assert set(a) == set(b) and a["steps"] == b["steps"] == 6
    for k in a:
        np.testing.assert_array_equal(b[k], a[k])


def test_state_dict_round_trip_continues_on_the_kernel():
    p, opt = _run(optim.Adam, {"weight_decay": 0.1}, True, 300, steps=3)
    saved, p_saved = opt.state_dict(), p.copy()
    assert set(saved) == {"steps", "m", "v"}
    g = opt.grads
    g[...] = 0.5
    opt.step()
    after = p.copy()
    p[...] = p_saved
    opt.load_state_dict(saved)          # written into m and v in place: the kernel sees it
    opt.step()
    np.testing.assert_array_equal(p, after)
    fresh = optim.Adam((p_saved, np.full_like(p_saved, 0.5)), weight_decay=0.1, fused=False)
    fresh.load_state_dict(saved)
    fresh.step()
    np.testing.assert_array_equal(p_saved, after)


def test_replaced_state_vectors_and_changed_settings_rebind_the_kernel():
    p, opt = _run(optim.SGD, {"lr": 0.1, "momentum": 0.9}, True, 64, steps=2)
    first = opt._kernel
    opt.velocity = np.zeros_like(p)     # a new array: the kernel must not write the old one
    opt.nesterov, opt.weight_decay = True, 0.01
    ref_p, ref = p.copy(), optim.SGD((p.copy(), opt.grads.copy()), lr=0.1, momentum=0.9,
                                     nesterov=True, weight_decay=0.01, fused=False)
    ref.params[...] = ref_p
    opt.step()
    ref.step()
    assert opt._kernel is not first and opt._kernel.kind == "nesterov"
    np.testing.assert_array_equal(p, ref.params)
    np.testing.assert_array_equal(opt.velocity, ref.velocity)


def test_vectors_the_kernel_cannot_take_fall_back_to_numpy_or_raise_when_insisted():
    base = np.zeros(20, np.float32)
    p, g = base[::2], np.ones(10, np.float32)          # strided: not for native code
    opt = optim.SGD((p, g), lr=0.5)
    opt.step()
    np.testing.assert_array_equal(base[::2], -0.5)
    assert not opt._kernel.usable and "flat aligned float32" in opt._kernel.reason
    with pytest.raises(ValueError, match="fused=True"):
        optim.SGD((p, g), lr=0.5, fused=True).step()
    assert FusedUpdate("sgd", False, (g, g)).reason == "two of the vectors overlap"
    ro = np.ones(10, np.float32)
    ro.flags.writeable = False
    assert "read-only" in FusedUpdate("sgd", False, (ro, g)).reason
    with pytest.raises(ValueError, match="expected params, grads"):
        FusedUpdate("adam", False, (p, g))
    update = FusedUpdate("sgd", False, (np.zeros(10, np.float32), g))
    with pytest.raises(ValueError, match="float32 scalars"):
        update(np.array([0.1, 0.2], np.float32))


@pytest.mark.parametrize("name,kw,torch_kw", [
    ("SGD", {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01},
     {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01}),
    ("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True},
     {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
    ("RMSProp", {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}, {"lr": 0.01, "alpha": 0.9, "eps": 1e-6}),
    ("Adagrad", {"lr": 0.1, "eps": 1e-10}, {"lr": 0.1, "eps": 1e-10}),
])
def test_the_compiled_updates_match_pytorch(name, kw, torch_kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    p = rng.standard_normal(257).astype(np.float32)
    g = np.zeros_like(p)
    tp = torch.nn.Parameter(torch.tensor(p))
    opt = getattr(optim, name)((p, g), fused=True, **kw)
    topt = {"SGD": torch.optim.SGD, "RMSProp": torch.optim.RMSprop,
            "Adagrad": torch.optim.Adagrad}[name]([tp], **torch_kw)
    for _ in range(5):
        g[...] = rng.standard_normal(257).astype(np.float32)
        tp.grad = torch.tensor(g)
        opt.step()
        topt.step()
    np.testing.assert_allclose(p, tp.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_an_optimiser_with_only_a_numpy_update_still_steps():
    class Halve(optim.Optimizer):
        def _update(self, g, lr):
            self.params -= lr * g

    p, g = np.ones(8, np.float32), np.ones(8, np.float32)
    Halve((p, g), lr=0.5).step()
    np.testing.assert_array_equal(p, 0.5)
    with pytest.raises(ValueError, match="no compiled update"):
        Halve((p, g), lr=0.5, fused=True).step()
