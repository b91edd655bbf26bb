"""PyTorch modules as graphrnn models: `gr.from_torch(module)` and `gr.load_torch_state`.

    model = gr.from_torch(torch.nn.LSTM(8, 16, num_layers=2, bidirectional=True))
    out, h_n, c_n = model(x)                  # x [B, T, 8]: torch's out, (h_n, c_n)
    gr.load_torch_state(model, "lstm.pt")      # later weights, by name

The model holds copies of the module's current weights under PyTorch's names: a standalone
module's keys are its own (`lstm.weight_ih_l0` for the torch key `weight_ih_l0`), the children
of an `nn.Sequential` are named by their index, so the keys are exactly torch's (`0.weight`,
`1.weight_ih_l0`). graphrnn models are batch-first: a recurrent module built with
`batch_first=False` gives the same weights and a model taking `[B, T, D]`.

torch is imported only by the functions that need it (`pip install -e '.[bench]'`).
"""
from __future__ import annotations

import os
from typing import Any, Callable, Sequence

import numpy as np

from . import nn
from .cells import GRU, LSTM, RNN
from .gmodule import gModule
from .ir import Node, Table
from .module import Module
from .recurrent import Recurrent
from .store import value

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def _torch() -> Any:
    try:
        import torch
    except ImportError as e:
        raise ImportError(f"gr.from_torch needs torch (pip install -e '.[bench]'): {e}") from None
    return torch


def as_array(v: Any) -> np.ndarray:
    """A tensor (any device, with or without grad) or array-like as a float32 numpy array."""
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        if v.is_floating_point() and str(v.dtype) != "torch.float32":
            v = v.float()
        v = v.numpy()
    return np.asarray(v, np.float32)


def _fill(module: Module, params: dict[str, Any], values: dict[str, Any]) -> Module:
    for name, p in params.items():
        if p is not None:
            value(p)[...] = as_array(values[name])
    return module


def _recurrent(m: Any, name: str) -> Module:
    kind = type(m).__name__
    if getattr(m, "proj_size", 0):
        kw_cell: dict[str, Any] = {"proj_size": m.proj_size}
    else:
        kw_cell = {}
    if kind == "RNN":
        cell: Any = RNN(m.input_size, m.hidden_size, nonlinearity=m.nonlinearity, bias=m.bias)
    elif kind == "LSTM":
        cell = LSTM(m.input_size, m.hidden_size, bias=m.bias, **kw_cell)
    else:
        cell = GRU(m.input_size, m.hidden_size, bias=m.bias)
    rec = Recurrent(cell, num_layers=m.num_layers, bidirectional=m.bidirectional,
                    return_state="stacked", dropout=float(m.dropout), name=name)
    state = dict(m.named_parameters())
    for c in rec.cells:
        _fill(rec, {a + c.suffix: getattr(c, a, None) for a in WEIGHTS}, state)
    return rec


def _linear(m: Any, name: str) -> Module:
    lin = nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, name=name)
    return _fill(lin, {"weight": lin.weight, "bias": lin.bias}, dict(m.named_parameters()))


def _embedding(m: Any, name: str) -> Module:
    for attr, default in (("padding_idx", None), ("max_norm", None), ("sparse", False)):
        if getattr(m, attr) != default:
            raise ValueError(f"from_torch: nn.Embedding({attr}={getattr(m, attr)!r}) has no "
                             f"graphrnn counterpart; only {attr}={default!r} is supported")
    emb = nn.LookupTable(m.num_embeddings, m.embedding_dim, name=name)
    return _fill(emb, {"weight": emb.weight}, {"weight": m.weight})


def _softmax(cls: type) -> Callable[[Any, str], Module]:
    def convert(m: Any, name: str) -> Module:
        if m.dim is None:
            raise ValueError(f"from_torch: nn.{type(m).__name__}(dim=None) relies on PyTorch's "
                             "implicit dim; give dim explicitly")
        return cls(m.dim, name=name)
    return convert


