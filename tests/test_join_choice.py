"""Which form the join pass picks (join.join_pays), and that both forms compute the same.

- AVX-512 (32 vector registers): a batch of known size is joined from MIN_ROWS rows; a
  symbolic batch (the general program, one for every B) only with at least
  MIN_SYMBOLIC_INPUT input features; with AVX2 (16 registers) nothing is joined;
- `gr.compile(..., isa=...)` decides with the ISA it builds for;
- one general program, joined or not, serves B = 1..9 and 64 (one compile), with the
  interpreter's results and those of the other form (`disable=("join",)`), forward and
  training step.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
import graphrnn.compiler.passes.join as join
from graphrnn.compiler.passes.join import join_pays
from graphrnn.compiler.pipeline import prepare
from graphrnn.ir import Graph, Op, TensorType
from graphrnn.isa import host_isa, using_isa
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(5)
T, H = 3, 8
HAS_AVX512 = "avx512f" in host_isa().enabled
needs_avx512 = pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512F")
needs_avx2 = pytest.mark.skipif(not {"avx2", "fma"} <= host_isa().enabled,
                                reason="this CPU has no AVX2 + FMA")


def lstm(d: int) -> gr.gModule:
    gr.manual_seed(4)
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [gr.nn.Recurrent(gr.cells.LSTM(d, H))(x)])


def joined(graph: Graph, batch: int | str, d: int) -> bool:
    """Whether the prepared graph's loop runs the joined step product (no outer matmul)."""
    g = prepare(graph, [TensorType((batch, T, d))])[0]
    return not any(n.op == Op.MATMUL for n in g.nodes)


@needs_avx512
def test_avx512_joins_wide_inputs_of_a_symbolic_batch() -> None:
    with using_isa("avx512"):
        assert join_pays("B", join.MIN_SYMBOLIC_INPUT, 8)
        assert not join_pays("B", join.MIN_SYMBOLIC_INPUT - 1, 8)
        assert join_pays(8, 16, 8) and not join_pays(7, 512, 8)
        assert joined(lstm(128).graph, "B", 128)
        assert not joined(lstm(32).graph, "B", 32)
        assert joined(lstm(32).graph, 16, 32)               # a known batch of many rows
        assert not joined(lstm(128).graph, 1, 128)          # specialize=(1,)


@needs_avx2
def test_avx2_joins_nothing() -> None:
    with using_isa("avx2"):
        assert not join_pays("B", 4096, 8) and not join_pays(64, 4096, 8)
        assert not joined(lstm(128).graph, "B", 128)
        assert not joined(lstm(128).graph, 64, 128)


@needs_avx512
@needs_avx2
def test_the_isa_option_decides(tmp_path) -> None:
    model = lstm(128)
    x = RNG.standard_normal((2, T, 128)).astype(np.float32)
    wide = gr.compile(model, isa="avx512", cache=KernelCache(tmp_path)).llvm_ir(x)
    narrow = gr.compile(model, isa="avx2", cache=KernelCache(tmp_path)).llvm_ir(x)
    def gemms(ir: str) -> int:          # joined: the step's; hoisted: that and the input's
        return len(re.findall(r'define internal void @"k\d+_gemm_', ir))
    assert (gemms(wide), gemms(narrow)) == (1, 2)


@pytest.mark.parametrize("d", [128, 32], ids=["wide", "narrow"])
def test_one_program_for_b1_and_b64_matches_the_other_form(d: int, tmp_path) -> None:
    model = lstm(d)
    general = gr.compile(model, cache=KernelCache(tmp_path / "a"))
    other = gr.compile(model, disable=("join",), cache=KernelCache(tmp_path / "b"))
    for b in (*range(1, 10), 64):
        x = RNG.standard_normal((b, T, d)).astype(np.float32)
        y = general(x)
        np.testing.assert_allclose(y, other(x), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(y, gr.interpret(model, x), rtol=1e-4, atol=1e-5)
    assert general.compiles == 1


@pytest.mark.parametrize("d", [128, 32], ids=["wide", "narrow"])
def test_training_step_b1_and_b64_matches_the_other_form(d: int, tmp_path) -> None:
    model = lstm(d)
    crit = gr.MSECriterion()
    general = gr.compile(model, loss=crit, train=True, cache=KernelCache(tmp_path / "a"))
    other = gr.compile(model, loss=crit, train=True, disable=("join",),
                       cache=KernelCache(tmp_path / "b"))
    for b in (1, 64):
        x = RNG.standard_normal((b, T, d)).astype(np.float32)
        y = RNG.standard_normal((b, T, H)).astype(np.float32)
        results = []
        for step in (general, other, InterpretedStep(model, crit)):
            loss = float(step(x, target=y))
            results.append((loss, model.parameters()[1].copy()))
        (l1, g1), (l2, g2), (l3, g3) = results
        np.testing.assert_allclose(l1, l2, rtol=1e-5)
        np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(l1, l3, rtol=1e-4)
        np.testing.assert_allclose(g1, g3, rtol=1e-3, atol=1e-5)
    assert general.compiles == 1
