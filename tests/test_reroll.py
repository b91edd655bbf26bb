"""reroll_steps: hand-unrolled tied steps become one loop, with the unrolled graph's results.

The compiled re-rolled model against the interpreter running the graph as written (forward,
and the training step's loss and gradients, rtol 1e-4); the IR after the pass shows the
loop; graphs that are not chains of tied copies come back unchanged.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import main
from graphrnn.compiler.passes.reroll import reroll_steps
from graphrnn.compiler.passes.shapes import infer_shapes
from graphrnn.compiler.pipeline import Trace, prepare
from graphrnn.interpret import interpret
from graphrnn.ir import Op
from graphrnn.runtime.cache import KernelCache
from graphrnn.testing.crosscheck import check_case
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(13)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def toy(steps: int, tied: bool = True, every_step: bool = False) -> gr.gModule:
    """The nngraph tutorial's RNN, unrolled by hand (examples/nngraph_toy.py); untied: a new
    Linear per step; every_step: every state is an output too."""
    x, h0 = gr.Input("B", steps, 1, name="x"), gr.Input("B", 5, name="h0")
    xs = nn.SplitTable(1)(x)
    step = nn.Linear(6, 5)
    h, hs = h0, []
    for t in range(steps):
        lin = step if tied else nn.Linear(6, 5)
        h = nn.Tanh()(lin(nn.JoinTable(1)([h, xs[t]])))
        hs.append(h)
    out = nn.Linear(5, 1)(h)
    return gr.gModule([x, h0], [out] + (hs if every_step else []))


def lstm_by_hand(steps: int, reverse: bool = False) -> gr.gModule:
    """Two carries (h, c), each step an LSTM cell call; backwards in time when `reverse`."""
    x = gr.Input("B", steps, 3, name="x")
    h0, c0 = gr.Input("B", 4, name="h0"), gr.Input("B", 4, name="c0")
    xs = nn.SplitTable(1)(x)
    cell = gr.cells.LSTM(3, 4)
    h, c = h0, c0
    for t in (range(steps - 1, -1, -1) if reverse else range(steps)):
        h, c = cell([h, c, xs[t]])
    return gr.gModule([x, h0, c0], [nn.Linear(4, 2)(h), c])


def rerolled(model: gr.gModule, *inputs: np.ndarray):
    g = infer_shapes(model.graph, [gr.ir.TensorType(a.shape, str(a.dtype)) for a in inputs])
    return g, reroll_steps(g)


def loops(graph) -> list:
    return [n for n in graph.nodes if n.op == Op.LOOP]


def check(model: gr.gModule, cache: KernelCache, *inputs: np.ndarray) -> None:
    """Compiled (re-rolled) forward == the interpreter on the graph as written, and so the
    training step's loss and gradients of the first output, rtol 1e-4."""
    got, want = gr.compile(model, cache=cache)(*inputs), interpret(model, *inputs)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    first = gr.gModule(list(model.graph.inputs), [model.graph.outputs[0]])
    target = np.zeros_like(want[0])
    grads = first.parameters()[1]
    loss_want = InterpretedStep(first, gr.MSECriterion())(*inputs, target=target)
    g_want = grads.copy()
    step = gr.compile(first, loss=gr.MSECriterion(), train=True, cache=cache)
    loss_got = step(*inputs, target=target)
    np.testing.assert_allclose(loss_got, loss_want, rtol=1e-4)
    np.testing.assert_allclose(grads, g_want, rtol=1e-4, atol=1e-5)


def test_the_toy_becomes_one_loop_in_the_ir() -> None:
    model = toy(6)
    trace = Trace()
    prepare(model.graph, [gr.ir.TensorType((2, 6, 1)), gr.ir.TensorType((2, 5))],
            trace=trace)
    record = next(r for r in trace if r.name == "reroll")
    assert record.changed
    (loop,) = loops(record.graph)
    assert loop.attrs["n_carry"] == 1 and not loop.attrs["reverse"]
    assert "loop(" in record.text()
    body = loop.attrs["body"]
    assert [n.op for n in body.nodes if n.inputs] == [Op.CONCAT, Op.MATMUL, Op.ADD, Op.TANH]
    assert sum(1 for n in record.graph.nodes if n.op == Op.MATMUL) == 1   # the readout


