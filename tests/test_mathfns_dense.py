"""The inline tanh and sigmoid on a dense sample of every binade of float32
(tools/check_mathfns.py runs every value): within 2 ulp of the correctly rounded result; tanh
odd to the bit, exact for subnormals, +-0 / +-inf / NaN kept, in a map kernel and in a
gr.compile'd model, whose gradient 1 - y^2 follows; sigmoid of full relative accuracy down to
its smallest normal results."""
from __future__ import annotations

import ctypes

import numpy as np
import pytest
from llvmlite import ir

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.mathfns import emit_sigmoid, emit_tanh
from graphrnn.isa import host_isa, resolve_isa
from graphrnn.runtime.jit import Engine
from graphrnn.testing.apply_kernel import build_apply
from test_mathfns import FLT_MIN

# the vector widths each ISA runs (a width above the ISA's is split by LLVM), and scalars
ISAS = [("host", 16), ("host", 1)]
if {"avx2", "fma"} <= host_isa().enabled:
    ISAS.append(("avx2", 8))
MAX_ULPS = 2


def _kernel(isa: str, width: int, emit=emit_tanh):
    module = ir.Module("dense_test")
    build_apply(module, "apply", emit, width)
    engine = Engine(resolve_isa(isa))
    library = engine.load(engine.compile_to_object(str(module)).obj)
    fn = library.function("apply", None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)

    def run(x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        out = np.full_like(x, 12345.0)
        fn(x.ctypes.data, out.ctypes.data, x.size)
        return out
    return run


def _dense_sample() -> np.ndarray:
    """2^22 positive floats evenly over the bit patterns (so every binade, subnormals too),
    the points where the reduction changes n (k ln(2) / 2 +- 64 ulp), and around the clamp."""
    rng = np.random.default_rng(13)
    spread = np.arange(0, 2 ** 31, 2 ** 9, dtype=np.int64) + rng.integers(0, 2 ** 9, 2 ** 22)
    bits = [spread.astype(np.uint32)]
    for edge in [*(k * np.log(2) / 2 + np.log(2) / 4 for k in range(28)), 9.011, 9.2]:
        centre = np.float32(edge).view(np.int32)
        bits.append(np.arange(centre - 64, centre + 65, dtype=np.uint32))
    return np.concatenate(bits).view(np.float32)


@pytest.fixture(scope="module")
def sample():
    x = _dense_sample()
    x = x[~np.isnan(x)]
    return x, np.tanh(x.astype(np.float64))


@pytest.mark.parametrize("isa,width", ISAS)
def test_within_two_ulps_and_odd(sample, isa, width):
    x, ref = sample
    tanh = _kernel(isa, width)
    y = tanh(x)
    ref32 = ref.astype(np.float32)
    normal = ref >= FLT_MIN
    ulps = np.abs(y.view(np.int32).astype(np.int64) - ref32.view(np.int32))
    worst = int(np.argmax(np.where(normal, ulps, -1)))
    assert ulps[worst] <= MAX_ULPS, f"tanh({x[worst]!r}) = {y[worst]!r}, exact {ref[worst]!r}"
    # tanh(x) = x to the bit below 2^-126 (subnormal inputs and the smallest normals)
    np.testing.assert_array_equal(y[~normal], x[~normal])
    assert np.all(y <= 1.0) and np.all(y >= 0.0)
    np.testing.assert_array_equal(tanh(-x), -y)     # odd, to the bit


@pytest.mark.parametrize("isa,width", ISAS)
def test_special_values(isa, width):
    tanh = _kernel(isa, width)
    x = np.array([0.0, -0.0, np.inf, -np.inf, np.nan, -np.nan, 1e-45, -1e-45, 1e-40, 9.5, 9.02,
                  3.4028235e38, -3.4028235e38] * 2, dtype=np.float32)
    y = tanh(x)
    want = np.array([0.0, -0.0, 1, -1, np.nan, np.nan, 1e-45, -1e-45, 1e-40, 1, 1, 1,
                     -1] * 2, dtype=np.float32)
    np.testing.assert_array_equal(y, want)
    np.testing.assert_array_equal(np.signbit(y[:2]), [False, True])


@pytest.mark.parametrize("isa,width", ISAS)
def test_sigmoid_within_two_ulps(sample, isa, width):
    sigmoid = _kernel(isa, width, emit_sigmoid)
    x = np.concatenate([sample[0], -sample[0]])
    y = sigmoid(x)
    with np.errstate(over="ignore"):
        e = np.exp(-np.abs(x.astype(np.float64)))
    ref = np.where(x >= 0, 1 / (1 + e), e / (1 + e))
    ref32 = ref.astype(np.float32)
    normal = ref >= FLT_MIN                 # down to x = -87.3: sigmoid(-80) = 1.8e-35
    ulps = np.abs(y.view(np.int32).astype(np.int64) - ref32.view(np.int32))
    worst = int(np.argmax(np.where(normal, ulps, -1)))
    assert ulps[worst] <= MAX_ULPS, f"sigmoid({x[worst]!r}) = {y[worst]!r}, exact {ref[worst]!r}"
    assert np.abs(y[~normal] - ref[~normal]).max() <= FLT_MIN
    np.testing.assert_array_equal(sigmoid(np.array([np.inf, -np.inf, 0.0, -0.0, np.nan, -200.0,
                                                     100.0], dtype=np.float32)),
                                  np.array([1, 0, 0.5, 0.5, np.nan, 0, 1], dtype=np.float32))


def test_compiled_model_and_its_gradient():
    """nn.Tanh in a compiled model: the same numbers as the kernel's bound, and the input
    gradient g * (1 - y^2) of the interpreter's, from the compiled tanh's y."""
    inp = gr.Input("B", 4096)
    model = gr.gModule([inp], [nn.Tanh()(inp)])
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((7, 4096)) * 4).astype(np.float32)
    x[0, :8] = [0.0, -0.0, np.inf, -np.inf, 1e-40, -1e-40, 9.5, -20.0]
    y = gr.compile(model)(x)
    ref32 = np.tanh(x.astype(np.float64)).astype(np.float32)
    ulps = np.abs(y.view(np.int32).astype(np.int64) - ref32.view(np.int32))
    assert ulps.max() <= MAX_ULPS
    np.testing.assert_array_equal(np.signbit(y[0, :2]), [False, True])
    vjp = gr.compile_vjp(model)
    g = rng.standard_normal(x.shape).astype(np.float32)
    (out,), (dx,) = vjp(x, g)
    np.testing.assert_array_equal(out, y)
    np.testing.assert_allclose(dx, g * (1 - y.astype(np.float64) ** 2), rtol=1e-5, atol=1e-7)
