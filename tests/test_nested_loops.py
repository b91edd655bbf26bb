"""Nested loops: a loop node inside a loop body, interpreted, compiled (a native loop inside the
outer one), differentiated through both levels, one program for every batch size and length.

A hierarchical char -> word RNN against the same model in PyTorch (outputs and gradients), a
decoder whose step runs an inner loop over every encoder step (teacher-forced and as a while
loop), and the error of a nested carry that changes shape."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.gradcheck import gradients

torch = pytest.importorskip("torch")

N_CHARS, E, W, H, L = 7, 3, 4, 5, 4     # chars, char width, word width, hidden, chars a word


def hierarchical():
    """chars i64[B, T, L] and their lengths i64[B, T] -> word-level states [B, T, H], h_T:
    each word is read by a char RNN (over its own number of chars), the words by a GRU."""
    emb, char_cell, word_cell = nn.LookupTable(N_CHARS, E), gr.cells.RNN(E, W), \
        gr.cells.GRU(W, H)
    hc, c_t = gr.Input("B", W), gr.Input("B", dtype="int64")
    hc2 = char_cell([hc, emb(c_t)])
    char_body = gr.gModule([hc, c_t], [hc2])
    h, word, n_chars = gr.Input("B", H), gr.Input("B", L, dtype="int64"), \
        gr.Input("B", dtype="int64")
    start = ops.fill((W,), 0.0, batch_like=h)
    (enc,) = gr.Loop(char_body, n_carry=1)(init=[start], xs=[word], lengths=n_chars)
    h2 = word_cell([h, enc])
    word_body = gr.gModule([h, word, n_chars], [h2, h2])
    chars = gr.Input("B", "T", L, dtype="int64", name="chars")
    lengths = gr.Input("B", "T", dtype="int64", name="char_lengths")
    h0 = gr.Input("B", H, name="h0")
    h_t, hs = gr.Loop(word_body, n_carry=1)(init=[h0], xs=[chars, lengths])
    model = gr.gModule([chars, lengths, h0], [hs, h_t])
    rng = np.random.default_rng(0)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.7
    return model, (emb, char_cell, word_cell)


def torch_hierarchical(parts):
    emb, char_cell, word_cell = parts
    t_emb, t_char, t_word = torch.nn.Embedding(N_CHARS, E), torch.nn.RNNCell(E, W), \
        torch.nn.GRUCell(W, H)
    with torch.no_grad():
        t_emb.weight.copy_(torch.tensor(gr.value(emb.weight)))
        for cell, t_cell in ((char_cell, t_char), (word_cell, t_word)):
            for k, p in cell.named_parameters().items():
                getattr(t_cell, k.split(".")[-1]).copy_(torch.tensor(p))

    def run(chars, lengths, h0):
        h = torch.tensor(h0, requires_grad=True)
        hs, state = [], h
        for t in range(chars.shape[1]):
            hc = torch.zeros(chars.shape[0], W)
            for k in range(L):
                live = torch.tensor(k < lengths[:, t])[:, None]
                hc = torch.where(live, t_char(t_emb(torch.tensor(chars[:, t, k])), hc), hc)
            state = t_word(hc, state)
            hs.append(state)
        return torch.stack(hs, 1) if hs else torch.zeros(len(h0), 0, H), state, h
    named = {**{f"{emb.prefix}.weight": t_emb.weight},
             **{f"{char_cell.prefix}.{k}": v for k, v in t_char.named_parameters()},
             **{f"{word_cell.prefix}.{k}": v for k, v in t_word.named_parameters()}}
    return run, named


def batch(b: int, t: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, N_CHARS, (b, t, L)), rng.integers(1, L + 1, (b, t)),
            rng.standard_normal((b, H)).astype(np.float32))


def param_grads(model) -> dict[str, np.ndarray]:
    flat, grads = model.parameters()
    out = {}
    for k, v in model.named_parameters().items():
        start = (v.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // 4
        out[k] = grads[start:start + v.size].reshape(v.shape).copy()
    return out


def test_hierarchical_rnn_matches_torch_forward_and_gradients():
    model, parts = hierarchical()
    run, named = torch_hierarchical(parts)
    fast = gr.compile(model)
    vjp = gr.compile_vjp(model)
    rng = np.random.default_rng(9)
    for b, t, seed in [(1, 4, 0), (3, 2, 1), (6, 7, 2)]:
        chars, lengths, h0 = batch(b, t, seed)
        hs_t, last_t, h_leaf = run(chars, lengths, h0)
        for got in (model(chars, lengths, h0), fast(chars, lengths, h0)):
            np.testing.assert_allclose(got[0], hs_t.detach().numpy(), atol=1e-5)
            np.testing.assert_allclose(got[1], last_t.detach().numpy(), atol=1e-5)
        dys = [rng.standard_normal((b, t, H)).astype(np.float32),
               rng.standard_normal((b, H)).astype(np.float32)]
        for v in named.values():
            v.grad = None
        loss = (hs_t * torch.tensor(dys[0])).sum() + (last_t * torch.tensor(dys[1])).sum()
        loss.backward()
        _, (g_chars, g_lengths, g_h0) = vjp(chars, lengths, h0, grad_outputs=dys)
        assert g_chars is None and g_lengths is None
        np.testing.assert_allclose(g_h0, h_leaf.grad.numpy(), rtol=1e-4, atol=1e-5)
        got = param_grads(model)
        for k, v in named.items():
            np.testing.assert_allclose(got[k], v.grad.numpy(), rtol=1e-4, atol=1e-5,
                                       err_msg=k)
    assert len(fast.programs) == 1 and len(vjp.programs) == 1


def test_hierarchical_rnn_gradients_against_finite_differences():
    model, _ = hierarchical()
    chars, lengths, h0 = batch(2, 3, 5)
    result = gr.gradcheck(model, chars, lengths, h0.astype(np.float64), rtol=1e-5)
    assert result.ok, str(result)


def attention_decoder(while_loop: bool):
    """A decoder whose step reads every encoder step through an inner loop (an attention
    without a softmax's max shift: exp(<m_t, q>) weights), the memory a loop invariant."""
    q, num, den, m_t = gr.Input("B", H), gr.Input("B", H), gr.Input("B", 1), gr.Input("B", H)
    e = ops.exp(ops.sum_(ops.mul(m_t, q), axes=(1,), keepdims=True))
    inner = gr.gModule([q, num, den, m_t], [ops.add(num, ops.mul(e, m_t)), ops.add(den, e)])
    mem, h = gr.Input("B", "T", H), gr.Input("B", H)
    y = gr.Input("B", 3)
    query = nn.Linear(H, H)(h)
    init = [ops.fill((H,), 0.0, batch_like=h), ops.fill((1,), 0.0, batch_like=h)]
    num_t, den_t = gr.Loop(inner, n_carry=2, n_consts=1)(consts=[query], init=init, xs=[mem])
    context = ops.div(num_t, den_t)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(3, H)(y) if not while_loop else query,
                                   nn.Linear(H, H)(context), nn.Linear(H, H)(h)]))
    memory, h0 = gr.Input("B", "T", H, name="memory"), gr.Input("B", H, name="h0")
    if while_loop:
        stop = ops.sub(ops.index(h2, 1, 0), 0.5)
        body = gr.gModule([mem, h], [h2, h2, stop])
        h_t, hs, n = gr.Loop(body, n_carry=1, n_consts=1, stop=True, max_steps=6)(
            consts=[memory], init=[h0])
        model = gr.gModule([memory, h0], [hs, h_t, n])
    else:
        body = gr.gModule([mem, h, y], [h2, h2])
        ys = gr.Input("B", 4, 3, name="inputs")
        h_t, hs = gr.Loop(body, n_carry=1, n_consts=1)(consts=[memory], init=[h0], xs=[ys])
        model = gr.gModule([memory, h0, ys], [hs, h_t])
    rng = np.random.default_rng(1)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32)
    return model


