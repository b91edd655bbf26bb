"""`graphrnn bench --onnx FILE`: the parent's side, which needs neither onnx nor onnxruntime
imported: it runs graphrnn.bench.onnx_file in a child on one thread and prints its result."""
from __future__ import annotations

import argparse
import json
from typing import Any

from .child import ONE_THREAD, in_child


def format_result(r: dict[str, Any]) -> str:
    return (f"{r['file']}  B={r['batch']} T={r['steps']}: graphrnn {r['ms']['graphrnn']:.3f} ms,"
            f" onnxruntime {r['ms']['onnxruntime']:.3f} ms ({r['ratio']:.2f}x), max |diff| "
            f"{r['max_abs_diff']:.1e}, {r['rounds']['graphrnn']} rounds, one thread each")


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
