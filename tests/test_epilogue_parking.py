"""A product's epilogue with a transcendental (an RNN step's tanh, a Linear + Tanh) runs one
row and unit at a time from its tile parked in a scratch when the tile is wide (more
accumulators than a quarter of the registers): evaluated on the whole tile in registers, the
temporaries of tens of tanh polynomials spill around the accumulators. A cheap epilogue (a
bias) and a narrow tile (a GEMV) keep working on the registers. Results stay the
interpreter's, partial vectors of the last panel included."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.tiling import make_plan
from graphrnn.isa import host_isa
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(13)
HAS_AVX512 = "avx512f" in host_isa().enabled


def linear(d: int, n: int, act: bool, rows: int | str = "B") -> gr.gModule:
    x = gr.Input(rows, d, name="x")
    y = nn.Linear(d, n)(x)
    model = gr.gModule([x], [nn.Tanh()(y) if act else y])
    model.reset_parameters(seed=2)
    return model


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.mark.parametrize("act, rows, parked", [(True, 64, True), (False, 64, False),
                                                (True, 1, False)])
def test_which_epilogues_are_parked(act: bool, rows: int, parked: bool) -> None:
    """A fixed row count: one row is a GEMV (one row, a few vectors per tile)."""
    ir_text = gr.compile(linear(96, 256, act, rows)).llvm_ir(randn(rows, 96))
    assert ("mm_epilogue" in ir_text) == parked


@pytest.mark.parametrize("rows", [1, 5, 64, 67])
@pytest.mark.parametrize("n", [256, 40, 7])
def test_parked_epilogues_match_the_interpreter(rows: int, n: int, cache: KernelCache) -> None:
    model = linear(33, n, True)
    x = randn(rows, 33)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(x), gr.interpret(model, x),
                               rtol=1e-4, atol=2e-6)


@pytest.mark.skipif(not HAS_AVX512, reason="the register count is AVX-512's")
def test_the_parked_tanh_does_not_spill() -> None:
    """AVX-512, a 6 x 4 zmm tile: its accumulators go to the scratch and come back once;
    on the registers the tanh of 24 vectors spilled some 450 vector stack accesses."""
    x = randn(64, 512)
    asm = gr.compile(linear(512, 512, True), isa="avx512").asm(x)
    stack = [line for line in asm.splitlines() if "%zmm" in line and "(%rsp" in line]
    plan = make_plan(512, 512, 64)
    assert len(stack) <= 4 * plan.mr * plan.nv, "\n".join(stack)
