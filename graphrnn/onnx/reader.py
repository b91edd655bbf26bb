"""`load`: an ONNX model as a gModule, its initializers the parameters of the flat vector.

The driver: check and read the file (proto.py), declare the graph inputs (symbolic dims stay
symbolic: one program for every batch size and length), import the nodes through the rule
table (importer.py) and close the outputs into a gModule.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from ..gmodule import gModule
from ..ir import toposort
from . import load_logic, load_math, load_ops, load_rnn, load_scan, load_shape
from .importer import Importer, build_graph
from .errors import OnnxImportError
from .proto import opset_version, read_model, tensor_to_array

# importing these registers their rules in IMPORT_RULES
RULE_MODULES = (load_logic, load_math, load_ops, load_rnn, load_scan, load_shape)


def load(source: Any, name: str | None = None,
         constants: dict[str, Any] | None = None) -> gModule:
    """An ONNX model (a path, bytes or an `onnx.ModelProto`) as a gModule.

    Inputs and outputs are the ONNX graph's, in its order and axis layout (float inputs are
    float32, integer inputs int64; an input no output depends on, as one read only by Shape,
    is dropped); symbolic dims stay symbolic, so `gr.compile` makes one
    program for every batch size and sequence length. Float initializers become parameters
    of the flat vector under their initializer names (`named_parameters()`); a recurrent
    op's weights are stored per direction (`W.forward`, `W.reverse`) when it has two.
    `constants` binds graph inputs to fixed values (numpy arrays): they are no longer inputs
    of the gModule, and ops that need known values (a Reshape's shape) can read them.
    Layouts: graphrnn has no transpose of symbolic axes yet, so a time-major input that a
    recurrent op reads batch-first (ONNX's default layout, dynamic [T, B, F]) is declared
    batch-first, and such an output handed out as computed: `model.onnx_layouts` holds
    `{"inputs": {name: perm}, "outputs": {name: perm}}`, where the model's input is
    `np.transpose(onnx_input, perm)` and the ONNX output `np.transpose(model_output, perm)`
    (empty dicts for models that need none, as PyTorch's batch_first exports).
    Raises OnnxImportError naming the node for anything unsupported or malformed.
    """
    model = read_model(source)
    layouts: dict[str, tuple[int, ...]] = {}
    while True:
        try:
            return _import(model, name, constants or {}, layouts)
        except OnnxImportError as error:
            if error.needs_layout is None or error.needs_layout[0] in layouts:
                raise
            layouts[error.needs_layout[0]] = error.needs_layout[1]


def _import(model: Any, name: str | None, constants: dict[str, Any],
            layouts: dict[str, tuple[int, ...]]) -> gModule:
    g = model.graph
    inits = {}
    for t in g.initializer:
        inits[t.name] = tensor_to_array(t, "initializer")
    imp = Importer(opset_version(model), inits)
    for k, v in constants.items():
        if k not in {vi.name for vi in g.input}:
            raise OnnxImportError(f"constants: {k!r} is not an input of the graph")
        v = np.asarray(v)
        imp.values[k] = v.astype(np.int64 if v.dtype.kind in "iub" else np.float32)
    inputs = []
    for vi in g.input:
        if vi.name in imp.values:
            continue          # an initializer listed as an input (old exporters): a weight
        v = imp.declare_input(vi, layouts.get(vi.name))
        imp.values[vi.name] = v
        inputs.append(v.node)
    outputs = build_graph(imp, g, inputs)
    reached = {id(n) for n in toposort(outputs)}
    inputs = [x for x in inputs if id(x) in reached]   # e.g. read by Shape only
    for o, node in zip(g.output, outputs):
        node.annotate(name=o.name)
    model = gModule(inputs, outputs, name=name or (g.name or "onnx"))
    model.onnx_layouts = {"inputs": {k: p for k, p in layouts.items()
                                     if any(x.name == k for x in inputs)},
                          "outputs": dict(imp.output_layouts)}
    return model


__all__ = ["load"]
