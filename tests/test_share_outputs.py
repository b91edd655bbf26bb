"""share_loop_outputs: a loop's per-step outputs that carry one body value become one output.

Structure (the training graphs of one-layer RNN, GRU and LSTM layers have no loop returning
one body value as two sequences), the pass on hand-made loops (interpreter results kept, GETs
rewired, loops used whole left alone), and compiled training steps against the interpreted
one (lengths, two directions, truncated BPTT, checkpointing) and forward programs against the
interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.bench.peers import build_layer
from graphrnn.compiler import prepare_training
from graphrnn.compiler.passes.share import share_loop_outputs
from graphrnn.compiler.passes.shapes import infer_shapes
from graphrnn.compiler.passes.validate import verify
from graphrnn.interpret import array_type, interpret
from graphrnn.ir import Graph, Node, Op
from graphrnn.losses import loss_graph
from graphrnn.train import InterpretedStep
from graphrnn.trainstep import CompiledTrainStep

RNG = np.random.default_rng(23)
B, T, D, H = 3, 5, 4, 6


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def loops(g: Graph) -> list[Node]:
    return [n for n, _ in g.walk() if n.op == Op.LOOP]


def repeated_ys(loop: Node) -> int:
    """How many of the loop's per-step outputs return a body value an earlier one returns."""
    ys = loop.attrs["body"].outputs[loop.attrs["n_carry"]:]
    return len(ys) - len({id(y) for y in ys})


def training_graph(cell: str, **options) -> Graph:
    graph = loss_graph(build_layer(cell, D, H), gr.MSECriterion())
    types = [array_type(randn(B, T, D)), array_type(randn(B, T, H))]
    return prepare_training(graph, types, unit_cotangent=True, **options)[0]


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_training_graph_writes_each_sequence_once(cell: str) -> None:
    g = training_graph(cell)
    assert loops(g) and all(repeated_ys(n) == 0 for n in loops(g))
    if cell == "rnn":
        # without the pass, y and the value saved for the backward loop are two sequences
        before = training_graph(cell, disable=("share",))
        (forward,) = [n for n in loops(before) if not n.attrs["reverse"]]
        assert repeated_ys(forward) == 1 and forward.attrs["saved"] == 1
        (shared,) = [n for n in loops(g) if not n.attrs["reverse"]]
        assert len(shared.type) == len(forward.type) - 1 and "saved" not in shared.attrs


def step_body() -> gr.gModule:
    """h' = tanh(W h + x), returned as the carry and as three of four per-step outputs."""
    hb, xb = gr.Input("B", H), gr.Input("B", H)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(H, H)(hb), xb]))
    return gr.gModule([hb, xb], [h2, h2, nn.Sigmoid()(h2), h2, h2])


def two_ys_model(*, lengths: bool = False) -> gr.gModule:
    x, h0 = gr.Input("B", "T", H, name="x"), gr.Input("B", H, name="h0")
    ins = [x, h0] + ([gr.Input("B", dtype="int64", name="lengths")] if lengths else [])
    parts = gr.Loop(step_body(), n_carry=1)(init=[h0], xs=[x],
                                            lengths=ins[2] if lengths else None)
    model = gr.gModule(ins, [nn.CAddTable()([parts[1], parts[2]]), parts[3], parts[4],
                             parts[0]])
    model.reset_parameters(seed=3)
    return model


def two_ys_args(lengths: bool = False) -> list[np.ndarray]:
    args = [randn(B, T, H), randn(B, H)]
    return args + [np.array([T, 0, 2])] if lengths else args


def typed(model: gr.gModule, args: list[np.ndarray]) -> Graph:
    return infer_shapes(model.graph, [array_type(a) for a in args])


