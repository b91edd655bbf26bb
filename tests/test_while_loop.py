"""While loops (Loop(stop=True)): a greedy and a sampling decoder against PyTorch with the same
weights, interpreted and compiled, one program for every batch size and maximum length, the
native early exit, padding, gradients against finite differences, and the error cases."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.gradcheck import gradients

torch = pytest.importorskip("torch")

V, E, H, EOS = 6, 4, 8, 0
PAD = -1


def decoder(sampling: bool, max_steps: int | None = 10):
    """start ids [B], h0 [B, H] (, uniforms [B, N], temperature []) -> tokens, lengths, h_T:
    embedding -> GRU cell -> Linear -> argmax or a sample, fed back, until EOS."""
    emb, cell, head = nn.LookupTable(V, E), gr.cells.GRU(E, H), nn.Linear(H, V)
    temp = gr.Input(name="temp")
    h, tok = gr.Input("B", H), gr.Input("B", dtype="int64")
    u = gr.Input("B") if sampling else ops.fill((), 0.0, batch_like=h)
    h2 = cell([h, emb(tok)])
    nxt = ops.sample(head(h2), u, temp)
    ins = [temp, h, tok] + ([u] if sampling else [])
    body = gr.gModule(ins, [h2, nxt, nxt, gr.is_token(nxt, EOS, V)])
    h0, t0 = gr.Input("B", H, name="h0"), gr.Input("B", dtype="int64", name="start")
    temperature = gr.Input(name="temperature")
    xs = [gr.Input("B", "N", name="uniforms")] if sampling else []
    loop = gr.Loop(body, n_carry=2, n_consts=1, stop=True,
                   max_steps=None if sampling else max_steps, pad=PAD)
    h_t, _, tokens, lengths = loop(consts=[temperature], init=[h0, t0], xs=xs)
    model = gr.gModule([h0, t0, temperature] + xs, [tokens, lengths, h_t])
    rng = np.random.default_rng(3)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32) * 1.2
    return model, (emb, cell, head)


def torch_decoder(parts, h0, t0, steps, temperature=0.0, uniforms=None):
    """The same decoder in PyTorch, row by row finished at its EOS."""
    emb, cell, head = parts
    t_emb = torch.nn.Embedding(V, E)
    t_cell = torch.nn.GRUCell(E, H)
    t_head = torch.nn.Linear(H, V)
    with torch.no_grad():
        t_emb.weight.copy_(torch.tensor(gr.value(emb.weight)))
        for k, p in cell.named_parameters().items():
            getattr(t_cell, k.split(".")[-1]).copy_(torch.tensor(p))
        t_head.weight.copy_(torch.tensor(gr.value(head.weight)))
        t_head.bias.copy_(torch.tensor(gr.value(head.bias)))
        h, tok = torch.tensor(h0), torch.tensor(t0)
        b = h.shape[0]
        tokens = np.full((b, steps), PAD, np.int64)
        lengths = np.zeros(b, np.int64)
        live = np.ones(b, bool)
        for t in range(steps):
            if not live.any():
                break
            h_new = t_cell(t_emb(tok), h)
            logits = t_head(h_new)
            if temperature <= 0:
                nxt = logits.argmax(-1)
            else:
                cdf = torch.cumsum(torch.softmax(logits / temperature, -1), -1)
                u = torch.tensor(uniforms[:, t])
                nxt = torch.clamp((cdf <= u[:, None]).sum(-1), max=V - 1)
            rows = torch.tensor(live)
            h = torch.where(rows[:, None], h_new, h)
            tok = torch.where(rows, nxt, tok)
            tokens[live, t] = nxt.numpy()[live]
            lengths[live] += 1
            live &= nxt.numpy() != EOS
    return tokens, lengths, h.numpy()


def inputs(b: int, seed: int):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((b, H)).astype(np.float32), rng.integers(1, V, b)


def test_greedy_decoder_matches_torch_interpreted_and_compiled():
    model, parts = decoder(sampling=False, max_steps=10)
    fast = gr.compile(model)
    seen_lengths = set()
    for b, seed in [(1, 0), (5, 1), (16, 2)]:
        h0, t0 = inputs(b, seed)
        want_tok, want_len, want_h = torch_decoder(parts, h0, t0, 10)
        for run in (model, fast):
            tokens, lengths, h_t = run(h0, t0, np.float32(0))
            np.testing.assert_array_equal(tokens, want_tok)
            np.testing.assert_array_equal(lengths, want_len)
            assert lengths.dtype == np.int64 and tokens.dtype == np.int64
            np.testing.assert_allclose(h_t, want_h, atol=1e-5)
        seen_lengths.update(want_len.tolist())
    assert len(fast.programs) == 1
    assert len(seen_lengths) > 2 and 10 in seen_lengths   # some rows stop, some run out


def test_sampling_decoder_matches_torch_one_program():
    model, parts = decoder(sampling=True)
    fast = gr.compile(model)
    for b, steps, seed in [(3, 7, 0), (8, 12, 1), (2, 4, 2)]:
        h0, t0 = inputs(b, seed)
        u = np.random.default_rng(seed + 10).random((b, steps), dtype=np.float32)
        want_tok, want_len, want_h = torch_decoder(parts, h0, t0, steps, 0.8, u)
        for run in (model, fast):
            tokens, lengths, h_t = run(h0, t0, np.float32(0.8), u)
            np.testing.assert_array_equal(tokens, want_tok)
            np.testing.assert_array_equal(lengths, want_len)
            np.testing.assert_allclose(h_t, want_h, atol=1e-5)
    assert len(fast.programs) == 1


def test_the_native_loop_leaves_when_every_row_has_stopped():
    model, parts = decoder(sampling=False, max_steps=10)
    h0, t0 = inputs(16, 2)
    _, want_len, _ = torch_decoder(parts, h0, t0, 10)
    short = np.argsort(want_len)[:3]
    assert want_len[short].max() < 10
    rows = gr.profile(model, h0[short], t0[short], np.float32(0), repeats=1).rows
    body = [r.calls for r in rows if r.kind in ("gemm", "map", "index", "carry")]
    pads = [r.calls for r in rows if r.kind == "mask"]
    assert max(body) == want_len[short].max()          # the steps taken, not max_steps
    assert sum(pads) == 10 - want_len[short].max()


def float_while(pad: float = 0.0):
    """h' = tanh(x_t U + h W); y = h'; a row stops once sum(h') > 1."""
    h, x = gr.Input("B", 3), gr.Input("B", 2)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(2, 3)(x), nn.Linear(3, 3, bias=False)(h)]))
    stop = ops.binary(gr.Op.SUB, ops.sum_(h2, axes=(1,), keepdims=True), 1.0)
    body = gr.gModule([h, x], [h2, h2, stop])
    xs, h0 = gr.Input("B", "T", 2, name="x"), gr.Input("B", 3, name="h0")
    h_t, ys, lengths = gr.Loop(body, n_carry=1, stop=True, pad=pad)(init=[h0], xs=[xs])
    model = gr.gModule([xs, h0], [h_t, ys, lengths])
    rng = np.random.default_rng(7)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32)
    return model


