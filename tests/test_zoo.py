"""The model zoo against PyTorch: the same model written as a step function in torch
(graphrnn/zoo/reference.py), the same weights; outputs and every gradient, interpreted and
compiled, and gradcheck by finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import zoo
from graphrnn.gradcheck import gradients
from graphrnn.zoo import reference

torch = pytest.importorskip("torch")
RNG = np.random.default_rng(11)
RTOL = ATOL = 1e-4          # ATOL relative to the largest entry of the tensor compared


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def torch_params(model: gr.gModule) -> dict:
    return {k: torch.tensor(v, dtype=torch.float64, requires_grad=True)
            for k, v in model.state_dict().items()}


def named_grads(model: gr.gModule) -> dict[str, np.ndarray]:
    return {k: v.copy() for k, v in model.table.views(model.flat_grad).items()}


def close(got: np.ndarray, want, what: str) -> None:
    want = want.detach().numpy() if hasattr(want, "detach") else want
    scale = max(float(np.abs(want).max()), 1e-3)
    np.testing.assert_allclose(got, want, rtol=RTOL, atol=ATOL * scale, err_msg=what)


def check_against_torch(model: gr.gModule, forward_torch, inputs: list, float_input: int | None):
    """forward_torch(params, *torch inputs) -> output; compares outputs, parameter gradients
    and the float input's gradient of sum(output * dy)."""
    p = torch_params(model)
    tin = [torch.tensor(a, dtype=torch.float64, requires_grad=True) if a.dtype == np.float32
           else torch.tensor(a) for a in inputs]
    y = forward_torch(p, *tin)
    dy = randn(*y.shape)
    (y * torch.tensor(dy, dtype=torch.float64)).sum().backward()

    close(gr.interpret(model, *inputs), y, "interpreted output")
    outs, pgrads, igrads = gradients(model, *inputs, cotangents=[dy])
    for k, g in pgrads.items():
        close(g, p[k].grad, f"interpreted d/d {k}")
    if float_input is not None:
        close(igrads[0], tin[float_input].grad, "interpreted d/d input")

    vjp = gr.compile_vjp(model)
    model.flat_grad[:] = 0
    (out,), grads = vjp(*inputs, dy)
    close(out, y, "compiled output")
    for k, g in named_grads(model).items():
        close(g, p[k].grad, f"compiled d/d {k}")
    if float_input is not None:
        close(grads[float_input], tin[float_input].grad, "compiled d/d input")
    assert set(pgrads) == set(p)


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_sequence_models_equal_pytorch(name: str) -> None:
    spec = zoo.MODELS[name]
    model = spec.build(3, 5)
    model.reset_parameters(seed=2)
    x = randn(2, 6, 3)

    def forward(p, xt):
        carry = tuple(torch.zeros(xt.shape[0], w, dtype=torch.float64)
                      for w in spec.carry(3, 5))
        return reference.scan_torch(spec.step, p, carry, xt)
    check_against_torch(model, forward, [x], 0)


@pytest.mark.parametrize("name", sorted(zoo.MODELS))
def test_sequence_models_pass_gradcheck_and_run_any_shape(name: str) -> None:
    model = zoo.MODELS[name].build(2, 3)
    model.reset_parameters(seed=4)
    result = gr.gradcheck(model, randn(2, 4, 2))
    assert result.ok, str(result)
    fast = gr.compile(model)
    for b, t in [(1, 3), (4, 7), (3, 1)]:
        x = randn(b, t, 2)
        np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=RTOL, atol=ATOL)


ATTENTION = {"bahdanau": (lambda: zoo.bahdanau(vocab=7, embedding=4, hidden=5, attention=3),
                          reference.bahdanau_forward),
             "luong": (lambda: zoo.luong(vocab=7, embedding=4, hidden=5),
                       reference.luong_forward)}


@pytest.mark.parametrize("name", sorted(ATTENTION))
def test_attention_models_equal_pytorch(name: str) -> None:
    build, forward_ref = ATTENTION[name]
    model = build()
    model.reset_parameters(seed=5)
    src, tgt = RNG.integers(0, 7, (3, 6)), RNG.integers(0, 7, (3, 4))     # S != T

    def forward(p, s, t):
        return forward_ref(reference.torch_namespace(), reference.scan_torch, p, s, t)
    check_against_torch(model, forward, [src, tgt], None)
    result = gr.gradcheck(model, src[:2, :3], tgt[:2, :2])
    assert result.ok, str(result)


def hierarchical_batch(b: int, t: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    return rng.integers(0, 7, (b, t, 4)), rng.integers(1, 5, (b, t))


def test_hierarchical_rnn_equals_pytorch():
    """Each word's char GRU stops at the word's own length: PyTorch masks the steps past it."""
    model = zoo.hierarchical(7, 5, char_embedding=3, char_hidden=4, word_length=4)
    model.reset_parameters(seed=6)
    chars, lengths = hierarchical_batch(3, 5, 0)
    assert len(set(lengths.ravel().tolist())) == 4

    def forward(p, c, n):
        return reference.hierarchical_forward(reference.torch_namespace(), p, c, n.numpy())
    check_against_torch(model, forward, [chars, lengths], None)
    result = gr.gradcheck(model, *hierarchical_batch(2, 3, 1))
    assert result.ok, str(result)


def test_hierarchical_rnn_one_program_for_every_batch_and_sentence_length():
    model = zoo.hierarchical(7, 5, char_embedding=3, char_hidden=4, word_length=4)
    model.reset_parameters(seed=7)
    fast = gr.compile(model)
    p = torch_params(model)
    for b, t, seed in [(1, 1, 2), (4, 7, 3), (2, 3, 4)]:
        chars, lengths = hierarchical_batch(b, t, seed)
        want = reference.hierarchical_forward(reference.torch_namespace(), p,
                                              torch.tensor(chars), lengths)
        close(fast(chars, lengths), want, f"compiled B={b} T={t}")
    assert len(fast.programs) == 1
    # characters past a word's length do not count
    chars, lengths = hierarchical_batch(3, 4, 5)
    noise = np.where(np.arange(4) >= lengths[..., None], (chars + 3) % 7, chars)
    np.testing.assert_allclose(fast(noise, lengths), fast(chars, lengths), rtol=0, atol=0)
