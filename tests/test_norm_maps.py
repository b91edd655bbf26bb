"""Elementwise maps folded into a norm's row kernel (compiler/codegen/row_maps.py): a
normalize's kernel also writes the map of it that follows, a normalize_grad evaluates the map
of its gradient operand as it reads it. The kernels are gone from the schedule and the values
are the interpreter's, forward and gradients, over one and two normalised dims, with
broadcast operands, the norm read twice by its map, and the norm read elsewhere too."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.gradcheck import gradients
from graphrnn.ir import Op, TensorType
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import loss_graph
from graphrnn.zoo import layernorm_lstm

RNG = np.random.default_rng(41)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def kernels(model: gr.gModule, types: list[TensorType]) -> list:
    pg, _, _ = prepare_training(loss_graph(model, gr.MSECriterion()), types,
                                unit_cotangent=True)
    sched = schedule(pg, pg.inputs[-1], training=True)
    return [k for top in sched.kernels for k in top.walk()]


def test_the_layer_norm_lstm_step_folds_every_per_step_norm_map() -> None:
    ks = kernels(layernorm_lstm(6, 8), [TensorType((1, "T", 6)), TensorType((1, "T", 8))])
    (forward, backward) = [k for k in ks if k.kind == "loop"]
    norms = [k for k in forward.body if k.node.op == Op.NORMALIZE]
    assert len(norms) == 2 and all(k.stages for k in norms)
    # the maps the norms write are not kernels of their own
    folded = {k.stages[0][0] for k in norms}
    assert not [k for k in forward.body if k.node in folded]
    grads = [k for k in ks if k.node.op == Op.NORMALIZE_GRAD]
    assert len(grads) == 3 and all(k.premap is not None for k in grads)
    assert not [k for k in ks if k.node in {g.premap for g in grads}]


def test_a_norm_only_its_map_reads_is_not_stored() -> None:
    model = layernorm_lstm(6, 8)
    g, _ = prepare(model.graph, [TensorType((1, "T", 6))])
    sched = schedule(g, g.inputs[-1])
    norms = [k for top in sched.kernels for k in top.walk() if k.node.op == Op.NORMALIZE]
    assert len(norms) == 3 and all(k.stages and k.dest is None for k in norms)


def check_step(model: gr.gModule, cache: KernelCache, xs: list[np.ndarray],
               y: np.ndarray) -> None:
    """The compiled forward, loss and parameter gradient against the interpreter's."""
    want_y = model(*xs)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(*xs), want_y,
                               rtol=1e-4, atol=1e-5)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    loss = step(*xs, y)
    _, want, _ = gradients(model, *xs, cotangents=[2 * (want_y - y) / y.size])
    views = model.table.views(model.parameters()[1])
    for k, g in want.items():
        np.testing.assert_allclose(views[k], g, rtol=1e-4, atol=1e-5, err_msg=k)
    np.testing.assert_allclose(loss, np.mean((want_y - y) ** 2), rtol=1e-5)


@pytest.mark.parametrize("norm", ["layer", "rms"])
@pytest.mark.parametrize("dims", [(16,), (3, 5)])
def test_maps_of_norms_match_the_interpreter(cache: KernelCache, norm: str,
                                             dims: tuple[int, ...]) -> None:
    x = gr.Input("B", "T", *dims, name="x")
    s = gr.Input("B", 1, *dims, name="s")
    module = nn.LayerNorm(dims) if norm == "layer" else nn.RMSNorm(dims)
    n = module(x)
    # the norm read twice by its map, with a per-sequence broadcast operand
    y = ops.add(ops.mul(ops.tanh(n), s), ops.mul(n, n))
    model = gr.gModule([x, s], [y])
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape) * 0.5 + 1.0
    ks = kernels(model, [TensorType((3, "T", *dims)), TensorType((3, 1, *dims)),
                         TensorType((3, "T", *dims))])
    assert [k for k in ks if k.node.op == Op.NORMALIZE and k.stages]
    check_step(model, cache, [randn(3, 4, *dims), randn(3, 1, *dims)], randn(3, 4, *dims))


def test_a_norm_read_by_two_maps_matches_the_interpreter(cache: KernelCache) -> None:
    x = gr.Input("B", 8, name="x")
    n = nn.LayerNorm(8)(x)
    y = ops.add(ops.sigmoid(n), ops.mul(ops.exp(n), 0.5))
    model = gr.gModule([x], [ops.mul(y, n)])
    for p in model.named_parameters().values():
        p[...] = randn(*p.shape) * 0.5 + 1.0
    check_step(model, cache, [randn(5, 8)], randn(5, 8))
