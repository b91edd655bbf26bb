"""The ONNX graph under construction, and the walk that turns a graphrnn Graph into its nodes.

`EXPORT_RULES[op](em, node, args) -> names` gives the ONNX value names of one IR node from the
names of its inputs (export_ops.py, export_rnn.py and export_scan.py fill the table). onnx is
imported when an Emitter is made, so the core imports without it.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np

from ..ir import Graph, LoweringError, Node, Op, TensorType, node_error
from ..store import value

OPSET = 17
DTYPES = {"float32": np.float32, "int64": np.int64}


def onnx_module() -> Any:
    """The onnx package, or an ImportError that says how to install it."""
    try:
        import onnx
    except ImportError as e:
        raise ImportError(f"graphrnn.onnx needs onnx (pip install -e '.[onnx]'): {e}") from None
    return onnx


class Emitter:
    """The nodes, initializers and names of one ONNX graph (a Scan body has its own Emitter,
    sharing the model's initializers and name counter)."""

    def __init__(self, parent: "Emitter | None" = None):
        self.onnx = onnx_module()
        self.helper = self.onnx.helper
        self.nodes: list[Any] = []
        self.root: Emitter = parent.root if parent is not None else self
        if parent is None:
            self.initializers: list[Any] = []
            self.params: dict[int, str] = {}       # id(Param root) -> initializer name
            self.used: set[str] = set()
            self.counter = 0
            self.symbols: dict[str, tuple[str, int]] = {}   # "T" -> (model input, axis)
            self.guard = True               # loops inside an If for empty batches/sequences

    def fresh(self, hint: str) -> str:
        """A graph-wide unique value name from a readable hint."""
        root = self.root
        base = "".join(c if c.isalnum() or c in "._" else "_" for c in hint) or "v"
        name = base
        while name in root.used:
            root.counter += 1
            name = f"{base}_{root.counter}"
        root.used.add(name)
        return name

    def add(self, op_type: str, inputs: Sequence[str], hint: str = "", n_out: int = 1,
            **attrs: Any) -> list[str]:
        """Append one ONNX node; returns its output names."""
        outs = [self.fresh(f"{hint or op_type.lower()}") for _ in range(n_out)]
        self.nodes.append(self.helper.make_node(op_type, list(inputs), outs,
                                                name=self.fresh(f"{op_type}_node"), **attrs))
        return outs

    def one(self, op_type: str, inputs: Sequence[str], hint: str = "", **attrs: Any) -> str:
        return self.add(op_type, inputs, hint, 1, **attrs)[0]

    def const(self, array: Any, hint: str = "const") -> str:
        """A constant as a model initializer (visible inside every Scan body)."""
        arr = np.asarray(array)
        arr = arr.astype(np.int64 if arr.dtype.kind in "iub" else np.float32)
        name = self.fresh(hint)
        self.root.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def bind_symbols(self, names: Sequence[str], types: Sequence[TensorType]) -> None:
        """Note where each symbolic dim of the model's inputs can be read at run time."""
        for name, t in zip(names, types):
            for axis, d in enumerate(t.shape):
                if isinstance(d, str):
                    self.root.symbols.setdefault(d, (name, axis))

    def dim(self, n: Node, d: Any) -> str:
        """An int64 scalar holding dim `d`: a constant, or a symbol read from a model input."""
        if isinstance(d, (int, np.integer)):
            return self.const(np.int64(d), "dim")
        if d not in self.root.symbols:
            raise node_error(n, f"the dim {d!r} is not a dim of any model input: no ONNX "
                                "value for it", LoweringError)
        source, axis = self.root.symbols[d]
        shape = self.one("Shape", [source], "shape_of")
        return self.one("Gather", [shape, self.const(np.int64(axis), "axis")], f"dim_{d}",
                        axis=0)

    def param(self, node: Node) -> str:
        """The initializer holding a parameter's current value (one per tied parameter)."""
        root = node.param.root()
        names = self.root.params
        if id(root) not in names:
            names[id(root)] = self.const(value(root), node.name or root.name)
        return names[id(root)]

    def value_info(self, name: str, t: TensorType | None, dtype: str = "float32") -> Any:
        """A typed ONNX value: symbolic dims become dim_params (dynamic batch and time)."""
        dtype = t.dtype if t is not None else dtype
        elem = (self.onnx.TensorProto.INT64 if dtype == "int64"
                else self.onnx.TensorProto.FLOAT)
        shape = None if t is None else [d if isinstance(d, int) else str(d) for d in t.shape]
        return self.helper.make_tensor_value_info(name, elem, shape)


Rule = Callable[[Emitter, Node, list], Any]
EXPORT_RULES: dict[Op, Rule] = {}


def no_counterpart(n: Node) -> Exception:
    return node_error(n, f"the op {n.op.value!r} has no ONNX counterpart; graphrnn.onnx cannot "
                         "export this model", LoweringError)


def emit_graph(em: Emitter, graph: Graph, inputs: Sequence[str]) -> list[str]:
    """Emit every node of `graph` (its inputs already named `inputs`); the outputs' names."""
    names: dict[int, Any] = {id(x): n for x, n in zip(graph.inputs, inputs)}
    for n in graph.nodes:
        if id(n) in names:
            continue
        rule = EXPORT_RULES.get(n.op)
        if rule is None:
            raise no_counterpart(n)
        names[id(n)] = rule(em, n, [names[id(x)] for x in n.inputs])
    outs = []
    for y in graph.outputs:
        got = names[id(y)]
        if isinstance(got, list):
            raise node_error(y, "a loop's whole tuple is not an ONNX value", LoweringError)
        outs.append(got)
    return outs


__all__ = ["Emitter", "EXPORT_RULES", "emit_graph", "no_counterpart", "onnx_module", "OPSET",
           "DTYPES"]
