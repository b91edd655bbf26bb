"""One compiled program for every batch size and every sequence length.

Counts compiles (programs built, whatever the kernel cache holds) after calls with several
batch sizes (1, odd sizes with GEMM tile remainders, 64) and lengths, for typed and untyped
(`nn.Identity()()`) inputs, forward, training step, stateful stream and `fit`; checks every
result against the interpreter. `specialize=True` and graphs that need a fixed batch still
build one program per batch size.
"""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep, fit

RNG = np.random.default_rng(13)
SIZES = [(b, t) for b in (1, 3, 64, 5) for t in (5, 6, 7)]


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def close(got: np.ndarray, want: np.ndarray) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-5)


def two_layer_lstm(d: int = 5, h: int = 11) -> gr.gModule:
    gr.manual_seed(3)
    x = gr.Input("B", "T", d, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    y = nn.Recurrent(gr.cells.LSTM(d, h), num_layers=2, bidirectional=True)([x, n])
    return gr.gModule([x, n], [nn.Linear(2 * h, 3)(y)])


def test_forward_typed_one_program(builds: list, cache: KernelCache) -> None:
    model = two_layer_lstm()
    fast = gr.compile(model, cache=cache)
    for b, t in SIZES:
        x, n = randn(b, t, 5), RNG.integers(0, t + 1, b)
        close(fast(x, n), model.forward(x, n))
    assert len(fast.programs) == 1 and len(builds) == 1


def test_forward_untyped_one_program(builds: list, cache: KernelCache) -> None:
    gr.manual_seed(4)
    x = nn.Identity()()                         # the nngraph idiom: no declared type
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(4, 9))(x)])
    fast = gr.compile(model, cache=cache)
    for b, t in SIZES:
        x = randn(b, t, 4)
        close(fast(x), gr.interpret(model, x))
    assert len(fast.programs) == 1 and len(builds) == 1


def test_training_step_one_program(builds: list, cache: KernelCache) -> None:
    model = two_layer_lstm(4, 7)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    oracle = InterpretedStep(model, gr.MSECriterion())
    grad = model.parameters()[1]
    for b, t in SIZES:
        x, n, y = randn(b, t, 4), RNG.integers(1, t + 1, b), randn(b, t, 3)
        loss = step(x, n, target=y)
        got = grad.copy()
        want_loss = oracle(x, n, target=y)
        np.testing.assert_allclose(loss, want_loss, rtol=1e-4)
        np.testing.assert_allclose(got, grad, rtol=1e-3, atol=1e-5)
    assert len(step.programs) == 1 and len(builds) == 1


def test_untyped_training_step_one_program(builds: list, cache: KernelCache) -> None:
    gr.manual_seed(5)
    x = nn.Identity()()
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(3, 6))(x)])
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    oracle = InterpretedStep(model, gr.MSECriterion())
    grad = model.parameters()[1]
    for b, t in SIZES:
        x, y = randn(b, t, 3), randn(b, t, 6)
        loss = step(x, target=y)
        got = grad.copy()
        np.testing.assert_allclose(loss, oracle(x, target=y), rtol=1e-4)
        np.testing.assert_allclose(got, grad, rtol=1e-3, atol=1e-5)
    assert len(step.programs) == 1 and len(builds) == 1


def test_stateful_stream_one_program(builds: list, cache: KernelCache) -> None:
    gr.manual_seed(6)
    x = gr.Input("B", "T", 4, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(4, 8))(x)])
    stream = gr.compile(model, stateful=True, cache=cache)
    for b in (1, 3, 64, 5):
        whole = randn(b, 18, 4)
        stream.reset_state()
        parts = [stream(whole[:, :5]), stream(whole[:, 5:11]), stream(whole[:, 11:])]
        close(np.concatenate(parts, axis=1), model.forward(whole))
    assert len(stream.programs) == 1 and len(builds) == 1


def test_fit_with_a_short_last_batch_compiles_once(builds: list) -> None:
    gr.manual_seed(7)
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(3, 5))(x)])
    xs, ys = randn(21, 4, 3), randn(21, 4, 5)      # batches of 8, 8 and 5
    fit(model, gr.MSECriterion(), xs, ys, epochs=2, batch_size=8, progress=False)
    assert len(builds) == 1


def test_specialize_compiles_per_batch_size(builds: list, cache: KernelCache) -> None:
    model = two_layer_lstm()
    fast = gr.compile(model, specialize=True, cache=cache)
    for b, t in SIZES:
        x, n = randn(b, t, 5), RNG.integers(0, t + 1, b)
        close(fast(x, n), model.forward(x, n))
    assert len(fast.programs) == 4 and len(builds) == 4
    assert all(isinstance(types[0].shape[0], int) for types in builds)


def test_a_slice_of_the_batch_gets_a_program_per_batch_size(builds: list,
                                                             cache: KernelCache) -> None:
    gr.manual_seed(8)
    x = gr.Input("B", 6, name="x")
    first = nn.Narrow(0, 0, 1)(nn.Tanh()(x))            # row 0 only: needs B >= 1 known
    model = gr.gModule([x], [first])
    fast = gr.compile(model, cache=cache)
    for b in (1, 3, 5):
        x = randn(b, 6)
        close(fast(x), model.forward(x))
    assert len(fast.programs) == 3


def test_untyped_steps_picked_by_index_stay_fixed(builds: list, cache: KernelCache) -> None:
    gr.manual_seed(9)
    x = nn.Identity()()
    last = gr.ops.index(x, 1, 4)                        # step 4 of an untyped [B, T, F] input
    model = gr.gModule([x], [nn.Linear(3, 2)(last)])
    fast = gr.compile(model, cache=cache)
    for b, t in ((2, 5), (3, 5), (2, 6)):
        x = randn(b, t, 3)
        close(fast(x), gr.interpret(model, x))
    # the batch stays general, the time dim is fixed by the arrays: one program per length
    assert len(fast.programs) == 2


def test_specialize_some_batch_sizes(builds: list, cache: KernelCache) -> None:
    model = two_layer_lstm()
    fast = gr.compile(model, specialize=(1,), cache=cache)      # B = 1 its own, others one
    for b, t in SIZES:
        x, n = randn(b, t, 5), RNG.integers(0, t + 1, b)
        close(fast(x, n), model.forward(x, n))
    assert len(fast.programs) == 2
    assert sorted(str(types[0].shape[0]) for types in fast.programs) == ["1", "B"]