def same_results(g: Graph, shared: Graph, args: list[np.ndarray]) -> None:
    for a, b in zip(interpret(shared, *args), interpret(g, *args), strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("lengths", [False, True])
def test_repeated_ys_become_one_output_read_by_one_get(lengths: bool) -> None:
    model, args = two_ys_model(lengths=lengths), two_ys_args(lengths)
    g = typed(model, args)
    shared = share_loop_outputs(g)
    verify(shared)
    (loop,) = loops(shared)
    assert len(loop.type) == 3 and repeated_ys(loop) == 0       # h | h' | sigmoid(h')
    gets = [n for n in shared.nodes if n.op == Op.GET]
    assert sorted(n.attrs["index"] for n in gets) == [0, 1, 2]
    assert shared.outputs[1] is shared.outputs[2]               # both read the one sequence
    same_results(g, shared, args)
    assert share_loop_outputs(shared) is shared                 # one run reaches the fixpoint


def test_a_loop_used_whole_and_loops_without_repeats_are_kept() -> None:
    model, args = two_ys_model(), two_ys_args()
    g = typed(model, args)
    (loop,) = loops(g)
    whole = g.rebuilt(g.inputs, [*g.outputs, loop])
    assert share_loop_outputs(whole) is whole
    single = build_layer("gru", D, H)
    g = infer_shapes(single.graph, [array_type(randn(B, T, D))])
    assert share_loop_outputs(g) is g


def test_nested_loop_bodies_are_shared_too() -> None:
    xb, hb = gr.Input("B", "T", H), gr.Input("B", H)
    parts = gr.Loop(step_body(), n_carry=1)(init=[hb], xs=[xb])
    body = gr.gModule([xb, hb], [nn.Tanh()(parts[0]), parts[1], parts[3]])
    x, h0 = gr.Input("B", "T", H, name="x"), gr.Input("B", H, name="h0")
    outer = gr.Loop(body, n_carry=1, n_consts=1, length=2)(consts=[x], init=[h0])
    model = gr.gModule([x, h0], [outer[1], outer[2]])
    model.reset_parameters(seed=5)
    args = two_ys_args()
    g = typed(model, args)
    assert any(repeated_ys(n) for n in loops(g))
    shared = share_loop_outputs(g)
    verify(shared)
    assert all(repeated_ys(n) == 0 for n in loops(shared))
    same_results(g, shared, args)


@pytest.mark.parametrize("lengths", [False, True])
def test_compiled_forward_keeps_the_interpreters_result(lengths: bool) -> None:
    model, args = two_ys_model(lengths=lengths), two_ys_args(lengths)
    want = gr.interpret(model, *args)
    got = gr.compile(model)(*args)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def layer(cell: str, *, bidirectional: bool = False, lengths: bool = False) -> gr.gModule:
    gr.manual_seed(4)
    x = gr.Input("B", "T", D, name="x")
    ins = [x, gr.Input("B", dtype="int64", name="lengths")] if lengths else [x]
    make = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[cell]
    rec = nn.Recurrent(make(D, H), bidirectional=bidirectional)(ins if lengths else x)
    return gr.gModule(ins, [rec])


STEPS = {
    "plain": ({}, {}),
    "bidirectional": ({"bidirectional": True}, {}),
    "lengths": ({"lengths": True}, {}),
    "truncated": ({}, {"bptt_max": 2}),
    "checkpoint": ({}, {"checkpoint": 2}),
}


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
@pytest.mark.parametrize("case", STEPS)
def test_compiled_training_step_matches_the_interpreted_one(cell: str, case: str) -> None:
    model_kw, step_kw = STEPS[case]
    model = layer(cell, **model_kw)
    width = 2 * H if model_kw.get("bidirectional") else H
    args = [randn(B, T, D)] + ([np.array([T, 1, 3])] if model_kw.get("lengths") else [])
    target = randn(B, T, width)
    want_loss = InterpretedStep(model, gr.MSECriterion(), **step_kw)(*args, target=target)
    want = model.parameters()[1].copy()
    loss = CompiledTrainStep(model, gr.MSECriterion(), **step_kw)(*args, target=target)
    assert loss == pytest.approx(want_loss, rel=1e-4)
    np.testing.assert_allclose(model.parameters()[1], want, rtol=1e-4, atol=1e-6)
