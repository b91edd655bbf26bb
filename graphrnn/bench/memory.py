"""The memory section of `graphrnn bench`: an LSTM training step at long T, with gradient
checkpointing off and every k steps.

Training by BPTT keeps what the backward pass needs of every step, so its memory grows with
T; `gr.compile(model, loss=..., train=True, checkpoint=k)` keeps the loop's carries every k
steps only and recomputes each segment in the backward pass. For each variant (off, then each
k) one fresh child process builds the layer (`peers.build_layer`, seed 0), compiles the step,
then measures:

- `arena_bytes`: the native step's scratch arena (saved activations and temporaries) at T,
  and `arena_bytes_2t` at 2T (from the lowering of the 2T program, not run); their difference
  over T is the arena's growth per step. The layer returns h for every step, so its output,
  the loss's difference and the loss's gradient are [B, T, H] sequences whatever k: the arena
  stays O(T), with a smaller slope.
- `last_arena_bytes`, `last_arena_bytes_2t`: the same LSTM trained on its final state only
  (a sequence classifier's loss, `return_sequences=False`), from the lowering at T and 2T.
  Nothing but the saved activations grows with T there, so it shows the O(T) of BPTT against
  the O(T/k + k) of checkpointing.
- `step_peak_bytes`: how far the process's resident memory rose above what it held before
  the first call (arena, gradients, output included). The peak is the kernel's own VmHWM,
  reset through /proc/self/clear_refs after compiling (`method: "VmHWM"`); where that is
  unavailable, `ru_maxrss` (then only a lower bound: compiling may have gone higher). The C
  heap's free pages are given back first (malloc_trim), so that pages the step reuses from
  earlier allocations count too.
- `ms`: the median wall time of the following calls (at least `repeats`, and at least half
  a second's worth; `min_ms` too, `rounds` how many), `first_call_ms`, and
  `compile_s` (the compile, or its load from the disk cache).
- the loss and the gradients, which the parent compares with the non-checkpointed ones
  (`max_abs_diff`: over the loss and every gradient).

Children run one after the other, pinned to one CPU like the timed rows, so neither the
memory nor the times of one variant disturb another's.
"""
from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import statistics
import sys
import tempfile
import time
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .child import ONE_THREAD, in_child, pin_to_cpus, write_result
from .configs import Config, parse_config
from .peers import build_layer, named_grads

MEMORY_CONFIG: Config = (32, 1000, 128, 128)
MEMORY_CHECKPOINTS = (10, 25, 100)        # 25: the divisor of 1000 nearest sqrt(1000)
QUICK_MEMORY_CONFIG: Config = (8, 400, 32, 32)
QUICK_MEMORY_CHECKPOINTS = (10, 20, 40)
MIB = 1 << 20
MIN_TIMED_MS = 500.0        # short steps repeat past `repeats` until this much is timed


# ----------------------------------------------------------------------------- in the child

def _status_bytes(field: str) -> int | None:
    """A `kB` line of /proc/self/status (VmRSS, VmHWM) in bytes; None where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return None
    return None


def _maxrss_bytes() -> int:
    scale = 1 if sys.platform == "darwin" else 1024          # macOS reports bytes, Linux KiB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale


def _reset_peak() -> bool:
    """Reset the kernel's resident-memory high-water mark (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return _status_bytes("VmHWM") is not None


def _trim_heap() -> None:
    """Give the C heap's free pages back to the system (glibc), so that memory the step
    allocates is counted even when malloc would have reused pages freed earlier."""
    try:
        ctypes.CDLL(None).malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_of(call: Callable[[], Any]) -> tuple[Any, dict[str, Any]]:
    """Run `call` once: its value and the process's resident memory before and at its peak."""
    gc.collect()
    _trim_heap()
    if _reset_peak():
        method, before = "VmHWM", _status_bytes("VmRSS") or 0
        value = call()
        peak = _status_bytes("VmHWM") or 0
    else:
        method, before = "ru_maxrss", _maxrss_bytes()
        value = call()
        peak = _maxrss_bytes()
    return value, {"method": method, "rss_before_bytes": before, "peak_rss_bytes": peak,
                   "step_peak_bytes": max(peak - before, 0)}


def build_last_state(d: int, h: int, seed: int = 0) -> Any:
    """The LSTM layer of `peers.build_layer("lstm", d, h)` returning its final h only."""
    gr.manual_seed(seed)
    x = gr.Input("B", "T", d, name="x")
    rec = gr.nn.Recurrent(gr.cells.LSTM(d, h), return_sequences=False)
    return gr.gModule([x], [rec(x)], name="lstm_last")


def lowered_arena(step: Any, *inputs: np.ndarray) -> int:
    """Arena bytes of `step`'s program for these inputs, from its lowering (not compiled)."""
    contract = step.executable(step.signature(list(inputs))[0]).contract
    batch, steps = inputs[0].shape[:2]
    return 4 * contract.arena_floats(steps, batch)