def numpy_float_while(model, xs, h0, pad):
    p = model.named_parameters()
    u, bu, w = p["linear.weight"], p["linear.bias"], p["linear_1.weight"]
    h, live = h0.copy(), np.ones(len(h0), bool)
    ys = np.full(xs.shape[:2] + (3,), pad, np.float32)
    n = np.zeros(len(h0), np.float32)
    for t in range(xs.shape[1]):
        h2 = np.tanh(xs[:, t] @ u.T + bu + h @ w.T)
        h = np.where(live[:, None], h2, h)
        ys[live, t] = h2[live]
        n += live
        live &= h2.sum(1) <= 1
    return h, ys, n


@pytest.mark.parametrize("pad", [0.0, -7.5])
def test_float_while_loop_freezes_and_pads(pad):
    model = float_while(pad)
    fast = gr.compile(model)
    rng = np.random.default_rng(4)
    for b, steps in [(4, 6), (9, 11)]:
        xs = rng.standard_normal((b, steps, 2)).astype(np.float32)
        h0 = rng.standard_normal((b, 3)).astype(np.float32) * 0.3
        want = numpy_float_while(model, xs, h0, pad)
        assert 0 < want[2].min() and want[2].min() < steps
        for got in (model(xs, h0), fast(xs, h0)):
            for g, w in zip(got, want):
                np.testing.assert_allclose(g, w, atol=1e-5)
    assert len(fast.programs) == 1