def _layer_norm(m: Any, name: str) -> Module:
    if m.elementwise_affine and getattr(m, "bias", None) is None:
        raise ValueError("from_torch: nn.LayerNorm(bias=False) has no graphrnn counterpart; "
                         "only bias=True (or elementwise_affine=False) is supported")
    ln = nn.LayerNorm(tuple(m.normalized_shape), eps=m.eps,
                      elementwise_affine=m.elementwise_affine, name=name)
    return _fill(ln, ln.params(), dict(m.named_parameters()))


# torch class name -> (module, name) -> graphrnn module; families of ops add their rows here
FROM_TORCH_RULES: dict[str, Callable[[Any, str], Module]] = {
    "RNN": _recurrent,
    "LSTM": _recurrent,
    "GRU": _recurrent,
    "Linear": _linear,
    "Embedding": _embedding,
    "LayerNorm": _layer_norm,
    "Dropout": lambda m, name: nn.Dropout(m.p, name=name),
    "Identity": lambda m, name: nn.Identity(name=name),
    "Tanh": lambda m, name: nn.Tanh(name=name),
    "Sigmoid": lambda m, name: nn.Sigmoid(name=name),
    "ReLU": lambda m, name: nn.ReLU(name=name),
    "Softmax": _softmax(nn.SoftMax),
    "LogSoftmax": _softmax(nn.LogSoftMax),
}


def _convert(m: Any, name: str) -> list[Module]:
    kind = type(m).__name__
    if kind == "Sequential":
        layers: list[Module] = []
        for child_name, child in m.named_children():
            layers += _convert(child, f"{name}.{child_name}" if name else child_name)
        return layers
    rule = FROM_TORCH_RULES.get(kind)
    if rule is None:
        raise TypeError(f"from_torch: torch.nn.{kind} ({name or 'the module'}) has no graphrnn "
                        f"counterpart; supported: nn.Sequential of "
                        f"{', '.join(sorted(FROM_TORCH_RULES))}")
    return [rule(m, name or kind.lower())]


def _default_input(first: Any, m: Any) -> Node:
    if isinstance(first, Recurrent):
        return nn.Input("B", "T", first.cells[0].input_size, name="x")
    if isinstance(first, nn.LookupTable):
        return nn.Input("B", "T", dtype="int64", name="ids")
    if isinstance(first, nn.Linear):
        return nn.Input("B", first.in_features, name="x")
    leaf = m
    while type(leaf).__name__ == "Sequential" and len(leaf):
        leaf = leaf[0]
    shape = getattr(leaf, "normalized_shape", None)
    if shape is not None:
        return nn.Input("B", *shape, name="x")
    raise ValueError(f"from_torch: the input shape of {type(m).__name__} cannot be told from "
                     "its first module; pass input_shape=(\"B\", ..., features)")


def _state_inputs(rec: Recurrent) -> list[Node]:
    n = rec.num_layers * rec.dirs
    return [nn.Input(n, "B", size, name=k) for k, size in zip(("h0", "c0"), rec.state_sizes)]