def measure_variant(config: Config, checkpoint: int | None, repeats: int,
                    grads_path: str | None = None) -> dict[str, Any]:
    """One variant, measured in this process (meant to be a fresh one): see the module
    docstring. The gradients (by PyTorch weight name) go to `grads_path` (.npz)."""
    b, t, d, h = config
    model = build_layer("lstm", d, h)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, h)).astype(np.float32)
    t0 = time.perf_counter()
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, checkpoint=checkpoint)
    step.program_for([x, y])
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    loss, peak = peak_of(lambda: step(x, target=y))
    first_ms = (time.perf_counter() - t0) * 1e3
    grads = named_grads(model)
    times: list[float] = []
    while len(times) < repeats or (sum(times) < MIN_TIMED_MS and len(times) < 1000):
        t0 = time.perf_counter()
        step(x, target=y)
        times.append((time.perf_counter() - t0) * 1e3)
    arena = step.arena_bytes(x, target=y)
    x2, y2 = np.zeros((b, 2 * t, d), np.float32), np.zeros((b, 2 * t, h), np.float32)
    arena_2t = lowered_arena(step, x2, y2)
    last = gr.compile(build_last_state(d, h), loss=gr.MSECriterion(), train=True,
                      checkpoint=checkpoint)
    y_last = np.zeros((b, h), np.float32)
    last_arena = [lowered_arena(last, xs, y_last) for xs in (x, x2)]
    if grads_path:
        np.savez(grads_path, loss=np.float64(loss), **grads)
    return {"checkpoint": checkpoint, "arena_bytes": arena, "arena_bytes_2t": arena_2t,
            "arena_bytes_per_step": (arena_2t - arena) / t,
            "last_arena_bytes": last_arena[0], "last_arena_bytes_2t": last_arena[1], **peak,
            "ms": statistics.median(times) if times else None,
            "min_ms": min(times) if times else None, "first_call_ms": first_ms,
            "rounds": len(times), "compile_s": compile_s, "loss": float(loss)}


# ----------------------------------------------------------------------------- in the parent

def max_abs_diff(path: str, reference: str) -> float:
    """Over the loss and every gradient of two variants' .npz files."""
    with np.load(path) as a, np.load(reference) as r:
        return max(float(np.max(np.abs(a[k] - r[k]))) for k in r.files)


def run_memory(config: Config = MEMORY_CONFIG,
               checkpoints: tuple[int, ...] = MEMORY_CHECKPOINTS, *, repeats: int = 3,
               env: dict[str, str] | None = None,
               log: Callable[[str], None] | None = None) -> dict[str, Any]:
    """The memory section (what `--json` holds under "memory"): checkpoint off, then each k,
    every one measured by `measure_variant` in a fresh child process."""
    t0 = time.perf_counter()
    variants: list[dict[str, Any]] = []
    failed: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        paths: dict[int | None, str] = {}
        for k in (None, *checkpoints):
            path = os.path.join(tmp, f"grads_{k or 0}.npz")
            argv = ["--config", ",".join(map(str, config)), "--checkpoint", str(k or 0),
                    "--repeats", str(repeats), "--grads", path]
            record = in_child(argv, ONE_THREAD if env is None else env,
                               module="graphrnn.bench.memory")
            if record is None:
                failed.append("off" if k is None else f"k={k}")
                continue
            paths[k] = path
            variants.append(record)
            if log:
                log(f"memory {config} checkpoint {k or 'off'}: arena "
                    f"{record['arena_bytes'] / MIB:.1f} MiB, step peak "
                    f"{record['step_peak_bytes'] / MIB:.1f} MiB, {record['ms']:.1f} ms")
        for record in variants:
            k = record["checkpoint"]
            record["max_abs_diff"] = (max_abs_diff(paths[k], paths[None])
                                      if k is not None and None in paths else None)
    return {"config": list(config), "checkpoints": list(checkpoints), "t2": 2 * config[1],
            "repeats": repeats, "variants": variants, "failed": failed,
            "seconds": time.perf_counter() - t0}


def memory_section(args: argparse.Namespace) -> dict[str, Any]:
    """The section for `graphrnn bench`'s options (--memory-config, --checkpoints, --quick)."""
    config = args.memory_config or (QUICK_MEMORY_CONFIG if args.quick else MEMORY_CONFIG)
    ks = args.checkpoints or (QUICK_MEMORY_CHECKPOINTS if args.quick else MEMORY_CHECKPOINTS)
    return run_memory(config, tuple(ks), repeats=5 if args.quick else 3,
                      log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))


# ----------------------------------------------------------------------------- command line

def main(argv: list[str] | None = None) -> int:
    """The child: `python -m graphrnn.bench.memory --config B,T,D,H --checkpoint K --out F`."""
    parser = argparse.ArgumentParser(prog="python -m graphrnn.bench.memory",
                                     description="one variant of the memory section")
    parser.add_argument("--config", type=parse_config, required=True, metavar="B,T,D,H")
    parser.add_argument("--checkpoint", type=int, default=0, help="k (0: off)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--grads", help=".npz file for the loss and the gradients")
    parser.add_argument("--child-out", help="JSON file for the result (default: stdout)")
    args = parser.parse_args(argv)
    pin_to_cpus(1)
    record = measure_variant(args.config, args.checkpoint or None, args.repeats, args.grads)
    write_result(record, args.child_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
