"""Criteria as graphs: called on `[prediction, target]` (or `[prediction, target, mask]`)
nodes they return a loss node; and `loss_graph`, a model and a criterion as one graph
`(*inputs, target) -> loss`.

Every criterion takes PyTorch's `reduction='mean'|'sum'|'none'` (Torch's `sizeAverage`
booleans too: True is 'mean', False 'sum') and counts only the entries a mask keeps:

    crit([pred, target, mask])      mask f32 over the leading dims of the per-entry loss
    crit([pred, target, lengths])   lengths i64[B]: steps t < lengths[b] of pred[B, T, ...]
    Crit(lengths="lengths")         in a training step: the model input of that name (or
                                    position) gives the lengths; `mask=` likewise a mask
    Crit(mask=True)                 a training step takes the mask after the target:
                                    step(x, y, mask), mask f32 pred.shape[:-1] (lengths=True:
                                    i64[B] lengths, step(x, y, lengths))

'mean' divides the sum of the counted (and weighted) entries by their count (the sum of their
weights), PyTorch's weighted mean; 'none' gives the per-entry loss, zero where not counted.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from . import ops
from .interpret import interpret
from .close import close_graph
from .ir import Graph, GraphError, Node, TensorType
from .module import Module, as_nodes

REDUCTIONS = ("mean", "sum", "none")


class Criterion(Module):
    """A loss module: `crit([pred, target])` is a loss node (a scalar unless
    `reduction='none'`); `crit.forward(pred, target)` a value computed by the reference
    interpreter."""

    def __init__(self, reduction: str | bool = "mean", *, lengths: str | int | None = None,
                 mask: str | int | None = None, name: str | None = None):
        super().__init__(name)
        if isinstance(reduction, bool):             # Torch's sizeAverage
            reduction = "mean" if reduction else "sum"
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
        if lengths is not None and mask is not None:
            raise ValueError("give lengths= or mask=, not both")
        self.reduction, self.lengths, self.mask = reduction, lengths, mask

    def build(self, x: Any) -> Node:
        nodes = as_nodes(x)
        if len(nodes) not in (2, 3):
            raise TypeError(f"{type(self).__name__} takes [prediction, target] or "
                            "[prediction, target, mask or lengths]")
        if len(nodes) == 2:
            return self.loss(*nodes)
        return self.loss(nodes[0], nodes[1], _as_mask(nodes[0], nodes[2]))

    def loss(self, pred: Node, target: Node, mask: Node | None = None) -> Node:
        """The loss node: `entries` reduced by `reduce` (a criterion of your own may
        override this instead)."""
        values, weights = self.entries(pred, target)
        return self.reduce(values, weights, mask)

    def entries(self, pred: Node, target: Node) -> tuple[Node, Node | None]:
        """The per-entry loss, and the per-entry weight (None: every entry weighs 1)."""
        raise NotImplementedError

    def reduce(self, values: Node, weights: Node | None, mask: Node | None) -> Node:
        """`values` reduced as `self.reduction` asks, counting only where `mask` is not 0."""
        count = weights
        if mask is not None:
            m = _lifted(mask, values)
            values = ops.mul(values, m)
            count = ops.mul(count, m) if count is not None else _spread(m, values)
        if self.reduction == "none":
            return values
        if self.reduction == "sum":
            return ops.sum_(values)
        if count is None:
            return ops.mean(values)
        return ops.div(ops.sum_(values), ops.sum_(count))

    def target_type(self, pred: TensorType) -> TensorType:
        """The type of the target that goes with predictions of type `pred`."""
        return pred

    def target_array(self, target: Any) -> Any:
        """The target as the loss graph reads it (class criteria remap `ignore_index`)."""
        return target

    @property
    def n_extra(self) -> int:
        """1 when a training step takes the mask or lengths after the target, else 0."""
        return int(self.lengths is True or self.mask is True)

    def extra_inputs(self, inputs: Sequence[Node], pred: Node) -> tuple[list[Node], list[Node]]:
        """(the mask or lengths node, new inputs of the loss graph): `lengths=` / `mask=`
        name one of the model's inputs (or its position); True makes a new input."""
        key = self.lengths if self.lengths is not None else self.mask
        if key is None:
            return [], []
        if key is True:
            if pred.type is None:
                raise GraphError(f"{type(self).__name__}: a mask input needs a typed prediction")
            made = (ops.input_(pred.type.shape[:1], "int64", name="lengths")
                    if self.lengths is True else ops.input_(pred.type.shape[:-1], name="mask"))
            return [made], [made]
        if isinstance(key, int) and not isinstance(key, bool):
            if not -len(inputs) <= key < len(inputs):
                raise GraphError(f"{type(self).__name__}: the model has {len(inputs)} inputs, "
                                 f"no input {key}")
            return [inputs[key]], []
        found = [x for x in inputs if x.name == key]
        if not found:
            names = ", ".join(x.name for x in inputs)
            raise GraphError(f"{type(self).__name__}: no model input is named {key!r} "
                             f"(inputs: {names})")
        return found[:1], []

    def forward(self, pred: Any, target: Any, mask: Any = None) -> Any:
        """The loss of arrays (a float, or an array with reduction='none'); `mask` an f32
        mask or i64 per-row lengths."""
        p = ops.input_(np.shape(pred), name="prediction")
        t = ops.input_(np.shape(target), _dtype(target), name="target")
        ins, args = [p, t], [pred, target]
        if mask is not None:
            ins.append(ops.input_(np.shape(mask), _dtype(mask), name="mask"))
            args.append(mask)
        graph = close_graph(ins, [self(ins)])
        args[1] = self.target_array(target)        # after the graph: it knows the classes
        out = interpret(graph, *args)
        return float(out) if np.ndim(out) == 0 else out


