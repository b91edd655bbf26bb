"""The tiles `graphrnn bench` reports: how the ISA the kernels are built for cuts a row's
products (compiler/codegen/tiling.py), read from the optimised graph of the layer.

    products(model, (B, T, D, H), gates) -> [{"where": "step", "k": .., "n": .., "rows": ..,
                                               "tile": "3x4x8 kc256"}, ...]

A tile "MRxVxW kcK" is MR rows times V vectors of W floats in registers; kc, when the panel is
walked in blocks of K k-rows to stay in L1. "step" is a product inside the time loop (rows:
the batch), "hoisted" one before it over every step (rows: B * T).
"""
from __future__ import annotations

from typing import Any

from ..compiler.codegen.tiling import GemmPlan, make_plan
from ..compiler.pipeline import prepare
from ..ir import Op, TensorType


def describe(p: GemmPlan) -> str:
    """"MRxVxW" (rows, vectors, floats per vector) and " kcK" with a blocked reduction."""
    return f"{p.mr}x{p.segments * p.nv}x{p.vw}" + (f" kc{p.kc}" if p.kc else "")


def products(model: Any, config: tuple[int, int, int, int], gates: int) -> list[dict]:
    """Every matmul of the layer's forward graph at `config` with the plan it gets."""
    b, t, d, _ = config
    graph, _ = prepare(model.graph, [TensorType((b, t, d), "float32")])
    out = []
    for node, owner in graph.walk():
        if node.op != Op.MATMUL:
            continue
        w = node.inputs[1].type.shape
        k, n = (w[1], w[0]) if node.attrs.get("transpose_b") else w
        step = owner is not graph
        rows = b if step else b * t
        segments = gates if step and n % gates == 0 else 1
        p = make_plan(k, n, rows, segments=segments, transpose=bool(node.attrs.get("transpose_b")))
        out.append({"where": "step" if step else "hoisted", "k": k, "n": n, "rows": rows,
                    "tile": describe(p)})
    return out


def step_tile(rows: list[dict]) -> str:
    """The tile of the step product (the one the recurrence waits on), "-" without one."""
    step = [r["tile"] for r in rows if r["where"] == "step"]
    return step[0] if step else "-"


__all__ = ["describe", "products", "step_tile"]
