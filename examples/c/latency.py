"""The latency of one LSTM layer's forward at (B, T, D, H) = (1, 100, 32, 64): the exported C
library called from C (examples/c/run_model.c `time`), against the same model's JIT call from
Python (the default `gr.compile`: the one program for every batch size the library holds too),
and the library from Python: its typed call through bare ctypes and
`gr.load_library`. Rounds interleave
them; each round's figure is the median of N calls; printed: the median over rounds.

    python examples/c/latency.py [--rounds 15] [--calls 200]
"""
from __future__ import annotations

import argparse
import ctypes
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphrnn as gr
from graphrnn import nn

HERE = Path(__file__).resolve().parent
B, T, D, H = 1, 100, 32, 64


def tensor_file(a: np.ndarray) -> bytes:
    """One float32 tensor in run_model.c's format."""
    return (b"GRT1" + struct.pack("<iii", 1, 1, a.ndim) + struct.pack(f"<{a.ndim}q", *a.shape)
            + a.tobytes())


def median_us(fn, x: np.ndarray, calls: int) -> float:
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    args = parser.parse_args(argv)
    gr.manual_seed(0)
    x_in = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x_in], [nn.Recurrent(gr.cells.LSTM(D, H))(x_in)], name="lstm")
    x = np.random.default_rng(0).standard_normal((B, T, D)).astype(np.float32)
    out = Path(tempfile.mkdtemp(prefix="graphrnn-latency-"))
    lib = gr.export_library(model, out, name="lstm", stateful=False)
    exe = out / "run_model"
    subprocess.run(["cc", "-O2", "-DMODEL=lstm", f"-I{out}", str(HERE / "run_model.c"),
                    f"-L{out}", "-llstm", "-lm", f"-Wl,-rpath,{out}", "-o", str(exe)], check=True)
    (out / "in.bin").write_bytes(tensor_file(x))
    # the library holds the general program (B a run-time argument), as gr.compile runs it
    fast, loaded = gr.compile(model), gr.load_library(lib.shared)
    assert np.array_equal(fast(x), loaded(x))
    # the typed C call through bare ctypes, pointers made once: the library minus Python
    dll = ctypes.CDLL(str(lib.shared))
    ctx = ctypes.c_void_p()
    assert dll.lstm_create(ctypes.byref(ctx), None) == 0
    y = np.empty((B, T, H), np.float32)
    call = dll.lstm_forward
    call.argtypes = [ctypes.c_void_p] * 2 + [ctypes.c_int64] * 2 + [ctypes.c_void_p]
    xp, yp = x.ctypes.data, y.ctypes.data

    def bare(_: np.ndarray) -> None:
        call(ctx, xp, B, T, yp)
    c_us, jit_us, ctypes_us, bare_us = [], [], [], []
    for _ in range(args.rounds):
        done = subprocess.run([str(exe), "time", str(out / "in.bin"), str(args.calls)],
                              capture_output=True, text=True, check=True)
        c_us.append(float(done.stdout))
        jit_us.append(median_us(fast, x, args.calls))
        ctypes_us.append(median_us(loaded, x, args.calls))
        bare_us.append(median_us(bare, x, args.calls))
    print(f"LSTM (B, T, D, H) = {(B, T, D, H)}: median of {args.rounds} interleaved rounds of "
          f"{args.calls} calls")
    print(f"  C library, called from C      {statistics.median(c_us):8.1f} us")
    print(f"  JIT (gr.compile), from Python {statistics.median(jit_us):8.1f} us")
    print(f"  C library, bare ctypes call   {statistics.median(bare_us):8.1f} us")
    print(f"  C library, gr.load_library    {statistics.median(ctypes_us):8.1f} us")
    dll.lstm_destroy(ctx)
    print(f"  lib{lib.shared.stem[3:]}.so {lib.shared.stat().st_size} bytes, "
          f"lib{lib.static.stem[3:]}.a {lib.static.stat().st_size} bytes")


if __name__ == "__main__":
    sys.exit(main())
