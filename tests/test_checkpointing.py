"""Gradient checkpointing (compiler/checkpoint.py): same values, same gradients, less memory.

The pass cuts each loop into segments of k steps (an outer loop whose body is the inner
loop); differentiation then saves only the carry entering each segment and the backward
loop recomputes each segment from it. Checked against the loop it replaces: forward values
bit for bit in the interpreter, gradients to float64 rounding in the interpreter and to
float32 tolerance compiled (the per-segment sums add in another order), and the arena of the
compiled training step.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.passes.autodiff import differentiate
from graphrnn.compiler.passes.checkpoint import checkpoint_loops
from graphrnn.compiler.pipeline import prepare_training
from graphrnn.interpret import Context, array_type, run_graph
from graphrnn.ir import GraphError, Op, TensorType
from graphrnn.ops import infer_graph
from graphrnn.optim import SGD
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep, fit, loss_graph

RNG = np.random.default_rng(11)
D = 3


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def recurrent(cell: str, h: int = 4, *, lengths: bool = False, **kw) -> gr.gModule:
    """x[B, T, 3] (and lengths[B]) -> a recurrent layer -> a linear readout per step."""
    gr.manual_seed(len(cell) + h)
    x = gr.Input("B", "T", D, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    seq = nn.Recurrent(getattr(gr.cells, cell)(D, h), **kw)([x, n] if lengths else x)
    y = nn.Linear(seq.type.shape[-1], 1)(seq)
    return gr.gModule([x, n] if lengths else [x], [y])


def counter() -> gr.gModule:
    """A loop without sequences: s <- tanh(Linear(s) + k) for 11 steps; ys = s * s."""
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    s2 = nn.Tanh()(nn.CAddTable()([nn.Linear(2, 2)(s), k]))
    body = gr.gModule([k, s], [s2, nn.CMulTable()([s2, s2])])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    last, ys = gr.Loop(body, n_carry=1, n_consts=1, length=11)(consts=[kk], init=[s0])
    return gr.gModule([kk, s0], [nn.CAddTable()([ys, nn.Reshape(1, 2)(last)])])


MODELS = {
    "lstm": lambda: recurrent("LSTM"),
    "gru, bidirectional, lengths": lambda: recurrent("GRU", lengths=True, bidirectional=True),
    "rnn, two layers": lambda: recurrent("RNN", num_layers=2),
}


def arguments(model: gr.gModule, t: int, b: int = 3) -> list[np.ndarray]:
    if len(model.graph.inputs) == 2 and model.graph.inputs[1].type.dtype == "int64":
        return [randn(b, t, D), RNG.integers(0, t + 1, b)]
    return [randn(b, t, D)]


def f64(a: np.ndarray) -> np.ndarray:
    return a.astype(np.float64) if a.dtype.kind == "f" else a


def gradients(graph: gr.Graph, args: list[np.ndarray], every: int | None,
              truncate: int | None = None) -> list[tuple[str, np.ndarray]]:
    """Loss and gradients of a loss graph, interpreted in float64, by name."""
    typed = infer_graph(graph, [array_type(a) for a in args])
    if every is not None:
        typed = checkpoint_loops(typed, every, truncate=truncate)
    g, names = differentiate(typed, truncate=truncate)
    values = run_graph(g, [f64(a) for a in args] + [np.ones(())], Context(np.float64))
    keys = ["loss"] + [f"input {w}" if kind == "input" else w.name for kind, w in names]
    return sorted(zip(keys, values), key=lambda kv: kv[0])


# ----------------------------------------------------------------------------- the pass

@pytest.mark.parametrize("name", sorted(MODELS))
def test_segmented_loops_compute_the_same_values(name: str) -> None:
    model = MODELS[name]()
    for t in (1, 6, 7, 13):
        args = arguments(model, t)
        typed = infer_graph(model.graph, [array_type(a) for a in args])
        want = gr.interpret(typed, *args)
        for k in (1, 2, 3, 6):
            np.testing.assert_array_equal(gr.interpret(checkpoint_loops(typed, k), *args), want)


def test_the_segment_loop_saves_every_kth_carry_and_recomputes_the_rest() -> None:
    model = recurrent("LSTM", 8)
    graph = loss_graph(model, gr.MSECriterion())
    types = [TensorType((4, 50, D)), TensorType((4, 50, 1))]
    g, _, _ = prepare_training(graph, types, checkpoint=8)
    loops = {n.name: n for n in g.nodes if n.op == Op.LOOP}
    fwd, back = loops["loop_0_segments"], loops["loop_0_segments_grad"]
    # 7 segments of 8 steps (the last padded with 6 dead steps): h and c kept per segment
    assert [str(t) for t in fwd.type if t.rank == 3] == ["f32[4,7,8]", "f32[4,7,8]"]
    assert not any(t.rank > 2 and t.shape[1] >= 50 for t in fwd.type)
    assert back.attrs["reverse"] and sorted(loops) == ["loop_0_segments",
                                                       "loop_0_segments_grad"]
    inner = [n for n in back.attrs["body"].nodes if n.op == Op.LOOP]
    assert sorted(n.attrs["reverse"] for n in inner) == [False, True]   # recompute, then BPTT


def test_short_and_special_loops_are_left_whole() -> None:
    model = recurrent("RNN")
    typed = infer_graph(model.graph, [TensorType((2, 4, D))])
    assert checkpoint_loops(typed, 4) is typed           # no more than k steps
    generic = infer_graph(model.graph, [TensorType(("B", "T", D))])
    with pytest.raises(GraphError, match="concrete T"):
        checkpoint_loops(generic, 4)
    for bad in (0, -2, 2.5, True):
        with pytest.raises(ValueError, match="positive"):
            checkpoint_loops(typed, bad)
    with pytest.raises(ValueError, match="multiple of 3"):
        checkpoint_loops(typed, 4, truncate=3)


def test_a_loop_to_mask_with_an_output_off_the_batch_axis_is_left_whole(
        cache: KernelCache) -> None:
    """11 steps in segments of 4 need a mask of dead steps, which keeps or zeroes rows: a
    per-step output without the batch axis (here [1, 2], the same for every row) has no
    rows, so the loop stays whole and the step still equals the plain one."""
    k, s = gr.Input("B", 2), gr.Input("B", 2)
    s2 = nn.Tanh()(nn.CAddTable()([nn.Linear(2, 2)(s), k]))
    shared = nn.MM(True, False)([s2, s2])                    # [2, 2]: no batch axis
    body = gr.gModule([k, s], [s2, nn.Narrow(0, 0, 1)(shared)])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    last, ys = gr.Loop(body, n_carry=1, n_consts=1, length=11)(consts=[kk], init=[s0])
    model = gr.gModule([kk, s0], [nn.Sum(1)(ys), last])
    typed = infer_graph(model.graph, [TensorType((3, 2)), TensorType((3, 2))])
    assert checkpoint_loops(typed, 4) is typed
    compiled_pair(model, [randn(3, 2), randn(3, 2)], randn(1, 2), 4, cache)


# ----------------------------------------------------------------------------- gradients

@pytest.mark.parametrize("name", sorted(MODELS) + ["no sequences"])
def test_interpreted_gradients_equal_the_plain_ones(name: str) -> None:
    model = counter() if name == "no sequences" else MODELS[name]()
    graph = loss_graph(model, gr.MSECriterion())
    for t in (5, 12):
        if name == "no sequences":
            args = [randn(3, 2), randn(3, 2), randn(3, 11, 2)]
        else:
            args = arguments(model, t) + [randn(3, t, 1)]
        want = gradients(graph, args, None)
        for k in (1, 2, 4, 5):
            for (label, got), (key, w) in zip(gradients(graph, args, k), want):
                assert label == key
                np.testing.assert_allclose(got, w, rtol=1e-11, atol=1e-13)


def test_truncated_bptt_with_checkpoints() -> None:
    """Segments of a multiple of the truncation length; reverse loops stay whole."""
    model = recurrent("GRU", bidirectional=True)
    graph = loss_graph(model, gr.MSECriterion())
    args = arguments(model, 14) + [randn(3, 14, 1)]
    want = gradients(graph, args, None, truncate=3)
    for k in (3, 6, 9):
        for (label, got), (key, w) in zip(gradients(graph, args, k, truncate=3), want):
            assert label == key
            np.testing.assert_allclose(got, w, rtol=1e-11, atol=1e-13)


def reverse_rnn(h: int = 4) -> gr.gModule:
    """One RNN loop run backwards over x[B, T, 3] with lengths, read out per step."""
    gr.manual_seed(h)
    hh, xt = gr.Input("B", h), gr.Input("B", D)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(D, h)(xt), nn.Linear(h, h)(hh)]))
    x, n = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="lengths")
    loop = gr.Loop(gr.gModule([hh, xt], [h2, h2]), n_carry=1, reverse=True)
    _, ys = loop(init=[gr.ops.fill((h,), 0.0, batch_like=x)], xs=[x], lengths=n)
    return gr.gModule([x, n], [nn.Linear(h, 1)(ys)])


def compiled_pair(model: gr.gModule, args: list, target: np.ndarray, k: int,
                  cache: KernelCache) -> tuple[int, int]:
    """Compiled steps without and with checkpoints give the same loss and gradient (and the
    interpreted checkpointed step too); returns their arena sizes in bytes."""
    _, grad = model.parameters()
    plain = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    want_loss = plain(*args, target=target)
    want = grad.copy()
    ckpt = gr.compile(model, loss=gr.MSECriterion(), train=True, checkpoint=k, cache=cache)
    for step in (ckpt, InterpretedStep(model, gr.MSECriterion(), checkpoint=k)):
        grad[...] = np.nan
        assert step(*args, target=target) == pytest.approx(want_loss, rel=1e-5)
        np.testing.assert_allclose(grad, want, rtol=1e-4, atol=1e-6)
    return plain.arena_bytes(*args, target=target), ckpt.arena_bytes(*args, target=target)


def test_compiled_lstm_gradients_with_a_fraction_of_the_arena(cache: KernelCache) -> None:
    """LSTM, B=8, T=240, H=32, segments of 16 steps: the saved carries, the gate
    pre-activations and the per-step gradient operands of the whole sequence give way to one
    segment's worth."""
    model = recurrent("LSTM", 32)
    plain, ckpt = compiled_pair(model, [randn(8, 240, D)], randn(8, 240, 1), 16, cache)
    assert ckpt < 0.25 * plain, (plain, ckpt)


