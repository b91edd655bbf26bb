"""graphrnn modules and models as PyTorch modules with copies of their weights: `gr.to_torch`.

    twin = gr.to_torch(model)       # a model from gr.from_torch: the same torch module kinds
    twin = gr.to_torch(rec)         # one module: nn.Recurrent -> nn.LSTM, nn.Linear -> ...

The inverse of `gr.from_torch` (graphrnn/torch_import.py) for the same set of modules: the
twin's parameter names are torch's, and its recurrent modules are batch-first unless
`batch_first=False`. torch is imported only when called.
"""
from __future__ import annotations

from typing import Any, Callable

from . import nn
from .gmodule import gModule
from .module import Module
from .torch_interop import (_copy_into, _torch, _value, to_torch_embedding,
                            to_torch_linear, to_torch_recurrent)


def _softmax(m: Any, batch_first: bool) -> Any:
    cls = _torch().nn.LogSoftmax if isinstance(m, nn.LogSoftMax) else _torch().nn.Softmax
    return cls(dim=m.axis)


def _simple(name: str) -> Callable[[Any, bool], Any]:
    return lambda m, batch_first: getattr(_torch().nn, name)()


def _layer_norm(m: Any, batch_first: bool) -> Any:
    values = {k: _value(p) for k, p in m.params().items()}
    shape = getattr(m, "normalized_shape", None)
    if shape is None and "weight" in values:
        shape = values["weight"].shape
    if shape is None:
        raise TypeError(f"to_torch: {m.prefix} does not say its normalized_shape")
    twin = _torch().nn.LayerNorm(tuple(shape), eps=getattr(m, "eps", 1e-5),
                                 elementwise_affine=bool(values))
    return _copy_into(twin, values)


# graphrnn module class name -> (module, batch_first) -> torch module; keyed by name so a
# family can register a module defined after this table
TO_TORCH_RULES: dict[str, Callable[[Any, bool], Any]] = {
    "Recurrent": lambda m, batch_first: to_torch_recurrent(m, batch_first),
    "Linear": lambda m, batch_first: to_torch_linear(m),
    "LookupTable": lambda m, batch_first: to_torch_embedding(m),
    "Dropout": lambda m, batch_first: _torch().nn.Dropout(m.p),
    "Identity": _simple("Identity"),
    "Tanh": _simple("Tanh"),
    "Sigmoid": _simple("Sigmoid"),
    "ReLU": _simple("ReLU"),
    "LayerNorm": _layer_norm,
    "SoftMax": _softmax,
    "LogSoftMax": _softmax,
}


def _one(m: Module, batch_first: bool) -> Any:
    rule = TO_TORCH_RULES.get(type(m).__name__)
    if rule is None:
        raise TypeError(f"to_torch: graphrnn {type(m).__name__} ({m.prefix}) has no PyTorch "
                        f"counterpart here; supported: "
                        f"{', '.join(sorted(TO_TORCH_RULES))}")
    return rule(m, batch_first)


def to_torch(model: Any, batch_first: bool = True) -> Any:
    """A PyTorch module computing what `model` computes, holding copies of its weights.

    `model`: a gModule made by `gr.from_torch` (gives back the module kinds it was made of; an
    `nn.Sequential` named by index for several), one graphrnn module (`nn.Recurrent`,
    `nn.Linear`, `nn.LookupTable`, `nn.Dropout`, activations) or a list of them (an
    `nn.Sequential`). The twin is in eval mode, as graphrnn models are by default.
    """
    layers = getattr(model, "torch_layers", None) if isinstance(model, gModule) else None
    if isinstance(model, gModule) and layers is None:
        raise TypeError(f"to_torch: {model.prefix} is a graph, not a chain of modules; pass "
                        "a model made by gr.from_torch, a graphrnn module or a list of modules")
    if layers is None:
        layers = list(model) if isinstance(model, (list, tuple)) else [model]
    twins = [_one(m, batch_first) for m in layers]
    if len(twins) == 1 and not isinstance(model, (list, tuple)):
        return twins[0].eval()
    torch = _torch()
    seq = torch.nn.Sequential(*twins).eval()
    return seq


__all__ = ["to_torch", "TO_TORCH_RULES"]
