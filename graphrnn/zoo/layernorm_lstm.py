"""The layer-normalised LSTM of Ba, Kiros and Hinton (2016), written as a user cell.

    z  = LN_ih(x W_ih^T) + LN_hh(h W_hh^T)          (each LN over the 4H gate vector; its bias
    i, f, g, o = σ(z_i), σ(z_f), tanh(z_g), σ(z_o)    is the gate bias)
    c' = f * c + i * g;   h' = o * tanh(LN_c(c'))

Gate order and `weight_ih [4H, D]`, `weight_hh [4H, H]` are PyTorch's LSTM ones; the norms'
parameters are `ln_ih_weight`, `ln_ih_bias` [4H], `ln_hh_*` [4H] and `ln_c_*` [H].
"""
from __future__ import annotations

from typing import Any

from .. import ops
from ..cells import LSTM
from ..gmodule import gModule
from ..ir import Node
from ..nn import Input
from ..recurrent import Recurrent

NORMS = (("ln_ih", 4), ("ln_hh", 4), ("ln_c", 1))


class LayerNormLSTM(LSTM):
    """A layer-normalised LSTM cell `(h, c, x) -> (h', c')`, for `nn.Recurrent` or a Loop."""
    param_attrs = LSTM.param_attrs + tuple(f"{n}_{p}" for n, _ in NORMS
                                           for p in ("weight", "bias"))

    def __init__(self, input_size: int, hidden_size: int, eps: float = 1e-5, **kw: Any):
        self.eps = float(eps)
        kw["bias"] = False          # the norms' biases are the gate biases
        super().__init__(input_size, hidden_size, **kw)

    def _norm(self, name: str, v: Node) -> Node:
        y = ops.normalize(v, v.type.shape[-1:], self.eps)
        y = ops.mul(y, ops.param(getattr(self, f"{name}_weight")))
        return ops.add(y, ops.param(getattr(self, f"{name}_bias"))).annotate(name=name)

    def step(self, x: Node, h: Node, c: Node) -> tuple[Node, Node]:
        H = self.hidden_size
        for name, k in NORMS:
            setattr(self, f"{name}_weight", self._new(f"{name}_weight", (k * H,), "ones"))
            setattr(self, f"{name}_bias", self._new(f"{name}_bias", (k * H,), "zeros"))
        xi = ops.matmul(x, ops.param(self.weight_ih), transpose_b=True)
        hh = ops.matmul(h, ops.param(self.weight_hh), transpose_b=True)
        z = ops.add(self._norm("ln_ih", xi), self._norm("ln_hh", hh)).annotate(name="gates")
        i = ops.sigmoid(self.gate(z, 0))
        f = ops.sigmoid(self.gate(z, 1))
        g = ops.tanh(self.gate(z, 2))
        o = ops.sigmoid(self.gate(z, 3))
        c_next = ops.add(ops.mul(f, c), ops.mul(i, g)).annotate(name="c_next")
        h_next = ops.mul(o, ops.tanh(self._norm("ln_c", c_next))).annotate(name="h_next")
        return h_next, c_next


def layernorm_lstm(input_size: int, hidden_size: int, num_layers: int = 1,
                   eps: float = 1e-5, name: str = "lnlstm") -> gModule:
    """A gModule `x [B, T, input_size] -> h [B, T, hidden_size]`: `num_layers` stacked
    layer-normalised LSTMs (zero initial states)."""
    x = Input("B", "T", input_size, name="x")
    rec = Recurrent(LayerNormLSTM(input_size, hidden_size, eps=eps), num_layers=num_layers,
                    name=name)
    return gModule([x], [rec(x)], name=name)


__all__ = ["LayerNormLSTM", "layernorm_lstm"]
