"""A tile of several rows prefetches its rows of the epilogue's inputs (the hoisted input
projection a recurrent step reads) before its k-loop, outside the loop; a one-row tile (a
GEMV, B = 1), a short k-loop, and inputs every row shares (a bias) do not. Results stay
those of the interpreter."""
from __future__ import annotations

import re

import numpy as np
import pytest
from asm_loops import k_loops

import graphrnn as gr
from graphrnn import nn

RNG = np.random.default_rng(11)


def gru(d: int, h: int) -> gr.gModule:
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(d, h))(x)])
    model.reset_parameters(seed=2)
    return model


def prefetches(asm: str) -> list[str]:
    return [line for line in asm.splitlines() if re.match(r"\s+prefetch", line)]


@pytest.mark.parametrize("b", [7, 12])
def test_a_gru_step_prefetches_its_epilogue_and_matches_the_interpreter(b: int) -> None:
    model = gru(24, 64)                 # the step's product has K = 64
    x = RNG.standard_normal((b, 5, 24)).astype(np.float32)
    compiled = gr.compile(model)
    asm = compiled.asm(x)
    assert prefetches(asm)
    for body in k_loops(asm):
        assert not prefetches("\n".join(body)), "a prefetch inside a k-loop"
    np.testing.assert_allclose(compiled(x), gr.interpret(model, x), rtol=1e-4, atol=2e-6)


def test_one_row_and_short_products_do_not_prefetch() -> None:
    x = gr.Input(1, 128, name="x")
    gemv = gr.gModule([x], [nn.Linear(128, 256)(x)])
    a = RNG.standard_normal((1, 128)).astype(np.float32)
    assert not prefetches(gr.compile(gemv).asm(a))
    short = gru(8, 16)                  # K = 16: too short a k-loop to hide a miss
    xs = RNG.standard_normal((12, 4, 8)).astype(np.float32)
    assert not prefetches(gr.compile(short).asm(xs))


def test_a_linear_does_not_prefetch_its_bias_or_output() -> None:
    x = gr.Input(12, 128, name="x")
    model = gr.gModule([x], [nn.Linear(128, 64)(x)])
    a = RNG.standard_normal((12, 128)).astype(np.float32)
    compiled = gr.compile(model)
    assert not prefetches(compiled.asm(a))      # the bias is every row's: it stays cached
    np.testing.assert_allclose(compiled(a), gr.interpret(model, a), rtol=1e-4, atol=2e-6)
