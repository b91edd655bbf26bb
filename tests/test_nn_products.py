"""MM, Bilinear and TemporalConvolution interpreted and compiled against PyTorch (same weights,
outputs and gradients), the interpreter and finite differences; and MM inside a loop body: a
Luong attention decoder over encoder outputs given to the loop as a loop-invariant input."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.ir import GraphError, ShapeError
from graphrnn.rows import row_plan

from shape_check import check, close, randn


def tensors(torch, *arrays):
    return [torch.tensor(a, requires_grad=True) for a in arrays]


@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
def test_mm_batched_matches_torch_bmm(ta, tb):
    torch = pytest.importorskip("torch")
    a_shape, b_shape = ((4, 3) if ta else (3, 4)), ((5, 4) if tb else (4, 5))
    a, b = gr.Input("B", *a_shape), gr.Input("B", *b_shape)
    model = gr.gModule([a, b], [nn.MM(ta, tb)([a, b])])
    av, bv = randn(2, *a_shape), randn(2, *b_shape)
    got = check(model, av, bv)
    ta_, tb_ = tensors(torch, av, bv)
    want = torch.bmm(ta_.transpose(1, 2) if ta else ta_, tb_.transpose(1, 2) if tb else tb_)
    (want * torch.tensor(got.cot)).sum().backward()
    close(got.y, want.detach().numpy())
    close(got.dx[0], ta_.grad.numpy())
    close(got.dx[1], tb_.grad.numpy())


def test_mm_two_dimensional():
    torch = pytest.importorskip("torch")
    a, b = gr.Input(3, 4), gr.Input(5, 4)
    model = gr.gModule([a, b], [nn.MM(transB=True)([a, b])])
    av, bv = randn(3, 4), randn(5, 4)
    got = check(model, av, bv)
    close(got.y, (torch.tensor(av) @ torch.tensor(bv).T).numpy())


def test_mm_attention_scores_one_program_for_every_batch_and_length():
    q, keys = gr.Input("B", 1, 6), gr.Input("B", "T", 6)
    scores = nn.MM(transB=True)([q, keys])
    assert scores.type.shape == ("B", 1, "T")
    model = gr.gModule([q, keys], [nn.SoftMax(-1)(scores)])
    fast = gr.compile(model)
    for b, t in [(2, 5), (1, 1), (4, 9)]:
        check(model, randn(b, 1, 6), randn(b, t, 6), fd=(b, t) == (2, 5), program=fast)
    assert len(fast.programs) == 1


@pytest.mark.parametrize("k", [5, 21, 40])
def test_mm_dot_products_over_long_rows_and_over_symbolic_time(k):
    """q @ K.T runs as dot products in vectors of k with a scalar tail; contracting over the
    time axis makes k the symbolic T."""
    q, keys = gr.Input("B", 2, k), gr.Input("B", "T", k)
    model = gr.gModule([q, keys], [nn.MM(transB=True)([q, keys])])
    fast = gr.compile(model)
    for b, t in [(2, 3), (1, 17)]:
        check(model, randn(b, 2, k), randn(b, t, k), fd=False, program=fast)
    a, c = gr.Input("B", 2, "T"), gr.Input("B", 3, "T")
    over_time = gr.gModule([a, c], [nn.MM(transB=True)([a, c])])
    fast = gr.compile(over_time)
    for t in (1, k, 2 * k + 3):
        check(over_time, randn(2, 2, t), randn(2, 3, t), fd=False, program=fast)


def test_mm_shape_errors_name_the_user_line():
    a, b = gr.Input("B", 3, 4), gr.Input("B", 5, 4)
    with pytest.raises(ShapeError, match=r"test_nn_products.py:\d+.*inner dims differ"):
        nn.MM()([a, b])
    with pytest.raises(ShapeError, match="same leading dims"):
        nn.MM()([a, gr.Input(4, 2)])


@pytest.mark.parametrize("bias", [True, False])
def test_bilinear_matches_torch(bias):
    torch = pytest.importorskip("torch")
    layer = nn.Bilinear(4, 3, 5, bias=bias)
    assert layer.weight.shape == (5, 4, 3)
    x1, x2 = gr.Input("B", "T", 4), gr.Input("B", "T", 3)
    model = gr.gModule([x1, x2], [layer([x1, x2])])
    a, b = randn(2, 3, 4), randn(2, 3, 3)
    got = check(model, a, b)
    ref = torch.nn.Bilinear(4, 3, 5, bias=bias)
    p = model.named_parameters()
    with torch.no_grad():
        ref.weight.copy_(torch.tensor(p["bilinear.weight"]))
        if bias:
            ref.bias.copy_(torch.tensor(p["bilinear.bias"]))
    ta, tb = tensors(torch, a, b)
    want = ref(ta, tb)
    (want * torch.tensor(got.cot)).sum().backward()
    close(got.y, want.detach().numpy())
    close(got.dx[0], ta.grad.numpy())
    close(got.dx[1], tb.grad.numpy())
    close(got.dparams["bilinear.weight"], ref.weight.grad.numpy())
    if bias:
        close(got.dparams["bilinear.bias"], ref.bias.grad.numpy())


def conv_against_torch(model, conv, xs, *, causal: bool, stride: int):
    torch = pytest.importorskip("torch")
    got = check(model, xs)
    p = model.named_parameters()
    o, c, k = conv.o, conv.c, conv.kw
    w = torch.tensor(p["temporalconvolution.weight"].reshape(o, k, c).transpose(0, 2, 1).copy(),
                     requires_grad=True)
    bias = torch.tensor(p["temporalconvolution.bias"], requires_grad=True)
    tx = torch.tensor(xs, requires_grad=True)
    inp = tx.transpose(1, 2)                                    # PyTorch's [B, C, T]
    if causal:
        inp = torch.nn.functional.pad(inp, (k - 1, 0))
    want = torch.nn.functional.conv1d(inp, w, bias, stride=stride).transpose(1, 2)
    (want * torch.tensor(got.cot)).sum().backward()
    close(got.y, want.detach().numpy())
    close(got.dx[0], tx.grad.numpy())
    close(got.dparams["temporalconvolution.weight"],
          w.grad.numpy().transpose(0, 2, 1).reshape(o, k * c))
    close(got.dparams["temporalconvolution.bias"], bias.grad.numpy())


def test_causal_temporal_convolution_matches_conv1d_with_symbolic_time_in_one_program():
    conv = nn.TemporalConvolution(3, 4, 3, padding="causal")
    x = gr.Input("B", "T", 3)
    y = conv(x)
    assert y.type.shape == ("B", "T", 4)
    model = gr.gModule([x], [y])
    fast = gr.compile(model)
    for b, t in [(2, 6), (1, 2), (3, 9)]:
        conv_against_torch(model, conv, randn(b, t, 3), causal=True, stride=1)
        close(fast(randn(b, t, 3)).shape, (b, t, 4))
    assert len(fast.programs) == 1


@pytest.mark.parametrize("padding,stride,length", [("valid", 1, 7), ("valid", 2, 8),
                                                   ("valid", 3, 7), ("causal", 2, 7)])
def test_temporal_convolution_valid_and_strided_on_fixed_lengths(padding, stride, length):
    conv = nn.TemporalConvolution(3, 2, 3, dW=stride, padding=padding)
    x = gr.Input("B", length, 3)
    model = gr.gModule([x], [conv(x)])
    conv_against_torch(model, conv, randn(2, length, 3), causal=padding == "causal",
                       stride=stride)


def test_temporal_convolution_errors():
    x = gr.Input("B", "T", 3)
    with pytest.raises(GraphError, match=r"TemporalConvolution at test_nn_products.py:\d+: "
                                         r"padding='valid' changes the length"):
        nn.TemporalConvolution(3, 2, 3)(x)
    with pytest.raises(GraphError, match=r"expected \[B, T, 4\]"):
        nn.TemporalConvolution(4, 2, 3, padding="causal")(x)
    with pytest.raises(ValueError, match="padding is 'valid' or 'causal'"):
        nn.TemporalConvolution(3, 2, 3, padding="same")


# ----------------------------------------------------------------------------- attention

H, D = 6, 3


def luong_decoder() -> gr.gModule:
    """A tanh RNN decoder attending (Luong, dot scores) over encoder outputs enc [B, T, H]
    (a program has one length symbol: the source is as long as the target here)."""
    enc, h, xt = gr.Input("B", "T", H), gr.Input("B", H), gr.Input("B", D)  # const, carry, x_t
    h_next = nn.Tanh()(nn.Linear(D + H, H)(nn.JoinTable(1)([xt, h])))
    query = nn.Unsqueeze(1)(h_next)                                   # [B, 1, H]
    weights = nn.SoftMax(-1)(nn.MM(transB=True)([query, enc]))        # [B, 1, S]
    context = nn.Squeeze(1)(nn.MM()([weights, enc]))                  # [B, H]
    out = nn.Tanh()(nn.Linear(2 * H, H)(nn.JoinTable(1)([context, h_next])))
    body = gr.gModule([enc, h, xt], [h_next, out])
    src, tgt = gr.Input("B", "T", H, name="enc"), gr.Input("B", "T", D, name="tgt")
    h0 = nn.Tanh()(nn.Linear(H, H)(gr.ops.mean(src, [1])))                # [B, H]
    _, ys = gr.Loop(body, n_carry=1, n_consts=1)(consts=[src], init=[h0], xs=[tgt])
    return gr.gModule([src, tgt], [ys])


def test_luong_attention_in_a_loop_gradients_reach_the_encoder_outputs():
    model = luong_decoder()
    fast = gr.compile(model)
    for b, t in [(2, 4), (1, 1), (3, 6)]:
        got = check(model, randn(b, t, H), randn(b, t, D), fd=b == 2, program=fast)
        assert got.y.shape == (b, t, H)
        assert np.abs(got.dx[0]).max() > 0        # BPTT into the loop-invariant encoder
    assert len(fast.programs) == 1


def test_attention_rows_split_across_threads():
    """The batch is a leading dim of both products: calls may split rows across threads."""
    q, enc = gr.Input("B", 1, 8), gr.Input("B", "T", 8)
    weights = nn.SoftMax(-1)(nn.MM(transB=True)([q, enc]))
    model = gr.gModule([q, enc], [nn.Transpose(1, 2)(nn.MM()([weights, enc]))])
    plan = row_plan(model.graph, training=False)
    assert plan.reason == "" and plan.outputs == ("rows",)
    fast = gr.compile(model, threads=2)
    qv, ev = randn(40, 1, 8), randn(40, 7, 8)
    close(fast(qv, ev), model(qv, ev))
