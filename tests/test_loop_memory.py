"""Loop-invariant memory: attention over encoder outputs passed to a decoder loop as a const
(neither a carry nor a sequence). Its gradient is the sum over every decoder step: checked
against PyTorch (same weights), finite differences and the interpreter, compiled as one
program for every batch size and encoder length."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.gradcheck import gradients
from graphrnn.torch_interop import to_torch_linear, to_torch_recurrent

torch = pytest.importorskip("torch")

D, H, U = 3, 5, 4                     # input width, hidden width, decoder steps


def seq2seq():
    """x [B, T, D] -> encoder RNN -> memory [B, T, H]; a GRU decoder over y [B, U, D] whose
    step attends to the memory: a = softmax(<memory_t, W_q h>), context = sum_t a_t memory_t,
    h' = GRU(h, y_t + W_c context)."""
    encoder = nn.Recurrent(gr.cells.RNN(D, H))
    query, mix, cell = nn.Linear(H, H), nn.Linear(H, D), gr.cells.GRU(D, H)
    mem, h, y = gr.Input("B", "T", H), gr.Input("B", H), gr.Input("B", D)
    q = ops.reshape(query(h), ("B", 1, H))
    scores = ops.sum_(ops.mul(mem, q), axes=(2,))                           # [B, T]
    a = ops.reshape(ops.softmax(scores, axis=1), ("B", "T", 1))
    context = ops.sum_(ops.mul(mem, a), axes=(1,))                          # [B, H]
    h2 = cell([h, ops.add(y, mix(context))])
    body = gr.gModule([mem, h, y], [h2, h2])
    x, ys = gr.Input("B", "T", D, name="x"), gr.Input("B", U, D, name="y")
    memory = encoder(x)
    h0 = ops.fill((H,), 0.0, batch_like=x)       # the memory is the decoder's only source
    h_t, hs = gr.Loop(body, n_carry=1, n_consts=1)(consts=[memory], init=[h0], xs=[ys])
    model = gr.gModule([x, ys], [hs, h_t])
    rng = np.random.default_rng(2)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32) * 0.6
    return model, (encoder, query, mix, cell)


def torch_seq2seq(parts):
    encoder, query, mix, cell = parts
    t_enc, t_query, t_mix = to_torch_recurrent(encoder), to_torch_linear(query), \
        to_torch_linear(mix)
    t_cell = torch.nn.GRUCell(D, H)
    with torch.no_grad():
        for k, p in cell.named_parameters().items():
            getattr(t_cell, k.split(".")[-1]).copy_(torch.tensor(p))

    def run(x, ys):
        memory, _ = t_enc(x)
        memory.retain_grad()
        h, hs = torch.zeros(x.shape[0], H), []
        for t in range(ys.shape[1]):
            a = torch.softmax((memory * t_query(h)[:, None]).sum(2), 1)
            h = t_cell(ys[:, t] + t_mix((memory * a[:, :, None]).sum(1)), h)
            hs.append(h)
        return torch.stack(hs, 1), h, memory
    return run, (t_enc, t_query, t_mix, t_cell)


def flat_grad(model) -> np.ndarray:
    return model.parameters()[1].copy()


def torch_flat_grad(model, parts, torch_mods) -> np.ndarray:
    """The PyTorch gradients laid out as the model's flat gradient."""
    flat = model.parameters()[0]
    out = np.zeros_like(flat)
    ours = model.named_parameters()
    encoder, query, mix, cell = parts
    t_enc, t_query, t_mix, t_cell = torch_mods
    pairs = [(encoder.cells[0], t_enc, "_l0"), (query, t_query, ""), (mix, t_mix, ""),
             (cell, t_cell, "")]
    for mod, t_mod, suffix in pairs:
        for name, p in mod.params().items():
            view = next(v for k, v in ours.items() if np.shares_memory(v, gr.value(p)))
            start = (view.__array_interface__["data"][0]
                     - flat.__array_interface__["data"][0]) // 4
            attr = name.split(".")[-1]
            attr = attr if attr in dict(t_mod.named_parameters()) else attr + suffix
            g = getattr(t_mod, attr).grad.numpy()
            out[start:start + g.size] = g.reshape(-1)
    return out


