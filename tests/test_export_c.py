"""A model exported as a C library (gr.export_library): a C program linked against it gives
the default `gr.compile(model)` results bit for bit at any batch size and length from one
library, streams in chunks, trains, refuses bad shapes with a message, and needs neither
Python nor llvmlite; load_library runs it from Python."""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import main as cli_main
from graphrnn.export import LibraryError, LibraryInputError, export_library, load_library

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler (cc)")

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "c" / "run_model.c"
RNG = np.random.default_rng(17)
B, T, D, H = 2, 7, 3, 5
SIZES = [(1, 1), (B, T), (5, 3), (8, 20), (3, 0)]      # (B, T) calls of one library


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- the C program

def write_tensors(path: Path, arrays: list[np.ndarray]) -> None:
    out = [b"GRT1", struct.pack("<i", len(arrays))]
    for a in arrays:
        a = np.ascontiguousarray(a)
        out += [struct.pack("<ii", 1 if a.dtype == np.float32 else 2, a.ndim),
                struct.pack(f"<{a.ndim}q", *a.shape), a.tobytes()]
    path.write_bytes(b"".join(out))


def read_tensors(path: Path) -> list[np.ndarray]:
    data = path.read_bytes()
    assert data[:4] == b"GRT1"
    n, = struct.unpack_from("<i", data, 4)
    pos, out = 8, []
    for _ in range(n):
        dtype, rank = struct.unpack_from("<ii", data, pos)
        shape = struct.unpack_from(f"<{rank}q", data, pos + 8)
        pos += 8 + 8 * rank
        dt = np.dtype(np.float32 if dtype == 1 else np.int64)
        size = int(np.prod(shape, dtype=np.int64)) * dt.itemsize
        out.append(np.frombuffer(data[pos:pos + size], dt).reshape(shape).copy())
        pos += size
    return out


def build_program(out: Path, name: str, static: bool = False) -> Path:
    """examples/c/run_model.c linked against lib<name> (shared, or the static archive)."""
    exe = out / ("run_static" if static else "run_model")
    lib = [str(out / f"lib{name}.a")] if static else [f"-L{out}", f"-l{name}",
                                                      f"-Wl,-rpath,{out}"]
    subprocess.run(["cc", "-O2", "-Wall", "-Werror", f"-DMODEL={name}", f"-I{out}", str(EXAMPLE),
                    *lib, "-lm", "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def run_c(exe: Path, kind: str, arrays: list[np.ndarray], *extra: str,
          expect_fail: bool = False) -> list[np.ndarray] | str:
    folder = exe.parent
    write_tensors(folder / "in.bin", arrays)
    done = subprocess.run([str(exe), kind, str(folder / "in.bin"), str(folder / "out.bin"),
                           *extra], capture_output=True, text=True)
    if expect_fail:
        assert done.returncode == 2, done.stderr
        return done.stderr
    assert done.returncode == 0, done.stderr
    return read_tensors(folder / "out.bin")


# ----------------------------------------------------------------------------- models

def recurrent(cell: object) -> gr.gModule:
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(cell)(x)
    return gr.gModule([x], [nn.Linear(H, 2)(h)], name="reader")


def user_cell() -> gr.gModule:
    """A cell written by hand (h' = tanh(W x + U h) * sigmoid(V x)), over rows of their own
    lengths: an int64 input the library checks."""
    h, x = gr.Input("B", H), gr.Input("B", D)
    pre = nn.CAddTable()([nn.Linear(D, H)(x), nn.Linear(H, H, bias=False)(h)])
    h2 = nn.CMulTable()([nn.Tanh()(pre), nn.Sigmoid()(nn.Linear(D, H)(x))])
    body = gr.gModule([h, x], [h2, h2])
    xs, lengths = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="lengths")
    init = gr.ops.fill((H,), batch_like=xs)
    _, ys = gr.Loop(body, n_carry=1)(init=[init], xs=[xs], lengths=lengths)
    return gr.gModule([xs, lengths], [ys], name="gated")


@pytest.fixture(scope="module")
def lstm(tmp_path_factory: pytest.TempPathFactory) -> tuple[gr.gModule, Path, Path]:
    gr.manual_seed(1)
    model = recurrent(gr.cells.LSTM(D, H))
    out = tmp_path_factory.mktemp("lstm")
    export_library(model, out, name="reader", loss=gr.MSECriterion())
    return model, out, build_program(out, "reader")


# ----------------------------------------------------------------------------- forward

def test_c_forward_is_the_jit_result_bit_for_bit(lstm):
    model, out, exe = lstm
    fast = gr.compile(model)                           # the general program: every B and T
    for b, t in SIZES:
        x = randn(b, t, D)
        y, = run_c(exe, "forward", [x])
        assert y.shape == (b, t, 2) and np.array_equal(y, fast(x)), (b, t)
    assert len(fast.programs) == 1


def test_one_context_serves_every_batch_size_and_grows_its_arena(lstm):
    model, out, _ = lstm
    lib, fast = load_library(out / "libreader.so"), gr.compile(model)
    for b, t in [(1, 3), (16, 60), (2, 5), (1, 100), (7, 1)]:      # grows, then reuses
        x = randn(b, t, D)
        assert np.array_equal(lib(x), fast(x)), (b, t)


