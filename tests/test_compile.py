"""gr.compile end to end: compiled forward == the interpreter for whole models.

Recurrent layers (RNN/LSTM/GRU, stacked, bidirectional, lengths, reverse), the nngraph toy
RNN, nested loops and loops without sequences; one program for every T; stateful streams;
threads; the kernel cache; inspection.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(7)
CELLS = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def same(model: gr.gModule, compiled: gr.compile, *inputs: np.ndarray) -> None:
    """The compiled model's outputs equal the interpreter's."""
    got, want = compiled(*inputs), model.forward(*inputs)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def recurrent(cell: str, d: int, h: int, *, lengths: bool = False, **kw) -> gr.gModule:
    x = gr.Input("B", "T", d, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    inputs = [x, n] if lengths else [x]
    out = nn.Recurrent(CELLS[cell](d, h), **kw)(inputs if lengths else x)
    return gr.gModule(inputs, list(out) if isinstance(out, tuple) else [out])


# ----------------------------------------------------------------------------- recurrent layers

@pytest.mark.parametrize("cell", sorted(CELLS))
def test_one_layer(cell: str, cache: KernelCache) -> None:
    model = recurrent(cell, 6, 9)          # D > 4: the input projection is hoisted
    fast = gr.compile(model, cache=cache)
    same(model, fast, randn(3, 5, 6))


@pytest.mark.parametrize("cell", sorted(CELLS))
def test_two_layer_bidirectional_with_lengths(cell: str, cache: KernelCache) -> None:
    model = recurrent(cell, 3, 5, lengths=True, num_layers=2, bidirectional=True,
                      return_state=True)
    fast = gr.compile(model, cache=cache)
    same(model, fast, randn(4, 6, 3), np.array([6, 1, 0, 4]))


def test_reverse_loop_with_lengths_starts_at_each_rows_last_step(cache: KernelCache) -> None:
    h, x = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([h, x], [nn.CAddTable()([nn.MulConstant(0.5)(h), x])] * 2)
    xs, h0, n = gr.Input("B", "T", 2), gr.Input("B", 2), gr.Input("B", dtype="int64")
    last, ys = gr.Loop(body, n_carry=1, reverse=True)(init=[h0], xs=[xs], lengths=n)
    model = gr.gModule([xs, h0, n], [last, ys])
    fast = gr.compile(model, cache=cache)
    same(model, fast, randn(3, 5, 2), randn(3, 2), np.array([5, 2, 0]))


def test_lstm_with_a_big_batch_and_odd_sizes(cache: KernelCache) -> None:
    """Row tails (B % 3), panel tails (4H % 32) and partial vectors (H % 8)."""
    model = recurrent("lstm", 13, 37)
    same(model, gr.compile(model, cache=cache), randn(7, 4, 13))


# ----------------------------------------------------------------------------- other graphs

def test_toy_nngraph_rnn_unrolled_by_hand(cache: KernelCache) -> None:
    lin, out = nn.Linear(27, 26), nn.Linear(26, 1)
    x, h0 = gr.Input("B", 3, 1), gr.Input("B", 26)
    h = h0
    for x_t in nn.SplitTable(1)(x):
        h = nn.Tanh()(lin(nn.JoinTable(1)([h, x_t])))
    model = gr.gModule([x, h0], [out(h)])
    same(model, gr.compile(model, cache=cache), randn(20, 3, 1), randn(20, 26))


def test_toy_rnn_as_a_loop(cache: KernelCache) -> None:
    hb, xb = gr.Input("B", 26), gr.Input("B", 1)
    step = gr.gModule([hb, xb], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([hb, xb])))])
    x, h0 = gr.Input("B", "T", 1), gr.Input("B", 26)
    (last,) = gr.Loop(step, n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [nn.Linear(26, 1)(last)])
    same(model, gr.compile(model, cache=cache), randn(20, 3, 1), np.zeros((20, 26), np.float32))


def rnn_body(d: int, h: int) -> gr.gModule:
    hh, x = gr.Input("B", h), gr.Input("B", d)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(d, h)(x), nn.Linear(h, h)(hh)]))
    return gr.gModule([hh, x], [h2, h2])


def test_nested_loops(cache: KernelCache) -> None:
    """An inner RNN over each row's sub-sequence x[:, t1]: x is [B, T1, T2, D]."""
    acc, seq = gr.Input("B", 5), gr.Input("B", "T2", 4)
    h0 = gr.ops.fill((5,), 0.0, batch_like=seq)
    inner_last, _ = gr.Loop(rnn_body(4, 5), n_carry=1, name="inner")(init=[h0], xs=[seq])
    outer = gr.gModule([acc, seq], [nn.CAddTable()([acc, inner_last]), inner_last])
    x, a0 = gr.Input("B", "T1", "T2", 4), gr.Input("B", 5)
    total, lasts = gr.Loop(outer, n_carry=1, name="outer")(init=[a0], xs=[x])
    model = gr.gModule([x, a0], [total, lasts])
    fast = gr.compile(model, cache=cache)
    same(model, fast, randn(2, 3, 4, 4), randn(2, 5))
    same(model, fast, randn(2, 6, 4, 4), randn(2, 5))     # T1 is the runtime step count
    assert len(fast.programs) == 1


