"""Compiled gradients beyond the parameter gradient, and `gr.compile`'s front door.

    step = gr.compile(model, loss=crit, train=True, input_grads=True)
    loss, (dx, ...) = step(x, y)          # also fills model.parameters()[1]
    vjp = gr.compile_vjp(model)
    (y,), (dx, ...) = vjp(x, dy)          # y = model(x); dx = d sum(y * dy) / dx

Both are the driver's training step (compile.py, `CompiledTrainStep`) of a scalar graph, with
the gradients of its float inputs kept. A VJP is the training step of
`sum_k sum(output_k * cotangent_k)` whose cotangents are inputs: the gradient with respect to
a cotangent is its output, so one native call gives the outputs and every gradient.
Training steps take the target positionally (`step(x, y)`) or as `target=`.
"""
from __future__ import annotations

from typing import Any, Sequence

from . import ops
from .close import close_graph
from .compile import CompiledModel, CompiledTrainStep
from .compile import compile as compile_model
from .ir import Graph, GraphError, InputError, Node
from .module import graph_of


def split_target(inputs: Sequence[Any], target: Any, n_inputs: int, criterion: Any
                 ) -> tuple[tuple, Any]:
    """(the loss graph's inputs but its last, its last) from `step(*inputs, target, [mask])`
    or `step(*inputs, target=..., [mask])`: a base step appends its `target=` last, so a
    criterion's mask (`mask=True`) goes there. Ignored class targets are remapped."""
    args = list(inputs)
    n_extra = getattr(criterion, "n_extra", 0)
    if target is not None:
        args.insert(n_inputs, target)
    want = n_inputs + 1 + n_extra
    if len(args) != want:
        more = " and its mask" if n_extra else ""
        raise TypeError(f"a training step takes the model's {n_inputs} input(s), the target"
                        f"{more}: {want} arguments, got {len(args)}")
    if hasattr(criterion, "target_array"):
        args[n_inputs] = criterion.target_array(args[n_inputs])
    return tuple(args[:-1]), args[-1]


class TrainStep(CompiledTrainStep):
    """The compiled training step of (model, criterion), called `step(*inputs, target)`.
    With `input_grads=True` a call returns `(loss, grads)`, `grads` one gradient of the loss
    per model input (None for integer inputs); the parameter gradient fills the model's."""

    def __init__(self, model: Any, criterion: Any, *, input_grads: bool = False,
                 **options: Any):
        super().__init__(model, criterion, **options)
        self.criterion, self.input_grads = criterion, bool(input_grads)
        self.n_model = len(graph_of(model).inputs)
        if self.input_grads:
            self.training["input_grads"] = True

    def key_options(self) -> dict[str, Any]:
        extra = {"input_grads": True} if self.input_grads else {}
        return dict(super().key_options(), **extra)

    def __call__(self, *inputs: Any, target: Any = None, training: bool = True,
                 seed: int = 0) -> Any:
        """One step: the loss (and with input_grads the input gradients); dropout as
        `gr.interpret(..., training=True, seed=seed)` (none unless `training`)."""
        inputs, target = split_target(inputs, target, self.n_model, self.criterion)
        if not self.input_grads:
            return super().__call__(*inputs, target=target, training=training, seed=seed)
        loss, grads = run_with_input_grads(self, (*inputs, target), seed, training)
        return loss, grads[:self.n_model]

    def loss(self, *inputs: Any, target: Any = None) -> float:
        """The loss alone, compiled, in inference mode."""
        inputs, target = split_target(inputs, target, self.n_model, self.criterion)
        return super().loss(*inputs, target=target)


def run_with_input_grads(step: CompiledTrainStep, values: Sequence[Any], seed: int,
                         training: bool) -> tuple[float, tuple]:
    """Run a step compiled with input gradients on one thread: (its scalar output, one
    gradient per input, None for integer inputs); the parameter gradient fills the model's."""
    program = step.program_for(values)
    loss, *grads, flat = program(*values, seed=seed, training=training)
    _, flat_grad = step.model.parameters()
    flat_grad[...] = flat
    floats = iter(grads)
    per_input = tuple(next(floats) if t.dtype == "float32" else None
                      for t in program.in_types[:len(values)])
    return float(loss), per_input


