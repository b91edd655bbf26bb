"""Criteria as graphs: called on `[prediction, target]` nodes they return a scalar loss node."""
from __future__ import annotations

from typing import Any

from . import ops
from .ir import Node, TensorType
from .nn import Module, as_nodes


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
        import numpy as np
        from .gmodule import gModule
        from .nn import Input
        p = Input(*np.shape(pred), name="prediction")
        t = Input(*np.shape(target), dtype="int64" if np.asarray(target).dtype.kind in "iu"
                  else "float32", name="target")
        return float(gModule([p, t], [self([p, t])]).forward(pred, target))


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


__all__ = ["Criterion", "MSECriterion", "ClassNLLCriterion", "CrossEntropyCriterion"]
