"""Training steps: the interpreted one, and the compiled one wherever the compiler takes the graph.

A training step runs forward, loss and backward of (model, criterion) on a batch, returns the
loss and fills the model's flat gradient (`model.parameters()[1]`). Both kinds run the
driver's training graph of the loss graph: `CompiledTrainStep` (compile.py) as native code,
`InterpretedStep` with the reference interpreter (float32), the oracle the compiled step is
tested against.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .compile import CompiledTrainStep, gradient_graph
from .gradients import TrainStep, split_target
from .interpret import Context, array_type, coerce_input, interpret, run_graph
from .flat import ParamTable
from .ir import Graph, InputError
from .losses import loss_graph
from .micro_batch import check_micro_batch


def relaid(vector: np.ndarray, layout: ParamTable, target: ParamTable) -> np.ndarray:
    """A parameter (or gradient) vector of `layout` in the layout `target` (the same keys,
    perhaps in another order); `vector` itself when the layouts agree."""
    if layout == target:
        return vector
    out = np.zeros(target.size, vector.dtype)
    theirs = target.views(out)
    for key, view in layout.views(vector).items():
        theirs[key][...] = view
    return out


class InterpretedStep:
    """forward + loss + backward with the reference interpreter (float32; `dtype=np.float64`
    computes in double, the gradient still lands in the model's float32 vector)."""

    def __init__(self, model: Any, criterion: Any, *, bptt_max: int | None = None,
                 checkpoint: int | None = None, dtype: Any = np.float32):
        self.model, self.bptt_max, self.checkpoint = model, bptt_max, checkpoint
        self.dtype = np.dtype(dtype)
        self.criterion = criterion
        self.graph = loss_graph(model, criterion)
        self._cache: dict[tuple, tuple[Graph, ParamTable]] = {}

    def _grad_graph(self, arrays: list[np.ndarray]) -> tuple[Graph, ParamTable]:
        """The driver's training graph for these input shapes: `(*inputs, target, params)
        -> (loss, flat gradient)`, and its parameter layout."""
        key = tuple((a.shape, a.dtype.kind) for a in arrays)
        if key not in self._cache:
            g, table, _ = gradient_graph(self.graph, [array_type(a) for a in arrays],
                                         truncate=self.bptt_max, checkpoint=self.checkpoint,
                                         unit_cotangent=True)
            self._cache[key] = g, table
        return self._cache[key]

    def __call__(self, *inputs: Any, target: Any = None, training: bool = True,
                 seed: int = 0) -> float:
        inputs, target = split_target(inputs, target, len(self.model.graph.inputs),
                                      self.criterion)
        arrays = [coerce_input(x, v, np.float32)
                  for x, v in zip(self.graph.inputs, list(inputs) + [target])]
        grad_graph, table = self._grad_graph(arrays)
        flat, flat_grad = self.model.parameters()   # the model's vectors hold the parameters
        params = relaid(flat, self.model.table, table)
        if self.dtype != np.float32:
            arrays = [a.astype(self.dtype) if a.dtype.kind == "f" else a for a in arrays]
            params = params.astype(self.dtype)
        loss, grad = run_graph(grad_graph, arrays + [params],
                               Context(self.dtype.type, training=training, seed=seed))
        flat_grad[...] = relaid(grad, table, self.model.table)
        return float(loss)

    def loss(self, *inputs: Any, target: Any = None) -> float:
        """The loss alone (no gradients), in inference mode."""
        inputs, target = split_target(inputs, target, len(self.model.graph.inputs),
                                      self.criterion)
        return float(interpret(self.graph, *inputs, target))


def compile_train(model: Any, criterion: Any, *, bptt_max: int | None = None,
                  checkpoint: int | None = None, **options: Any) -> Any:
    """The compiled training step, or the interpreted one for graphs it cannot compile yet."""
    try:
        return TrainStep(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint,
                                 **options)
    except InputError:
        return InterpretedStep(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint)


def train_step(model: Any, criterion: Any, *, bptt_max: int | None = None,
               compiled: bool = True, checkpoint: int | None = None,
               micro_batch: int | None = None) -> Any:
    """The fastest available training step: compiled when the compiler supports the graph.
    `micro_batch`: the compiled step's blocks of rows (None: automatic, 0: never, n: blocks of
    at most n rows; micro_batch.py); the interpreted step runs every batch whole."""
    if compiled:
        return compile_train(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint,
                             micro_batch=check_micro_batch(micro_batch))
    return InterpretedStep(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint)


__all__ = ["InterpretedStep", "CompiledTrainStep", "compile_train", "train_step", "relaid",
           "loss_graph"]