def test_loop_without_sequences(cache: KernelCache) -> None:
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    s2 = nn.CAddTable()([s, k])
    body = gr.gModule([k, s], [s2, nn.CMulTable()([s2, s2])])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    last, ys = gr.Loop(body, n_carry=1, n_consts=1, length=4)(consts=[kk], init=[s0])
    model = gr.gModule([kk, s0], [last, ys])
    same(model, gr.compile(model, cache=cache), randn(3, 2), randn(3, 2))


def test_loop_whose_length_is_the_time_dim_of_another_input(cache: KernelCache) -> None:
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([k, s], [nn.CAddTable()([s, k])])
    kk, s0, ref = gr.Input("B", 2), gr.Input("B", 2), gr.Input("B", "T")
    (last,) = gr.Loop(body, n_carry=1, n_consts=1, length="T")(consts=[kk], init=[s0])
    model = gr.gModule([kk, s0, ref], [last, nn.MulConstant(0)(ref)])
    fast = gr.compile(model, cache=cache)
    for t in (0, 5):
        same(model, fast, randn(2, 2), randn(2, 2), randn(2, t))


def test_carries_that_swap_with_lengths(cache: KernelCache) -> None:
    a, b, x = gr.Input("B", 3), gr.Input("B", 3), gr.Input("B", 3)
    body = gr.gModule([a, b, x], [b, nn.CAddTable()([a, x]), a])
    xs, a0, b0, n = gr.Input("B", "T", 3), gr.Input("B", 3), gr.Input("B", 3), \
        gr.Input("B", dtype="int64")
    model = gr.gModule([xs, a0, b0, n],
                       list(gr.Loop(body, n_carry=2)(init=[a0, b0], xs=[xs], lengths=n)))
    same(model, gr.compile(model, cache=cache), randn(3, 5, 3), randn(3, 3), randn(3, 3),
         np.array([5, 3, 0]))


def test_classifier_with_embedding_and_loss(cache: KernelCache) -> None:
    ids, target = gr.Input("B", "T", dtype="int64"), gr.Input("B", dtype="int64")
    h = nn.Recurrent(gr.cells.GRU(6, 8), return_sequences=False)(nn.LookupTable(11, 6)(ids))
    logits = nn.Linear(8, 4)(h)
    model = gr.gModule([ids, target], [nn.LogSoftMax()(logits),
                                       gr.CrossEntropyCriterion()([logits, target])])
    same(model, gr.compile(model, cache=cache), RNG.integers(0, 11, (5, 7)),
         RNG.integers(0, 4, 5))


def test_every_module(cache: KernelCache) -> None:
    x, ids = gr.Input("B", 3, 4, name="x"), gr.Input("B", 3, dtype="int64", name="ids")
    emb = nn.LookupTable(7, 4)(ids)
    rows = nn.SplitTable(1)(nn.CAddTable()([x, emb]))
    first, last = nn.SelectTable(0)(rows), nn.SelectTable(-1)(rows)
    joined = nn.JoinTable(1)([first, nn.Narrow(1, 1, 2)(last)])            # [B, 6]
    h = nn.Sigmoid()(nn.Linear(6, 8)(nn.Dropout(0.3)(joined)))
    h = nn.CSubTable()([nn.ReLU()(h), nn.MulConstant(0.5)(nn.Tanh()(h))])
    h = nn.CMulTable()([h, nn.AddConstant(1.0)(h)])
    flat = nn.Reshape(3, 4)(nn.Identity()(nn.Reshape(12)(x)))
    model = gr.gModule([x, ids], [nn.SoftMax()(h), nn.LogSoftMax()(nn.Linear(8, 5)(h)), flat])
    same(model, gr.compile(model, cache=cache), randn(4, 3, 4), RNG.integers(0, 7, (4, 3)))


def test_unrolling_on_request(cache: KernelCache) -> None:
    model = recurrent("gru", 3, 4, lengths=True)
    fast = gr.compile(model, unroll=2, cache=cache)
    same(model, fast, randn(2, 6, 3), np.array([6, 3]))
    same(model, fast, randn(2, 4, 3), np.array([1, 4]))   # unrolled: one program per T
    assert len(fast.programs) == 2


