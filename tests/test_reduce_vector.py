"""Sums and means whose reduced region is contiguous innermost run as vector accumulators.

A loss (the mean of every element) or a sum over all axes used to be one chain of scalar
double adds, each waiting for the last. The vector path keeps four <8 x double> accumulators
and masks the last partial block; the result must stay a double-accumulated sum (float32
accurate whatever the size), including sizes that are not multiples of the block and regions
whose outer dims are strided.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.pipeline import compile_graph
from graphrnn.ir import TensorType
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(21)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> KernelCache:
    return KernelCache(tmp_path_factory.mktemp("reduce"))


@pytest.mark.parametrize("shape", [(1, 1, 1), (1, 7, 3), (2, 5, 33), (3, 40, 64), (1, 100, 65)])
@pytest.mark.parametrize("op", ["sum", "mean"])
def test_full_reduction_matches_a_double_sum(shape: tuple[int, ...], op: str,
                                             cache: KernelCache) -> None:
    x = gr.Input("B", "T", shape[-1], name="x")
    reduce = ops.sum_ if op == "sum" else ops.mean
    model = gr.gModule([x], [reduce(x, axes=(0, 1, 2))])
    a = (RNG.standard_normal(shape) * 3 + 1).astype(np.float32)
    got = float(np.asarray(gr.compile(model, cache=cache)(a)))
    want = getattr(a.astype(np.float64), op)()
    assert got == pytest.approx(want, rel=1e-6, abs=1e-6)
    assert got == pytest.approx(float(np.asarray(gr.interpret(model, a))), rel=1e-5, abs=1e-5)


def test_strided_outer_dims(cache: KernelCache) -> None:
    """A sum over the rows of a slice: the inner dim is contiguous, the rows are not."""
    x = gr.Input("B", 10, name="x")
    part = nn.Narrow(1, 3, 5)(x)
    model = gr.gModule([x], [ops.sum_(part, axes=(0, 1)), ops.mean(part, axes=(0, 1))])
    a = RNG.standard_normal((37, 10)).astype(np.float32)
    total, mean = gr.compile(model, cache=cache)(a)
    want = a[:, 3:8].astype(np.float64)
    assert float(total) == pytest.approx(want.sum(), rel=1e-6, abs=1e-6)
    assert float(mean) == pytest.approx(want.mean(), rel=1e-6, abs=1e-6)


def test_the_loss_reduction_is_vectorised() -> None:
    x = gr.Input("B", "T", 24, name="x")
    model = gr.gModule([x], [ops.mean(x, axes=(0, 1, 2))])
    text = compile_graph(model.graph, [TensorType((2, "T", 24), "float32")]).llvm_ir
    (kernel,) = [k for k in re.split(r"\ndefine ", text) if "_reduce_mean" in k[:60]]
    assert "<8 x double>" in kernel and "llvm.masked.load" in kernel


@pytest.mark.parametrize("op", ["sum", "mean"])
def test_row_reductions_restart_for_every_kept_index(op: str, cache: KernelCache) -> None:
    x = gr.Input("B", "T", 33, name="x")
    reduce = ops.sum_ if op == "sum" else ops.mean
    model = gr.gModule([x], [reduce(x, axes=(2,))])
    a = RNG.standard_normal((2, 5, 33)).astype(np.float32)
    got = np.asarray(gr.compile(model, cache=cache)(a))
    want = getattr(a.astype(np.float64), op)(axis=2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.filterwarnings("ignore:Mean of empty slice", "ignore:invalid value")
@pytest.mark.parametrize("steps", [0, 1, 9])
def test_a_sum_over_broadcast_dims_is_the_value_times_their_size(steps: int,
                                                                 cache: KernelCache) -> None:
    """The broadcast copies of a value are counted, not walked; none gives 0, even of inf."""
    x = gr.Input("B", "T", 3, name="x")
    v = gr.Input(3, name="v")
    wide = ops.expand(v, x)                             # [B, T, 3], stride 0 over B and T
    model = gr.gModule([x, v], [ops.sum_(wide, axes=(0, 1)), ops.sum_(wide, axes=(0, 1, 2)),
                                ops.mean(wide, axes=(0, 1))])
    a = np.zeros((4, steps, 3), np.float32)
    vals = np.array([1.5, -2.0, np.inf], np.float32)
    got = gr.compile(model, cache=cache)(a, vals)
    want = gr.interpret(model, a, vals)
    for g, w in zip(got, want):
        np.testing.assert_allclose(np.asarray(g), np.asarray(w), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got[0]), vals * 4 * steps if steps else np.zeros(3),
                               rtol=1e-6)
