"""Forward rows with the tanh and sigmoid before and the current ones, in one process.

    python tools/ab_mathfns.py [host|avx2] [cpu] [B,T,D,H]

Builds graphrnn.bench's RNN, LSTM and GRU layers (default (64, 100, 512, 512)), compiles each
twice (emit_map's tanh and sigmoid switched to tools/check_mathfns.py's `old_tanh` and
`old_sigmoid` for one, each with a kernel cache of its own, since the program cache key does
not see the switch), and times the two programs alternately: CPU time of calls totalling
>= 0.25 s, 9 rounds, bound to one CPU (default 1). Prints the medians, new / old, and the largest difference of their outputs.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphrnn as gr
import graphrnn.compiler.codegen.emit_map as emit_map
from graphrnn.bench.configs import CELLS, flops, parse_config
from graphrnn.bench.peers import build_layer
from graphrnn.runtime.cache import KernelCache

def main() -> None:
    isa = sys.argv[1] if len(sys.argv) > 1 else "host"
    os.sched_setaffinity(0, {int(sys.argv[2]) if len(sys.argv) > 2 else 1})
    current = (emit_map.emit_tanh, emit_map.emit_sigmoid)
    sys.path.insert(0, str(Path(__file__).resolve().parent))   # check_mathfns.py, beside this
    check = importlib.import_module("check_mathfns")
    before = (check.old_tanh, check.old_sigmoid)
    b, t, d, h = parse_config(sys.argv[3]) if len(sys.argv) > 3 else (64, 100, 512, 512)
    x = np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)
    for cell in CELLS:
        model = build_layer(cell, d, h)
        programs = {}
        for name, emit in (("old", before), ("new", current)):
            # read when the program is built, at its first call
            emit_map.emit_tanh, emit_map.emit_sigmoid = emit
            programs[name] = gr.compile(model, isa=isa, cache=KernelCache(tempfile.mkdtemp()))
            programs[name](x)
        emit_map.emit_tanh, emit_map.emit_sigmoid = current
        diff = np.abs(programs["old"](x) - programs["new"](x)).max()
        times: dict[str, list[float]] = {name: [] for name in programs}
        for _ in range(9):
            for name, program in programs.items():
                calls, start = 0, time.thread_time()
                while time.thread_time() - start < 0.25:
                    program(x)
                    calls += 1
                times[name].append((time.thread_time() - start) / calls * 1e3)
        old, new = np.median(times["old"]), np.median(times["new"])
        gflop = flops(cell, (b, t, d, h), "forward") / 1e9
        rates = [f"{ms:.3f} ms ({gflop * 1e3 / ms:.0f} GFLOP/s)" for ms in (old, new)]
        print(f"{isa} {cell} {(b, t, d, h)}: old {rates[0]}, new {rates[1]}, "
              f"new / old {new / old:.3f}; outputs differ by {diff:.2g} at most", flush=True)


if __name__ == "__main__":
    main()
