"""A language model's parts as PyTorch modules with the same weights, and sampling with them.

    twin = to_torch(embed, layer, head)     # nn.Embedding, nn.GRU/LSTM/RNN, nn.Linear
    ids = torch_sample_ids(twin, prime, 200, temperature=0.75, seed=1)

`embed` is a LookupTable, `layer` a Recurrent (any depth, either direction, RNN/LSTM/GRU
cells), `head` a Linear. The torch modules hold copies of the current values: parameter names,
shapes and gate order are PyTorch's already (`weight_ih_l0`, `bias_hh_l1_reverse`, ...), so the
export is a copy, and the recurrent module is `batch_first` like graphrnn. `torch_sample_ids`
is the loop a PyTorch user writes: one step per character, feeding each drawn class back.

torch is an optional extra (`pip install -e '.[bench]'`); it is imported only when a function
here needs it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .cells import GRU, LSTM, RNN
from .nn import Linear, LookupTable
from .recurrent import Recurrent
from .store import value

WEIGHTS = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")


def _torch() -> Any:
    """The torch module, or an ImportError that says how to install it."""
    try:
        import torch
    except ImportError as e:
        raise ImportError("graphrnn.torch_interop needs torch, the bench extra "
                          f"(pip install -e '.[bench]'): {e}") from None
    return torch


def _value(param: Any) -> np.ndarray:
    """A copy of a parameter's value (a tied parameter's comes from the one it is tied to)."""
    return np.array(value(param), np.float32, copy=True)


def _copy_into(module: Any, values: dict[str, np.ndarray]) -> Any:
    torch = _torch()
    names = dict(module.named_parameters())
    if set(names) != set(values):
        raise ValueError(f"{type(module).__name__}: parameters {sorted(names)}, "
                         f"weights given {sorted(values)}")
    with torch.no_grad():
        for name, p in names.items():
            p.copy_(torch.from_numpy(np.ascontiguousarray(values[name])))
    return module


def recurrent_weights(layer: Recurrent) -> dict[str, np.ndarray]:
    """Copies of a Recurrent's weights keyed by PyTorch name (`weight_ih_l0`, ...)."""
    if not isinstance(layer, Recurrent):
        raise TypeError(f"expected an nn.Recurrent, got {type(layer).__name__}")
    out: dict[str, np.ndarray] = {}
    for cell in layer.cells:
        for attr in WEIGHTS:
            param = getattr(cell, attr, None)
            if param is not None:
                out[attr + cell.suffix] = _value(param)
    return out


def to_torch_embedding(embed: LookupTable) -> Any:
    """`torch.nn.Embedding(n, dim)` holding a copy of the LookupTable's weight."""
    torch = _torch()
    if not isinstance(embed, LookupTable):
        raise TypeError(f"expected an nn.LookupTable, got {type(embed).__name__}")
    return _copy_into(torch.nn.Embedding(embed.n, embed.dim), {"weight": _value(embed.weight)})


def to_torch_recurrent(layer: Recurrent, batch_first: bool = True) -> Any:
    """`torch.nn.GRU/LSTM/RNN(..., num_layers, bidirectional, dropout, batch_first)` (LSTM with
    its proj_size) with copies of the Recurrent's weights."""
    torch = _torch()
    weights = recurrent_weights(layer)
    cell = layer.cells[0]
    kw: dict[str, Any] = {}
    # the exact class: a user cell derived from one (a layer-norm LSTM) is another network
    if type(cell) is GRU:
        cls = torch.nn.GRU
    elif type(cell) is LSTM:
        cls = torch.nn.LSTM
        kw = {"proj_size": cell.proj_size}
    elif type(cell) is RNN:
        cls, kw = torch.nn.RNN, {"nonlinearity": cell.nonlinearity}
    else:
        raise TypeError(f"no PyTorch module for cells of type {type(cell).__name__}")
    module = cls(cell.input_size, layer.hidden_size, num_layers=layer.num_layers,
                 bias=cell.bias_ih is not None, batch_first=batch_first,
                 bidirectional=layer.dirs == 2, dropout=layer.dropout, **kw)
    return _copy_into(module, weights)


def to_torch_linear(linear: Linear) -> Any:
    """`torch.nn.Linear(in, out)` holding copies of the Linear's weight and bias."""
    torch = _torch()
    if not isinstance(linear, Linear):
        raise TypeError(f"expected an nn.Linear, got {type(linear).__name__}")
    values = {"weight": _value(linear.weight)}
    if linear.bias is not None:
        values["bias"] = _value(linear.bias)
    module = torch.nn.Linear(linear.in_features, linear.out_features,
                             bias=linear.bias is not None)
    return _copy_into(module, values)


@dataclass(frozen=True)
class TorchLanguageModel:
    """The PyTorch modules of a LookupTable -> Recurrent -> Linear language model."""
    embedding: Any
    recurrent: Any
    head: Any

    def step(self, ids: Any, state: Any = None) -> tuple[Any, Any]:
        """(logits of the last step [B, C], new state) after reading ids [B, T] (torch)."""
        out, state = self.recurrent(self.embedding(ids), state)
        return self.head(out[:, -1]), state


def to_torch(embed: LookupTable, layer: Recurrent, head: Linear) -> TorchLanguageModel:
    """The PyTorch twin of a language model, for comparison and benchmarking."""
    if layer.dirs != 1:
        raise ValueError("a language model needs a unidirectional recurrent layer")
    return TorchLanguageModel(to_torch_embedding(embed).eval(),
                              to_torch_recurrent(layer).eval(), to_torch_linear(head).eval())


def torch_sample_ids(model: TorchLanguageModel, prime: np.ndarray, length: int,
                     temperature: float, seed: int = 0) -> np.ndarray:
    """ids [B, length] drawn with PyTorch one step at a time, as graphrnn's `sample_ids` does
    in one native call: read the priming ids, then repeatedly draw a class from
    softmax(logits / temperature) (`torch.multinomial`; argmax at temperature <= 0) and feed
    it back, carrying the recurrent state. The draws use a `torch.Generator` seeded with
    `seed`, so they differ from graphrnn's (which takes numpy uniforms); argmax agrees."""
    torch = _torch()
    prime = np.atleast_2d(np.asarray(prime, np.int64))
    draws = torch.Generator().manual_seed(seed)
    drawn = []
    with torch.no_grad():
        logits, state = model.step(torch.from_numpy(prime))
        for _ in range(length):
            if temperature > 0:
                probs = torch.softmax(logits / temperature, dim=-1)
                ids = torch.multinomial(probs, 1, generator=draws)
            else:
                ids = torch.argmax(logits, dim=-1, keepdim=True)
            drawn.append(ids)
            logits, state = model.step(ids, state)
    if not drawn:
        return np.zeros((prime.shape[0], 0), np.int64)
    return torch.cat(drawn, dim=1).numpy()


__all__ = ["TorchLanguageModel", "recurrent_weights", "to_torch", "to_torch_embedding",
           "to_torch_recurrent", "to_torch_linear", "torch_sample_ids"]