def test_while_loop_gradients_over_the_steps_taken():
    model = float_while(0.0)
    rng = np.random.default_rng(5)
    xs = rng.standard_normal((4, 7, 2))
    h0 = rng.standard_normal((4, 3)) * 0.3
    lengths = model(xs.astype(np.float32), h0.astype(np.float32))[2]
    assert lengths.min() < 7
    result = gr.gradcheck(model, xs, h0, rtol=1e-5)
    assert result.ok, str(result)
    # compiled vector-Jacobian product against the interpreter's gradients
    dys = [rng.standard_normal((4, 3)).astype(np.float32),
           rng.standard_normal((4, 7, 3)).astype(np.float32)]
    vjp = gr.compile_vjp(model, outputs=[0, 1])
    _, (gx, gh) = vjp(xs.astype(np.float32), h0.astype(np.float32), grad_outputs=dys)
    _, p_want, (gx_want, gh_want) = gradients(model, xs, h0, cotangents=[*dys, np.zeros(4)])
    np.testing.assert_allclose(gx, gx_want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(gh, gh_want, rtol=1e-4, atol=1e-5)
    for k, v in param_grads(model).items():
        np.testing.assert_allclose(v, p_want[k], rtol=1e-4, atol=1e-5)


def param_grads(model) -> dict[str, np.ndarray]:
    """The model's flat gradient cut as its parameters are cut from the flat vector."""
    flat, grads = model.parameters()
    out = {}
    for k, v in model.named_parameters().items():
        start = (v.__array_interface__["data"][0] - flat.__array_interface__["data"][0]) // 4
        out[k] = grads[start:start + v.size].reshape(v.shape)
    return out


# ----------------------------------------------------------------------------- errors

def _body_with_stop(stop_shape, dtype="float32"):
    h = gr.Input("B", 3)
    stop = gr.Input(*stop_shape, dtype=dtype)
    return gr.gModule([h, stop], [h, h, stop]), h


@pytest.mark.parametrize("shape", [("B", 2), (3,), ("B", 1, 1)])
def test_a_stop_value_not_per_row_is_an_error_at_the_users_line(shape):
    h = gr.Input("B", 3)
    stop = nn.Linear(3, 2)(h) if shape == ("B", 2) else \
        (ops.sum_(h, axes=(0,)) if shape == (3,) else ops.reshape(ops.sum_(h, axes=(1,)),
                                                                  ("B", 1, 1)))
    body = gr.gModule([h], [h, h, stop])
    with pytest.raises(gr.ShapeError, match=r"test_while_loop.py:\d+.*one value per row"):
        gr.Loop(body, n_carry=1, stop=True, max_steps=4)(init=[gr.Input("B", 3)])


def test_a_per_step_output_without_the_batch_axis_is_an_error_at_the_users_line():
    h = gr.Input("B", 3)
    summary = ops.sum_(h, axes=(0,))                       # [3]: no rows to pad
    body = gr.gModule([h], [h, summary, ops.sum_(h, axes=(1,))])
    with pytest.raises(gr.ShapeError, match=r"test_while_loop.py:\d+.*per-step outputs need "
                                            r"the batch axis"):
        gr.Loop(body, n_carry=1, stop=True, max_steps=4)(init=[gr.Input("B", 3)])


def test_an_integer_stop_value_points_to_is_token():
    h = gr.Input("B", 3)
    ids = ops.sample(h, ops.fill((), 0.5, batch_like=h), ops.const(np.float32(0)))
    body = gr.gModule([h], [h, ids])
    with pytest.raises(gr.ShapeError, match="is_token"):
        gr.Loop(body, n_carry=1, stop=True, max_steps=4)(init=[gr.Input("B", 3)])


def test_while_loop_option_errors():
    h = gr.Input("B", 3)
    body = gr.gModule([h], [h, ops.sum_(h, axes=(1,))])
    with pytest.raises(gr.GraphError, match="forward only"):
        gr.Loop(body, n_carry=1, stop=True, reverse=True, max_steps=3)
    with pytest.raises(gr.GraphError, match="needs max_steps"):
        gr.Loop(body, n_carry=1, stop=True)(init=[gr.Input("B", 3)])
    with pytest.raises(gr.GraphError, match="max_steps= is for a while loop"):
        gr.Loop(body, n_carry=1, max_steps=3)
    with pytest.raises(gr.GraphError, match="no lengths"):
        gr.Loop(body, n_carry=1, stop=True, max_steps=3)(
            init=[gr.Input("B", 3)], lengths=gr.Input("B", dtype="int64"))


def test_an_untyped_body_is_typed_from_the_loop_operands():
    h, xt = nn.Identity()(), nn.Identity()()
    h2 = nn.Tanh()(nn.Linear(4, 3)(nn.JoinTable(1)([h, xt])))
    body = gr.gModule([h, xt], [h2, h2, ops.sum_(h2, axes=(1,))])
    seq, h0 = gr.Input("B", "T", 1), gr.Input("B", 3)
    h_t, ys, lengths = gr.Loop(body, n_carry=1, stop=True)(init=[h0], xs=[seq])
    model = gr.gModule([seq, h0], [h_t, ys, lengths])
    rng = np.random.default_rng(8)
    x, h_0 = rng.standard_normal((5, 6, 1)).astype(np.float32), \
        rng.standard_normal((5, 3)).astype(np.float32)
    want = model(x, h_0)
    for g, w in zip(gr.compile(model)(x, h_0), want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    bad = gr.gModule([h, xt], [h2, h2, h2])
    with pytest.raises(gr.ShapeError, match="one value per row"):
        gr.Loop(bad, n_carry=1, stop=True)(init=[h0], xs=[seq])


def test_a_carry_without_the_batch_axis_is_refused():
    h, s = gr.Input("B", 3), gr.Input(2)
    body = gr.gModule([h, s], [h, s, ops.sum_(h, axes=(1,))])
    with pytest.raises(gr.ShapeError, match="need the batch axis"):
        gr.Loop(body, n_carry=2, stop=True, max_steps=3)(init=[gr.Input("B", 3), gr.Input(2)])