# ----------------------------------------------------------------------------- T, batch, state

def test_one_program_serves_every_sequence_length(cache: KernelCache) -> None:
    model = recurrent("lstm", 5, 6, lengths=True)
    fast = gr.compile(model, cache=cache)
    for t in (1, 7, 50):
        same(model, fast, randn(3, t, 5), RNG.integers(0, t + 1, 3))
    assert len(fast.programs) == 1
    out = fast(randn(3, 0, 5), np.zeros(3, np.int64))
    assert out.shape == (3, 0, 6)
    assert len(fast.programs) == 1
    fast(randn(2, 4, 5), np.array([4, 2]))          # another batch size: the same program
    assert len(fast.programs) == 1


def test_zero_steps_returns_the_initial_state(cache: KernelCache) -> None:
    body = rnn_body(3, 4)
    x, h0 = gr.Input("B", "T", 3), gr.Input("B", 4)
    last, ys = gr.Loop(body, n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [last, ys])
    hv = randn(2, 4)
    got_last, got_ys = gr.compile(model, cache=cache)(randn(2, 0, 3), hv)
    np.testing.assert_array_equal(got_last, hv)
    assert got_ys.shape == (2, 0, 4)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_stateful_chunks_equal_one_long_call(cell: str, cache: KernelCache) -> None:
    model = recurrent(cell, 4, 6, num_layers=2)
    long = gr.compile(model, cache=cache)
    stream = gr.compile(model, stateful=True, cache=cache)
    x = randn(3, 12, 4)
    want = long(x)
    got = np.concatenate([stream(x[:, a:b]) for a, b in ((0, 5), (5, 6), (6, 12))], axis=1)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    stream.reset_state()
    np.testing.assert_allclose(stream(x[:, :5]), want[:, :5], rtol=1e-4, atol=1e-5)
    with pytest.raises(gr.InputError, match="reset_state"):
        stream(randn(2, 3, 4))                    # another batch size mid-stream
    stream.reset_state()
    assert stream(randn(2, 3, 4)).shape == (2, 3, 6)


def test_stateful_reverse_loops_are_refused() -> None:
    model = recurrent("rnn", 2, 3, bidirectional=True)
    with pytest.raises(gr.GraphError, match="reverse"):
        gr.compile(model, stateful=True)


def test_threads_get_their_own_results(cache: KernelCache) -> None:
    model = recurrent("lstm", 4, 8, lengths=True)
    fast = gr.compile(model, cache=cache)
    inputs = [(randn(3, 10 + 7 * i, 4), RNG.integers(0, 10, 3)) for i in range(8)]
    want = [fast(*a) for a in inputs]
    got: list = [None] * 8
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(20):
            got[i] = fast(*inputs[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


# ----------------------------------------------------------------------------- params, cache

def test_parameter_updates_are_seen_without_recompiling(cache: KernelCache) -> None:
    model = recurrent("gru", 3, 4)
    fast = gr.compile(model, cache=cache)
    x = randn(2, 5, 3)
    before = fast(x)
    model.reset_parameters(seed=3)
    after = fast(x)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, model.forward(x), rtol=1e-4, atol=1e-5)
    assert len(fast.programs) == 1


def test_a_graph_compiles_with_its_params_gathered(cache: KernelCache) -> None:
    model = recurrent("rnn", 3, 4)
    fast = gr.compile(model.graph, cache=cache)
    same(model, fast, randn(2, 5, 3))


def test_the_kernel_cache_serves_a_second_model(tmp_path) -> None:
    cache = KernelCache(tmp_path)
    model = recurrent("rnn", 3, 4)
    x = randn(2, 5, 3)
    gr.compile(model, cache=cache)(x)
    assert cache.stats.misses == 1
    fresh = KernelCache(tmp_path)                   # a new process: only the disk is shared
    np.testing.assert_allclose(gr.compile(model, cache=fresh)(x), model.forward(x), atol=1e-5)
    assert (fresh.stats.misses, fresh.stats.disk_hits) == (0, 1)


def test_inspection(cache: KernelCache, capsys: pytest.CaptureFixture) -> None:
    model = recurrent("rnn", 3, 4)
    fast = gr.compile(model, cache=cache)
    text = fast.llvm_ir(B=2)
    assert "_forward" in text and "define" in text
    assert "ret" in fast.asm(randn(2, 3, 3))
    dumped = gr.compile(model, dump=3, cache=cache)
    dumped(randn(2, 3, 3))
    err = capsys.readouterr().err
    assert "LLVM IR" in err and "optimised LLVM IR" in err
