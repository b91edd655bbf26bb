"""Accuracy of the inline exp/sigmoid/tanh/log against float64 numpy, compiled by the JIT."""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from llvmlite import ir

from graphrnn.compiler.codegen.mathfns import emit_exp, emit_log, emit_sigmoid, emit_tanh, intrinsic
from graphrnn.runtime.jit import Engine
from graphrnn.testing.apply_kernel import Emitter, build_apply

F32 = ir.FloatType()
WIDTHS = (1, 4, 8, 16)
FLT_MIN = float(np.finfo(np.float32).tiny)

EMITTERS: dict[str, Emitter] = {
    "exp": emit_exp, "sigmoid": emit_sigmoid, "tanh": emit_tanh, "log": emit_log
}


def _sigmoid64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return np.where(x >= 0, 1 / (1 + np.exp(-x)), np.exp(x) / (1 + np.exp(x)))


REFERENCE = {"exp": np.exp, "sigmoid": _sigmoid64, "tanh": np.tanh, "log": np.log}
# Bounds for results of normal magnitude, against the correctly rounded float32 result.
# Measured on the sweep below: exp 8.2e-8 / 1 ulp, sigmoid 1.4e-7 / 2 ulp,
# tanh 1.6e-7 / 2 ulp (over every float32: 2 ulp, tools/check_mathfns.py), log 8.1e-8 / 1 ulp.
RTOL = {"exp": 1e-7, "sigmoid": 1.6e-7, "tanh": 2e-7, "log": 1e-7}
MAX_ULPS = {"exp": 1, "sigmoid": 2, "tanh": 2, "log": 1}


@pytest.fixture(scope="module")
def kernels():
    module = ir.Module("mathfns_test")
    for op, emit in EMITTERS.items():
        for width in WIDTHS:
            build_apply(module, f"{op}_w{width}", emit, width)
    engine = Engine()
    compiled = engine.compile_to_object(str(module), assembly=True)
    library = engine.load(compiled.obj)
    args = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
    fns = {(op, w): library.function(f"{op}_w{w}", None, *args) for op in EMITTERS for w in WIDTHS}
    return fns, compiled