def test_static_archive_links_and_gives_the_same(lstm):
    model, out, _ = lstm
    exe = build_program(out, "reader", static=True)
    for b in (1, 3):
        x = randn(b, 4, D)
        assert np.array_equal(run_c(exe, "forward", [x])[0], gr.compile(model)(x))
    needed = subprocess.run(["readelf", "-d", str(exe)], capture_output=True, text=True).stdout
    assert "libreader" not in needed


@pytest.mark.parametrize("cell", ["RNN", "GRU"])
def test_builtin_cells(cell, tmp_path):
    gr.manual_seed(2)
    model = recurrent(getattr(gr.cells, cell)(D, H))
    export_library(model, tmp_path, name="cell", stateful=False)
    exe, fast = build_program(tmp_path, "cell"), gr.compile(model)
    for b, t in SIZES:
        x = randn(b, t, D)
        assert np.array_equal(run_c(exe, "forward", [x])[0], fast(x)), (b, t)


def test_nngraph_toy(tmp_path):
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import nngraph_toy
    finally:
        sys.path.remove(str(ROOT / "examples"))
    gr.manual_seed(3)
    model = nngraph_toy.build()
    export_library(model, tmp_path, name="toy", loss=gr.MSECriterion())
    exe = build_program(tmp_path, "toy")
    fast, step = gr.compile(model), gr.compile(model, loss=gr.MSECriterion(), train=True)
    for b in (1, 4, 9):
        x, h0, target = randn(b, 3, 1), randn(b, 26), randn(b, 1)
        assert np.array_equal(run_c(exe, "forward", [x, h0])[0], fast(x, h0)), b
        loss, grad = run_c(exe, "train", [x, h0, target])
        assert loss == np.float32(step(x, h0, target=target))
        assert np.array_equal(grad, model.parameters()[1]), b
    message = run_c(exe, "forward", [randn(4, 3, 1), randn(5, 26)], expect_fail=True)
    assert "error 2" in message and "input h0: expected [B,26] with B=4" in message


def test_user_written_cell_with_lengths(tmp_path):
    gr.manual_seed(4)
    model = user_cell()
    export_library(model, tmp_path, name="gated", stateful=False)
    exe, fast = build_program(tmp_path, "gated"), gr.compile(model)
    for b, t in [(3, T), (1, 2), (6, 11)]:
        x, lengths = randn(b, t, D), RNG.integers(0, t + 1, b)
        y, = run_c(exe, "forward", [x, lengths])
        assert np.array_equal(y, fast(x, lengths)), (b, t)
    x = randn(3, T, D)
    message = run_c(exe, "forward", [x, np.array([T, T + 1, 0])], expect_fail=True)
    assert "lengths must lie in [0, 7]" in message and "error 5" in message


# ----------------------------------------------------------------------------- streams, training

def test_streaming_in_chunks_equals_one_call(lstm):
    model, out, exe = lstm
    for b in (B, 3):
        x = randn(b, 10, D)
        whole = run_c(exe, "forward", [x])[0]
        for chunk in ("1", "3", "10"):
            assert np.array_equal(run_c(exe, "step", [x], chunk)[0], whole), (b, chunk)
        stateful = gr.compile(model, stateful=True)
        py = np.concatenate([stateful(x[:, :4]), stateful(x[:, 4:])], axis=1)
        assert np.array_equal(py, whole)


def test_c_training_step_gradients_equal_python(lstm):
    model, out, exe = lstm
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    for b, t in [(B, T), (5, 3), (1, 12)]:
        x, target = randn(b, t, D), randn(b, t, 2)
        loss, grad = run_c(exe, "train", [x, target])
        assert loss.shape == () and loss == np.float32(step(x, target=target))
        assert grad.shape == (model.table.size,)
        assert np.array_equal(grad, model.parameters()[1]), (b, t)


# ----------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("shape, words", [
    ((B, T, D + 1), ["error 2", "input x: expected [B,T,3], got [2,7,4] (dim 2 should be 3)"]),
    ((B, T), ["error 2", "rank"]),
    ((B, T, D, 1), ["error 2", "expected [B,T,3] (rank 3), got rank 4"]),
])
def test_wrong_shapes_return_an_error_code_with_a_message(lstm, shape, words):
    _, _, exe = lstm
    message = run_c(exe, "forward", [np.zeros(shape, np.float32)], expect_fail=True)
    for w in words:
        assert w in message


def test_wrong_dtype_and_stride_through_the_loader(lstm):
    _, out, _ = lstm
    lib = load_library(out / "libreader.so")
    with pytest.raises(LibraryInputError, match="expected dtype float32, got another dtype"):
        lib(np.zeros((B, T, D), np.float64))
    with pytest.raises(LibraryInputError, match="train call takes 2 inputs and 2 outputs, got 3"):
        lib.train_step(np.zeros((B, T, D), np.float32), np.zeros(3, np.float32),
                       target=np.zeros((B, T, 2), np.float32))
    with pytest.raises(LibraryInputError, match=r"input target: expected \[B,T,2\] with B=2"):
        lib.train_step(np.zeros((B, T, D), np.float32), target=np.zeros((3, T, 2), np.float32))
    with pytest.raises(LibraryInputError, match=r"with T=7 \(as in the other tensors\)"):
        lib.train_step(np.zeros((B, T, D), np.float32), target=np.zeros((B, 6, 2), np.float32))
    x = np.zeros((B, 2 * T, D), np.float32)[:, ::2]         # strided: the loader copies it
    assert np.array_equal(lib(x), lib(np.ascontiguousarray(x)))