def test_compiled_reverse_loop_with_lengths_and_padding(cache: KernelCache) -> None:
    model = reverse_rnn()
    compiled_pair(model, [randn(5, 27, D), np.array([27, 0, 13, 8, 26])], randn(5, 27, 1),
                  8, cache)


def test_fit_with_checkpoints_follows_the_same_path(cache: KernelCache) -> None:
    x, y = randn(16, 28, D), randn(16, 28, 1)
    histories = []
    for checkpoint, compiled in ((None, False), (7, True)):
        model = recurrent("LSTM", 5)
        histories.append(fit(model, gr.MSECriterion(), x, y, epochs=3, batch_size=8,
                             optimizer=SGD(model.parameters(), lr=0.1), progress=False,
                             compiled=compiled, checkpoint=checkpoint).loss)
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-4)
    with pytest.raises(ValueError, match="stateful_chunk"):
        fit(model, gr.MSECriterion(), x, y, epochs=1, stateful_chunk=10, checkpoint=5)
    with pytest.raises(TypeError, match="train=True"):
        gr.compile(model, checkpoint=5)


def test_arena_bytes_of_a_compiled_model(cache: KernelCache) -> None:
    fast = gr.compile(recurrent("RNN"), cache=cache)
    x = randn(2, 30, D)
    (fixed, per_step), (per_row, per_row_step) = fast.program_for([x]).exe.contract.arena, \
        fast.program_for([x]).exe.contract.arena_rows
    assert fast.arena_bytes(x) == 4 * (fixed + 30 * per_step + 2 * (per_row + 30 * per_row_step))


