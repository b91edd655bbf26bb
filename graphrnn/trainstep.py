"""A compiled training step: forward, loss and backward in one native call.

    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    loss = step(x, target=y)         # fills model.parameters()[1], the flat gradient
    opt.step()

The training graph is the model's loss graph differentiated by the compiler
(`prepare_training`): its outputs are the loss and the gradient of every parameter, laid out
like the model's flat vector. Like `gr.compile`, one program serves every sequence length.
Dropout is lowered in training mode: `step(x, target=y, seed=s)` drops exactly the elements
the interpreter drops for `training=True, seed=s` (the same counter-based hash, salted by the
loop step), forward and backward.

`gr.compile(model, loss=..., train=True, threads=n)` runs the batch as up to n parts of rows
at once (threads.py): each part computes the loss and gradient of its rows into its own
buffer, and they combine as the criterion's batch mean (weights rows_i / B for a
mean-reduced loss), equal to the one-thread step within float32 rounding.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .compile import CompiledModel
from .compiler.codegen.lower import lower_graph
from .compiler.pipeline import prepare_training
from .compiler.passes.rewrite import rewrite
from .ir import Graph, InputError, Node, Op, TensorType
from .threads import BatchSplitter
from .train import InterpretedStep, loss_graph


def _unit_cotangent(graph: Graph) -> Graph:
    """The training graph with the loss cotangent fixed to 1 and `params` as its last input."""
    *user, params, cotangent = graph.inputs
    one = ops.const(np.float32(1.0))

    def visit(n: Node) -> Node:
        return one if n is cotangent else n
    g = rewrite(graph, visit, into_loops=False)
    return g.rebuilt(list(user) + [params], g.outputs)


class CompiledTrainStep(CompiledModel):
    """forward + loss + backward of (model, criterion), compiled per batch size."""

    def __init__(self, model: Any, criterion: Any, *, bptt_max: int | None = None,
                 checkpoint: int | None = None, **options: Any):
        super().__init__(loss_graph(model, criterion), **options)
        self.model, self._gather = model, False
        self.truncate = bptt_max
        self.checkpoint = checkpoint
        self.fixed_time |= bool(checkpoint)     # segments of k steps: one program per T
        self.forward_loss = CompiledModel(self.graph, cache=self.cache, threads=self.threads)
        self.forward_loss.model, self.forward_loss._gather = model, False
        self.lowering["training"] = True        # dropout draws the interpreter's masks
        dropout = any(n.op == Op.DROPOUT and n.attrs["p"] > 0 for n, _ in self.graph.walk())
        if dropout and (checkpoint or self.fixed_time):
            # both restructure the loops, and a mask is salted by its loop step
            raise InputError("dropout in loops that are unrolled or checkpointed is not "
                             "compiled: use the interpreted step (compiled=False)")

    def splitter(self, threads: int) -> BatchSplitter:
        # forward and backward: about three times the forward's flops per row
        return BatchSplitter(self.graph, threads, training=True, work=3.0, gradient=True)

    def key_options(self) -> dict[str, Any]:
        return dict(super().key_options(), truncate=self.truncate, checkpoint=self.checkpoint)

    def executable(self, types: tuple[TensorType, ...]) -> Any:
        g, table, _ = prepare_training(self.graph, types, truncate=self.truncate,
                                       checkpoint=self.checkpoint, dump=self.dump,
                                       **self.options)
        self.compiles += 1
        return lower_graph(_unit_cotangent(g), table, **self.lowering)

    def __call__(self, *inputs: Any, target: Any, training: bool = True,
                 seed: int = 0) -> float:
        """Run one step: returns the loss, leaves the gradient in the model's flat gradient.

        Dropout draws the masks `gr.interpret(..., training=True, seed=seed)` draws (the
        identity when `training` is False)."""
        _, flat_grad = self.model.parameters()
        values = (*inputs, target)
        parts = self._parts(values) if not self.split.serial else ()
        if len(parts) > 1:
            loss, grad = self.split.run(parts, values, self.program_for, into={1: flat_grad},
                                        seed=seed, training=training)
        else:
            loss, grad = self.program_for(values)(*values, seed=seed, training=training)
        if grad is not flat_grad:
            flat_grad[...] = grad
        return float(loss)

    def loss(self, *inputs: Any, target: Any) -> float:
        """The loss alone, compiled, in inference mode."""
        self.model.parameters()
        return float(self.forward_loss(*inputs, target))


def compile_train(model: Any, criterion: Any, *, bptt_max: int | None = None,
                  checkpoint: int | None = None, **options: Any) -> Any:
    """The compiled training step, or the interpreted one for graphs it cannot compile yet."""
    try:
        return CompiledTrainStep(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint,
                                 **options)
    except InputError:
        return InterpretedStep(model, criterion, bptt_max=bptt_max, checkpoint=checkpoint)
