"""The general program (one for every batch size) at one row: the GEMV's walk, and k-loops
with enough independent FMA chains.

When a product's rows, known at run time only, are one (B = 1), its one-row tile runs as a
GEMV does: several k-steps side by side into separate accumulators, summed after the loop,
the k-steps left over one at a time, and (in a loop) the panels and k in reverse order on odd
steps, each order its own k-loop. With more rows the one-row tile (the last row of a batch)
keeps the summation order of the other tiles. Results must equal the interpreter for every batch
size from 1 to 9 (every remainder of the row tiles), odd and even K, forward and training
step, with one program.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.bench.peers import build_hand_lstm
from graphrnn.compiler.codegen.tiling import (accumulators, k_chains, make_plan,
                                               registers)
from graphrnn.compiler.pipeline import compile_graph
from graphrnn.ir import TensorType
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(17)
BATCHES = range(1, 10)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def layer(cell: str, d: int, h: int) -> gr.gModule:
    if cell == "hand":
        return build_hand_lstm(d, h, seed=2)
    make = {"lstm": gr.cells.LSTM, "gru": gr.cells.GRU, "rnn": gr.cells.RNN}[cell]
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(d, h))(x)])
    model.reset_parameters(seed=2)
    return model


# h = 37: an odd K (k-steps left over after the chains) and a partial last panel;
# h = 40 with d = 9: several full panels
CASES = [("lstm", 5, 37), ("gru", 9, 40), ("rnn", 6, 37), ("hand", 9, 40)]


@pytest.mark.parametrize("cell,d,h", CASES)
def test_forward_every_batch_size_one_program(cell: str, d: int, h: int, builds: list,
                                              cache: KernelCache) -> None:
    model = layer(cell, d, h)
    fast = gr.compile(model, cache=cache)
    for b in BATCHES:
        x = randn(b, 7, d)
        np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=1e-4, atol=2e-6)
    assert len(fast.programs) == 1 and len(builds) == 1


@pytest.mark.parametrize("cell,d,h", CASES)
def test_training_every_batch_size_one_program(cell: str, d: int, h: int, builds: list,
                                               cache: KernelCache) -> None:
    model = layer(cell, d, h)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    oracle = InterpretedStep(model, gr.MSECriterion())
    grad = model.parameters()[1]
    for b in BATCHES:
        x, y = randn(b, 6, d), randn(b, 6, h)
        loss = step(x, target=y)
        got = grad.copy()
        np.testing.assert_allclose(loss, oracle(x, target=y), rtol=1e-4)
        np.testing.assert_allclose(got, grad, rtol=1e-3, atol=1e-5)
    assert len(step.programs) == 1 and len(builds) == 1


def test_few_accumulators_take_several_chains() -> None:
    assert k_chains(1, 4) == 2 and k_chains(1, 3) == 2 and k_chains(1, 1) == 4
    assert k_chains(1, 8) == 1 and k_chains(2, 4) == 1 and k_chains(6, 4) == 1
    for mr in range(1, 9):
        for nvec in range(1, 9):
            c = k_chains(mr, nvec)
            # the chains' accumulators beside one k-step's broadcasts and panel vector
            assert c == 1 or c * mr * nvec + mr + 1 <= registers()
            assert c == 1 or c * mr * nvec <= accumulators()


def step_kernel(model: gr.gModule, batch) -> str:
    text = compile_graph(model.graph, [TensorType((batch, "T", 5), "float32")]).llvm_ir
    (step,) = [k for k in re.split(r"\ndefine ", text)
               if re.match(r'internal void @"k\d+_gemm_\w*sigmoid', k)]
    return step


def test_rows_known_at_run_time_walk_like_a_gemv_when_one() -> None:
    model = layer("gru", 5, 64)
    general = step_kernel(model, "B")
    plan = make_plan(64, 3 * 64, "B", segments=3)
    assert plan.mr > 1                                          # tiles of several rows
    # the step's parity and "one row" decide the order; one k-loop per order
    assert "trunc i64" in general and re.search(r"icmp eq i64 %\S+, 1\b", general)
    k_loops = re.findall(r"\nmm_k\.body[.\d]*:\n(.*?)\n  br i1", general, re.S)
    assert k_loops and not [b for b in k_loops if re.search(r"select\s+i1", b)]
    # a per-batch program of several rows keeps its single order
    assert "trunc i64" not in step_kernel(model, 5)
