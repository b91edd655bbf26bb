"""The human-readable report of `graphrnn bench`: one block per (threads, mode)."""
from __future__ import annotations

from typing import Any

from .configs import HAND, IMPLS, MODES

DIFFERS = 1e-3      # float32 peers agree to ~1e-6; beyond this they compute another function


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _cell(row: dict, name: str, off_isa: Any = ()) -> str:
    if name in row["ms"]:
        ratio = row["ratios"].get(name)
        return (_ms(row["ms"][name]) + ("" if ratio is None else f" ({ratio:.2f}x)")
                + ("*" if name in off_isa else ""))
    if name in row["missing"]:
        return "missing"
    return "n/a" if name in row["not_applicable"] else "-"


def format_rows(rows: list[dict], title: str, off_isa: Any = ()) -> list[str]:
    """One block of the table: graphrnn's time and GFLOP/s, then each other implementation."""
    others = [k for k in IMPLS[1:] if any(k in r["ms"] or k in r["missing"] for r in rows)]
    head = (f"{'cell':<5} {'(B, T, D, H)':<20} {'GFLOP':>7} {'graphrnn ms':>12} {'GFLOP/s':>8} "
            f"{'%peak':>5} {'%run':>4} {'tile':>12}" + "".join(f" {k:>19}" for k in others)
            + f" {'vs fastest peer':>22}")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        if "graphrnn" in r["ms"]:
            g = (f"{_ms(r['ms']['graphrnn']):>12} {r['graphrnn_gflops']:>8.1f} "
                 + "".join(f" {100 * r[k]:>{w - 1}.0f}%" if r.get(k) else f" {'':>{w}}"
                           for k, w in (("peak_fraction", 5), ("peak_fraction_run", 4)))[1:])
        else:
            why = r["not_applicable"].get("graphrnn", "missing")
            g = f"{'n/a (' + why + ')':>32}"
        g += f" {r.get('tile', '-'):>12}"
        fastest = (f"{r['fastest_peer']} {r['ratio_fastest_peer']:.2f}x"
                   if r["ratio_fastest_peer"] else "-")
        lines.append(f"{r['cell']:<5} {str(tuple(r['config'])):<20} {r['gflop']:>7.4f} {g}"
                     + "".join(f" {_cell(r, k, off_isa):>19}" for k in others)
                     + f" {fastest:>22}")
    return lines


def format_table(result: dict) -> str:
    """The human-readable report of a `run` (plus the 2-thread rows, if any)."""
    h, peak = result["host"], result["peak"]
    v = h["versions"]
    lines = [f"graphrnn bench: {h['cpu']} ({h['llvm_cpu']}"
             f"{', AVX-512' if h['avx512f'] else ''}), {h['logical_cpus']} logical CPUs, "
             f"load average {h['loadavg'][0]:.1f} at start, {h['loadavg_end'][0]:.1f} at end",
             "versions: " + ", ".join(f"{k} {v[k] or 'missing'}" for k in v)]
    if result.get("isa"):
        lines.append(f"kernels built for {result['isa']['describe']}; tile: the step "
                     "product's, MR rows x vectors x floats per vector (kc: k-rows per block); "
                     f"peers' ISA: {result.get('peers_isa', 'the host')}")
    if peak:
        lines.append(f"single-core peak {peak['gflops']:.1f} GFLOP/s ({peak['best']} llvm.fma "
                     "chains, best of 60 1-ms runs before the rows): %run is of that; %peak "
                     "is the median over the row's interleaved rounds of graphrnn's rate / the "
                     "same loop's rate in that round (times the threads)")
    lines.append("median ms of interleaved repeats; (Nx) = that time / graphrnn's time in the "
                 "same round, the median over the rounds: above 1 means graphrnn is faster")
    off = result.get("peers_off_isa") or {}
    for name, why in off.items():
        lines.append(f"* {name} ran wider vectors than graphrnn's kernels ({why}); "
                     "'vs fastest peer' leaves it out")
    for threads in sorted({r["threads"] for r in result["rows"]}):
        for mode in MODES:
            rows = [r for r in result["rows"] if r["threads"] == threads and r["mode"] == mode]
            if rows:
                what = ("forward" if mode == "forward" else
                        "training step (forward + MSE + backward)")
                split = ", graphrnn splits the batch over 2 concurrent calls" if threads > 1 \
                    else ""
                lines += [""] + format_rows(rows, f"{what}, {threads} thread"
                                           f"{'s' if threads > 1 else ''}{split}", off)
    diffs: dict[str, float] = {}
    for r in result["rows"]:
        for k, d in r["max_abs_diff"].items():
            diffs[k] = max(diffs.get(k, 0.0), d)
    if diffs:
        lines += ["", "same function: max abs diff from graphrnn (outputs; loss and gradients) "
                  + ", ".join(f"{k} {d:.1e}" for k, d in diffs.items())]
    spans: dict[str, list[float]] = {}
    for r in result["rows"]:
        for k, c in r["cpu_per_wall"].items():
            spans.setdefault(k, []).append(c / r["threads"])
    if spans:
        lines.append("CPU time / wall time per thread asked (1.0: the threads ran undisturbed; "
                     "below: the cores were shared) " + ", ".join(
                         f"{k} {min(v):.2f}-{max(v):.2f}" for k, v in spans.items()))
    after: dict[str, float] = {}
    for r in result["rows"]:
        for k, v in r.get("after_return_ms", {}).items():
            after[k] = max(after.get(k, 0.0), v)
    if any(v >= 0.05 for v in after.values()):
        lines.append("CPU time other threads ran after a call returned, waited out before the "
                     "next sample and not counted (ms per call, the largest row): " + ", ".join(
                         f"{k} {v:.2f}" for k, v in after.items() if v >= 0.05))
    for r in result["rows"]:
        for k, d in r["max_abs_diff"].items():
            if d > DIFFERS:
                lines.append(f"WARNING: {k} differs from graphrnn by {d:.2g} on {r['cell']} "
                             f"{tuple(r['config'])} {r['mode']} ({r['threads']} threads)")
    hand = _by_mode(result["rows"])
    if hand:
        lines.append(f"{HAND} (the LSTM written by hand from primitives) / built-in cell, "
                     "median over the rows: " + ", ".join(
                         f"{m} {_median(v):.2f}x" for m, v in hand.items()))
    missing = {k: why for r in result["rows"] for k, why in r["missing"].items()}
    for k, why in missing.items():
        lines.append(f"missing peer {k}: {why} (pip install -e '.[bench]')")
    c = result["compile"]
    if c:
        lines += ["", f"cold compile (one LSTM layer, D=32 H=64): {c['cold_compile_s'] * 1e3:8.1f}"
                  f" ms forward, {c['train_cold_compile_s'] * 1e3:.1f} ms training step",
                  f"disk-cache load:                          {c['disk_cache_load_s'] * 1e3:8.1f}"
                  " ms",
                  f"compile at T=10 / T=10000:                {c['compile_T10_s'] * 1e3:8.1f} / "
                  f"{c['compile_T10000_s'] * 1e3:.1f} ms"]
    if result.get("memory"):
        lines += [""] + format_memory(result["memory"])
    return "\n".join(lines)


