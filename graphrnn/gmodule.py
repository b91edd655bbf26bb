"""gModule: a closed graph that is itself a module, and owns one flat parameter vector."""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from . import ops
from .close import close_graph
from .compile import rewrite, tie_params
from .flat import ParamTable
from .init import initial_value, key_generator
from .interpret import interpret
from .ir import Graph, GraphError, InputError, Node, Op, Param, Table
from .module import Module, as_nodes, is_graph_value
from .store import ParamStore, value


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

    The graph's parameters live in the model's ParamStore (graphrnn/store.py): one contiguous
    float32 vector (Torch `getParameters`), named views into it, and a gradient vector of the
    same layout. Called on nodes, the graph is inlined into the caller's graph; called on
    arrays, the reference interpreter runs it (`gr.compile(model)` gives the native code).
    """

    def __init__(self, inputs: Any, outputs: Any, name: str | None = None):
        super().__init__(name)
        ins = as_nodes(inputs) if not isinstance(inputs, Node) else [inputs]
        outs = as_nodes(outputs) if not isinstance(outputs, Node) else [outputs]
        built = None
        try:
            built = close_graph(ins, outs)
            self.graph: Graph = tie_params(built)
        except GraphError as error:
            for hook in BUILD_ERROR_HOOKS:
                hook(error, built, ins, outs)
            raise
        self.training = False
        self.store = ParamStore(self.graph.params())
        self._params = dict(self.store.params)
        self.graph = _name_params(self.graph, self.store.keys)

    # -- parameters
    @property
    def table(self) -> ParamTable:
        """Where each parameter lives in the flat vector."""
        return self.store.table

    @property
    def flat(self) -> np.ndarray:
        """The flat parameter vector (without claiming: see `parameters()`)."""
        return self.store.flat

    @flat.setter
    def flat(self, values: np.ndarray) -> None:
        if values is not self.store.flat:       # `model.flat *= k` hands the same array back
            self.store.flat[...] = values

    @property
    def flat_grad(self) -> np.ndarray:
        return self.store.grad

    def parameters(self) -> tuple[np.ndarray, np.ndarray]:
        """(params, grads): the two flat float32 vectors every parameter is a view into.

        Makes this model the home of its parameters (graphrnn/store.py): write into these
        vectors, by any route, and every compiled model sees it at its next call.
        """
        self.store.claim()
        return self.store.flat, self.store.grad

    def named_parameters(self) -> dict[str, np.ndarray]:
        """Parameter key -> its value, a view into the flat vector (claims, as `parameters`)."""
        self.store.claim()
        return self.store.views()

    def state_dict(self) -> dict[str, np.ndarray]:
        """Parameter key -> a copy of its value."""
        return {k: value(p).copy() for k, p in self.store.params.items()}

    def load_state_dict(self, state: dict[str, np.ndarray], strict: bool = True) -> None:
        """Copy values in by parameter key (numpy arrays or torch tensors); with `strict`, the
        keys must be exactly the model's (`gr.load_torch_state` also takes torch's own)."""
        params = self.store.params
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        if strict and (missing or unexpected):
            raise KeyError(f"state_dict mismatch: missing {missing}, unexpected {unexpected}")
        values = {}
        for k, v in state.items():
            if k in params:
                if hasattr(v, "detach"):        # a torch tensor, maybe on a device or in a graph
                    v = v.detach().cpu().numpy()
                values[k] = v = np.asarray(v)
                if v.shape != params[k].shape:  # checked before any write: all or nothing
                    raise ValueError(f"{k}: expected shape {list(params[k].shape)}, got "
                                     f"{list(v.shape)}")
        self.store.claim()
        views = self.store.views()
        for k, v in values.items():
            views[k][...] = v
        self.store.changed()

    def reset_parameters(self, seed: int = 0, scheme: str | None = None) -> None:
        """Re-draw every parameter from its init spec (or `scheme`), seeded by (seed, key)."""
        self.store.claim()
        views = self.store.views()
        for k, p in self.store.params.items():
            spec = scheme if scheme and (len(p.shape) > 1 or scheme in ("zeros",)) else p.init
            views[k][...] = initial_value(p.shape, spec, key_generator(seed, k))
        self.store.changed()

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
        """Run on numpy arrays with the reference interpreter, the oracle every compiled
        result is checked against; `gr.compile(model)` gives native code for speed."""
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
