"""gradcheck: derived gradients against central finite differences, in float64.

Checks every parameter view of a model (every weight matrix of a cell, not just one) and every
float input, on a whole model or on a single cell in isolation (the "black box" check).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .compile import gradient_graph
from .interpret import Context, array_type, coerce_input, run_graph
from .flat import param_keys
from .ir import Graph, Param
from .module import graph_of
from .ops import infer_graph
from .store import gather, value


@dataclass
class GradcheckResult:
    """Worst relative error per checked tensor; `ok` when all are within tolerance."""
    errors: dict[str, float] = field(default_factory=dict)
    checked: int = 0
    ok: bool = True

    def __str__(self) -> str:
        rows = [f"  {k:<32} max rel err {v:.2e}" for k, v in self.errors.items()]
        return f"gradcheck {'passed' if self.ok else 'FAILED'} ({self.checked} entries)\n" + \
            "\n".join(rows)


def gradients(model: Any, *inputs: Any, cotangents: list | None = None,
              truncate: int | None = None, dtype: type = np.float64,
              training: bool = False, seed: int = 0) -> tuple[list, dict[str, np.ndarray],
                                                               list[np.ndarray]]:
    """(outputs, {param key: grad}, [grad per float input]) of sum(output * cotangent).

    Cotangents default to ones (the gradient of the sum of every output). The gradient graph
    is the driver's (`prepare_training` with every float input's gradient), run in `dtype`.
    """
    graph = graph_of(model)
    arrays = [coerce_input(x, v, dtype) for x, v in zip(graph.inputs, inputs)]
    types = [array_type(a) for a in arrays]
    typed = infer_graph(graph, types)
    grad_graph, table, names = gradient_graph(graph, types, truncate=truncate,
                                              input_grads=True)
    float_outs = [y for y in typed.outputs if y.type.dtype == "float32"]
    if cotangents is None:
        cotangents = [np.ones(_shape(y, arrays, typed), dtype) for y in float_outs]
    params = gather(graph.params(), table, dtype)
    values = run_graph(grad_graph, arrays + [params] + [np.asarray(c, dtype) for c in cotangents],
                       Context(dtype=dtype, training=training, seed=seed))
    n_out = len(typed.outputs)
    flat = len(graph.inputs)                # the index of `params` among the driver's inputs
    param_grads: dict[str, np.ndarray] = {}
    input_grads: list[np.ndarray] = []
    for (_, i), v in zip(names, values[n_out:]):
        if i == flat:
            param_grads = {k: view.copy() for k, view in table.views(v).items()}
        else:
            input_grads.append(v)
    return values[:n_out], param_grads, input_grads


def _shape(y: Any, arrays: list, typed: Graph) -> tuple[int, ...]:
    ctx = Context(dtype=np.float64, param_values={id(p): value(p).astype(np.float64)
                                                   for p in typed.params()})
    outs = run_graph(typed, arrays, ctx)
    return np.shape(outs[list(typed.outputs).index(y)])


def gradcheck(model: Any, *inputs: Any, eps: float = 1e-6, rtol: float = 1e-5,
              atol: float = 1e-7, samples: int = 12, seed: int = 0,
              check_inputs: bool = True) -> GradcheckResult:
    """Compare derived gradients with central differences for `samples` entries per tensor
    (every entry of small tensors), for every parameter and float input."""
    graph = graph_of(model)
    rng = np.random.default_rng(seed)
    arrays = [coerce_input(x, v, np.float64) for x, v in zip(graph.inputs, inputs)]
    typed = infer_graph(graph, [array_type(a) for a in arrays])
    params: list[Param] = typed.params()
    values = {id(p): value(p).astype(np.float64) for p in params}
    float_outs = [i for i, y in enumerate(typed.outputs) if y.type.dtype == "float32"]
    base = run_graph(typed, arrays, Context(np.float64, param_values=values))
    cot = [rng.standard_normal(np.shape(base[i])) for i in float_outs]

    def loss() -> float:
        outs = run_graph(typed, arrays, Context(np.float64, param_values=values))
        return float(sum(np.sum(outs[i] * c) for i, c in zip(float_outs, cot)))

    _, p_grads, x_grads = gradients(model, *arrays, cotangents=cot)
    keys = param_keys(params)
    result = GradcheckResult()
    targets = [(keys[p], values[id(p)], p_grads[keys[p]]) for p in params]
    if check_inputs:
        f_inputs = [a for a in arrays if a.dtype == np.float64]
        targets += [(f"input {graph.inputs[i].name}", a, g) for i, (a, g) in
                    enumerate(zip(f_inputs, x_grads))]
    for name, arr, grad in targets:
        flat, gflat = arr.reshape(-1), np.asarray(grad).reshape(-1)
        idx = np.arange(flat.size) if flat.size <= samples else \
            rng.choice(flat.size, samples, replace=False)
        worst = 0.0
        for i in idx:
            old = flat[i]
            flat[i] = old + eps
            up = loss()
            flat[i] = old - eps
            down = loss()
            flat[i] = old
            fd = (up - down) / (2 * eps)
            err = abs(fd - gflat[i]) / max(abs(fd), abs(gflat[i]), atol / rtol)
            worst = max(worst, err)
            result.checked += 1
        result.errors[name] = worst
        result.ok &= worst <= rtol
    return result
