"""The state of one ONNX import and the rule table its operators are dispatched through.

`IMPORT_RULES[op_type](importer, onnx_node) -> [value per output]`; the rules live in
load_ops.py, load_rnn.py and load_scan.py. Values are numpy arrays while they are known at
import time (shapes, constants) and lazily transposed nodes once they depend on an input
(values.py). `build_graph` walks a graph's nodes in dependency order through the table.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np
import onnx

from .. import ops
from ..ir import Dim, Node, Op, Param
from ..store import adopt
from .errors import OnnxImportError, node_label
from .proto import MAX_TENSOR_BYTES, sorted_nodes
from .values import Lazy, identity, lazy, materialize

Value = Any            # np.ndarray (known at import time) or Lazy
Rule = Callable[["Importer", Any], list]

IMPORT_RULES: dict[str, Rule] = {}


def rule(*op_types: str) -> Callable[[Rule], Rule]:
    """Register an import rule for ONNX operators `op_types`."""
    def register(fn: Rule) -> Rule:
        for t in op_types:
            IMPORT_RULES[t] = fn
        return fn
    return register


class Importer:
    """The state of one import: values by name, parameters by initializer, the opset."""

    def __init__(self, opset: int, initializers: dict[str, np.ndarray], prefix: str = "onnx"):
        self.opset = opset
        self.values: dict[str, Value] = dict(initializers)
        self.initializers = initializers
        self.prefix = prefix
        self.params: dict[tuple, Node] = {}
        self.tokens: dict[str, object] = {}
        self.batch_nodes: dict[str, Node] = {}    # symbol -> an input with it on axis 0
        self.node: Any = None                    # the ONNX node being imported
        self.outer: Importer | None = None      # the enclosing graph's, inside a body
        self.output_layouts: dict[str, tuple[int, ...]] = {}
        self.graph_inputs: dict[str, Lazy] = {}

    # -- names and values
    @property
    def where(self) -> str:
        return node_label(self.node) if self.node is not None else "graph"

    def error(self, message: str) -> OnnxImportError:
        return OnnxImportError(f"{self.where}: {message}")

    def get(self, i: int) -> Value | None:
        """Input i of the current node, or None when absent or empty."""
        names = self.node.input
        if i >= len(names) or not names[i]:
            return None
        return self.values[names[i]]

    def static(self, i: int, what: str) -> np.ndarray | None:
        """Input i, which must be known at import time (a constant or a shape)."""
        v = self.get(i)
        if isinstance(v, Lazy):
            error = self.error(f"{what} (input {i}) must be a constant, not computed from "
                               "inputs (gr.onnx.load(..., constants={name: value}) fixes a "
                               "graph input)")
            if v.node.op == Op.INPUT:
                error.needs_constant = self.node.input[i]
            raise error
        return v

    def lazy(self, i: int, what: str = "input") -> Lazy:
        """Input i as a (lazily transposed) node; initializers become parameters."""
        v = self.get(i)
        if v is None:
            raise self.error(f"{what} (input {i}) is missing")
        return self.as_lazy(v, self.node.input[i])

    def as_lazy(self, v: Value, name: str = "") -> Lazy:
        if isinstance(v, Lazy):
            return v
        return lazy(self.constant_node(v, name))

    def constant_node(self, v: np.ndarray, name: str = "") -> Node:
        """A known value as a node: a float initializer is a parameter, the rest constants."""
        if v.dtype == object:
            v = self.concrete(v, "a shape used as a tensor")
        if name in self.initializers and v.dtype.kind == "f" and v is self.initializers[name]:
            return self.param(name, v)
        if v.dtype.kind not in "fiub":
            raise self.error(f"constant of dtype {v.dtype} is not supported")
        return ops.const(v)

    def param(self, name: str, value: np.ndarray, part: str = "") -> Node:
        """The parameter holding `value`, keyed by initializer name (and part); made once."""
        key = (name, part)
        if key not in self.params:
            full = f"{name}.{part}" if part else name
            owner, local = full.rsplit(".", 1) if "." in full else (self.prefix, full)
            token = self.tokens.setdefault(owner, object())    # one owner, one key prefix
            p = Param(local, tuple(value.shape), "zeros", owner=owner, token=token)
            adopt(p, np.ascontiguousarray(value, dtype=np.float32))
            self.params[key] = ops.param(p)
        return self.params[key]

    def node_of(self, v: Lazy) -> Node:
        """`v` in ONNX axis order."""
        try:
            return materialize(v, self.where)
        except OnnxImportError as error:
            if v.node.op == Op.INPUT and self.outer is None:
                error.needs_layout = (v.node.name, v.perm)
            raise

    def concrete(self, v: np.ndarray, what: str) -> np.ndarray:
        if v.dtype == object:
            if any(isinstance(d, str) for d in v.flat):
                raise self.error(f"{what} depends on a symbolic dimension {list(v.flat)}")
            return v.astype(np.int64)
        return v

    def check_size(self, shape: Any, what: str, limit: int = MAX_TENSOR_BYTES // 4) -> None:
        """Refuse to build a value of `shape` (a folded constant, a run of nodes) when it holds
        more than `limit` elements: checked before anything is allocated."""
        dims = [int(d) for d in shape]
        count = 1
        for d in dims:
            count *= max(d, 0)
        if count > limit:
            raise self.error(f"{what} of shape {dims} has {count} elements, more than the "
                             f"{limit} allowed")

    def attr(self, name: str, default: Any = None) -> Any:
        for a in self.node.attribute:
            if a.name == name:
                value = onnx.helper.get_attribute_value(a)
                return value.decode() if isinstance(value, bytes) else value
        return default

    # -- inputs
    def declare_input(self, vi: Any, layout: tuple[int, ...] | None = None) -> Lazy:
        """The graph input `vi` as a value; with `layout`, declared with its axes in that
        order (the node's axis i is the ONNX input's axis layout[i])."""
        t = vi.type
        if not t.HasField("tensor_type"):
            raise OnnxImportError(f"graph input {vi.name!r}: only tensors are supported")
        elem = t.tensor_type.elem_type
        if elem in (onnx.TensorProto.FLOAT, onnx.TensorProto.DOUBLE, onnx.TensorProto.FLOAT16):
            dtype = "float32"
        elif elem in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            dtype = "int64"
        elif elem == onnx.TensorProto.BOOL:
            error = OnnxImportError(f"graph input {vi.name!r}: a bool input can only be a "
                                    "fixed value (load(..., constants={name: value}))")
            error.needs_constant = vi.name
            raise error
        else:
            raise OnnxImportError(f"graph input {vi.name!r}: element type "
                                  f"{onnx.TensorProto.DataType.Name(elem)} is not supported "
                                  "(float or int64)")
        if not t.tensor_type.HasField("shape"):
            raise OnnxImportError(f"graph input {vi.name!r} has no shape")
        shape: list[Dim] = []
        for k, d in enumerate(t.tensor_type.shape.dim):
            if d.HasField("dim_value"):
                shape.append(int(d.dim_value))
            else:
                shape.append(d.dim_param or f"{vi.name}_{k}")
        perm = tuple(range(len(shape))) if layout is None else tuple(layout)
        if sorted(perm) != list(range(len(shape))):
            raise OnnxImportError(f"graph input {vi.name!r}: layout {list(perm)} does not fit "
                                  f"rank {len(shape)}")
        declared = tuple(shape[p] for p in perm)
        node = ops.input_(declared, dtype, name=vi.name)
        if declared and isinstance(declared[0], str):
            self.batch_nodes.setdefault(declared[0], node)
        value = Lazy(node, tuple(perm.index(i) for i in range(len(perm))))
        self.graph_inputs[vi.name] = value
        return value

    def batch_like(self, symbol: str) -> Node:
        """A graph input with `symbol` on axis 0, to size a FILL by; when only a transposed
        input has it, the import restarts with that input declared with it first."""
        if symbol in self.batch_nodes:
            return self.batch_nodes[symbol]
        error = self.error(f"no graph input has the dim {symbol!r} on axis 0")
        for name, v in self.graph_inputs.items():
            shape = v.node.type.shape
            if symbol in shape and self.outer is None:
                k = shape.index(symbol)
                error.needs_layout = (name, (k,) + tuple(i for i in range(len(shape)) if i != k))
                break
        raise error


def build_graph(imp: Importer, graph: onnx.GraphProto, inputs: list[Node]) -> list[Node]:
    """Import the nodes of `graph`; its outputs as nodes in ONNX order."""
    for n in sorted_nodes(graph, list(imp.values)):
        imp.node = n
        if n.domain not in ("", "ai.onnx"):
            raise imp.error(f"operator domain {n.domain!r} is not supported")
        fn = IMPORT_RULES.get(n.op_type)
        if fn is None:
            raise imp.error(f"operator {n.op_type} is not supported by graphrnn (supported: "
                            f"{', '.join(sorted(IMPORT_RULES))})")
        outs = fn(imp, n)
        for name, v in zip(n.output, outs):
            if name:
                imp.values[name] = v
    imp.node = None
    result = []
    for o in graph.output:
        if o.name not in imp.values:
            raise OnnxImportError(f"graph output {o.name!r} is computed by no node")
        v = imp.as_lazy(imp.values[o.name], o.name)
        if imp.outer is None and not identity(v.perm) and any(
                isinstance(d, str) for d in v.node.type.shape):
            try:
                node = imp.node_of(v)
            except OnnxImportError:     # a transpose of symbolic axes: hand out the node
                node = v.node
                imp.output_layouts[o.name] = v.perm
        else:
            node = imp.node_of(v)
        if any(node is x for x in inputs) or node.op in (ops.Op.PARAM, ops.Op.CONST):
            node = ops.reshape(node, node.type.shape)   # an output of its own
        result.append(node)
    return result


__all__ = ["Importer", "IMPORT_RULES", "rule", "build_graph", "Value"]