@pytest.mark.parametrize("steps", [2, 7])
def test_the_toy_rerolled_gives_the_unrolled_results(steps: int, cache: KernelCache) -> None:
    gr.manual_seed(steps)
    check(toy(steps), cache, randn(4, steps, 1), randn(4, 5))


def test_every_state_read_after_the_steps(cache: KernelCache) -> None:
    gr.manual_seed(3)
    model = toy(5, every_step=True)
    x, h0 = randn(3, 5, 1), randn(3, 5)
    g, r = rerolled(model, x, h0)
    assert len(loops(r)) == 1
    check(model, cache, x, h0)


@pytest.mark.parametrize("reverse", [False, True])
def test_an_lstm_by_hand_forwards_and_backwards(reverse: bool, cache: KernelCache) -> None:
    gr.manual_seed(5)
    model = lstm_by_hand(6, reverse)
    x, h0, c0 = randn(3, 6, 3), randn(3, 4), randn(3, 4)
    _, r = rerolled(model, x, h0, c0)
    (loop,) = loops(r)
    assert loop.attrs["n_carry"] == 2 and loop.attrs["reverse"] == reverse
    got = gr.compile(model, cache=cache)(x, h0, c0)
    for a, b in zip(got, interpret(model, x, h0, c0)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)
    check(model, cache, x, h0, c0)


def test_part_of_a_sequence(cache: KernelCache) -> None:
    """Steps over x[:, 1:5] only: the loop reads a slice of the sequence."""
    gr.manual_seed(9)
    x, h0 = gr.Input("B", 7, 1, name="x"), gr.Input("B", 5, name="h0")
    xs = nn.SplitTable(1)(x)
    step = nn.Linear(6, 5)
    h = h0
    for t in range(1, 5):
        h = nn.Tanh()(step(nn.JoinTable(1)([h, xs[t]])))
    model = gr.gModule([x, h0], [nn.CAddTable()([h, nn.Linear(1, 5)(xs[6])])])
    a, b = randn(2, 7, 1), randn(2, 5)
    _, r = rerolled(model, a, b)
    assert any(n.op == Op.SLICE for n in r.nodes) and len(loops(r)) == 1
    check(model, cache, a, b)


def test_untied_steps_are_left_alone() -> None:
    model = toy(4, tied=False)
    g, r = rerolled(model, randn(2, 4, 1), randn(2, 5))
    assert r is g


def test_steps_without_a_carried_state_are_left_alone() -> None:
    """The same Linear on every x_t, summed: no state passes from step to step."""
    x = gr.Input("B", 4, 2, name="x")
    lin = nn.Linear(2, 3)
    ys = [nn.Tanh()(lin(x_t)) for x_t in nn.SplitTable(1)(x)]
    model = gr.gModule([x], [nn.CAddTable()(ys)])
    g, r = rerolled(model, randn(2, 4, 2))
    assert r is g


def test_a_single_step_and_a_loop_model_are_left_alone() -> None:
    g, r = rerolled(toy(1), randn(2, 1, 1), randn(2, 5))
    assert r is g
    x = gr.Input("B", "T", 3)
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(3, 4))(x)])
    g = infer_shapes(model.graph, [gr.ir.TensorType((2, "T", 3))])
    assert reroll_steps(g) is g


def test_graphrnn_ir_shows_the_rerolled_loop(capsys: pytest.CaptureFixture) -> None:
    toy_file = Path(__file__).resolve().parent.parent / "examples" / "nngraph_toy.py"
    assert main(["ir", f"{toy_file}:build", "--after", "reroll"]) == 0
    out = capsys.readouterr().out
    assert "== after reroll" in out and "= loop(%h0, %x" in out
    assert out.count("= matmul(") == 2          # the step's product, and the readout


def test_reroll_can_be_disabled() -> None:
    trace = Trace()
    g, _ = prepare(toy(3).graph, [gr.ir.TensorType((2, 3, 1)), gr.ir.TensorType((2, 5))],
                   trace=trace, disable=("reroll",))
    assert "reroll" not in [r.name for r in trace] and not loops(g)


def test_every_path_agrees_on_the_toy(cache: KernelCache) -> None:
    """The cross-checks (graphrnn.testing): passes one by one, gradcheck, compiled forward,
    save/load, and training steps with bptt_max (re-rolling skipped) and checkpointing."""
    gr.manual_seed(21)
    model = lstm_by_hand(4)
    assert check_case(model, [randn(2, 4, 3), randn(2, 4), randn(2, 4)], cache=cache) == []
