"""The C library's one program for every batch size, through its own ABI: the typed call at
several B and T from one context, parameter writes through a pointer kept from before, the
batch in `supports` and `port`, a model that declares a fixed batch, and a model whose batch
cannot stay symbolic (refused at export, with the reason)."""
from __future__ import annotations

import ctypes
import shutil
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.export import LibraryInputError, export_library, load_library
from graphrnn.ir import LoweringError

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")

RNG = np.random.default_rng(23)
D, H = 3, 5
SIZES = [(1, 1), (2, 7), (5, 3), (8, 20), (3, 0)]      # (B, T) calls of one context


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[gr.gModule, Path]:
    gr.manual_seed(11)
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(H, 2)(nn.Recurrent(gr.cells.LSTM(D, H))(x))],
                       name="reader")
    out = tmp_path_factory.mktemp("abi")
    export_library(model, out, name="reader", loss=gr.MSECriterion())
    return model, out


def test_typed_call_takes_any_batch_and_sees_parameter_writes(lstm):
    model, out = lstm
    dll = ctypes.CDLL(str(out / "libreader.so"))
    ctx = ctypes.c_void_p()
    assert dll.reader_create(ctypes.byref(ctx), None) == 0
    dll.reader_params.restype = ctypes.POINTER(ctypes.c_float)
    dll.reader_params.argtypes = [ctypes.c_void_p]
    dll.reader_last_error.restype = ctypes.c_char_p
    dll.reader_last_error.argtypes = [ctypes.c_void_p]
    params = np.ctypeslib.as_array(dll.reader_params(ctx), (model.table.size,))  # kept
    forward = dll.reader_forward
    forward.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + [ctypes.c_void_p]
    fast = gr.compile(model)

    def call(x: np.ndarray, b: int | None = None) -> tuple[int, np.ndarray]:
        y = np.full((*x.shape[:2], 2), np.nan, np.float32)
        b = x.shape[0] if b is None else b
        return forward(ctx, x.ctypes.data, b, x.shape[1], y.ctypes.data), y
    try:
        for b, t in SIZES:
            x = randn(b, t, D)
            code, y = call(x)
            assert code == 0 and np.array_equal(y, fast(x)), (b, t)
        x = randn(3, 5, D)
        params[:] = 0                      # written through a pointer taken long before
        assert not call(x)[1].any()
        params[:] = model.parameters()[0]
        assert np.array_equal(call(x)[1], fast(x))
        code, _ = call(x, b=-1)
        assert code == 2 and b"B=-1: must lie in [0, 2**31)" in dll.reader_last_error(ctx)
    finally:
        dll.reader_destroy(ctx)
    assert dll.reader_abi_version() == 2
    dll.reader_supports.argtypes = [ctypes.c_int, ctypes.c_int64]
    assert dll.reader_supports(0, 1000) == dll.reader_supports(3, 1) == 1
    assert dll.reader_supports(0, -1) == dll.reader_supports(1, 1) == 0
    dims, rank = (ctypes.c_int64 * 8)(), ctypes.c_int32()
    port = dll.reader_port
    port.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int, ctypes.c_int, ctypes.c_void_p,
                     ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
    assert port(0, -1, 1, 0, None, None, ctypes.byref(rank), dims) == 0
    assert list(dims[:rank.value]) == [-2, -1, 2]          # B, T, 2
    assert port(0, 4, 0, 0, None, None, ctypes.byref(rank), dims) == 0
    assert list(dims[:rank.value]) == [4, -1, D]


def test_a_declared_fixed_batch_is_checked(tmp_path):
    gr.manual_seed(12)
    x = gr.Input(4, "T", D, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(D, H))(x)], name="fixed")
    lib = export_library(model, tmp_path, name="fx", stateful=False)
    loaded, x = load_library(lib.shared), randn(4, 6, D)
    assert np.array_equal(loaded(x), gr.compile(model)(x))
    with pytest.raises(LibraryInputError, match=r"expected \[4,T,3\], got \[2,6,3\]"):
        loaded(x[:2])
    dll = ctypes.CDLL(str(lib.shared))
    ctx = ctypes.c_void_p()
    assert dll.fx_create(ctypes.byref(ctx), None) == 0
    dll.fx_last_error.restype = ctypes.c_char_p
    dll.fx_last_error.argtypes = [ctypes.c_void_p]
    forward = dll.fx_forward
    forward.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + [ctypes.c_void_p]
    y = np.empty((4, 6, H), np.float32)
    try:
        assert forward(ctx, x.ctypes.data, 4, 6, y.ctypes.data) == 0
        assert np.array_equal(y, loaded(x))
        assert forward(ctx, x.ctypes.data, 3, 6, y.ctypes.data) == 2
        assert dll.fx_last_error(ctx) == b"B=3: the model's batch size is fixed at 4"
    finally:
        dll.fx_destroy(ctx)


def test_a_model_needing_a_fixed_batch_is_refused_with_the_reason(tmp_path):
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Narrow(0, 0, 1)(nn.Tanh()(x))], name="first_row")
    with pytest.raises(LoweringError, match="cannot serve every batch size.*slice of symbolic"):
        export_library(model, tmp_path, name="row")


def test_unrolled_loops_are_refused_with_the_reason(tmp_path):
    h, x = gr.Input("B", H), gr.Input("B", D)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(D, H)(x), nn.Linear(H, H)(h)]))
    xs = gr.Input("B", "T", D, name="x")
    init = gr.ops.fill((H,), batch_like=xs)
    _, ys = gr.Loop(gr.gModule([h, x], [h2, h2]), n_carry=1, unroll=2)(init=[init], xs=[xs])
    model = gr.gModule([xs], [ys], name="unrolled")
    with pytest.raises(LoweringError, match="unrolled loops, which need a fixed length"):
        export_library(model, tmp_path, name="unrolled")
