"""`gr.compile(model, isa=...)`: the kernels of that compiled model are built for that ISA.

- isa="avx2" gives AVX2 kernels (no zmm register) that match the interpreter, forward and
  training step, whatever ISA is current when the program is built (also in a worker thread);
- the default follows the current ISA (`using_isa`);
- an ISA the host cannot run, or an unknown name, is refused when compiling, naming it;
- programs of two ISAs from one kernel cache stay apart (the cache key holds the ISA).
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import isa as isa_mod
from graphrnn.isa import Isa, host_isa, using_isa
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep

HAS_AVX2 = {"avx2", "fma"} <= host_isa().enabled
HAS_AVX512 = "avx512f" in host_isa().enabled
pytestmark = pytest.mark.skipif(not HAS_AVX2, reason="this CPU has no AVX2 + FMA")


def lstm(d: int = 5, h: int = 7) -> gr.gModule:
    gr.manual_seed(3)
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [gr.nn.Recurrent(gr.cells.LSTM(d, h))(x)])


def data(b: int = 3, t: int = 4, d: int = 5) -> np.ndarray:
    return np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)


def test_avx2_kernels_match_the_interpreter() -> None:
    model, x = lstm(), data()
    fast = gr.compile(model, isa="avx2")
    np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)
    assert "ymm" in fast.asm(x) and "zmm" not in fast.asm(x)


def test_avx2_training_step_matches_the_interpreter() -> None:
    model, x = lstm(), data()
    y = np.random.default_rng(1).standard_normal((3, 4, 7)).astype(np.float32)
    loss = gr.compile(model, loss=gr.MSECriterion(), train=True, isa="avx2")(x, target=y)
    grad = model.parameters()[1].copy()
    ref = InterpretedStep(model, gr.MSECriterion())(x, target=y)
    np.testing.assert_allclose(loss, ref, rtol=1e-4)
    np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-3, atol=1e-5)


@pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512F")
def test_the_isa_option_wins_over_the_current_isa() -> None:
    model, x = lstm(), data()
    wide = gr.compile(model, isa="avx512")
    with using_isa("avx2"):
        assert "zmm" in wide.asm(x)
        narrow = gr.compile(model)
        assert "zmm" not in narrow.asm(x)       # no isa=: the current one
    box: dict = {}
    worker = threading.Thread(target=lambda: box.update(asm=gr.compile(model, isa="avx2")
                                                        .asm(x)))
    worker.start()
    worker.join()
    assert "zmm" not in box["asm"]


def test_an_isa_the_host_cannot_run_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="gr.compile isa 'sse9'"):
        gr.compile(lstm(), isa="sse9")
    plain = Isa("x86-64", "", frozenset(isa_mod.LEVELS["x86-64"]))
    isa_mod.resolve_isa.cache_clear()
    monkeypatch.setattr(isa_mod, "_host", lambda: plain)
    try:
        with pytest.raises(ValueError, match="gr.compile isa avx2: this CPU has no AVX2"):
            gr.compile(lstm(), isa="avx2")
        with pytest.raises(ValueError, match="avx512: this CPU has no AVX-512F"):
            gr.compile(lstm(), loss=gr.MSECriterion(), train=True, isa="avx512")
    finally:
        isa_mod.resolve_isa.cache_clear()


@pytest.mark.skipif(not HAS_AVX512, reason="this CPU has no AVX-512F")
def test_one_cache_keeps_the_programs_of_two_isas_apart(tmp_path) -> None:
    model, x = lstm(), data()
    cache = KernelCache(tmp_path)
    narrow = gr.compile(model, isa="avx2", cache=cache)
    wide = gr.compile(model, isa="avx512", cache=cache)
    np.testing.assert_allclose(narrow(x), wide(x), rtol=1e-4, atol=1e-5)
    assert len(list(tmp_path.glob("*.exe*"))) == 2
    again = gr.compile(model, isa="avx2", cache=KernelCache(tmp_path))
    np.testing.assert_array_equal(again(x), narrow(x))
    assert again.compiles == 0                  # the whole program came from the cache