class MSECriterion(Criterion):
    """mean((pred - target)^2) over every (counted) element."""

    def entries(self, pred: Node, target: Node) -> tuple[Node, Node | None]:
        d = ops.sub(pred, target)
        return ops.mul(d, d), None

    def reduce(self, values: Node, weights: Node | None, mask: Node | None) -> Node:
        return super().reduce(values, weights, mask).annotate(name="mse")


class ClassNLLCriterion(Criterion):
    """-logp[..., target]: logp[..., C] log-probabilities, target[...] int64 classes.

    weight: per-class weights [C] (the weighted mean divides by the sum of the counted
    targets' weights); ignore_index: targets of this class never count. An ignore_index
    outside [0, C) is remapped on the host by every training step and `forward`; a graph of
    your own then needs targets where ignored entries are C.
    """

    def __init__(self, weight: Any = None, *, ignore_index: int | None = None,
                 reduction: str | bool = "mean", lengths: str | int | None = None,
                 mask: str | int | None = None, name: str | None = None):
        super().__init__(reduction, lengths=lengths, mask=mask, name=name)
        self.weight = None if weight is None else np.asarray(weight, np.float32).reshape(-1)
        self.ignore_index = None if ignore_index is None else int(ignore_index)
        self.classes: int | None = None

    def target_type(self, pred: TensorType) -> TensorType:
        return TensorType(pred.shape[:-1], "int64")

    def entries(self, pred: Node, target: Node) -> tuple[Node, Node | None]:
        if self.weight is None and self.ignore_index is None:
            return ops.neg(ops.pick(pred, target)), None
        classes = pred.type.shape[-1] if pred.type is not None else None
        if not isinstance(classes, int):
            raise GraphError(f"{type(self).__name__}: weight and ignore_index need a known "
                             "number of classes (the last dim of the prediction)")
        if self.weight is not None and len(self.weight) != classes:
            raise GraphError(f"{type(self).__name__}: {len(self.weight)} class weights for "
                             f"{classes} classes")
        self.classes = classes
        table = np.ones(classes, np.float32) if self.weight is None else self.weight.copy()
        if self.ignore_index is not None:
            # one more column, always ignored: where host-remapped ignored targets point
            pred = ops.pad(pred, -1, 0, 1)
            table = np.append(table, np.float32(0.0))
            if 0 <= self.ignore_index < classes:
                table[self.ignore_index] = 0.0
        w = ops.pick(ops.expand(ops.const(table), pred), target)
        return ops.neg(ops.mul(ops.pick(pred, target), w)), w

    def target_array(self, target: Any) -> Any:
        i, c = self.ignore_index, self.classes
        if i is None or c is None or 0 <= i < c:
            return target
        t = np.asarray(target)
        return np.where(t == i, c, t).astype(t.dtype if t.dtype.kind in "iu" else np.int64)

    def reduce(self, values: Node, weights: Node | None, mask: Node | None) -> Node:
        return super().reduce(values, weights, mask).annotate(name="nll")


