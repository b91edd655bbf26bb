"""`graphrnn export MODEL -o model.onnx`: the command-line door to `gr.onnx.export`."""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..ir import LoweringError
from .export import export


def op_types(graph: Any) -> list[str]:
    """The op types of a graph's nodes and of those in its subgraphs (If, Scan, Loop)."""
    kinds = []
    for n in graph.node:
        kinds.append(n.op_type)
        for a in n.attribute:
            if a.HasField("g"):
                kinds += op_types(a.g)
    return kinds


def run(args: argparse.Namespace, model: Any) -> int:
    """Write the ONNX file; prints what was written, or one error line (status 2)."""
    try:
        proto = export(model, args.output)
    except (LoweringError, ImportError) as e:
        print(f"graphrnn export: error: {e}", file=sys.stderr)
        return 2
    kinds = sorted(set(op_types(proto.graph)))
    print(f"{args.output}: ONNX opset {proto.opset_import[0].version}, "
          f"{len(proto.graph.node)} nodes ({', '.join(kinds)})")
    return 0


__all__ = ["run"]
