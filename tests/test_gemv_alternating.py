"""One-row products in a loop walk their panels forward on even steps, backward on odd ones.

A GEMV at B=1 streams its packed weights from L2 every step; starting a step on the panel rows
the previous step read last (still in L1) saves part of that traffic. The order changes the
summation order of k on odd steps only, so the results must still match the interpreter for
odd and even step counts, panel counts of 1, 2 and a partial last panel, forward and backward.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.emit_gemm import _step
from graphrnn.compiler.pipeline import compile_graph
from graphrnn.compiler.codegen.tiling import make_plan
from graphrnn.ir import TensorType
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(11)


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> KernelCache:
    return KernelCache(tmp_path_factory.mktemp("gemv"))


def layer(cell: str, d: int, h: int) -> gr.gModule:
    make = {"lstm": gr.cells.LSTM, "gru": gr.cells.GRU, "rnn": gr.cells.RNN}[cell]
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(d, h))(x)])
    model.reset_parameters(seed=4)
    return model


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("cell,h", [("lstm", 64), ("lstm", 40), ("gru", 24), ("rnn", 48)])
@pytest.mark.parametrize("steps", [1, 4, 7])
def test_forward_matches_the_interpreter(cell: str, h: int, steps: int,
                                         cache: KernelCache) -> None:
    model = layer(cell, 5, h)
    x = randn(1, steps, 5)
    got = gr.compile(model, cache=cache)(x)
    np.testing.assert_allclose(got, gr.interpret(model, x), rtol=2e-5, atol=2e-6)


@pytest.mark.parametrize("cell,h", [("lstm", 40), ("gru", 24)])
def test_training_gradients_match_the_interpreter(cell: str, h: int,
                                                  cache: KernelCache) -> None:
    model = layer(cell, 3, h)
    x, y = randn(1, 7, 3), randn(1, 7, h)
    loss = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)(x, target=y)
    grad = model.parameters()[1].copy()
    want = InterpretedStep(model, gr.MSECriterion())(x, target=y)
    assert loss == pytest.approx(want, rel=1e-5)
    np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-4, atol=1e-6)


def test_only_one_row_products_in_a_loop_alternate() -> None:
    class Frame:
        t = object()
    one, many = make_plan(64, 256, 1, segments=4), make_plan(64, 256, 8, segments=4)
    assert one.mr == 1 and many.mr > 1
    assert _step(one, Frame()) == (Frame.t,)
    assert _step(many, Frame()) == () and _step(one, None) == ()


def test_the_step_kernel_selects_its_order_from_the_step_parity() -> None:
    model = layer("lstm", 5, 64)
    text = compile_graph(model.graph, [TensorType((1, "T", 5), "float32")]).llvm_ir
    kernels = re.split(r"\ndefine ", text)
    (step,) = [k for k in kernels if re.match(r'internal void @"k\d+_gemm_sigmoid', k)]
    assert "trunc i64" in step and re.search(r"select\s+i1", step)   # parity picks the order
    (proj,) = [k for k in kernels if re.match(r'internal void @"k\d+_gemm_add', k)]
    assert "trunc i64" not in proj                          # all T rows at once: no parity