def test_the_library_needs_no_python(lstm):
    _, out, _ = lstm
    so = out / "libreader.so"
    ldd = subprocess.run(["ldd", str(so)], capture_output=True, text=True).stdout
    assert "python" not in ldd.lower() and "llvm" not in ldd.lower()
    needed = subprocess.run(["readelf", "-d", str(so)], capture_output=True, text=True).stdout
    libs = [line.split("[")[1].rstrip("]") for line in needed.splitlines() if "NEEDED" in line]
    assert set(libs) <= {"libc.so.6", "libm.so.6"}, libs


# ----------------------------------------------------------------------------- Python side

def test_load_library_gives_what_compile_gives(lstm):
    model, out, _ = lstm
    lib = load_library(out / "libreader.so")
    x = randn(B, T, D)
    assert np.array_equal(lib(x), gr.compile(model)(x))
    assert np.array_equal(np.concatenate([lib.step(x[:, :2]), lib.step(x[:, 2:])], 1), lib(x))
    lib.reset_state()
    lib.step(x[:1])                        # a new stream, of batch 1 ...
    with pytest.raises(LibraryInputError, match="call reset") as err:
        lib.step(x)                        # ... cannot go on at batch 2
    assert err.value.code == 6
    assert lib.table == {k: (s.offset, s.shape) for k, s in model.table.slots.items()}
    assert np.array_equal(lib.params, model.parameters()[0])
    lib.params[:] = 0                      # the context's own vector: the next call repacks
    assert not lib(x).any()
    assert lib.manifest["graphrnn"] == gr.__version__


def test_contexts_run_in_threads_at_once(lstm):
    model, out, _ = lstm
    xs = [randn(B, 50, D) for _ in range(4)]
    libs = [load_library(out / "libreader.so") for _ in range(2)]
    want = [gr.compile(model)(x) for x in xs]
    with ThreadPoolExecutor(2) as pool:
        for _ in range(5):
            got = list(pool.map(lambda k: libs[k % 2](xs[k]), range(4)))
            assert all(np.array_equal(g, w) for g, w in zip(got, want))


def test_external_weights_are_checksummed(tmp_path):
    gr.manual_seed(5)
    model = recurrent(gr.cells.GRU(D, H))
    lib = export_library(model, tmp_path, name="ext", stateful=False,
                         weights="external")
    assert not (tmp_path / "ext_params.c").exists()
    x = randn(B, T, D)
    assert np.array_equal(load_library(lib.shared)(x), gr.compile(model)(x))
    data = bytearray(lib.weights.read_bytes())
    data[-1] ^= 1
    bad = tmp_path / "bad.weights"
    bad.write_bytes(bytes(data))
    with pytest.raises(LibraryError, match="checksum"):
        load_library(lib.shared, weights=bad)


def test_a_cpu_without_the_features_is_refused(tmp_path):
    gr.manual_seed(6)
    model = recurrent(gr.cells.RNN(D, H))
    export_library(model, tmp_path, name="future", stateful=False, target="x86-64-v3",
                   features="+fma4,+xop")       # AMD's abandoned extensions: no CPU today
    with pytest.raises(LibraryError, match="this CPU lacks fma4") as err:
        load_library(tmp_path / "libfuture.so")
    assert err.value.code == 7


def test_portable_target_runs(tmp_path):
    gr.manual_seed(7)
    model = recurrent(gr.cells.LSTM(D, H))
    lib = export_library(model, tmp_path, name="v2", stateful=False,
                         target="x86-64-v2")
    assert "sse4.2" in lib.target.required and "avx" not in lib.target.required
    x = randn(B, T, D)
    np.testing.assert_allclose(load_library(lib.shared)(x), gr.compile(model)(x), atol=1e-5)


def test_cli_export_c(tmp_path, monkeypatch):
    gr.manual_seed(8)
    model = recurrent(gr.cells.LSTM(D, H))
    gr.save(model, tmp_path / "m.grnn")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    assert cli_main(["export-c", "m.grnn", "-o", "out", "--name", "cli",
                     "--loss", "mse"]) == 0
    assert cli_main(["export-c", "m.grnn", "-o", "bad", "--name", "1x"]) == 2
    assert {"libcli.so", "libcli.a", "cli.h", "README.md"} <= {p.name for p in out.iterdir()}
    lib = load_library(out / "libcli.so")
    x = randn(2, T, D)
    assert np.array_equal(lib(x), gr.compile(gr.load(tmp_path / "m.grnn"))(x))
    assert lib.train_step(x, target=randn(2, T, 2))[1].shape == (model.table.size,)