def vjp_graph(model: Any, outputs: Sequence[int] | None = None) -> tuple[Graph, list[int]]:
    """`(*inputs, *cotangents) -> sum_k sum(output_k * cotangent_k)` over the chosen float
    outputs (default: all), sharing the model's parameters; and the chosen indexes."""
    graph = graph_of(model)
    if any(x.type is None for x in graph.inputs):
        raise GraphError("compile_vjp needs typed inputs: declare them with gr.Input(...)")
    fresh = [ops.input_(x.type.shape, x.type.dtype, name=x.name) for x in graph.inputs]
    outs = model(fresh)
    outs = [outs] if isinstance(outs, Node) else list(outs)
    floats = [k for k, y in enumerate(outs) if y.type is not None and y.type.dtype == "float32"]
    chosen = floats if outputs is None else [k % len(outs) for k in outputs]
    for k in chosen:
        if k not in floats:
            raise GraphError(f"compile_vjp: output {k} is not a float tensor")
    if not chosen:
        raise GraphError("compile_vjp: the model has no float output to differentiate")
    cots = [ops.input_(outs[k].type.shape, name=f"d_{outs[k].name or k}") for k in chosen]
    total = None
    for k, cot in zip(chosen, cots):
        term = ops.sum_(ops.mul(outs[k], cot))
        total = term if total is None else ops.add(total, term)
    return close_graph(fresh + cots, [total]), chosen


class CompiledVJP(CompiledTrainStep):
    """The compiled vector-Jacobian product of a model: `vjp(*inputs, grad_outputs)` returns
    `(outputs, input_grads)` and fills the model's flat gradient with the parameter part."""

    def __init__(self, model: Any, outputs: Sequence[int] | None = None, *,
                 bptt_max: int | None = None, **options: Any):
        graph, self.chosen = vjp_graph(model, outputs)
        CompiledModel.__init__(self, graph, **options)
        self.model, self._gather = model, False
        self.truncate, self.checkpoint = bptt_max, None
        self.training = dict(truncate=bptt_max, checkpoint=None, input_grads=True)
        self.lowering["training"] = True        # dropout draws the interpreter's masks
        self.n_model = len(graph_of(model).inputs)

    def key_options(self) -> dict[str, Any]:
        return dict(super().key_options(), vjp=tuple(self.chosen))

    def __call__(self, *inputs: Any, grad_outputs: Any = None, training: bool = False,
                 seed: int = 0) -> tuple[tuple, tuple]:
        """(the chosen outputs, d sum_k(output_k * grad_outputs[k]) / d input, per model input,
        None for integer inputs); `grad_outputs` is the last argument or a keyword: one array,
        or one per chosen output."""
        if grad_outputs is None:
            if len(inputs) != self.n_model + 1:
                raise TypeError(f"a VJP takes the model's {self.n_model} input(s) and "
                                f"grad_outputs, got {len(inputs)} arguments")
            inputs, grad_outputs = inputs[:-1], inputs[-1]
        cots = list(grad_outputs) if isinstance(grad_outputs, (list, tuple)) else [grad_outputs]
        if len(cots) != len(self.chosen):
            raise InputError(f"expected {len(self.chosen)} grad_outputs, got {len(cots)}")
        _, grads = run_with_input_grads(self, (*inputs, *cots), seed, training)
        return tuple(grads[self.n_model:]), grads[:self.n_model]

    def loss(self, *inputs: Any, target: Any = None) -> float:
        raise TypeError("a CompiledVJP has no loss")


def compile_vjp(model: Any, outputs: Sequence[int] | None = None, *,
                bptt_max: int | None = None, **options: Any) -> CompiledVJP:
    """The compiled vector-Jacobian product of `model` (a gModule with typed inputs):
    `vjp(*inputs, grad_outputs)` gives `(outputs, input_grads)` in one native call and fills
    the model's flat gradient with d sum(output * grad_output) / d parameters. `outputs`:
    indexes of the outputs to differentiate (default every float output). Options as for
    `gr.compile` (unroll, optimize, disable, dump, cache); `bptt_max=k` truncates BPTT."""
    return CompiledVJP(model, outputs, bptt_max=bptt_max, **options)


def compile(model: Any, *, loss: Any = None, train: bool = False, input_grads: bool = False,
            **options: Any) -> CompiledModel:
    """`graphrnn.compile.compile` (every option as there), with training steps that take the
    target positionally, remap ignored class targets, and with `input_grads=True` return
    `(loss, grads)`, one gradient of the loss per model input (None for integer inputs)."""
    if not (train or loss is not None):
        if input_grads:
            raise TypeError("input_grads=True is for training steps: gr.compile(model, "
                            "loss=..., train=True, input_grads=True); for the gradients of "
                            "outputs use gr.compile_vjp(model)")
        return compile_model(model, **options)
    if loss is None:
        return compile_model(model, train=True, **options)      # its error names the fix
    options.pop("stateful", None)
    return TrainStep(model, loss, input_grads=input_grads, **options)


__all__ = ["compile", "compile_vjp", "CompiledVJP", "TrainStep", "vjp_graph", "split_target",
           "run_with_input_grads"]
