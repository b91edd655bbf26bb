"""Kernels built for an ISA other than the host's (graphrnn.isa), checked without timing.

- GRAPHRNN_TARGET_FEATURES / `using_isa` pick the ISA; the tiling follows the target, not the
  host: AVX2 tiles fit 16 ymm registers (accumulators, broadcasts and panel vectors together),
  AVX-512 tiles 32 zmm, the generic x86-64 target 8 register pairs.
- AVX2 panels too big for L1 are walked in blocks of kc k-rows.
- AVX2 kernels (built and run on any AVX2 host, an AVX-512 one included) match the
  interpreter for RNN / LSTM / GRU forward and training, at shapes with tile remainders (rows,
  columns, and k blocks); their assembly has no zmm register.
- The kernel cache keys object code on the target's CPU and features.
"""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.tiling import (PANEL_BLOCK_BYTES, accumulators, make_plan,
                                              registers, vector_width, vectors_first)
from graphrnn.isa import current_isa, host_isa, resolve_isa, using_isa
from graphrnn.runtime.cache import KernelCache
from graphrnn.runtime.jit import host_signature
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(11)
HAS_AVX2 = {"avx2", "fma"} <= host_isa().enabled
needs_avx2 = pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2 + FMA")


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def layer(cell: str, d: int, h: int) -> gr.gModule:
    make = {"lstm": gr.cells.LSTM, "gru": gr.cells.GRU, "rnn": gr.cells.RNN}[cell]
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(d, h))(x)])
    model.reset_parameters(seed=7)
    return model


def operand_registers(mr: int, nvec: int) -> int:
    """Registers a k-step holds: the accumulators and the operands of the chosen order."""
    return mr * nvec + (nvec if vectors_first(mr, nvec) else mr) + 1


# ----------------------------------------------------------------------------- the target

def test_specs_resolve_to_isas():
    assert resolve_isa("generic").name == "sse" and resolve_isa("x86-64").vector_width == 8
    v3, v4 = resolve_isa("x86-64-v3"), resolve_isa("x86-64-v4")
    assert (v3.name, v3.vector_width, v3.registers) == ("avx2", 8, 16)
    assert (v4.name, v4.vector_width, v4.registers) == ("avx512", 16, 32)
    assert resolve_isa(None) == resolve_isa("host") == host_isa()
    with pytest.raises(ValueError, match="avx3"):
        resolve_isa("avx3")


@needs_avx2
def test_avx2_is_the_host_without_avx512():
    isa = resolve_isa("avx2")
    assert isa.name == "avx2" and isa.cpu == host_isa().cpu
    assert not [f for f in isa.enabled if f.startswith("avx512")]
    assert resolve_isa("-avx512f").name == "avx2"


def test_the_environment_and_using_isa_choose_the_target(monkeypatch):
    monkeypatch.setenv("GRAPHRNN_TARGET_FEATURES", "x86-64-v3")
    assert current_isa().name == "avx2" and vector_width() == 8
    with using_isa("x86-64-v4"):
        assert current_isa().name == "avx512" and vector_width() == 16
    monkeypatch.delenv("GRAPHRNN_TARGET_FEATURES")
    assert current_isa() == host_isa()


def test_the_cache_keys_object_code_on_the_target(tmp_path):
    cache = KernelCache(tmp_path)
    with using_isa("x86-64-v3"):
        v3, sig = cache.key("ir", "v"), host_signature()
    with using_isa("x86-64-v4"):
        v4 = cache.key("ir", "v")
    assert v3 != v4 and sig["cpu"] == "x86-64-v3"


# ----------------------------------------------------------------------------- the tiling

@pytest.mark.parametrize("spec, width, regs", [("x86-64-v3", 8, 16), ("x86-64-v4", 16, 32),
                                               ("generic", 8, 8)])
@pytest.mark.parametrize("segments, rows", [(1, 64), (3, 64), (4, 64), (4, 7), (1, 6400)])
def test_tiles_fit_the_target_registers(spec, width, regs, segments, rows):
    with using_isa(spec):
        p = make_plan(512, segments * 512, rows, segments=segments)
        nvec = p.segments * p.nv
        assert p.vw == width and registers() == regs
        assert p.mr * nvec <= accumulators() <= regs
        assert operand_registers(p.mr, nvec) <= regs
        for mr in (4, 2, 1):                    # the tiles of the last rows fit as well
            if mr < p.mr:
                assert operand_registers(mr, nvec) <= regs


