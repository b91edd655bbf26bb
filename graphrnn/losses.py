"""Criteria as graphs: called on `[prediction, target]` nodes they return a scalar loss node;
and `loss_graph`, a model and a criterion as one graph `(*inputs, target) -> loss`."""
from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .interpret import interpret
from .close import close_graph
from .ir import Graph, Node, TensorType
from .module import Module, as_nodes


class Criterion(Module):
    """A loss module: `crit([pred, target])` is a scalar node; `crit.forward(pred, target)` a
    float computed by the reference interpreter."""

    def build(self, x: Any) -> Node:
        nodes = as_nodes(x)
        if len(nodes) != 2:
            raise TypeError(f"{type(self).__name__} takes [prediction, target]")
        return self.loss(*nodes)

    def loss(self, pred: Node, target: Node) -> Node:
        raise NotImplementedError

    def target_type(self, pred: TensorType) -> TensorType:
        """The type of the target that goes with predictions of type `pred`."""
        return pred

    def forward(self, pred: Any, target: Any) -> float:
        p = ops.input_(np.shape(pred), name="prediction")
        t = ops.input_(np.shape(target), "int64" if np.asarray(target).dtype.kind in "iu"
                       else "float32", name="target")
        return float(interpret(close_graph([p, t], [self([p, t])]), pred, target))


class MSECriterion(Criterion):
    """mean((pred - target)^2) over every element."""

    def loss(self, pred: Node, target: Node) -> Node:
        d = ops.sub(pred, target)
        return ops.mean(ops.mul(d, d)).annotate(name="mse")


class ClassNLLCriterion(Criterion):
    """-mean(logp[..., target]): logp[..., C] log-probabilities, target[...] int64 classes."""

    def target_type(self, pred: TensorType) -> TensorType:
        return TensorType(pred.shape[:-1], "int64")

    def loss(self, pred: Node, target: Node) -> Node:
        return ops.neg(ops.mean(ops.pick(pred, target))).annotate(name="nll")


class CrossEntropyCriterion(ClassNLLCriterion):
    """ClassNLL of log_softmax(scores) along the last axis."""

    def loss(self, pred: Node, target: Node) -> Node:
        return super().loss(ops.log_softmax(pred, -1), target)


def loss_graph(model: Any, criterion: Any) -> Graph:
    """A graph `(*model inputs, target) -> loss` sharing the model's parameters."""
    fresh = [ops.input_(x.type.shape, x.type.dtype, name=x.name) if x.type is not None
             else ops.input_().annotate(name=x.name) for x in model.graph.inputs]
    out = model(fresh)
    pred = out if isinstance(out, Node) else out[0]
    if pred.type is not None and hasattr(criterion, "target_type"):
        t = criterion.target_type(pred.type)
        target = ops.input_(t.shape, t.dtype, name="target")
    else:
        target = ops.input_().annotate(name="target")
    loss = criterion([pred, target])
    return close_graph(fresh + [target], [loss])


__all__ = ["loss_graph", "Criterion", "MSECriterion", "ClassNLLCriterion", "CrossEntropyCriterion"]
