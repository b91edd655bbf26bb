"""One compiled program for every batch size and every length of each of two time dims.

A seq2seq model (the zoo's teacher-forced Bahdanau model: source length S, target length U)
and a model with two sequence inputs of different lengths whose attention matrix is
[B, U, S] (a value sized by both lengths) are called with several (B, S, U), U != S and
U = 0 or 1 among them: the compiled forward and training step equal the interpreter, and
one program serves every call. Lengths of the second time dim are checked against it, and
sizes whose product overflows the arena limit are refused before the native call. The C
export, whose ABI takes one step count, refuses such a model naming the second time dim.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops, zoo
from graphrnn.compiler.codegen.arena import Buffer, plan_arena
from graphrnn.compiler.codegen.strides import Lin, lin
from graphrnn.export import export_library
from graphrnn.ir import InputError, LoweringError
from graphrnn.nn_shape import MM
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(21)
VOCAB = 7
SIZES = [(2, 3, 4), (3, 5, 1), (1, 4, 4), (4, 2, 6), (2, 6, 0), (5, 1, 3)]


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def close(got: np.ndarray, want: np.ndarray, rtol: float = 1e-4) -> None:
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=rtol, atol=2e-5)


def seq2seq() -> gr.gModule:
    model = zoo.bahdanau(vocab=VOCAB, embedding=4, hidden=6)
    model.reset_parameters(seed=2)
    return model


def two_sequences(d: int = 3, e: int = 2, h: int = 5) -> gr.gModule:
    """(x[B, S, d], y[B, U, e], n[B] lengths of y) -> [B, U, h + 2]: an LSTM over x, a GRU
    over y stopping at each row's length, and each decoder step's attention over the
    encoder (scores [B, U, S]: both lengths in one value)."""
    gr.manual_seed(7)
    x = gr.Input("B", "S", d, name="x")
    y = gr.Input("B", "U", e, name="y")
    n = gr.Input("B", dtype="int64", name="n")
    enc = nn.Recurrent(gr.cells.LSTM(d, h), name="enc")(x)
    dec = nn.Recurrent(gr.cells.GRU(e, h), name="dec")([y, n])
    scores = MM(transB=True)([dec, enc])                  # [B, U, S]
    context = MM()([nn.SoftMax()(scores), enc])           # [B, U, h]
    out = nn.JoinTable(2)([context, nn.Linear(h, 2)(dec)])
    return gr.gModule([x, y, n], [out])


def sequences(b: int, s: int, u: int) -> tuple[np.ndarray, ...]:
    return randn(b, s, 3), randn(b, u, 2), RNG.integers(0, u + 1, b)


def test_seq2seq_forward_one_program(builds: list, cache: KernelCache) -> None:
    model = seq2seq()
    fast = gr.compile(model, cache=cache)
    for b, s, u in SIZES:
        src, tgt_in = RNG.integers(0, VOCAB, (b, s)), RNG.integers(0, VOCAB, (b, u))
        got = fast(src, tgt_in)
        assert got.shape == (b, u, VOCAB)
        close(got, gr.interpret(model, src, tgt_in))
    assert len(fast.programs) == 1 and len(builds) == 1


def check_training_steps(model: gr.gModule, loss: object, calls: list, cache: KernelCache,
                         builds: list) -> None:
    """The compiled step's loss and gradient equal the interpreted step's on every call
    (inputs, target), and one program serves them all."""
    step = gr.compile(model, loss=loss, train=True, cache=cache)
    oracle = InterpretedStep(model, loss)
    grad = model.parameters()[1]
    for inputs, target in calls:
        got_loss = step(*inputs, target=target)
        got = grad.copy()
        np.testing.assert_allclose(got_loss, oracle(*inputs, target=target), rtol=1e-4)
        np.testing.assert_allclose(got, grad, rtol=1e-3, atol=1e-5)
    assert len(step.programs) == 1 and len(builds) == 1


def test_seq2seq_training_step_one_program(builds: list, cache: KernelCache) -> None:
    # u = 0: a mean over no target tokens, no loss to train on
    calls = [((RNG.integers(0, VOCAB, (b, s)), RNG.integers(0, VOCAB, (b, u))),
              RNG.integers(0, VOCAB, (b, u))) for b, s, u in SIZES if u]
    check_training_steps(seq2seq(), gr.CrossEntropyCriterion(), calls, cache, builds)


def test_two_sequences_forward_one_program(builds: list, cache: KernelCache) -> None:
    model = two_sequences()
    fast = gr.compile(model, cache=cache)
    for b, s, u in SIZES:
        if s == 0:
            continue
        inputs = sequences(b, s, u)
        close(fast(*inputs), gr.interpret(model, *inputs))
    assert len(fast.programs) == 1 and len(builds) == 1


def test_two_sequences_training_step_one_program(builds: list, cache: KernelCache) -> None:
    calls = [(sequences(b, s, u), randn(b, u, 7)) for b, s, u in SIZES if u]
    check_training_steps(two_sequences(), gr.MSECriterion(), calls, cache, builds)


def test_lengths_of_the_second_time_dim_are_checked(cache: KernelCache) -> None:
    fast = gr.compile(two_sequences(), cache=cache)
    x, y, _ = sequences(2, 6, 3)
    fast(x, y, np.array([3, 0]))                # up to U = 3, though S = 6
    with pytest.raises(InputError, match=r"lengths must lie in \[0, 3\]"):
        fast(x, y, np.array([4, 1]))


def test_sizes_whose_product_is_too_large_are_refused(cache: KernelCache) -> None:
    fast = gr.compile(two_sequences(), cache=cache)
    x, y, n = sequences(1, 3, 2)
    fast(x, y, n)
    # each input is small, but the [B, U, S] scores would need 2**40 floats; zero-strided
    # views claim the sizes without the memory
    big = 1 << 20
    xs = np.broadcast_to(np.float32(0), (1, big, 3))
    ys = np.broadcast_to(np.float32(0), (1, big, 2))
    with pytest.raises(InputError, match="too large"):
        fast(xs, ys, np.array([0]))


def test_c_export_refuses_a_second_time_dim_naming_it(tmp_path) -> None:
    with pytest.raises(LoweringError, match="second time dim 'U' \\(besides 'S'\\)"):
        export_library(two_sequences(), tmp_path, name="two")


def test_entries_of_the_second_time_dim_need_enough_steps(builds: list,
                                                          cache: KernelCache) -> None:
    x = gr.Input("B", "S", 3, name="x")
    y = gr.Input("B", "U", 3, name="y")
    model = gr.gModule([x, y], [nn.Tanh()(ops.index(y, 1, 2)), nn.Narrow(1, 0, 1)(x)])
    fast = gr.compile(model, cache=cache)
    for s, u in ((1, 3), (4, 5), (2, 3)):
        a, b = randn(2, s, 3), randn(2, u, 3)
        for got, want in zip(fast(a, b), gr.interpret(model, a, b)):
            close(got, want)
    with pytest.raises(InputError, match="time axis T2: it needs at least 3 steps, got 2"):
        fast(randn(2, 4, 3), randn(2, 2, 3))
    with pytest.raises(InputError, match="needs at least 1 steps, got 0"):
        fast(randn(2, 0, 3), randn(2, 4, 3))
    assert len(builds) == 1


def test_threads_and_the_kernel_cache_serve_two_lengths(builds: list,
                                                         cache: KernelCache) -> None:
    model = two_sequences()
    inputs = sequences(9, 4, 6)
    want = gr.interpret(model, *inputs)
    close(gr.compile(model, cache=cache, threads=3)(*inputs), want)
    again = gr.compile(model, cache=cache)          # the program from the disk cache
    close(again(*inputs), want)
    other = sequences(2, 5, 2)
    close(again(*other), gr.interpret(model, *other))
    assert len(builds) == 2                         # one program per compiled model


def test_onnx_export_has_one_dynamic_dim_per_symbol(tmp_path) -> None:
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = two_sequences()
    proto = gr.onnx.export(model, tmp_path / "two.onnx")
    dims = [[d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim]
            for i in proto.graph.input]
    assert dims == [["B", "S", 3], ["B", "U", 2], ["B"]]
    session = ort.InferenceSession(str(tmp_path / "two.onnx"),
                                   providers=["CPUExecutionProvider"])
    for b, s, u in ((2, 3, 4), (3, 5, 1)):
        inputs = sequences(b, s, u)
        got = session.run(None, {i.name: v for i, v in zip(session.get_inputs(), inputs)})[0]
        close(got, gr.interpret(model, *inputs))


def test_sizes_are_sums_of_products_and_the_arena_has_a_region_per_product() -> None:
    size = lin("B") * lin("T2") * 3 + lin("T") * lin("T2")
    assert size.at(5, 2, {"T2": 7}) == 2 * 7 * 3 + 5 * 7
    assert size.coef("T2", "B") == 3 and size.coef("T", "T2") == 1 and size.s == 0
    with pytest.raises(LoweringError, match="squared"):
        lin("T2") * lin("T2")
    a = Buffer("a", lin("B") * lin("T2") * 5, 0, 1)
    b = Buffer("b", lin("B") * lin("T") * lin("T2") * 2, 0, 1)
    c = Buffer("c", Lin(40), 0, 1)
    arena = plan_arena([a, b, c])
    # every region aligned to 16 floats per unit of its product
    assert arena == Lin(48) + lin("B") * lin("T2") * 16 + lin("B") * lin("T") * lin("T2") * 16
    sizes = {"T2": 9}
    # the regions do not overlap at any size
    spans = sorted((x.offset.at(4, 3, sizes), x.offset.at(4, 3, sizes) + x.size.at(4, 3, sizes))
                   for x in (a, b, c))
    assert all(hi <= lo for (_, hi), (lo, _) in zip(spans, spans[1:]))
    assert spans[-1][1] <= arena.at(4, 3, sizes)
