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


def test_mse_and_its_gradient_are_one_kernel() -> None:
    """In the lowered step the squares have no kernel, and the reduce kernel of `mse` also
    writes the gradient's map: no other kernel reads the target."""
    step = CompiledTrainStep(build_layer("rnn", D, H), gr.MSECriterion(), profile=True)
    prog = step.program_for((randn(B, T, D), randn(B, T, H)))
    records = prog.exe.contract.profile
    g = mse_step_graph("rnn")
    squares = g.node("mse").inputs[0].name
    gradient = [n.name for n in g.nodes if g.inputs[1] in n.inputs and n.name != squares]
    kernels = {name: (kernel, kind) for kernel, kind, nodes, _ in records for name in nodes}
    assert kernels["mse"][1] == "reduce"
    assert squares not in kernels
    assert [kernels[name] for name in gradient] == [kernels["mse"]]
    assert step(randn(B, T, D), target=randn(B, T, H)) > 0.0


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


@pytest.mark.parametrize("axes,keepdims", [(None, False), ([1], False), ([1], True)])
def test_a_sum_that_also_writes_a_map_of_its_operands(axes, keepdims) -> None:
    """d = a - b read by a sum over the last axis and by a map of a, b and a row vector (an
    output): the sum's kernel recomputes d and writes the map in the same pass; both values
    right, across the rows' partial vectors (37 = 32 + 5)."""
    a, b = gr.Input("B", 37, name="a"), gr.Input("B", 37, name="b")
    w = gr.Input(37, name="w")
    d = ops.sub(a, b)
    total = ops.sum_(ops.mul(d, d), axes, keepdims=keepdims) if axes else ops.mean(ops.mul(d, d))
    model = gr.gModule([a, b, w], [total, ops.mul(ops.mul(d, 2.0), w)])
    xs, ys, ws = randn(5, 37), randn(5, 37), randn(37)
    fast = gr.compile(model)
    got, ref = fast(xs, ys, ws), gr.interpret(model, xs, ys, ws)
    for u, v in zip(got, ref):
        np.testing.assert_allclose(u, v, rtol=1e-5, atol=1e-6)
    assert [r.kind for r in gr.profile(fast, xs, ys, ws).rows if r.kind] == ["reduce"]
