"""`graphrnn bench`: RNN/LSTM/GRU layers, forward and training step, against peers in one run.

For every (configuration, cell) one layer over x[B, T, D] returning h for every step is
timed as a forward pass, and as a training step (forward, mean squared error of every step's
output against a random target, backward filling the gradient of every weight), in:
graphrnn compiled, the numpy reference interpreter, PyTorch eager, ONNX Runtime (forward
only) and JAX (`lax.scan` under `jit`). Every peer gets graphrnn's weights, and its result
is checked against graphrnn's (max abs diff, in --json). A peer whose package is missing is
reported as missing.

Hygiene: the measurements run in a child process bound to one CPU (sched_setaffinity), its
thread pools also set to one thread by environment variables (a second child, bound to two
CPUs, for the 2-thread rows); within a row, every implementation gives one sample per
round, in an order shuffled each round, with the garbage collector off. A sample of a short
call is as many calls back to back as last 10 ms (`calls_per_sample` in --json): the steady
state of a loop. After every sample the process's other threads are waited out
(`timing.settle`): work a library leaves running after its call returned is reported
(`after_return_ms`), not charged to whoever runs next. Medians are reported (minimums too,
in --json), with the CPU time per wall time of each implementation as a check that it
really ran on the threads asked.
Ratios are peer time / graphrnn time: above 1 means graphrnn is faster. GFLOP/s count
the products: 2*B*T*(D+H)*G*H flops forward (G gates); a training step adds the weights'
gradients (as many again) and the gradient through h (2*B*T*H*G*H), not the input's, which
no implementation computes (configs.flops); against the single-core FMA peak of `graphrnn
bench --peak`: %run of its best-of-many runs measured before the rows; %peak against the
same loop timed as one more call in each row's rounds: in each round graphrnn's rate over
the loop's, taken seconds apart with the same clock and neighbours, the median over the
rounds (the machine's speed drifts by several percent from minute to minute; a ratio within
each round cancels that drift, while a median over the loop's best sample would not).
--json also gives the ratio to the loop's best sample in the row (`peak_fraction_best`).
The (Nx) ratios are paired the same way, round by round. Short rows take more rounds
(up to 4x, while they add up to under `timing.SHORT_ROW_S`; not with --quick).

LSTM rows also time "graphrnn-hand", the same layer written by hand from primitives
(`peers.build_hand_lstm`, given the built-in's weights and checked against it); its ratio is
hand / built-in, and it is not a peer. The memory section (bench/memory.py, skipped by
--no-memory) measures an LSTM training step at long T with gradient checkpointing off and
every k steps: arena bytes, peak resident memory, step time and the gradients' difference.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np

from .child import (ONE_THREAD, TWO_THREADS, in_child, peer_isa_env, peers_isa_text,
                    peers_off_isa, pin_to_cpus, write_result)
from ..isa import current_isa, resolve_isa
from .compile_times import bench_compile_section, format_compile_section
from .configs import (CELLS, CONFIGS, FORWARD_ONLY, GATES, HAND, IMPLS, MODES, PEER_NAMES,
                      QUICK_CONFIGS, Config, flops, parse_config)
from .host import compile_times, host
from .onnx_command import run_command as in_child_onnx
from .memory import memory_section
from .peak import format_peak, measure_peak, peak_sampler
from .peers import (PeerMissing, build_hand_lstm, build_layer, graphrnn_impl, hand_impl,
                    interpreter_impl, load_builtin_weights, make_peer, peer_impl)
from .report import format_table
from . import scaling
from .tiles import products, step_tile
from .timing import MIN_SAMPLE_S, SHORT_ROW_S, call_seconds, interleaved, paired_ratio
from .zoo import format_zoo, zoo_section

PEAK = "fma peak"      # the peak loop's name among a row's timed calls


@dataclass
class Row:
    """One (cell, configuration, mode, threads) measurement; times in ms."""
    cell: str
    config: list[int]
    mode: str
    threads: int
    gflop: float
    ms: dict[str, float] = field(default_factory=dict)             # median
    min_ms: dict[str, float] = field(default_factory=dict)
    cpu_per_wall: dict[str, float] = field(default_factory=dict)
    rounds: dict[str, int] = field(default_factory=dict)
    calls_per_sample: dict[str, int] = field(default_factory=dict)
    after_return_ms: dict[str, float] = field(default_factory=dict)   # timing.settle's
    max_abs_diff: dict[str, float] = field(default_factory=dict)   # vs graphrnn's result
    missing: dict[str, str] = field(default_factory=dict)          # peer -> why
    not_applicable: dict[str, str] = field(default_factory=dict)   # impl -> why
    tile: str = "-"                     # the step product's tile (bench/tiles.py)
    peak_gflops: float | None = None    # the FMA peak loop's best in this row's rounds
    paired_peak: float | None = None    # median over rounds of graphrnn's / the loop's rate
    paired_ratios: dict[str, float] = field(default_factory=dict)  # round by round, medians
    products: list[dict] = field(default_factory=list)             # every product's plan

    def to_json(self, peak_gflops: float | None = None, off_isa: Any = ()) -> dict:
        """The row with its derived columns: ratios, fastest peer, GFLOP/s, share of peak.
        Peers in `off_isa` ran wider vectors than graphrnn's kernels: the fastest peer is taken
        among the others (`fastest_peer_any`: among all); `peers_over_peak` names the peers
        faster than the peak of graphrnn's ISA allows. `peak_fraction` is graphrnn's rate
        over the peak loop's, each round's pair of samples taken side by side, the median over
        the rounds (the same statistic of both, in the same seconds); `peak_fraction_best`:
        graphrnn's median rate over the loop's best sample in the row's rounds;
        `peak_fraction_run`: over `peak_gflops`, the run's best-of-many peak measured before
        the rows. Without a loop timed in the rounds, all are the last. `ratios` (time over
        graphrnn's) are paired the same way, where the rounds were (`paired_ratios`), else of
        the medians (`ratios_of_medians`, always given)."""
        out = asdict(self)
        g = self.ms.get("graphrnn")
        out["ratios_of_medians"] = {k: (v / g if g else None) for k, v in self.ms.items()
                                    if k != "graphrnn"}
        out["ratios"] = {k: self.paired_ratios.get(k, v) if g else None
                         for k, v in out["ratios_of_medians"].items()}
        peers = {k: v for k, v in self.ms.items() if k in PEER_NAMES}
        same = {k: v for k, v in peers.items() if k not in off_isa}
        for key, pool in (("fastest_peer", same), ("fastest_peer_any", peers)):
            fastest = min(pool, key=pool.get) if pool else None
            out[key] = fastest
            out["ratio_" + key] = out["ratios"][fastest] if fastest and g else None
        out["graphrnn_gflops"] = self.gflop / (g / 1e3) if g else None
        out["peak_fraction_run"] = (out["graphrnn_gflops"] / (peak_gflops * self.threads)
                                    if g and peak_gflops else None)
        out["peak_fraction_best"] = (out["graphrnn_gflops"] / (self.peak_gflops * self.threads)
                                     if g and self.peak_gflops else out["peak_fraction_run"])
        out["peak_fraction"] = (self.paired_peak / self.threads if g and self.paired_peak
                                else out["peak_fraction_best"])
        out["peers_over_peak"] = sorted(k for k, v in peers.items() if peak_gflops and
                                        self.gflop / (v / 1e3) > peak_gflops * self.threads)
        return out


def avx512_host() -> bool:
    """Whether this host runs AVX-512 (whatever ISA graphrnn's kernels are built for)."""
    return resolve_isa("host").name == "avx512"


# ----------------------------------------------------------------------------- measuring a row

def max_abs_diff(result: Any, reference: Any) -> float:
    """Forward: over the outputs; training: over the loss and every gradient."""
    if isinstance(reference, np.ndarray):
        return float(np.max(np.abs(np.asarray(result) - reference)))
    (loss, grads), (ref_loss, ref_grads) = result, reference
    return max([abs(float(loss) - float(ref_loss))]
               + [float(np.max(np.abs(grads[k] - ref_grads[k]))) for k in ref_grads])


def bench_row(cell: str, config: Config, mode: str, *, threads: int = 1, repeats: int = 7,
              budget_s: float = 30.0, min_rounds: int = 3, min_sample_s: float = MIN_SAMPLE_S,
              impls: tuple[str, ...] = IMPLS, peak: tuple[int, int] | None = None,
              short_row_s: float = 0.0) -> Row:
    """Time one row: every implementation warmed up (and checked) once, then interleaved;
    with `peak` (vector width, chains), the FMA peak loop too (Row.peak_gflops)."""
    b, t, d, h = config
    model = build_layer(cell, d, h)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, h)).astype(np.float32) if mode == "train" else None
    weights = {k.split(".", 1)[1]: v.copy() for k, v in model.named_parameters().items()}
    row = Row(cell, list(config), mode, threads, flops(cell, config, mode) / 1e9)
    row.products = products(model, config, GATES[cell])
    row.tile = step_tile(row.products)
    fns: dict[str, Callable[[], Any]] = {}
    results: dict[str, Any] = {}
    with ThreadPoolExecutor(1) as pool:
        for name in impls:
            if mode == "train" and name in FORWARD_ONLY:
                row.not_applicable[name] = FORWARD_ONLY[name]
            elif name == HAND and cell != "lstm":
                row.not_applicable[name] = "the hand-written cell is an LSTM"
            elif name == HAND and threads != 1:
                row.not_applicable[name] = "the hand-written LSTM is measured on one thread"
            elif name == "interpreter" and threads != 1:
                row.not_applicable[name] = "the numpy reference runs on one thread"
            elif name == "graphrnn" and threads != 1 and b < 2:
                row.not_applicable[name] = f"B={b}: no batch to split"
            elif name == "graphrnn":
                fns[name], convert = graphrnn_impl(model, mode, x, y, threads, pool)
            elif name == "interpreter":
                fns[name], convert = interpreter_impl(model, mode, x, y)
            elif name == HAND:
                hand = build_hand_lstm(d, h)
                load_builtin_weights(hand, weights)
                fns[name], convert = hand_impl(hand, mode, x, y)
            else:
                try:
                    peer = make_peer(name, cell, weights, threads)
                except PeerMissing as e:
                    row.missing[name] = str(e)
                    continue
                peer.prepare(x, y)
                fns[name], convert = peer_impl(peer, mode)
            if name in fns:
                results[name] = convert(fns[name]())    # warm-up: compiles, and is checked
        reference = results.get("graphrnn")
        if reference is not None:
            row.max_abs_diff = {k: max_abs_diff(v, reference) for k, v in results.items()
                                if k != "graphrnn"}
        if peak is not None:
            # the loop's call lasts as long as graphrnn's, so that a pair of samples spans the
            # same stretch of time: a 5 ms loop beside a 250 ms call reads a 1 ms hiccup as
            # 20% off the peak, and pairs read above 100%
            fns[PEAK], peak_gflop = peak_sampler(*peak, seconds=call_seconds(fns.get("graphrnn")))
        samples = interleaved(fns, repeats, budget_s, min_rounds, min_sample_s,
                              number=row.calls_per_sample,
                              after_return=row.after_return_ms, more_rounds_s=short_row_s)
        mine = samples.get("graphrnn", [])
        if peak is not None:
            loop = samples.pop(PEAK)
            # the best sample, as the peak's own measure takes: noise only slows a loop down,
            # and a pure FMA loop more than a kernel that also waits on memory
            row.peak_gflops = peak_gflop / min(w for w, _ in loop)
            if mine:        # graphrnn's rate over the loop's, round by round
                row.paired_peak = row.gflop / peak_gflop * paired_ratio(loop, mine)
            row.calls_per_sample.pop(PEAK, None)
        row.after_return_ms = {k: v * 1e3 for k, v in row.after_return_ms.items() if k != PEAK}
    for k, s in samples.items():
        row.ms[k] = statistics.median(w for w, _ in s) * 1e3
        row.min_ms[k] = min(w for w, _ in s) * 1e3
        row.cpu_per_wall[k] = sum(c for _, c in s) / max(sum(w for w, _ in s), 1e-12)
        row.rounds[k] = len(s)
    row.paired_ratios = {k: paired_ratio(s, mine) for k, s in samples.items()
                         if k != "graphrnn" and s and mine}
    return row


