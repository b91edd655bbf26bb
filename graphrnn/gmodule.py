"""gModule: a closed graph that is itself a module, and owns one flat parameter vector."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import ops
from .compile import rewrite, tie_params
from .flat import params_changed
from .init import initial_value, key_generator
from .interpret import interpret
from .ir import Graph, GraphError, InputError, Node, Op, Param, Table, layout_params
from .module import Module, as_nodes, is_graph_value


def aligned_zeros(n: int) -> np.ndarray:
    """n float32 zeros starting on a 64-byte boundary.

    Made with `frombuffer`, so views of the result have it as their `.base` (views stay one
    level deep) rather than the larger allocation behind it.
    """
    raw = np.zeros(n + 16, np.float32)
    skip = (-raw.ctypes.data % 64) // 4
    return np.frombuffer(raw.data, np.float32, count=n, offset=4 * skip)


def _name_params(graph: Graph, keys: dict[Param, str]) -> Graph:
    """PARAM nodes renamed to their parameter keys (`linear_1.weight`), in every loop body too."""
    taken = {n.name for n in graph.nodes if n.op != Op.PARAM}

    def visit(n: Node) -> Node:
        if n.op == Op.LOOP:
            return n.replace(attrs={**n.attrs, "body": _name_params(n.attrs["body"], keys)})
        if n.op == Op.PARAM and n.param in keys and keys[n.param] not in taken:
            return n.replace(name=keys[n.param])
        return n
    return rewrite(graph, visit, into_loops=False)


# Called with (error, built graph or None, inputs, outputs) when closing a graph fails;
# graphrnn.viz adds the GRAPHRNN_DEBUG picture of the rejected graph.
BUILD_ERROR_HOOKS: list[Callable[[GraphError, Graph | None, list, list], Any]] = []


class gModule(Module):
    """Close a graph from its inputs and outputs (nngraph `gModule`).

    The graph's parameters are gathered into one contiguous float32 vector, each parameter a
    view into it (Torch `getParameters`), with a gradient vector of the same layout.
    Called on nodes, the graph is inlined into the caller's graph; called on arrays, it runs.
    """

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None):
        super().__init__(name)
        ins = as_nodes(inputs) if not isinstance(inputs, Node) else [inputs]
        outs = as_nodes(outputs) if not isinstance(outputs, Node) else [outputs]
        built = None
        try:
            built = Graph.build(ins, outs)
            self.graph: Graph = tie_params(built)
        except GraphError as error:
            for hook in BUILD_ERROR_HOOKS:
                hook(error, built, ins, outs)
            raise
        used = {id(n.param): n.param for n, _ in built.walk() if n.op == Op.PARAM}
        self.training = False
        self.compiled = None
        keys = self._bind_flat_parameters(list(used.values()))
        self.graph = _name_params(self.graph, keys)

    # -- parameters
    def _bind_flat_parameters(self, used: list[Param]) -> dict[Param, str]:
        """Lay the parameters out in one flat vector and make each `Param.data` a view of it.

        Parameters tied to another (`share`/`clone`) get the view of the one they are tied to.
        """
        params = self.graph.params()
        self.table, keys = layout_params(params)
        self.flat = aligned_zeros(self.table.size)
        self.flat_grad = aligned_zeros(self.table.size)
        self._by_key: dict[str, Param] = {keys[p]: p for p in params}
        self._tied = [p for p in used if p.root() is not p]
        self._params = dict(self._by_key)
        self._claim()
        return keys

    def _claim(self) -> None:
        """Make every parameter a view of this model's flat vectors, keeping its value.

        A Param lives in one flat vector at a time: that of the model that closed last over it
        (a cell inside a bigger model) or whose parameters were asked for last. Moving copies
        the values, so nothing is lost; vectors taken earlier from the other model go stale.
        """
        claimed = getattr(self, "_claimed", None)
        if claimed is not None and all(p.data is v for p, v in claimed):
            return                    # identity: another model's claim replaces p.data
        base = self.flat.ctypes.data
        if all(p.data.ctypes.data == base + 4 * self.table.slots[k].offset
               for k, p in self._by_key.items()):
            self._claimed = [(p, p.data) for p in self._by_key.values()]
            return
        views = self.table.views(self.flat)
        grads = self.table.views(self.flat_grad)
        for k, p in self._by_key.items():
            views[k][...] = p.data
            if getattr(p, "grad", None) is not None and p.grad.shape == p.shape:
                grads[k][...] = p.grad
            p.data, p.grad = views[k], grads[k]
        for p in self._tied:
            p.data, p.grad = p.root().data, p.root().grad
        self._claimed = [(p, p.data) for p in self._by_key.values()]
        params_changed(self.flat)

    def parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """(params, grads): the two flat float32 vectors every parameter is a view into."""
        self._claim()
        params_changed(self.flat)         # the caller may write into it: repack compiled weights
        return self.flat, self.flat_grad

    def named_parameters(self) -> dict[str, np.ndarray]:
        """Parameter key -> its value, a view into the flat vector."""
        self._claim()
        params_changed(self.flat)
        return {k: p.data for k, p in self._by_key.items()}

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter key -> a copy of its value."""
        return {k: p.data.copy() for k, p in self._by_key.items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        missing = [k for k in self._by_key if k not in state]
        unexpected = [k for k in state if k not in self._by_key]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        self._claim()
        for k, v in state.items():
            if k in self._by_key:
                p = self._by_key[k]
                v = np.asarray(v)
                if v.shape != p.shape:
                    raise ValueError(f"{k}: expected shape {list(p.shape)}, got {list(v.shape)}")
                p.data[...] = v
        params_changed(self.flat)

    def reset_parameters(self, seed: int = 0, scheme: str | None = None) -> None:
        """Re-draw every parameter from its init spec (or `scheme`), seeded by (seed, key)."""
        self._claim()
        for k, p in self._by_key.items():
            spec = scheme if scheme and (len(p.shape) > 1 or scheme in ("zeros",)) else p.init
            p.data[...] = initial_value(p.shape, spec, key_generator(seed, k))
        params_changed(self.flat)

    def param_count(self) -> int:
        return self.table.count

    # -- modes
    def train(self, mode: bool = True) -> "gModule":
        self.training = mode
        return self

    def eval(self) -> "gModule":
        return self.train(False)

    # -- calling
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if len(args) == 1 and is_graph_value(args[0]) and not kwargs:
            with ops.scope(self.prefix):
                return self._inline(as_nodes(args[0]))
        return self.forward(*args, **kwargs)

    def forward(self, *inputs: Any, seed: int = 0) -> Any:
        """Run on numpy arrays with the reference interpreter (or the compiled model, if any)."""
        return interpret(self, *inputs, training=self.training, seed=seed)

    def _inline(self, args: list[Node]) -> Any:
        """Copy this graph into the caller's, its inputs replaced by `args`."""
        if len(args) != len(self.graph.inputs):
            raise InputError(f"{self.prefix} takes {len(self.graph.inputs)} inputs, got "
                             f"{len(args)}")
        prefix = ops.current_scope()
        sizes: dict = {}
        new: dict[int, Node] = {}
        for x, a in zip(self.graph.inputs, args):
            if x.type is not None and a.type is not None:
                ops.bind_input(x, a.type, sizes)
            new[id(x)] = a
        for n in self.graph.nodes:
            if id(n) in new:
                continue
            ins = tuple(new[id(x)] for x in n.inputs)
            scope = f"{prefix}/{n.scope}" if n.scope else prefix
            copy = Node(n.op, ins, dict(n.attrs), None, n.param, n.name, scope, n.where, n.doc)
            if not ins:
                copy = ops.apply_rule(copy, [])
            elif all(i.type is not None for i in ins):
                copy = ops.apply_rule(copy, [i.type for i in ins])
            new[id(n)] = copy
        outs = [new[id(y)] for y in self.graph.outputs]
        return outs[0] if len(outs) == 1 else Table(outs)

    # -- inspection
    @property
    def inputs(self) -> tuple[Node, ...]:
        return self.graph.inputs

    @property
    def outputs(self) -> tuple[Node, ...]:
        return self.graph.outputs

    def __str__(self) -> str:
        return str(self.graph)

    def __repr__(self) -> str:
        return (f"gModule({len(self.graph.inputs)} inputs -> {len(self.graph.outputs)} outputs, "
                f"{len(self.graph.nodes)} nodes, {self.param_count()} parameters)")
