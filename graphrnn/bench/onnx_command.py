"""`graphrnn bench --onnx FILE`: the parent's side, which needs neither onnx nor onnxruntime
imported: it runs graphrnn.bench.onnx_file in a child on one thread and prints its result."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .child import ONE_THREAD, in_child


def format_result(r: dict[str, Any]) -> str:
    wall, cpu = r["ms"], r["cpu_ms"]
    return (f"{r['file']}  B={r['batch']} T={r['steps']}, one thread each, "
            f"{r['rounds']['graphrnn']} rounds, medians:\n"
            f"  wall: graphrnn {wall['graphrnn']:.3f} ms, onnxruntime {wall['onnxruntime']:.3f} ms"
            f" ({r['ratio']:.2f}x)\n"
            f"  cpu:  graphrnn {cpu['graphrnn']:.3f} ms, onnxruntime {cpu['onnxruntime']:.3f} ms"
            f" ({r['cpu_ratio']:.2f}x)\n"
            f"  max |graphrnn - onnxruntime| {r['max_abs_diff']:.1e}")


def run_command(args: argparse.Namespace) -> int:
    """Measure in a child process on one pinned CPU, then print one line (or JSON)."""
    argv = ["--onnx", args.onnx, "--batch", str(args.batch), "--steps", str(args.steps),
            "--repeats", str(args.repeats or 7), "--budget", str(args.budget or 30.0)]
    result = in_child(argv, ONE_THREAD, module="graphrnn.bench.onnx_file")
    if result is None:
        return 1
    print(json.dumps(result, indent=2) if args.json else format_result(result))
    return 0


__all__ = ["run_command", "format_result"]