def data(b: int, t: int, seed: int):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((b, t, D)).astype(np.float32),
            rng.standard_normal((b, U, D)).astype(np.float32))


def test_attention_memory_matches_torch_outputs_and_gradients():
    model, parts = seq2seq()
    run, torch_mods = torch_seq2seq(parts)
    fast, vjp = gr.compile(model), gr.compile_vjp(model)
    rng = np.random.default_rng(4)
    for b, t, seed in [(1, 3, 0), (4, 9, 1), (7, 2, 2)]:
        x, ys = data(b, t, seed)
        tx, tys = torch.tensor(x, requires_grad=True), torch.tensor(ys, requires_grad=True)
        hs_t, h_t, _ = run(tx, tys)
        for got in (model(x, ys), fast(x, ys)):
            np.testing.assert_allclose(got[0], hs_t.detach().numpy(), atol=1e-5)
            np.testing.assert_allclose(got[1], h_t.detach().numpy(), atol=1e-5)
        dys = [rng.standard_normal((b, U, H)).astype(np.float32),
               rng.standard_normal((b, H)).astype(np.float32)]
        for m in torch_mods:
            m.zero_grad()
        ((hs_t * torch.tensor(dys[0])).sum() + (h_t * torch.tensor(dys[1])).sum()).backward()
        _, (gx, gys) = vjp(x, ys, grad_outputs=dys)
        np.testing.assert_allclose(gx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(gys, tys.grad.numpy(), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(flat_grad(model), torch_flat_grad(model, parts, torch_mods),
                                   rtol=1e-4, atol=1e-5)
    assert len(fast.programs) == 1 and len(vjp.programs) == 1


def memory_only():
    """The decoder alone, the memory a model input: its gradient is the loop's const's."""
    _, parts = seq2seq()
    _, query, mix, cell = parts
    mem, h, y = gr.Input("B", "T", H), gr.Input("B", H), gr.Input("B", D)
    q = ops.reshape(query(h), ("B", 1, H))
    a = ops.reshape(ops.softmax(ops.sum_(ops.mul(mem, q), axes=(2,)), axis=1), ("B", "T", 1))
    h2 = cell([h, ops.add(y, mix(ops.sum_(ops.mul(mem, a), axes=(1,))))])
    body = gr.gModule([mem, h, y], [h2, h2])
    memory, h0 = gr.Input("B", "T", H, name="memory"), gr.Input("B", H, name="h0")
    ys = gr.Input("B", U, D, name="y")
    h_t, hs = gr.Loop(body, n_carry=1, n_consts=1)(consts=[memory], init=[h0], xs=[ys])
    return gr.gModule([memory, h0, ys], [hs, h_t])


def test_memory_gradient_sums_over_every_step():
    model = memory_only()
    rng = np.random.default_rng(6)
    args = [rng.standard_normal((3, 5, H)), rng.standard_normal((3, H)),
            rng.standard_normal((3, U, D))]
    result = gr.gradcheck(model, *args, rtol=1e-5, samples=20)
    assert result.ok, str(result)
    # the memory's gradient is the sum of what each step alone sends it
    dys = [rng.standard_normal((3, U, H)), np.zeros((3, H))]
    _, _, (g_mem, _, _) = gradients(model, *args, cotangents=dys)
    per_step = []
    for t in range(U):
        only = [np.zeros_like(dys[0]), dys[1]]
        only[0][:, t] = dys[0][:, t]
        per_step.append(gradients(model, *args, cotangents=only)[2][0])
    np.testing.assert_allclose(g_mem, np.sum(per_step, axis=0), rtol=1e-10, atol=1e-12)
    assert all(np.abs(g).max() > 1e-3 for g in per_step)
    vjp = gr.compile_vjp(model)
    for b, t in [(3, 5), (2, 11), (6, 1)]:
        f32 = [rng.standard_normal((b, t, H)), rng.standard_normal((b, H)),
               rng.standard_normal((b, U, D))]
        f32 = [a.astype(np.float32) for a in f32]
        cot = [rng.standard_normal((b, U, H)).astype(np.float32),
               rng.standard_normal((b, H)).astype(np.float32)]
        _, got = vjp(*f32, grad_outputs=cot)
        _, _, want = gradients(model, *f32, cotangents=cot)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
    assert len(vjp.programs) == 1


V, EOS = 7, 0


def greedy_seq2seq():
    """x [B, T, D] -> encoder RNN -> memory; a while decoder from the encoder's last state:
    embedding + attention context -> GRU -> Linear -> argmax, fed back, until EOS."""
    encoder = nn.Recurrent(gr.cells.RNN(D, H), return_state=True)
    emb, query, cell, head = nn.LookupTable(V, D), nn.Linear(H, H), gr.cells.GRU(D + H, H), \
        nn.Linear(H, V)
    mem, h, tok = gr.Input("B", "T", H), gr.Input("B", H), gr.Input("B", dtype="int64")
    a = ops.reshape(ops.softmax(ops.sum_(ops.mul(mem, ops.reshape(query(h), ("B", 1, H))),
                                         axes=(2,)), axis=1), ("B", "T", 1))
    context = ops.sum_(ops.mul(mem, a), axes=(1,))
    h2 = cell([h, nn.JoinTable(1)([emb(tok), context])])
    nxt = ops.sample(head(h2), ops.fill((), 0.0, batch_like=h2), ops.const(np.float32(0)))
    body = gr.gModule([mem, h, tok], [h2, nxt, nxt, gr.is_token(nxt, EOS, V)])
    x, start = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="start")
    memory, h_n = encoder(x)
    h_n = h_n[0] if isinstance(h_n, (list, tuple)) else h_n
    _, _, tokens, lengths = gr.Loop(body, n_carry=2, n_consts=1, stop=True, max_steps=9,
                                    pad=-1)(consts=[memory], init=[h_n, start])
    model = gr.gModule([x, start], [tokens, lengths])
    rng = np.random.default_rng(12)
    for p in model.graph.params():
        gr.value(p)[...] = rng.standard_normal(p.shape).astype(np.float32)
    return model, (encoder, emb, query, cell, head)


def torch_greedy_seq2seq(parts, x, start, steps=9):
    encoder, emb, query, cell, head = parts
    t_enc, t_query, t_head = to_torch_recurrent(encoder), to_torch_linear(query), \
        to_torch_linear(head)
    t_emb, t_cell = torch.nn.Embedding(V, D), torch.nn.GRUCell(D + H, H)
    with torch.no_grad():
        t_emb.weight.copy_(torch.tensor(gr.value(emb.weight)))
        for k, p in cell.named_parameters().items():
            getattr(t_cell, k.split(".")[-1]).copy_(torch.tensor(p))
        memory, h_n = t_enc(torch.tensor(x))
        h, tok = h_n[0], torch.tensor(start)
        tokens = np.full((len(x), steps), -1, np.int64)
        lengths, live = np.zeros(len(x), np.int64), np.ones(len(x), bool)
        for t in range(steps):
            a = torch.softmax((memory * t_query(h)[:, None]).sum(2), 1)
            context = (memory * a[:, :, None]).sum(1)
            h_new = t_cell(torch.cat([t_emb(tok), context], 1), h)
            nxt = t_head(h_new).argmax(-1)
            rows = torch.tensor(live)
            h, tok = torch.where(rows[:, None], h_new, h), torch.where(rows, nxt, tok)
            tokens[live, t] = nxt.numpy()[live]
            lengths += live
            live &= nxt.numpy() != EOS
    return tokens, lengths


def test_greedy_seq2seq_with_attention_matches_torch():
    model, parts = greedy_seq2seq()
    fast = gr.compile(model)
    seen = set()
    for b, t, seed in [(4, 3, 0), (9, 6, 1), (1, 2, 2), (12, 5, 3)]:
        rng = np.random.default_rng(seed)
        x, start = rng.standard_normal((b, t, D)).astype(np.float32), rng.integers(1, V, b)
        want_tokens, want_lengths = torch_greedy_seq2seq(parts, x, start)
        for run in (model, fast):
            tokens, lengths = run(x, start)
            np.testing.assert_array_equal(tokens, want_tokens)
            np.testing.assert_array_equal(lengths, want_lengths)
        seen.update(want_lengths.tolist())
    assert len(seen) > 2 and len(fast.programs) == 1
