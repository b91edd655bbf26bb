"""Accuracy of the inline erf, softplus and pow against float64 references, compiled by the
JIT as scalars and as vectors (test_mathfns.py does exp, sigmoid, tanh and log)."""
from __future__ import annotations

import ctypes
import math
from functools import partial

import numpy as np
import pytest
from llvmlite import ir

from graphrnn.compiler.codegen.mathfns import emit_erf, emit_pow, emit_softplus
from graphrnn.runtime.jit import Engine
from graphrnn.testing.apply_kernel import build_apply
from test_mathfns import FLT_MIN

WIDTHS = (1, 8, 16)
POWERS = (2.0, 3.0, -1.0, -2.0, 7.0, 0.5, 1.5, -0.5, -1.5, 2.3, -0.7, 100.0, 101.0)
EMITTERS = {"erf": emit_erf, "softplus": emit_softplus,
            **{f"pow{p}": partial(emit_pow, p=p) for p in POWERS}}
_ERF64 = np.frompyfunc(math.erf, 1, 1)
# Bounds for results of normal magnitude, measured on the sweep below: erf 2 ulp,
# softplus 2 ulp; pow by products (and a sqrt) 2-4 ulp, through exp(p log x) up to 1.4e-5 relative
# (log x near 88, p = 101).
RTOL = {"erf": 2.4e-7, "softplus": 2.4e-7}
POW_RTOL = {7.0: 5e-7, 1.5: 3e-7, -1.5: 3e-7, 2.3: 1e-5, -0.7: 1e-5, 100.0: 2e-5, 101.0: 2e-5}


def reference(op: str, x: np.ndarray) -> np.ndarray:
    if op == "erf":
        return _ERF64(x).astype(np.float64)
    if op == "softplus":
        return np.logaddexp(x, 0.0)
    return np.power(x, float(op[3:]))


@pytest.fixture(scope="module")
def kernels():
    module = ir.Module("mathfns_special_test")
    for op, emit in EMITTERS.items():
        for width in WIDTHS:
            build_apply(module, f"{op.replace('.', '_').replace('-', 'm')}_w{width}", emit,
                         width)
    library = Engine().load(Engine().compile_to_object(str(module)).obj)
    args = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    return {(op, w): library.function(f"{op.replace('.', '_').replace('-', 'm')}_w{w}", None,
                                      *args) for op in EMITTERS for w in WIDTHS}, library


def run(kernels, op: str, width: int, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.full_like(x, 12345.0)
    kernels[0][op, width](x.ctypes.data, out.ctypes.data, x.size)
    return out


def sweep() -> np.ndarray:
    rng = np.random.default_rng(3)
    tiny = 10.0 ** np.linspace(-45, -3, 4_001)
    special = [0.0, np.inf, np.nan, FLT_MIN, 1.4e-45, 1e-40, 3.4028235e38, 1.0, 0.5, 4.0]
    parts = [np.linspace(-100, 100, 200_001), np.linspace(-5, 5, 200_001), tiny, -tiny,
             special, np.negative(special), 10.0 ** np.linspace(-30, 30, 20_001),
             rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32).view(np.float32)]
    return np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])


def errors(op: str, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Max relative error where the float32 result is normal; max abs error below."""
    with np.errstate(all="ignore"):
        ref = reference(op, x.astype(np.float64))
        ref32 = ref.astype(np.float32)
        diff = np.abs(y - ref)
    nan = np.isnan(ref)
    assert np.array_equal(nan, np.isnan(y)), (op, x[nan != np.isnan(y)][:10])
    inf = np.isinf(ref32)
    assert np.array_equal(y[inf], ref32[inf]), (op, x[inf][y[inf] != ref32[inf]][:10])
    ok = ~nan & ~inf
    normal = ok & (np.abs(ref) >= FLT_MIN)
    rel = np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])
    return float(rel.max(initial=0)), float(diff[ok & ~normal].max(initial=0))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("op", sorted(EMITTERS))
def test_accuracy(kernels, op, width):
    x = sweep()
    rel, absolute = errors(op, x, run(kernels, op, width, x))
    bound = RTOL.get(op) or POW_RTOL.get(float(op[3:]), 2.4e-7)
    assert rel <= bound, f"{op} w{width}: max rel error {rel:.3g}"
    assert absolute <= FLT_MIN, f"{op} w{width}: abs error {absolute:.3g} below FLT_MIN"


@pytest.mark.parametrize("width", (1, 8))
def test_special_values(kernels, width):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, -100.0, 100.0], np.float32)
    nan, inf = np.nan, np.inf
    np.testing.assert_array_equal(run(kernels, "erf", width, x), [nan, 1, -1, 0, 0, -1, 1])
    np.testing.assert_array_equal(run(kernels, "softplus", width, x)[:5], [nan, inf, 0, *[
        np.float32(math.log(2))] * 2])
    # softplus(-100) = exp(-100) is subnormal: rounded to a multiple of 2 ** -149
    np.testing.assert_array_equal(run(kernels, "softplus", width, x)[5:],
                                  np.float32([math.exp(-100), 100]))
    for p in POWERS:
        with np.errstate(all="ignore"):
            want = np.power(x, np.float32(p))
        np.testing.assert_allclose(run(kernels, f"pow{p}", width, x), want, rtol=2e-5,
                                   err_msg=str(p))     # inf, NaN and 0 exactly