def decoder_inputs(model, b: int, t: int, seed: int):
    rng = np.random.default_rng(seed)
    args = [rng.standard_normal((b, t, H)).astype(np.float32) * 0.5,
            rng.standard_normal((b, H)).astype(np.float32)]
    if len(model.graph.inputs) == 3:
        args.append(rng.standard_normal((b, 4, 3)).astype(np.float32))
    return args


def test_decoder_with_an_inner_loop_over_the_encoder_steps():
    model = attention_decoder(while_loop=False)
    fast, vjp = gr.compile(model), gr.compile_vjp(model)
    rng = np.random.default_rng(3)
    for b, t, seed in [(2, 3, 0), (5, 8, 1), (1, 1, 2)]:
        args = decoder_inputs(model, b, t, seed)
        want = model(*args)
        for g, w in zip(fast(*args), want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        dys = [rng.standard_normal(w.shape).astype(np.float32) for w in want]
        _, grads = vjp(*args, grad_outputs=dys)
        _, p_want, x_want = gradients(model, *args, cotangents=dys)
        for g, w in zip(grads, x_want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
        got = param_grads(model)
        for k, v in p_want.items():
            np.testing.assert_allclose(got[k], v, rtol=1e-4, atol=1e-5, err_msg=k)
    assert len(fast.programs) == 1 and len(vjp.programs) == 1
    args = [a.astype(np.float64) for a in decoder_inputs(model, 2, 3, 7)]
    result = gr.gradcheck(model, *args, rtol=1e-5)
    assert result.ok, str(result)


def test_while_decoder_with_an_inner_loop():
    model = attention_decoder(while_loop=True)
    fast = gr.compile(model)
    lengths = set()
    for b, t, seed in [(3, 4, 0), (8, 6, 1)]:
        args = decoder_inputs(model, b, t, seed)
        want = model(*args)
        for g, w in zip(fast(*args), want):
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
        lengths.update(want[2].tolist())
    assert len(lengths) > 1 and len(fast.programs) == 1
    args = [a.astype(np.float64) for a in decoder_inputs(model, 3, 4, 0)]
    result = gr.gradcheck(model, *args, rtol=1e-5)
    assert result.ok, str(result)


def test_a_nested_carry_that_changes_shape_is_an_error_at_the_users_line():
    hc, x = gr.Input("B", W), gr.Input("B", E)
    grown = nn.Linear(W + E, W + 1)(nn.JoinTable(1)([hc, x]))
    inner = gr.gModule([hc, x], [grown])
    h, word = gr.Input("B", W), gr.Input("B", L, E)
    with pytest.raises(gr.ShapeError, match=r"test_nested_loops.py:\d+.*carried state 0"):
        gr.Loop(inner, n_carry=1)(init=[h], xs=[word])


def test_a_while_loop_inside_a_loop_body():
    """Each outer step iterates g' = tanh(g W + x_t) until sum(g') > 0.5 (at most 5 times)."""
    g, c = gr.Input("B", 3), gr.Input("B", 3)
    g2 = nn.Tanh()(nn.CAddTable()([nn.Linear(3, 3)(g), c]))
    inner = gr.gModule([c, g], [g2, g2, ops.sub(ops.sum_(g2, axes=(1,)), 0.5)])
    h, x = gr.Input("B", 3), gr.Input("B", 3)
    g_t, gs, n = gr.Loop(inner, n_carry=1, n_consts=1, stop=True, max_steps=5, pad=9.0)(
        consts=[x], init=[h])
    h2 = nn.Tanh()(nn.CAddTable()([g_t, nn.Linear(3, 3)(h)]))
    outer = gr.gModule([h, x], [h2, h2, gs, n])
    xs, h0 = gr.Input("B", "T", 3, name="x"), gr.Input("B", 3, name="h0")
    model = gr.gModule([xs, h0], list(gr.Loop(outer, n_carry=1)(init=[h0], xs=[xs])))
    rng = np.random.default_rng(0)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32)
    fast = gr.compile(model)
    counts = set()
    for b, t in [(3, 4), (6, 2), (1, 5)]:
        args = (rng.standard_normal((b, t, 3)).astype(np.float32),
                rng.standard_normal((b, 3)).astype(np.float32))
        want = model(*args)
        for g_, w in zip(fast(*args), want):
            np.testing.assert_allclose(g_, w, rtol=1e-5, atol=1e-5)
        assert want[2].shape == (b, t, 5, 3) and want[3].shape == (b, t)
        np.testing.assert_array_equal(want[2][np.arange(5) >= want[3][..., None]], 9.0)
        counts.update(want[3].ravel().tolist())
    assert len(counts) > 1 and len(fast.programs) == 1
    result = gr.gradcheck(model, *[a.astype(np.float64) for a in args], rtol=1e-5)
    assert result.ok, str(result)