def from_torch(module: Any, input_shape: Sequence[Any] | None = None,
               input_dtype: str = "float32", name: str | None = None, *,
               lengths: bool = False, initial_state: bool = False) -> gModule:
    """A gModule computing what the PyTorch `module` computes, with copies of its weights.

    `module`: `nn.RNN` (tanh, relu), `nn.LSTM` (with `proj_size`), `nn.GRU` (any `num_layers`,
    `bidirectional`, `bias`, `dropout`, `batch_first`), `nn.Linear`, `nn.Embedding`,
    `nn.Dropout`, `nn.LayerNorm`, `nn.Tanh`, `nn.Sigmoid`, `nn.ReLU`, `nn.Softmax`,
    `nn.LogSoftmax`, or an `nn.Sequential` of these (a recurrent one last).
    `input_shape`: the model input's shape, batch-first (`("B", "T", 8)`); by default taken
    from the first module (`[B, T, D]` for a recurrent one, `[B, in]` for Linear, int64 ids
    `[B, T]` for Embedding). A recurrent module last makes the model return torch's triple or
    pair flattened: `out, h_n` (RNN, GRU) or `out, h_n, c_n` (LSTM), states
    `[num_layers * num_directions, B, H]`.
    `lengths=True` adds an int64 input `lengths [B]` after x (rows stop at their own length,
    as a packed sequence in PyTorch), `initial_state=True` the inputs `h0` (and `c0`)
    `[num_layers * num_directions, B, H]` after it (torch's `hx`; zeros otherwise).
    """
    layers = _convert(module, "")
    if input_shape is None:
        x = _default_input(layers[0], module)
    else:
        x = nn.Input(*input_shape, dtype=input_dtype, name="x")
    recurrent = [layer for layer in layers if isinstance(layer, Recurrent)]
    if (lengths or initial_state) and not recurrent:
        raise ValueError("from_torch: lengths= and initial_state= need a recurrent module")
    extra = [nn.Input("B", dtype="int64", name="lengths")] if lengths else []
    states = _state_inputs(recurrent[0]) if initial_state else []
    y: Any = x
    for k, layer in enumerate(layers):
        if not isinstance(y, Node):
            raise TypeError(f"from_torch: {type(layers[k - 1]).__name__} returns (output, "
                            "state) and must be the last module of the Sequential")
        if isinstance(layer, Recurrent):
            hx = None if not states else states[0] if len(states) == 1 else tuple(states)
            y = layer([y] + extra if extra else y, hx)
        else:
            y = layer(y)
    outs: list[Node] = []
    for part in (y if isinstance(y, (tuple, Table)) else (y,)):
        outs += list(part) if isinstance(part, tuple) else [part]
    model = gModule([x] + extra + states, outs, name=name or type(module).__name__.lower())
    model.torch_layers = layers
    model.eval()
    return model


def _single_owner(keys: Sequence[str]) -> str | None:
    owners = {k.split(".", 1)[0] for k in keys}
    return owners.pop() if len(owners) == 1 and all("." in k for k in keys) else None


def torch_state(source: Any) -> dict[str, np.ndarray]:
    """A state_dict as float32 arrays: from a dict of tensors or arrays, or a `.pt` file read
    with `torch.load(path, weights_only=True)` (never unpickling arbitrary objects)."""
    if isinstance(source, (str, os.PathLike)):
        source = _torch().load(os.fspath(source), map_location="cpu", weights_only=True)
    if hasattr(source, "state_dict") and callable(source.state_dict):
        source = source.state_dict()
    if not isinstance(source, dict):
        raise TypeError(f"expected a state_dict (a dict of tensors or arrays), a torch module or "
                        f"a .pt path, got {type(source).__name__}")
    return {str(k): as_array(v) for k, v in source.items()}


def load_torch_state(model: gModule, source: Any, strict: bool = True) -> None:
    """Load a PyTorch state_dict into `model` by name, as torch's `load_state_dict(strict=)`.

    `source`: a dict of tensors or numpy arrays, a torch module, or the path of a `.pt` file
    (read with `torch.load(..., weights_only=True)`). Keys are the model's (`lstm.weight_ih_l0`)
    or, for a model whose parameters all belong to one module, torch's own (`weight_ih_l0`).
    Raises KeyError naming the missing and unexpected keys, ValueError for a shape mismatch.
    """
    state = torch_state(source)
    ours = model.store.params
    owner = _single_owner(list(ours))
    if owner is not None and not any(k in ours for k in state):
        state = {f"{owner}.{k}": v for k, v in state.items()}
    missing = [k for k in ours if k not in state]
    unexpected = [k for k in state if k not in ours]
    if strict and (missing or unexpected):
        raise KeyError(f"load_torch_state({model.prefix}): missing keys {missing}, unexpected "
                       f"keys {unexpected} (the model's keys: {list(ours)})")
    for k, v in state.items():
        if k in ours and v.shape != ours[k].shape:
            raise ValueError(f"load_torch_state({model.prefix}): {k} has shape {list(v.shape)} "
                             f"in the state_dict, the model expects {list(ours[k].shape)}")
    model.load_state_dict({k: v for k, v in state.items() if k in ours}, strict=False)


__all__ = ["from_torch", "load_torch_state", "torch_state", "FROM_TORCH_RULES"]
