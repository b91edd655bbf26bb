"""Stateful truncated BPTT: train on long streams cut into chunks, carrying the state.

Each chunk is one compiled training step whose graph takes the carried state of every
top-level loop as inputs and returns the final state as outputs (`expose_state`). The state
flows from one chunk to the next as plain values, so gradients stop at chunk borders.

    step = StatefulTrainStep(model, gr.MSECriterion())
    state = None
    for chunk in chunks:
        loss, state = step(x[:, chunk], target=y[:, chunk], state=state)
        opt.step()

With `threads=n` a chunk's batch runs as up to n parts of rows at once (threads.py): each
part carries the state of its own rows, and the loss and gradients combine as the batch mean.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .compile import CompiledModel
from .compiler.passes.autodiff_loop import inline
from .compiler.codegen.lower import lower_graph
from .compiler.pipeline import prepare_training
from .compiler.passes.state import expose_state
from .compiler.passes.tie import tie_params
from .interpret import interpret
from .ir import Graph, InputError, TensorType
from .runtime.program import Program
from .threads import BatchSplitter
from .close import close_graph


def stateful_loss_graph(model: Any, criterion: Any) -> tuple[Graph, Graph, int]:
    """(graph `(*inputs, target, *state) -> (loss, *state)`, the initial-state graph, n)."""
    exposed = expose_state(model.graph)
    n_user = len(model.graph.inputs)
    fresh = [ops.input_(x.type.shape, x.type.dtype, name=x.name) if x.type is not None
             else ops.input_(name=x.name) for x in exposed.graph.inputs]
    outs = inline(exposed.graph, fresh)
    pred = outs[0]
    t = criterion.target_type(pred.type)
    target = ops.input_(t.shape, t.dtype, name="target")
    loss = criterion([pred, target])
    state_outs = outs[len(outs) - exposed.n_state:]
    graph = close_graph(fresh[:n_user] + [target] + fresh[n_user:], [loss] + state_outs)
    return tie_params(graph), exposed.initial, exposed.n_state


def _unit_loss_cotangent(graph: Graph) -> Graph:
    """Cotangent of the loss fixed to 1; `params` the last input, as the lowering expects."""
    from .compiler.passes.rewrite import rewrite
    *user, params, cotangent = graph.inputs
    one = ops.const(np.float32(1.0))
    g = rewrite(graph, lambda n: one if n is cotangent else n, into_loops=False)
    return g.rebuilt(list(user) + [params], g.outputs)


class StatefulTrainStep(CompiledModel):
    """One chunk of stateful truncated BPTT, compiled: `(loss, state) = step(x, target, state)`."""

    def __init__(self, model: Any, criterion: Any, *, bptt_max: int | None = None,
                 **options: Any):
        graph, self.initial, self.n_state_in = stateful_loss_graph(model, criterion)
        super().__init__(graph, **options)
        self.model, self._gather = model, False
        self.truncate = bptt_max

    def splitter(self, threads: int) -> BatchSplitter:
        return BatchSplitter(self.graph, threads, training=True, work=3.0, gradient=True)

    def executable(self, types: tuple[TensorType, ...]) -> Any:
        g, table, _ = prepare_training(self.graph, types, truncate=self.truncate,
                                       seed_outputs=[0], **self.options)
        return lower_graph(_unit_loss_cotangent(g), table)

    def initial_state(self, *inputs: Any) -> list[np.ndarray]:
        """The state an ordinary call would start from (e.g. zeros), for these inputs."""
        init = interpret(self.initial, *inputs)
        return [np.ascontiguousarray(s) for s in (init if isinstance(init, tuple) else (init,))]

    def __call__(self, *inputs: Any, target: Any, state: Sequence[np.ndarray] | None = None,
                 training: bool = True, seed: int = 0) -> tuple[float, list[np.ndarray]]:
        """Train on one chunk; returns the loss and the state to pass to the next chunk."""
        state = list(state) if state is not None else self.initial_state(*inputs)
        if len(state) != self.n_state_in:
            raise InputError(f"expected {self.n_state_in} state arrays, got {len(state)}")
        flat, flat_grad = self.model.parameters()
        args = list(inputs) + [target] + state
        tables = []

        def bound(values: list) -> Program:
            program = self.program_for(values)
            table = program.exe.table
            tables.append(table)
            program.bind_params(flat if table == self.model.table else self._params_for(table))
            return program
        parts = self._parts(args) if not self.split.serial else ()
        if len(parts) > 1:
            outs = self.split.run(parts, args, bound)
        else:
            outs = bound(args)(*args)
        loss, new_state, grad = outs[0], list(outs[1:-1]), outs[-1]
        table = tables[0]
        if table == self.model.table:
            flat_grad[...] = grad
        else:                               # the same parameters, laid out in another order
            mine = self.model.table.views(flat_grad)
            for key, view in table.views(grad).items():
                mine[key][...] = view
        return float(loss), new_state


def stream_chunks(steps: int, chunk: int) -> list[slice]:
    """Consecutive time slices of at most `chunk` steps covering [0, steps)."""
    return [slice(s, min(s + chunk, steps)) for s in range(0, steps, chunk)]


__all__ = ["StatefulTrainStep", "stateful_loss_graph", "stream_chunks"]
