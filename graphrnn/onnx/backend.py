"""graphrnn as an ONNX backend (`onnx.backend.base.Backend`), run by ONNX's own node tests.

`InterpretedBackend.prepare(model)` imports the model and runs it with the reference
interpreter; `CompiledBackend` compiles it to native code first (one program for the model).
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import onnx
from onnx.backend.base import Backend, BackendRep

from ..gradients import compile as compile_model
from ..gmodule import gModule
from .errors import OnnxImportError
from .reader import load
from .proto import read_model


class GraphrnnRep(BackendRep):
    """An imported model, ready to run on lists of numpy inputs in the ONNX graph's order.

    Graph inputs the import needs as known values (a Reshape's shape, Slice's starts: graphrnn
    compiles shapes) are bound to the values of the run, one imported model per such values.
    """

    def __init__(self, model: onnx.ModelProto, compiled: bool):
        self.proto, self.compiled = model, compiled
        self.names = [vi.name for vi in model.graph.input
                      if vi.name not in {t.name for t in model.graph.initializer}]
        self.bound: list[str] = []
        self.models: dict[bytes, tuple[gModule, Any]] = {}
        try:
            self._model({})       # unsupported ops fail here, at prepare
        except OnnxImportError as e:
            if e.needs_constant is None:
                raise

    def _model(self, given: dict[str, np.ndarray]) -> tuple[gModule, Any]:
        fixed = {k: given[k] for k in self.bound}
        key = b"".join(k.encode() + v.tobytes() + str(v.shape).encode()
                       for k, v in fixed.items())
        if key not in self.models:
            while True:
                try:
                    model = load(self.proto, constants=fixed)
                    break
                except OnnxImportError as e:
                    if e.needs_constant not in given or e.needs_constant in fixed:
                        raise
                    self.bound.append(e.needs_constant)
                    fixed[e.needs_constant] = given[e.needs_constant]
            key = b"".join(k.encode() + v.tobytes() + str(v.shape).encode()
                           for k, v in fixed.items())
            self.models[key] = (model, compile_model(model) if self.compiled else model)
        return self.models[key]

    def run(self, inputs: Any, **kwargs: Any) -> tuple[np.ndarray, ...]:
        if isinstance(inputs, np.ndarray):
            inputs = [inputs]
        if not isinstance(inputs, dict):
            inputs = dict(zip(self.names, inputs))
        given = {k: np.asarray(v) for k, v in inputs.items()}
        model, fn = self._model(given)
        layouts = model.onnx_layouts
        out = fn(*[np.transpose(given[x.name], layouts["inputs"][x.name])
                   if x.name in layouts["inputs"] else given[x.name] for x in model.inputs])
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        outs = [np.transpose(o, layouts["outputs"][vi.name])
                if vi.name in layouts["outputs"] else o
                for vi, o in zip(self.proto.graph.output, outs)]
        return tuple(np.asarray(o).astype(_np_type(vi, o), copy=False)
                     for vi, o in zip(self.proto.graph.output, outs))


def _np_type(vi: Any, value: Any) -> Any:
    """The numpy dtype the graph declares for an output (int32 stays int32)."""
    elem = vi.type.tensor_type.elem_type
    return onnx.helper.tensor_dtype_to_np_dtype(elem) if elem else np.asarray(value).dtype


class InterpretedBackend(Backend):
    """Import with `graphrnn.onnx.load`, run with the numpy reference interpreter."""
    compiled = False

    @classmethod
    def prepare(cls, model: Any, device: str = "CPU", **kwargs: Any) -> GraphrnnRep:
        super().prepare(model, device, **kwargs)
        if not isinstance(model, onnx.ModelProto):
            model = read_model(model)
        return GraphrnnRep(model, cls.compiled)

    @classmethod
    def supports_device(cls, device: str) -> bool:
        return device == "CPU"

    @classmethod
    def run_model(cls, model: Any, inputs: Any, device: str = "CPU",
                  **kwargs: Any) -> tuple[np.ndarray, ...]:
        return cls.prepare(model, device, **kwargs).run(inputs)

    @classmethod
    def run_node(cls, node: Any, inputs: Sequence[Any], device: str = "CPU",
                 outputs_info: Any = None, **kwargs: Any) -> tuple[np.ndarray, ...]:
        """One node run on `inputs`, as a one-node model with those inputs' types."""
        ins = [onnx.helper.make_tensor_value_info(
            name, onnx.helper.np_dtype_to_tensor_dtype(np.asarray(x).dtype), np.shape(x))
            for name, x in zip(node.input, inputs)]
        outs = [onnx.helper.make_empty_tensor_value_info(o) for o in node.output]
        graph = onnx.helper.make_graph([node], "node", ins, outs)
        return cls.run_model(onnx.helper.make_model(graph), inputs, device)


class CompiledBackend(InterpretedBackend):
    """Import with `graphrnn.onnx.load`, run as native code compiled by `gr.compile`."""
    compiled = True


__all__ = ["InterpretedBackend", "CompiledBackend", "GraphrnnRep"]