class CrossEntropyCriterion(ClassNLLCriterion):
    """ClassNLL of log_softmax(scores) along the last axis."""

    def entries(self, pred: Node, target: Node) -> tuple[Node, Node | None]:
        return super().entries(ops.log_softmax(pred, -1), target)


def _dtype(a: Any) -> str:
    return "int64" if np.asarray(a).dtype.kind in "iu" else "float32"


def _as_mask(pred: Node, extra: Node) -> Node:
    """An f32 mask from a mask node, or from per-row lengths i64[B] over pred[B, T, ...]."""
    if extra.type is not None and extra.type.dtype == "int64":
        return ops.seq_mask(pred, extra)
    return extra


def _lifted(mask: Node, values: Node) -> Node:
    """The mask with trailing 1s, to broadcast over the trailing dims of `values`."""
    if mask.type is None or values.type is None or mask.type.rank >= values.type.rank:
        return mask
    extra = values.type.rank - mask.type.rank
    return ops.reshape(mask, mask.type.shape + (1,) * extra)


def _spread(mask: Node, values: Node) -> Node:
    """What `mask` counts of `values`: mask times the entries each of its elements covers."""
    if mask.type is None or values.type is None:
        return ops.expand(mask, values)
    covered = [d for d, m in zip(values.type.shape, mask.type.shape) if m == 1 and d != 1]
    if all(isinstance(d, int) for d in covered):
        return ops.mul(mask, float(np.prod(covered))) if covered else mask
    return ops.expand(mask, values)


def loss_graph(model: Any, criterion: Any) -> Graph:
    """A graph `(*model inputs, target) -> loss` sharing the model's parameters; a
    criterion's `lengths=` / `mask=` read one of the model's inputs, or with True one more
    input after the target."""
    fresh = [ops.input_(x.type.shape, x.type.dtype, name=x.name) if x.type is not None
             else ops.input_().annotate(name=x.name) for x in model.graph.inputs]
    out = model(fresh)
    pred = out if isinstance(out, Node) else out[0]
    if pred.type is not None and hasattr(criterion, "target_type"):
        t = criterion.target_type(pred.type)
        target = ops.input_(t.shape, t.dtype, name="target")
    else:
        target = ops.input_().annotate(name="target")
    extra, more = (criterion.extra_inputs(fresh, pred) if hasattr(criterion, "extra_inputs")
                   else ([], []))
    loss = criterion([pred, target] + extra)
    if getattr(criterion, "reduction", "mean") == "none":
        raise GraphError(f"{type(criterion).__name__}(reduction='none') gives a loss per "
                         "entry; a training step needs 'mean' or 'sum'")
    return close_graph(fresh + [target] + more, [loss])


__all__ = ["loss_graph", "Criterion", "MSECriterion", "ClassNLLCriterion",
           "CrossEntropyCriterion", "REDUCTIONS"]
