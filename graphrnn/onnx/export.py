"""`gr.onnx.export(model, path)`: a graphrnn model as an ONNX file that ONNX Runtime runs.

Built-in recurrent layers become ONNX `RNN`/`LSTM`/`GRU` nodes, user-written loops `Scan`,
every other op its ONNX counterpart (export_ops.py); batch and time stay dynamic axes
(`dim_param` "B", "T"), per-row lengths become `sequence_lens`. The model is exported in
inference mode (dropout is the identity) with its current weights as initializers.
"""
from __future__ import annotations

import os
from typing import Any

from ..ir import GraphError
from ..module import graph_of
from ..infer import infer_graph
from . import export_math, export_ops, export_rnn
from .emitter import OPSET, Emitter, emit_graph

# the modules whose import fills EXPORT_RULES
RULE_MODULES = (export_ops, export_math, export_rnn)

IR_VERSION = 8


def to_onnx(model: Any, name: str | None = None, *, guard_empty: bool = True) -> Any:
    """The ONNX ModelProto of `model` (a gModule or Graph with typed inputs).

    With `guard_empty` (the default) each recurrent node sits in an `If` that returns the
    initial states and empty outputs for a batch of 0 rows or sequences of 0 steps, which
    ONNX Runtime's own RNN and Scan kernels abort on; False gives bare top-level nodes."""
    graph = graph_of(model)
    untyped = [x.name or f"input {i}" for i, x in enumerate(graph.inputs) if x.type is None]
    if untyped:
        raise GraphError(f"onnx export: the inputs {untyped} have no declared shape; declare "
                         "them with gr.Input(\"B\", \"T\", features, ...)")
    graph = infer_graph(graph, [x.type for x in graph.inputs])
    em = Emitter()
    em.guard = guard_empty
    in_names = [em.fresh(x.name or f"input_{i}") for i, x in enumerate(graph.inputs)]
    em.bind_symbols(in_names, [x.type for x in graph.inputs])
    outs = emit_graph(em, graph, in_names)
    out_names = [em.one("Identity", [got], f"output_{i}") for i, got in enumerate(outs)]
    h = em.helper
    g = h.make_graph(em.nodes, name or getattr(model, "prefix", "graphrnn"),
                     [em.value_info(nm, x.type) for nm, x in zip(in_names, graph.inputs)],
                     [em.value_info(nm, y.type) for nm, y in zip(out_names, graph.outputs)],
                     initializer=em.initializers)
    proto = h.make_model(g, producer_name="graphrnn",
                         opset_imports=[h.make_opsetid("", OPSET)])
    proto.ir_version = IR_VERSION
    return proto


def export(model: Any, path: str | os.PathLike, *, check: bool = True,
           guard_empty: bool = True) -> Any:
    """Write `model` as an ONNX file at `path`; returns the ModelProto (`guard_empty`: see
    `to_onnx`).

    With `check`, the file is first validated by `onnx.checker.check_model(full_check=True)`.
    Raises LoweringError naming the node for an op without an ONNX counterpart, GraphError
    for inputs without a declared shape.
    """
    proto = to_onnx(model, guard_empty=guard_empty)
    onnx = Emitter().onnx
    if check:
        onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))
    return proto


__all__ = ["export", "to_onnx"]