# ----------------------------------------------------------------------------- the run

def run(configs: list[Config] | None = None, cells: tuple[str, ...] = CELLS,
        modes: tuple[str, ...] = MODES, *, threads: int = 1, repeats: int = 7,
        budget_s: float = 30.0, min_rounds: int = 3, peak: bool = True, compile: bool = True,
        log: Callable[[str], None] | None = None, short_row_s: float = 0.0) -> dict:
    """The benchmark as a dict (what `--json` prints), measured in this process."""
    isa = current_isa()
    off = peers_off_isa(isa.name, avx512_host())
    result: dict[str, Any] = {"host": host(), "threads": threads, "repeats": repeats,
                              "isa": {"name": isa.name, "cpu": isa.cpu, "features": isa.features,
                                      "describe": isa.describe()},
                              "peers_isa": peers_isa_text(isa.name, off), "peers_off_isa": off}
    result["peak"] = measure_peak() if peak else None
    peak_gflops = result["peak"]["gflops"] if peak else None
    rows = []
    for cfg in configs or CONFIGS:
        for cell in cells:
            for mode in modes:
                row = bench_row(cell, tuple(cfg), mode, threads=threads, repeats=repeats,
                                budget_s=budget_s, min_rounds=min_rounds, short_row_s=short_row_s,
                                peak=tuple(result["peak"]["variant"]) if peak else None)
                rows.append(row.to_json(peak_gflops, off))
                if log:
                    log(f"{cell} {tuple(cfg)} {mode} x{threads}: " + ", ".join(
                        f"{k} {v:.3f} ms" for k, v in row.ms.items()))
    result["rows"] = rows
    result["compile"] = compile_times() if compile else None
    result["host"]["loadavg_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
    return result


# ----------------------------------------------------------------------------- command line

def _steps(text: str) -> int:
    if not text.strip().isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive number of steps")
    return int(text)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `graphrnn bench`."""
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--quick", action="store_true",
                        help=f"LSTM on {', '.join(map(str, QUICK_CONFIGS))}, 3 repeats, "
                             "the memory section at 8,400,32,32 (about a minute)")
    parser.add_argument("--peak", action="store_true",
                        help="only measure the single-core FMA peak (GFLOP/s)")
    parser.add_argument("--zoo", action="store_true",
                        help="time the model zoo (graphrnn.zoo) against PyTorch eager and JAX "
                             "instead of the RNN/LSTM/GRU layers")
    parser.add_argument("--target", metavar="ISA",
                        help="build the kernels for this ISA (host, avx512, avx2, generic, an "
                             "x86-64 level or LLVM features such as -avx512f; default "
                             "GRAPHRNN_TARGET_FEATURES, else the host); the peak is measured "
                             "with its vectors")
    parser.add_argument("--configs", nargs="+", type=parse_config, metavar="B,T,D,H",
                        help="configurations to run (default: "
                             + " ".join(",".join(map(str, c)) for c in CONFIGS) + ")")
    parser.add_argument("--cells", nargs="+", choices=CELLS, help="cells (default: all)")
    parser.add_argument("--modes", nargs="+", choices=MODES, help="default: both")
    parser.add_argument("--repeats", type=int,
                        help="interleaved rounds (default 7; quick 3; short rows: up to 4x)")
    parser.add_argument("--budget", type=float, metavar="SECONDS",
                        help="time per row after which slow implementations stop repeating "
                             "(after 3 rounds; default 30 s; quick: 4 s, after 1 round)")
    parser.add_argument("--no-two-threads", action="store_true",
                        help="skip the 2-thread rows (run on the largest configuration)")
    parser.add_argument("--no-memory", action="store_true",
                        help="skip the memory section (an LSTM training step at long T with "
                             "gradient checkpointing off and every k steps)")
    parser.add_argument("--memory-config", type=parse_config, metavar="B,T,D,H",
                        help="the memory section's LSTM (default 32,1000,128,128; "
                             "quick 8,400,32,32)")
    parser.add_argument("--checkpoints", nargs="+", type=_steps, metavar="K",
                        help="the memory section's checkpoint intervals (default 10 25 100; "
                             "quick 10 20 40)")
    parser.add_argument("--onnx", metavar="FILE", help="time one ONNX file, imported and "
                        "compiled, against ONNX Runtime on the same file (with --batch, --steps)")
    parser.add_argument("--batch", type=int, default=1, help="with --onnx: the batch size")
    parser.add_argument("--steps", type=int, default=100, help="with --onnx: other dims")
    parser.add_argument("--distributed", action="store_true",
                        help="instead: training over 1 and 2 MPI ranks and inference on 1 and "
                             "2 Dask workers, the scaling ratios (--no-bind: ranks unbound)")
    parser.add_argument("--no-bind", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-threads", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--child-extras", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-out", help=argparse.SUPPRESS)


def _child_argv(args: argparse.Namespace, threads: int, configs: list[Config],
                extras: bool) -> list[str]:
    argv = ["--child-threads", str(threads), "--configs", *(",".join(map(str, c)) for c in configs)]
    for opt in ("cells", "modes"):
        if getattr(args, opt):
            argv += [f"--{opt}", *getattr(args, opt)]
    argv += ["--repeats", str(args.repeats), "--budget", str(args.budget)]
    flags = [f for f, on in (("--child-extras", extras), ("--peak", args.peak),
                             ("--quick", args.quick)) if on]
    return argv + flags


def run_command(args: argparse.Namespace) -> int:
    """`graphrnn bench`: measure in child processes, then print the table or the JSON."""
    if args.distributed:
        return scaling.run_command(args)
    args.repeats = args.repeats or (3 if args.quick else 7)
    if getattr(args, "onnx", None):
        return in_child_onnx(args)
    if getattr(args, "target", None):
        resolve_isa(args.target)                # a bad name fails here, not in a child
        os.environ["GRAPHRNN_TARGET_FEATURES"] = args.target
    args.budget = args.budget or (4.0 if args.quick else 30.0)
    if args.child_threads:
        pin_to_cpus(args.child_threads)
        if args.peak:
            isa = current_isa()
            result: dict = {"peak": measure_peak(), "isa": {"name": isa.name, "cpu": isa.cpu,
                                                            "describe": isa.describe()},
                              "peers_isa": peers_isa_text(
                                  isa.name, peers_off_isa(isa.name, avx512_host()))}
        else:
            result = run(args.configs, tuple(args.cells or CELLS), tuple(args.modes or MODES),
                         threads=args.child_threads, repeats=args.repeats,
                         budget_s=args.budget, min_rounds=1 if args.quick else 3,
                         peak=True, compile=args.child_extras,
                         short_row_s=0.0 if args.quick else SHORT_ROW_S,
                         log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
        write_result(result, args.child_out)
        return 0
    if args.zoo:
        zoo = zoo_section(args)
        if zoo is not None:
            print(json.dumps(zoo, indent=2) if args.json else format_zoo(zoo))
        return 0 if zoo is not None else 1
    if args.quick:
        args.configs, args.cells = args.configs or QUICK_CONFIGS, args.cells or ["lstm"]
    configs = args.configs or CONFIGS
    isa = current_isa().name
    result = in_child(_child_argv(args, 1, configs, True), peer_isa_env(isa, ONE_THREAD))
    if result is None:
        return 1
    if args.peak:
        print(json.dumps(result, indent=2) if args.json else format_peak(result["peak"]))
        return 0
    if not args.no_two_threads:
        large = max(configs, key=lambda c: flops("lstm", c, "forward"))
        two = in_child(_child_argv(args, 2, [large], False), peer_isa_env(isa, TWO_THREADS))
        if two is None:
            return 1
        peak = result["peak"]["gflops"]
        for row in two["rows"]:        # %run: of the one-thread child's peak, as every row's
            g = row["graphrnn_gflops"]
            row["peak_fraction_run"] = g / (2 * peak) if g else None
        result["rows"] += two["rows"]
        result["two_threads_host"] = two["host"]
    result["memory"] = None if args.no_memory else memory_section(args)
    result["compile_models"] = bench_compile_section(args)
    print(json.dumps(result, indent=2) if args.json else
          format_table(result) + format_compile_section(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """`graphrnn bench [options]` (also `python -m graphrnn.bench.run`)."""
    parser = argparse.ArgumentParser(prog="graphrnn bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run_command(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
