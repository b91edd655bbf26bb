"""Less work per step in loop bodies, with the same numbers as the interpreter.

- A forward loop saves a layer norm of the carry's product with the product (autodiff_loop):
  the backward step reads it instead of recomputing it.
- normalize_grad takes its statistics and its sums in one pass (emit_rows.py), exact for rows
  far from zero.

Every compiled result is compared with the interpreter, forward and gradients.
"""
from __future__ import annotations

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.pipeline import prepare_training
from graphrnn.gradcheck import gradients
from graphrnn.ir import Op, TensorType
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


def test_the_backward_step_reads_the_saved_norm(cache: KernelCache) -> None:
    model = model_with_random_weights()
    pg = training_graph(model)
    forward, backward = loops(pg)
    # the forward loop saves the norm of h W^T with h W^T (whose statistics the gradient
    # recomputes): the backward step normalises the input projection and c alone
    body_norms = ops_in(backward.attrs["body"], Op.NORMALIZE)
    assert sorted(n.type.shape[-1] for n in body_norms) == [H, 4 * H]
    assert len(ops_in(backward.attrs["body"], Op.NORMALIZE_GRAD)) == 3
    assert forward.attrs["saved"] == 2
    for b, t in ((1, 4), (4, 7)):
        check_training_step(model, cache, b, t)


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
