"""`graphrnn bench`: forward time of RNN/LSTM/GRU layers against peers measured in the same run.

Every implementation runs on one thread; repeats are interleaved (each round times every
implementation once, in turn) and the median is reported, because the machine's vCPUs are
shared and noisy. Ratios are peer time / graphrnn time: above 1 means graphrnn is faster.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

CONFIGS = [(1, 100, 32, 64), (1, 2000, 16, 128), (100, 100, 2, 100), (32, 50, 256, 256),
           (64, 100, 512, 512)]
QUICK_CONFIGS = [(1, 100, 32, 64), (100, 100, 2, 100)]
CELLS = ("rnn", "lstm", "gru")
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"}


@dataclass
class Row:
    cell: str
    config: tuple[int, int, int, int]
    ms: dict[str, float] = field(default_factory=dict)       # implementation -> median ms
    missing: list[str] = field(default_factory=list)

    def ratio(self, peer: str) -> float | None:
        if peer not in self.ms or "graphrnn" not in self.ms:
            return None
        return self.ms[peer] / self.ms["graphrnn"]


def build_layer(cell: str, d: int, h: int, seed: int = 0) -> Any:
    """One recurrent layer over x[B, T, D] as a gModule returning h for every step."""
    import graphrnn as gr
    gr.manual_seed(seed)
    make = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[cell]
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [gr.nn.Recurrent(make(d, h))(x)], name=cell)


def torch_layer(cell: str, model: Any, d: int, h: int) -> Callable | None:
    """The same layer in PyTorch eager, with graphrnn's weights copied in (None if missing)."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(1)
    cls = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[cell]
    layer = cls(d, h, batch_first=True)
    state = model.named_parameters()
    with torch.no_grad():
        for name, p in layer.named_parameters():
            p.copy_(torch.from_numpy(state[f"{cell}.{name}"]))

    def run(x: Any) -> Any:
        with torch.no_grad():
            return layer(torch.from_numpy(x))[0]
    return run


def median_ms(fns: dict[str, Callable[[], Any]], repeats: int, budget_s: float) -> dict:
    """Interleaved timing: each round calls every fn once; stop early past the time budget."""
    times: dict[str, list[float]] = {k: [] for k in fns}
    start = time.perf_counter()
    for r in range(repeats):
        for k, fn in fns.items():
            t0 = time.perf_counter()
            fn()
            times[k].append((time.perf_counter() - t0) * 1e3)
        if r >= 2 and time.perf_counter() - start > budget_s:
            break
    return {k: statistics.median(v) for k, v in times.items()}


def bench_forward(cell: str, config: tuple[int, int, int, int], repeats: int,
                  budget_s: float) -> Row:
    import numpy as np
    import graphrnn as gr
    b, t, d, h = config
    model = build_layer(cell, d, h)
    x = np.random.default_rng(0).standard_normal((b, t, d)).astype(np.float32)
    compiled = gr.compile(model)
    compiled(x)                                        # compile outside the timing
    fns: dict[str, Callable[[], Any]] = {"graphrnn": lambda: compiled(x),
                                         "interpreter": lambda: gr.interpret(model, x)}
    row = Row(cell, config)
    peer = torch_layer(cell, model, d, h)
    if peer is None:
        row.missing.append("torch")
    else:
        peer(x)
        fns["torch"] = lambda: peer(x)
    row.ms = median_ms(fns, repeats, budget_s)
    return row


def compile_times(cell: str = "lstm", d: int = 32, h: int = 64) -> dict[str, float]:
    """Cold compile, disk-cache load, and compile time at T = 10 and T = 10000 (seconds)."""
    import numpy as np
    import graphrnn as gr
    from graphrnn.runtime.cache import KernelCache
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, steps in (("compile_T10_s", 10), ("compile_T10000_s", 10000)):
            model = build_layer(cell, d, h)
            x = np.zeros((1, steps, d), np.float32)
            cold = KernelCache(os.path.join(tmp, f"cold{steps}"))     # empty: a real compile
            t0 = time.perf_counter()
            gr.compile(model, cache=cold).program_for([x])
            out[label] = time.perf_counter() - t0
        out["cold_compile_s"] = out["compile_T10_s"]
        model = build_layer(cell, d, h)
        x = np.zeros((1, 10, d), np.float32)
        gr.compile(model, cache=KernelCache(os.path.join(tmp, "disk"))).program_for([x])
        fresh = KernelCache(os.path.join(tmp, "disk"))     # new process view: disk only
        t0 = time.perf_counter()
        gr.compile(model, cache=fresh).program_for([x])
        out["disk_cache_load_s"] = time.perf_counter() - t0
    return out


def run(quick: bool = False, repeats: int = 7, budget_s: float = 20.0) -> dict:
    """The whole benchmark as a dict (what `--json` prints)."""
    configs = QUICK_CONFIGS if quick else CONFIGS
    cells = ("lstm",) if quick else CELLS
    rows = [bench_forward(c, cfg, 3 if quick else repeats, 3.0 if quick else budget_s)
            for cfg in configs for c in cells]
    return {"rows": [asdict(r) | {"ratios": {p: r.ratio(p) for p in r.ms if p != "graphrnn"}}
                     for r in rows],
            "compile": compile_times(),
            "threads": 1}


def format_table(result: dict) -> str:
    peers = sorted({p for r in result["rows"] for p in r["ms"] if p != "graphrnn"})
    head = f"{'cell':<5} {'(B, T, D, H)':<22} {'graphrnn ms':>12}" + "".join(
        f" {p + ' ms':>15} {'x ' + p:>14}" for p in peers)
    lines = ["forward, one thread, median of interleaved repeats "
             "(x peer = peer time / graphrnn time)", head, "-" * len(head)]
    for r in result["rows"]:
        line = f"{r['cell']:<5} {str(tuple(r['config'])):<22} {r['ms']['graphrnn']:>12.3f}"
        for p in peers:
            ms, ratio = r["ms"].get(p), r["ratios"].get(p)
            line += (f" {ms:>15.3f} {ratio:>13.2f}x" if ms is not None
                     else f" {'missing':>15} {'':>14}")
        lines.append(line)
    missing = sorted({m for r in result["rows"] for m in r["missing"]})
    if missing:
        lines.append(f"missing peers: {', '.join(missing)} (pip install -e '.[bench]')")
    c = result["compile"]
    lines.append("")
    lines.append(f"cold compile (one LSTM layer): {c['cold_compile_s'] * 1e3:8.1f} ms")
    lines.append(f"disk-cache load:               {c['disk_cache_load_s'] * 1e3:8.1f} ms")
    lines.append(f"compile at T=10 / T=10000:     {c['compile_T10_s'] * 1e3:8.1f} / "
                 f"{c['compile_T10000_s'] * 1e3:.1f} ms")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point; re-runs itself in a child with every thread pool pinned to one thread."""
    import argparse
    parser = argparse.ArgumentParser(prog="graphrnn bench", description=__doc__)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--quick", action="store_true", help="a small subset, in seconds")
    parser.add_argument("--repeats", type=int, default=7, help="interleaved rounds (default 7)")
    args = parser.parse_args(argv)
    if os.environ.get("GRAPHRNN_BENCH_CHILD") != "1":
        env = dict(os.environ, GRAPHRNN_BENCH_CHILD="1", **ONE_THREAD)
        cmd = [sys.executable, "-m", "graphrnn.bench"] + (argv if argv is not None
                                                          else sys.argv[1:])
        return subprocess.call(cmd, env=env)
    result = run(quick=args.quick, repeats=args.repeats)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