def test_compiled_chained_products_of_one_weight_read_by_an_elementwise_max(
        cache: KernelCache) -> None:
    """h <- tanh(h + max(x, (h W^T) W^T)): the recomputation loop of a segment shares its
    nodes with the forward one, where the second product is only an epilogue of the max; in
    the recomputation it is also saved for the backward pass, so it is a kernel of its own
    there (it once was lost: a lowering KeyError)."""
    gr.manual_seed(3)
    hh, xt = gr.Input("B", 3, 1), gr.Input("B", 3, 1)
    lin = nn.Linear(1, 1, bias=False)
    m = nn.CMaxTable()([xt, lin(lin(hh))])
    h2 = nn.Tanh()(nn.CAddTable()([hh, nn.Reshape(3, 1)(nn.Linear(3, 3)(nn.Reshape(3)(m)))]))
    x = gr.Input("B", "T", 3, 1, name="x")
    loop = gr.Loop(gr.gModule([hh, xt], [h2, h2]), n_carry=1, reverse=True)
    _, ys = loop(init=[gr.ops.fill((3, 1), 0.0, batch_like=x)], xs=[x])
    model = gr.gModule([x], [ys])
    compiled_pair(model, [randn(2, 5, 3, 1)], randn(2, 5, 3, 1), 2, cache)
