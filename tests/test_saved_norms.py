"""A training step of a cell with norms: the forward loop saves the norms of its carry and the
gate activations made from them (saved_values), the backward loop reads the input-side norm
the forward computed (hoist, twice, and cse), and the norm weights' and the input-side norm's
gradients run after the backward loop (accumulate). The same gradients as the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import ops
from graphrnn.compiler import prepare_training
from graphrnn.compiler.passes.autodiff_loop import saved_values
from graphrnn.interpret import interpret
from graphrnn.ir import Graph, Node, Op, TensorType
from graphrnn.losses import loss_graph
from graphrnn.zoo import layernorm_lstm

RNG = np.random.default_rng(5)
B, T, I, H = 2, 5, 6, 4        # I > 4: the input projection leaves the loops (hoist)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def training_graph(model: gr.gModule, **kw) -> Graph:
    types = [TensorType(("B", "T", I)), TensorType(("B", "T", H))]
    g, _, _ = prepare_training(loss_graph(model, gr.MSECriterion()), types,
                               unit_cotangent=True, **kw)
    return g


def loops(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op == Op.LOOP]


def ops_in(body: Graph) -> list[Op]:
    return [n.op for n in body.nodes]


def test_norms_and_their_scalings_are_saved() -> None:
    h, c = ops.input_(("B", H), name="h"), ops.input_(("B", H), name="c")
    x, w = ops.input_(("B", H), name="x"), ops.input_((H, H), name="W")
    g = ops.input_((H,), name="g")
    z = ops.normalize(ops.matmul(h, w), (H,), 1e-5)
    gate = ops.sigmoid(ops.add(ops.mul(z, g), x))           # scaled by a weight: saved
    c2 = ops.add(ops.mul(gate, c), x)                        # reads the carry: recomputed
    n2 = ops.normalize(c2, (H,), 1e-5)                       # a norm of the carry: saved
    kept = saved_values([ops.mul(gate, ops.tanh(ops.mul(n2, g))), c2], [h, c])
    assert {n.op for n in kept} == {Op.MATMUL, Op.NORMALIZE, Op.SIGMOID, Op.TANH}
    # z and n2, which scalings read (their gradients need them); not the unread scalings
    assert sum(n.op == Op.NORMALIZE for n in kept) == 2 and Op.MUL not in {n.op for n in kept}
    assert all(n is not c2 for n in kept)


def test_the_backward_loop_recomputes_no_norm_and_sums_after_it() -> None:
    g = training_graph(layernorm_lstm(I, H))
    forward, backward = loops(g)
    assert backward.attrs["reverse"] and not forward.attrs["reverse"]
    body = ops_in(backward.attrs["body"])
    assert Op.NORMALIZE not in body
    # the cell's and the recurrent norm's gradients chain the steps; the input side's not
    assert body.count(Op.NORMALIZE_GRAD) == 2
    assert sum(n.op == Op.NORMALIZE_GRAD for n in g.nodes) == 1
    # one input-side norm over all steps, read by both loops' work
    assert sum(n.op == Op.NORMALIZE for n in g.nodes) == 1
    assert ops_in(forward.attrs["body"]).count(Op.NORMALIZE) == 2


@pytest.mark.parametrize("disable", [(), ("hoist",), ("accumulate",)])
def test_the_training_step_equals_the_interpreter(disable: tuple[str, ...]) -> None:
    model = layernorm_lstm(I, H, num_layers=2)
    model.reset_parameters(seed=3)
    xs, ys = randn(B, T, I), randn(B, T, H)
    plain = training_graph(model, optimize=False)
    fast = training_graph(model, disable=disable)
    for got, want in zip(interpret(fast, xs, ys, model.flat),
                         interpret(plain, xs, ys, model.flat)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, disable=disable)
    model.flat_grad[:] = 0
    loss = step(xs, ys)
    np.testing.assert_allclose(loss, interpret(plain, xs, ys, model.flat)[0], rtol=1e-5)
    want = interpret(plain, xs, ys, model.flat)[1]
    scale = float(np.abs(want).max())
    np.testing.assert_allclose(model.flat_grad, want, rtol=1e-4, atol=1e-5 * scale)
