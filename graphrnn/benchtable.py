"""The human-readable report of `graphrnn bench`: one block per (threads, mode)."""
from __future__ import annotations

from .bench import IMPLS, MODES

DIFFERS = 1e-3      # float32 peers agree to ~1e-6; beyond this they compute another function


def _ms(v: float) -> str:
    return f"{v:.3f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _cell(row: dict, name: str) -> str:
    if name in row["ms"]:
        ratio = row["ratios"].get(name)
        return _ms(row["ms"][name]) + ("" if ratio is None else f" ({ratio:.2f}x)")
    if name in row["missing"]:
        return "missing"
    return "n/a" if name in row["not_applicable"] else "-"


def format_rows(rows: list[dict], title: str) -> list[str]:
    """One block of the table: graphrnn's time and GFLOP/s, then each other implementation."""
    others = [k for k in IMPLS[1:] if any(k in r["ms"] or k in r["missing"] for r in rows)]
    head = (f"{'cell':<5} {'(B, T, D, H)':<20} {'GFLOP':>7} {'graphrnn ms':>12} {'GFLOP/s':>8} "
            f"{'%peak':>5}" + "".join(f" {k:>19}" for k in others) + f" {'vs fastest peer':>22}")
    lines = [title, head, "-" * len(head)]
    for r in rows:
        if "graphrnn" in r["ms"]:
            g = (f"{_ms(r['ms']['graphrnn']):>12} {r['graphrnn_gflops']:>8.1f} "
                 + (f"{100 * r['peak_fraction']:>4.0f}%" if r["peak_fraction"] else f"{'':>5}"))
        else:
            why = r["not_applicable"].get("graphrnn", "missing")
            g = f"{'n/a (' + why + ')':>27}"
        fastest = (f"{r['fastest_peer']} {r['ratio_fastest_peer']:.2f}x"
                   if r["ratio_fastest_peer"] else "-")
        lines.append(f"{r['cell']:<5} {str(tuple(r['config'])):<20} {r['gflop']:>7.4f} {g}"
                     + "".join(f" {_cell(r, k):>19}" for k in others) + f" {fastest:>22}")
    return lines


def format_table(result: dict) -> str:
    """The human-readable report of a `run` (plus the 2-thread rows, if any)."""
    h, peak = result["host"], result["peak"]
    v = h["versions"]
    lines = [f"graphrnn bench: {h['cpu']} ({h['llvm_cpu']}"
             f"{', AVX-512' if h['avx512f'] else ''}), {h['logical_cpus']} logical CPUs, "
             f"load average {h['loadavg'][0]:.1f} at start, {h['loadavg_end'][0]:.1f} at end",
             "versions: " + ", ".join(f"{k} {v[k] or 'missing'}" for k in v)]
    if peak:
        lines.append(f"single-core peak {peak['gflops']:.1f} GFLOP/s ({peak['best']} llvm.fma "
                     "chains); %peak is of that, times the threads")
    lines.append("median ms of interleaved repeats; (Nx) = that time / graphrnn's time, above 1 "
                 "means graphrnn is faster")
    for threads in sorted({r["threads"] for r in result["rows"]}):
        for mode in MODES:
            rows = [r for r in result["rows"] if r["threads"] == threads and r["mode"] == mode]
            if rows:
                what = ("forward" if mode == "forward" else
                        "training step (forward + MSE + backward)")
                split = ", graphrnn splits the batch over 2 concurrent calls" if threads > 1 \
                    else ""
                lines += [""] + format_rows(rows, f"{what}, {threads} thread"
                                           f"{'s' if threads > 1 else ''}{split}")
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
    for r in result["rows"]:
        for k, d in r["max_abs_diff"].items():
            if d > DIFFERS:
                lines.append(f"WARNING: {k} differs from graphrnn by {d:.2g} on {r['cell']} "
                             f"{tuple(r['config'])} {r['mode']} ({r['threads']} threads)")
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
    return "\n".join(lines)


__all__ = ["format_table", "format_rows"]
