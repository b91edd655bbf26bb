"""Fewer kernels per step in loop bodies, with the same numbers as the interpreter.

- Slices of an elementwise value read only by slices are taken of its operands: a cell's
  gates built on `normalize(.) * w + b` fuse into the gate nonlinearities (no [B, 4H] map).
- Per-step work that needs no new per-step buffer leaves a backward loop (accumulate.py): the
  gradient of the input projection's layer norm runs once over all B*T rows.
- A forward loop saves a layer norm of the carry's product with the product (autodiff_loop):
  the backward step reads it instead of recomputing its statistics.

Every compiled result is compared with the interpreter, forward and gradients.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.passes.accumulate import hoist_accumulations
from graphrnn.compiler.passes.validate import verify
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.gradcheck import gradients
from graphrnn.interpret import interpret
from graphrnn.ir import Op, TensorType
from graphrnn.close import close_graph
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import loss_graph
from graphrnn.zoo import layernorm_lstm

RNG = np.random.default_rng(23)
D, H = 5, 8


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def model_with_random_weights() -> gr.gModule:
    model = layernorm_lstm(D, H)
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape) * 0.5 + (1.0 if p.ndim == 1 else 0.0)
    return model


def training_graph(model: gr.gModule, b: int = 3):
    g = loss_graph(model, gr.MSECriterion())
    pg, _, _ = prepare_training(g, [TensorType((b, "T", D)), TensorType((b, "T", H))],
                                unit_cotangent=True)
    return pg


def loops(graph) -> list:
    return [n for n in graph.nodes if n.op == Op.LOOP]


def ops_in(graph, op: Op) -> list:
    return [n for n, _ in graph.walk() if n.op == op]


def check_training_step(model: gr.gModule, cache: KernelCache, b: int, t: int) -> None:
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    x, y = randn(b, t, D), randn(b, t, H)
    loss = step(x, y)
    _, want, _ = gradients(model, x, cotangents=[2 * (model(x) - y) / y.size],
                           dtype=np.float32)
    views = model.table.views(model.parameters()[1])
    for k, g in want.items():
        np.testing.assert_allclose(views[k], g, rtol=1e-4, atol=1e-6, err_msg=k)
    np.testing.assert_allclose(loss, np.mean((model(x) - y) ** 2), rtol=1e-5)


def test_the_backward_step_has_three_row_kernels(cache: KernelCache) -> None:
    model = model_with_random_weights()
    pg = training_graph(model)
    sched = schedule(pg, pg.inputs[-1], training=True)
    backward = [k for k in sched.kernels if k.kind == "loop"][-1]
    rows = [k.node.op for k in backward.body if k.kind == "reduce"]
    # the norm of c recomputed, and the gradients of the norms of c and h W^T; the norm of
    # h W^T is one the forward loop saved, the input projection's gradient runs after it
    assert sorted(op.value for op in rows) == ["normalize", "normalize_grad", "normalize_grad"]
    for b, t in ((1, 4), (4, 7)):
        check_training_step(model, cache, b, t)


def test_gates_of_normalised_pre_activations_fuse_into_the_nonlinearities(
        cache: KernelCache) -> None:
    model = model_with_random_weights()
    g, _ = prepare(model.graph, [TensorType((2, "T", D))])
    (loop,) = loops(g)
    body = loop.attrs["body"]
    fused = [n for n in body.nodes if n.op == Op.FUSED]
    assert all(n.type.shape[-1] == H for n in fused)        # no [B, 4H] map in the step
    assert {n.inputs[0].op for n in body.nodes if n.op == Op.SLICE} <= {Op.NORMALIZE,
                                                                        Op.VIEW, Op.INPUT}
    x = randn(2, 5, D)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(x), model(x), rtol=1e-4,
                               atol=1e-6)


def test_a_slice_of_a_product_keeps_its_epilogue() -> None:
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(D, H))(x)])
    g, _ = prepare(model.graph, [TensorType((2, "T", D))])
    sched = schedule(g, g.inputs[-1])
    (loop,) = [k for k in sched.kernels if k.kind == "loop"]
    assert [k for k in loop.body if k.group is not None]    # the cell is the gemm's epilogue


def test_the_input_norms_gradient_runs_after_the_loop(cache: KernelCache) -> None:
    model = model_with_random_weights()
    pg = training_graph(model)
    backward = [n for n in loops(pg) if n.name.endswith("_grad")][0]
    inside = ops_in(backward.attrs["body"], Op.NORMALIZE_GRAD)
    after = [n for n in pg.nodes if n.op == Op.NORMALIZE_GRAD]
    assert len(inside) == 2                 # the hidden projection's and the cell's
    assert len(after) == 1 and after[0].type.shape == (3, "T", 4 * H)
    # the input projection's norm is computed once, before the loops, for both of them; the
    # forward loop saves the hidden projection's norm with the product it reads (whose
    # statistics the gradient recomputes): the backward step recomputes the cell's alone
    body_norms = ops_in(backward.attrs["body"], Op.NORMALIZE)
    assert [n.type.shape[-1] for n in body_norms] == [H]
    assert len([n for n in pg.nodes if n.op == Op.NORMALIZE]) == 1
    check_training_step(model, cache, 2, 6)


@pytest.mark.parametrize("reverse", [False, True])
def test_outputs_of_emitted_values_are_computed_after_the_loop(reverse: bool) -> None:
    """acc += contract(h', x) emits h' for every step; normalize(h') * 2 then needs nothing
    new, and runs once after the loop. tanh(h') * 2, a map, fuses into the step: it stays,
    and so does normalize(h' + h), which reads the carry."""
    w, v = ops.input_((H, H), name="W"), ops.input_((D, H), name="V")
    h, acc = ops.input_(("B", H), name="h"), ops.input_((H, D), name="acc")
    x = ops.input_(("B", D), name="x")
    h2 = ops.tanh(ops.add(ops.matmul(h, w), ops.matmul(x, v)))
    acc2 = ops.add(acc, ops.contract(h2, x))
    two = ops.const(np.float32(2.0))
    y1 = ops.mul(ops.normalize(h2, (H,), 1e-5), two)
    y2 = ops.normalize(ops.add(h2, h), (H,), 1e-5)
    y3 = ops.mul(ops.tanh(h2), two)
    body = close_graph([w, v, h, acc, x], [h2, acc2, y1, y2, y3])
    outer = [ops.input_(t.type.shape, name=t.name.upper()) for t in (w, v)]
    xs = ops.input_(("B", "T", D), name="xs")
    init = [ops.fill((H,), 0.0, batch_like=xs), ops.fill((H, D), 0.0)]
    loop = ops.loop(body, outer, init, [xs], reverse=reverse)
    graph = close_graph(outer + [xs], [ops.get(loop, i) for i in range(5)])
    out = hoist_accumulations(graph)
    verify(out)
    (new,) = loops(out)
    body_ops = [n.op for n in new.attrs["body"].nodes]
    assert body_ops.count(Op.NORMALIZE) == 1 and body_ops.count(Op.TANH) == 2
    y = out.outputs[2]
    assert y.op == Op.MUL and y.inputs[0].op == Op.NORMALIZE
    assert y.type.shape == ("B", "T", H)
    assert out.outputs[3].op == out.outputs[4].op == Op.GET
    args = [randn(H, H) * 0.5, randn(D, H) * 0.5, randn(3, 4, D)]
    for a, b in zip(interpret(out, *args), interpret(graph, *args)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_normalize_grad_of_rows_far_from_zero(cache: KernelCache) -> None:
    """One pass for the statistics and the gradient's sums: exact products and double sums
    keep mean(g * y) accurate when the mean of a row is large against its spread."""
    x = gr.Input("B", "T", 16, name="x")
    model = gr.gModule([x], [nn.LayerNorm(16)(x)])
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    xs = (1000.0 + randn(3, 4, 16)).astype(np.float32)
    ys = randn(3, 4, 16)
    step(xs, ys)
    _, want, _ = gradients(model, xs, cotangents=[2 * (model(xs) - ys) / ys.size],
                           dtype=np.float64)
    views = model.table.views(model.parameters()[1])
    for k, g in want.items():
        np.testing.assert_allclose(views[k], g, rtol=1e-4, atol=1e-5, err_msg=k)