def _by_mode(rows: list[dict]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {}
    for r in rows:
        if HAND in r["ratios"]:
            out.setdefault(r["mode"], []).append(r["ratios"][HAND])
    return out


def _median(values: list[float]) -> float:
    v = sorted(values)
    return (v[(len(v) - 1) // 2] + v[len(v) // 2]) / 2


def format_memory(memory: dict) -> list[str]:
    """The memory section: one line per variant (checkpointing off, then every k steps)."""
    mib = float(1 << 20)
    t, t2 = memory["config"][1], memory["t2"]
    lines = [f"training memory: LSTM (B, T, D, H) = {tuple(memory['config'])}, one training "
             "step in a fresh process per variant; checkpoint=k saves the carries every k "
             "steps and recomputes the segments",
             f"{'checkpoint':<10} {'arena MiB':>10} {f'at T={t2}':>10} {'KiB/step':>9} "
             f"{'step peak MiB':>14} {'step ms':>8} {'vs off':>7} {'grad diff':>10} "
             f"{'last-state arena MiB':>21}"]
    lines.append("-" * len(lines[-1]))
    off = next((v["ms"] for v in memory["variants"] if v["checkpoint"] is None), None)
    for v in memory["variants"]:
        k = "off" if v["checkpoint"] is None else f"k={v['checkpoint']}"
        ratio = f"{v['ms'] / off:.2f}x" if off and v["ms"] else "-"
        diff = "-" if v.get("max_abs_diff") is None else f"{v['max_abs_diff']:.1e}"
        last = f"{v['last_arena_bytes'] / mib:.1f} / {v['last_arena_bytes_2t'] / mib:.1f}"
        lines.append(f"{k:<10} {v['arena_bytes'] / mib:>10.1f} {v['arena_bytes_2t'] / mib:>10.1f}"
                     f" {v['arena_bytes_per_step'] / 1024:>9.1f} "
                     f"{v['step_peak_bytes'] / mib:>14.1f} {_ms(v['ms']):>8} {ratio:>7} "
                     f"{diff:>10} {last:>21}")
    methods = {v["method"] for v in memory["variants"]}
    lines += [f"arena: the native step's scratch (saved activations + temporaries) at T={t} and "
              f"{t2}, KiB/step its growth per step; step peak: the rise of the process's "
              f"resident memory over the first call ({', '.join(sorted(methods))}); grad diff: "
              "max abs diff of the loss and gradients from checkpoint off",
              f"last-state arena: the same LSTM with a loss on its final state only, at T={t} / "
              f"{t2} (from the lowering): without the [B, T, H] output sequence, what BPTT "
              "saves is O(T), with checkpointing O(T/k + k)"]
    for what in memory.get("failed", []):
        lines.append(f"WARNING: the memory variant {what} failed (its error is above)")
    return lines


__all__ = ["format_table", "format_rows", "format_memory"]
