"""Stateful truncated BPTT: train on long streams cut into chunks, carrying the state.

Each chunk is one compiled training step of the loss graph with the carried state of every
top-level loop exposed as inputs and outputs (the driver's step "state"): `(*inputs, target,
*state) -> (loss, *state)`. The state flows from one chunk to the next as plain values, so
gradients stop at chunk borders.

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

from .compile import CompiledModel
from .interpret import interpret
from .ir import Graph, InputError
from .losses import loss_graph
from .threads import BatchSplitter
from .trainstep import relaid


class StatefulTrainStep(CompiledModel):
    """One chunk of stateful truncated BPTT, compiled: `(loss, state) = step(x, target, state)`."""

    def __init__(self, model: Any, criterion: Any, *, bptt_max: int | None = None,
                 **options: Any):
        if getattr(criterion, "n_extra", 0):
            raise InputError("stateful training takes (x, target) chunks: name the model input "
                             "holding the lengths or mask (lengths='name'), not True")
        super().__init__(loss_graph(model, criterion), stateful=True, **options)
        self.model, self._gather, self.criterion = model, False, criterion
        self.truncate = bptt_max
        self.training = dict(truncate=bptt_max)
        self.n_state_in = self.n_state
        # the initial state is the model's: it does not read the target (the last input)
        initial: Graph = self.initial_state_graph
        self.initial = initial.rebuilt(initial.inputs[:-1], initial.outputs)

    def splitter(self, threads: int) -> BatchSplitter:
        return BatchSplitter(self.graph, threads, training=True, work=3.0, gradient=True)

    def key_options(self) -> dict[str, Any]:
        return dict(super().key_options(), truncate=self.truncate)

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
        if hasattr(self.criterion, "target_array"):
            target = self.criterion.target_array(target)      # ignored class targets
        args = list(inputs) + [target] + state
        tables = []

        def bound(values: list) -> Any:
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
        flat_grad[...] = relaid(grad, tables[0], self.model.table)
        return float(loss), new_state


def stream_chunks(steps: int, chunk: int) -> list[slice]:
    """Consecutive time slices of at most `chunk` steps covering [0, steps)."""
    return [slice(s, min(s + chunk, steps)) for s in range(0, steps, chunk)]


__all__ = ["StatefulTrainStep", "stream_chunks"]