def test_avx2_tiles_of_the_gates():
    with using_isa("x86-64-v3"):
        lstm = make_plan(1024, 2048, 64, segments=4)
        gru = make_plan(512, 1536, 64, segments=3)
        assert (lstm.mr, lstm.segments * lstm.nv) == (3, 4)     # 12 ymm + 3 broadcasts + 1
        assert not vectors_first(3, 4)
        assert (gru.mr, gru.segments * gru.nv) == (4, 3)        # 12 ymm + 3 vectors + 1
        assert vectors_first(4, 3)
    with using_isa("x86-64-v4"):
        assert make_plan(1024, 2048, 64, segments=4).mr * 4 == 24


def test_avx2_panels_too_big_for_l1_are_walked_in_blocks():
    with using_isa("x86-64-v4"):
        assert make_plan(1024, 2048, 64, segments=4).kc == 0      # as AVX-512 was tuned
    with using_isa("x86-64-v3"):
        p = make_plan(1024, 2048, 64, segments=4)
        width = p.segments * p.nv * p.vw
        assert 0 < p.kc < 1024 and p.kc * width * 4 <= PANEL_BLOCK_BYTES
        assert make_plan(64, 256, 64, segments=4).kc == 0        # fits: walked whole
        assert make_plan(1024, 2048, 1, segments=4).kc == 0      # a GEMV streams its panels


# ----------------------------------------------------------------------------- AVX2 kernels

# rows 7 = 3 + 3 + 1 (or 4 + 2 + 1) per tile; H = 13 and 20: partial vectors; D + H = 620:
# three k blocks, the last one shorter
SHAPES = [(7, 3, 5, 13), (5, 2, 600, 20)]


@needs_avx2
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("b, t, d, h", SHAPES)
def test_avx2_forward_matches_the_interpreter(cell, b, t, d, h, cache):
    model = layer(cell, d, h)
    x = randn(b, t, d)
    with using_isa("avx2"):
        y = gr.compile(model, cache=cache)(x)
    np.testing.assert_allclose(y, gr.interpret(model, x), rtol=1e-4, atol=5e-6)


@needs_avx2
@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.parametrize("b, t, d, h", SHAPES)
def test_avx2_training_matches_the_interpreter(cell, b, t, d, h, cache):
    model = layer(cell, d, h)
    x, y = randn(b, t, d), randn(b, t, h)
    with using_isa("avx2"):
        loss = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)(x, target=y)
    grad = model.parameters()[1].copy()
    assert InterpretedStep(model, gr.MSECriterion())(x, target=y) == pytest.approx(loss,
                                                                                   rel=1e-5)
    np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-4, atol=1e-6)


def test_generic_target_forward_matches_the_interpreter(cache):
    model = layer("lstm", 5, 13)
    x = randn(7, 3, 5)
    with using_isa("generic"):
        y = gr.compile(model, cache=cache)(x)
    np.testing.assert_allclose(y, gr.interpret(model, x), rtol=1e-4, atol=5e-6)


@needs_avx2
def test_avx2_assembly_has_no_zmm_and_a_spill_free_k_loop():
    model = layer("gru", 512, 512)
    with using_isa("avx2"):
        general = gr.compile(model).asm(np.zeros((64, 3, 512), np.float32))
        asm = gr.compile(model, specialize=True).asm(np.zeros((64, 3, 512), np.float32))
    assert "%zmm" not in general and "vfmadd231ps" in general
    assert "%zmm" not in asm and "vfmadd231ps" in asm
    lines = asm.splitlines()
    labels = {m.group(1): i for i, ln in enumerate(lines) if (m := re.match(r"^(\.LBB\S+):", ln))}
    loops = []
    for i, ln in enumerate(lines):
        m = re.match(r"\s+j\w+\s+(\.LBB\S+)", ln)
        if m and m.group(1) in labels and labels[m.group(1)] < i:
            body = lines[labels[m.group(1)]:i + 1]
            if any("vbroadcastss" in s for s in body) and \
                    not any(re.match(r"^\.LBB\S+:", s) for s in body[1:]):
                loops.append(body)
    assert loops
    # the k-loops: the full tile's 12 accumulators (4 x 3), fewer in the tiles of the last
    # rows (B * T is known at run time only), and no stack traffic in any of them
    fmas = [sum("vfmadd" in s for s in body) for body in loops]
    assert max(fmas) == 12 and all(0 < n <= 12 for n in fmas), fmas
    for body in loops:
        assert not [s for s in body if "(%rsp)" in s], "\n".join(body)
