"""A training step's loss in one pass over the prediction and the target: the optimised graph
of an MSE step materialises neither y - t nor (y - t)^2, its count is no reduction over a
big tensor, and the reduction computes the squares as it reads y and t (emit_sum_map.py).
Numbers against the interpreter: losses and gradients of mean / sum / masked / lengths
steps, sums over ~3e6 elements, tails, broadcast operands and partial reductions."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.bench.peers import build_layer
from graphrnn.compile import CompiledTrainStep
from graphrnn.compiler.pipeline import prepare_training
from graphrnn.ir import Op, TensorType
from graphrnn.losses import loss_graph
from graphrnn.trainstep import InterpretedStep

RNG = np.random.default_rng(23)
B, T, D, H = 3, 6, 5, 13            # H = 13: every row ends in a partial vector


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def mse_step_graph(cell: str):
    graph = loss_graph(build_layer(cell, D, H), gr.MSECriterion())
    types = [TensorType(("B", "T", D)), TensorType(("B", "T", H))]
    return prepare_training(graph, types, unit_cotangent=True)[0]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_mse_step_writes_no_difference_nor_squares(cell: str) -> None:
    g = mse_step_graph(cell)
    target = g.inputs[1]
    mse = g.node("mse")
    squares = mse.inputs[0]
    assert mse.op == Op.MEAN and squares.op == Op.FUSED
    # the squares are computed from the prediction and the target, and only the mean reads them
    assert target in squares.inputs and all(x.op in (Op.GET, Op.INPUT) for x in squares.inputs)
    assert [n for n in g.nodes if squares in n.inputs] == [mse]
    assert {n.op for n in squares.attrs["body"].nodes} >= {Op.SUB, Op.MUL}
    # every other value made from the target is the gradient: a map of y and t, not of y - t
    readers = [n for n in g.nodes if target in n.inputs and n is not squares]
    assert len(readers) == 1 and readers[0].op == Op.FUSED
    assert all(x.op != Op.FUSED for x in readers[0].inputs)
    # the count of the mean's gradient: a sum over a broadcast constant, shaped like y
    for n in g.nodes:
        if n.op == Op.EXPAND:
            assert n.inputs[1].op != Op.FUSED, f"{n.name} keeps {n.inputs[1].name} alive"
        if n.op in (Op.SUM, Op.MEAN) and n is not mse and n.type.rank == 0:
            assert n.inputs[0].op == Op.EXPAND and n.inputs[0].inputs[0].op == Op.CONST


def test_mse_kernels_read_y_and_t_in_two_passes() -> None:
    """In the lowered step the squares have no kernel: the reduce kernel of `mse` computes
    them; the loss's other big kernel is the gradient's map."""
    step = CompiledTrainStep(build_layer("rnn", D, H), gr.MSECriterion(), profile=True)
    prog = step.program_for((randn(B, T, D), randn(B, T, H)))
    records = prog.exe.contract.profile
    squares = mse_step_graph("rnn").node("mse").inputs[0].name
    kinds = {name: kind for _, kind, nodes, _ in records for name in nodes}
    assert kinds["mse"] == "reduce"
    assert squares not in kinds
    loss_maps = [nodes for _, kind, nodes, _ in records if kind == "map"
                 and any(name.startswith("fused_sub") for name in nodes)]
    assert len(loss_maps) == 1 and len(loss_maps[0]) == 1     # the gradient, nothing else


def gru_model() -> gr.gModule:
    x, n = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="lengths")
    h = nn.Recurrent(gr.cells.GRU(D, 4))([x, n])
    return gr.gModule([x, n], [nn.Linear(4, H)(h)])


@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("masked", ["none", "mask", "lengths"])
@pytest.mark.parametrize("crit", ["mse", "ce"])
def test_losses_and_gradients_match_the_interpreter(reduction: str, masked: str,
                                                    crit: str) -> None:
    model = gru_model()
    lengths = np.array([6, 2, 0])
    kw = {"none": {}, "mask": {"mask": True}, "lengths": {"lengths": "lengths"}}[masked]
    make = nn.MSECriterion if crit == "mse" else nn.CrossEntropyCriterion
    criterion = make(reduction=reduction, **kw)
    xs = randn(B, T, D)
    target = randn(B, T, H) if crit == "mse" else RNG.integers(0, H, (B, T))
    args = [xs, lengths, target]
    if masked == "mask":
        args.append((RNG.random((B, T)) > 0.3).astype(np.float32))
    results = []
    for step in (gr.compile(model, loss=criterion, train=True), InterpretedStep(model, criterion)):
        loss = step(*args)
        results.append((loss, model.parameters()[1].copy()))
    (l1, g1), (l2, g2) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-4)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-6)


def compiled_and_reference(out, ins, arrays):
    model = gr.gModule(ins, [out])
    return gr.compile(model)(*arrays), gr.interpret(model, *arrays)


def test_mse_over_three_million_elements_keeps_float32_accuracy() -> None:
    shape = (6, 1000, 500)
    a, b = gr.Input("B", "T", 500, name="a"), gr.Input("B", "T", 500, name="b")
    d = ops.sub(a, b)
    x = RNG.standard_normal(shape).astype(np.float32) + np.float32(3.0)
    y = RNG.standard_normal(shape).astype(np.float32)
    exact = np.mean((x.astype(np.float64) - y) ** 2)
    for out, want in ((ops.mean(ops.mul(d, d)), exact),
                      (ops.sum_(ops.mul(d, d)), exact * x.size)):
        got, ref = compiled_and_reference(out, [a, b], [x, y])
        assert abs(float(got) - want) <= 2e-7 * abs(want)
        np.testing.assert_allclose(got, ref, rtol=1e-5)


def test_partial_reductions_tails_and_broadcast_operands() -> None:
    a = gr.Input("B", "T", H, name="a")
    m = gr.Input("B", "T", 1, name="m")
    xs, ms = randn(4, 7, H), (RNG.random((4, 7, 1)) > 0.5).astype(np.float32)
    cases = [
        ops.sum_(ops.mul(ops.exp(a), m), [-1]),               # masked lanes would add exp(0)
        ops.mean(ops.mul(ops.tanh(a), m), [1, 2], keepdims=True),
        ops.sum_(ops.mul(a, m), [0, 2]),
        ops.mean(ops.sub(a, ops.mul(a, m)), [2]),
    ]
    for out in cases:
        got, ref = compiled_and_reference(out, [a, m], [xs, ms])
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)


def test_a_shared_difference_is_computed_once_per_reader() -> None:
    """d = a - b read by a mean over the last axis and by an output: the mean recomputes d,
    the output still has it; both values right."""
    a, b = gr.Input("B", 9, name="a"), gr.Input("B", 9, name="b")
    d = ops.sub(a, b)
    model = gr.gModule([a, b], [ops.mean(ops.mul(d, d)), ops.mul(d, 2.0)])
    xs, ys = randn(5, 9), randn(5, 9)
    got, ref = gr.compile(model)(xs, ys), gr.interpret(model, xs, ys)
    for u, v in zip(got, ref):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