def _run(kernels, op: str, width: int, x: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    out = np.full_like(x, 12345.0)
    kernels[0][op, width](x.ctypes.data, out.ctypes.data, x.size)
    return out


def _sweep(op: str) -> np.ndarray:
    rng = np.random.default_rng(0)
    tiny = 10.0 ** np.linspace(-45, -3, 20_001)
    special = [0.0, -0.0, np.inf, -np.inf, np.nan, FLT_MIN, 1.4e-45, 1e-40, 3.4028235e38, 1.0]
    parts = [
        np.linspace(-100, 100, 1_000_001),
        np.linspace(-2, 2, 200_001),
        tiny, -tiny, special, np.negative(special),
        rng.integers(0, 2**32, 500_000, dtype=np.uint64).astype(np.uint32).view(np.float32),
    ]
    if op == "log":
        near_one = 1.0 + np.arange(-4000, 4000) * 2.0 ** -24
        parts += [np.linspace(0, 4, 400_001), np.exp(np.linspace(-103, 88, 100_001)), near_one]
    return np.concatenate([np.asarray(p, dtype=np.float32).ravel() for p in parts])


def _errors(op: str, x: np.ndarray, y: np.ndarray) -> tuple[float, int, float]:
    """Max relative error and ulps where the exact result is normal, max abs error below."""
    with np.errstate(all="ignore"):
        ref = REFERENCE[op](x.astype(np.float64))
        ref32 = ref.astype(np.float32)  # what a correctly rounded result would be
    nan = np.isnan(ref)
    assert np.array_equal(nan, np.isnan(y)), x[nan != np.isnan(y)][:10]
    inf = np.isinf(ref32)
    assert np.array_equal(y[inf], ref32[inf]), x[inf][y[inf] != ref32[inf]][:10]
    ok = ~nan & ~inf
    normal = ok & (np.abs(ref) >= FLT_MIN)
    tiny = ok & ~normal
    rel = np.abs(y[normal] - ref[normal]) / np.abs(ref[normal])
    # Same-signed floats: the distance of their bit patterns counts the ulps between them.
    ulps = np.abs(y[normal].view(np.int32).astype(np.int64) - ref32[normal].view(np.int32))
    absolute = np.abs(y[tiny] - ref[tiny])
    return float(rel.max(initial=0)), int(ulps.max(initial=0)), float(absolute.max(initial=0))


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("op", sorted(EMITTERS))
def test_accuracy(kernels, op, width):
    x = _sweep(op)
    rel, ulps, absolute = _errors(op, x, _run(kernels, op, width, x))
    assert rel <= RTOL[op], f"{op} w{width}: max rel error {rel:.3g}"
    assert ulps <= MAX_ULPS[op], f"{op} w{width}: {ulps} ulps"
    # Below FLT_MIN only exp keeps full subnormal precision; the others may flush.
    assert absolute <= (2.0 ** -149 if op == "exp" else FLT_MIN), f"{op}: abs error {absolute:.3g}"


@pytest.mark.parametrize("width", (1, 8))
def test_special_values(kernels, width):
    x = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -200.0], dtype=np.float32)
    out = {op: _run(kernels, op, width, x) for op in EMITTERS}
    nan, inf = np.nan, np.inf
    np.testing.assert_array_equal(out["exp"], [nan, inf, 0, 1, 1, inf, 0])
    np.testing.assert_array_equal(out["sigmoid"], [nan, 1, 0, 0.5, 0.5, 1, 0])
    np.testing.assert_array_equal(out["tanh"], [nan, 1, -1, 0, -0.0, 1, -1])
    np.testing.assert_array_equal(np.signbit(out["tanh"][3:5]), [False, True])
    np.testing.assert_array_equal(out["log"], [nan, inf, nan, -inf, -inf, np.log(np.float32(100)),
                                               nan])


def test_exp_gradual_underflow_and_overflow_edge(kernels):
    x = np.array([-103.0, -100.0, -95.0, -88.0, 88.72, 88.7228, 88.7229], dtype=np.float32)
    with np.errstate(over="ignore"):
        ref = np.exp(x.astype(np.float64)).astype(np.float32)
    out = _run(kernels, "exp", 8, x)
    ulps = np.abs(out.view(np.int32).astype(np.int64) - ref.view(np.int32))
    assert ulps.max() <= 1, (out, ref)


def test_uses_vector_code_and_no_libm(kernels):
    asm = kernels[1].asm
    assert "vroundps" in asm and "vfmadd" in asm
    assert "expf" not in asm and "logf" not in asm and "tanhf" not in asm


def test_rejects_non_float():
    b = ir.IRBuilder(ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), []), "f")
                     .append_basic_block())
    with pytest.raises(TypeError):
        emit_exp(b, ir.Constant(ir.IntType(32), 1))


def test_intrinsics_declared_once():
    module = ir.Module()
    vty = ir.VectorType(F32, 8)
    fma = intrinsic(module, "fma", vty, 3)  # as a GEMM emitter would, before the math
    fn = ir.Function(module, ir.FunctionType(vty, [vty]), "f")
    b = ir.IRBuilder(fn.append_basic_block())
    b.ret(emit_tanh(b, emit_exp(b, emit_sigmoid(b, emit_log(b, fn.args[0])))))
    assert intrinsic(module, "fma", vty, 3) is fma
    assert str(intrinsic(module, "rint", F32, 1).ftype) == "float (float)"
    text = str(module)
    assert text.count('declare <8 x float> @"llvm.fma.v8f32"') == 1
    assert text.count('declare <8 x float> @"llvm.rint.v8f32"') == 1
