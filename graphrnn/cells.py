"""RNN, LSTM and GRU cells: ordinary graphs built from primitives, one step each.

Parameter names, shapes, gate order and init are PyTorch's (`nn.RNN/LSTM/GRU`), so weights can
be exchanged: `weight_ih [G*H, D]`, `weight_hh [G*H, H]`, `bias_ih [G*H]`, `bias_hh [G*H]`,
all drawn from U(-1/sqrt(H), 1/sqrt(H)).

A cell's inputs are its carried states then the step input, its outputs the new states, so a
cell is a loop body: RNN `(h, x) -> (h',)`, LSTM `(h, c, x) -> (h', c')`, GRU `(h, x) -> (h',)`.
"""
from __future__ import annotations

import math

from . import ops
from .gmodule import gModule
from .init import generator, initial_value
from .ir import Node, Param
from .nn import Input
from .store import adopt


class Cell(gModule):
    """One recurrent step as a graph. `gates` is the number of stacked gate blocks."""
    gates = 1
    n_states = 1
    param_attrs = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")  # Recurrent copies
    weight_hr: Param | None = None

    def __init__(self, input_size: int, hidden_size: int, *, name: str | None = None,
                 suffix: str = "", bias: bool = True, token: object | None = None):
        self.token = token if token is not None else self
        self.input_size, self.hidden_size, self.suffix = input_size, hidden_size, suffix
        self.owner = name or type(self).__name__.lower()
        k = 1.0 / math.sqrt(hidden_size)
        g = self.gates * hidden_size
        init = f"uniform({-k},{k})"
        self.weight_ih = self._new("weight_ih", (g, input_size), init)
        self.weight_hh = self._new("weight_hh", (g, self.output_size), init)
        self.bias_ih = self._new("bias_ih", (g,), init) if bias else None
        self.bias_hh = self._new("bias_hh", (g,), init) if bias else None
        if self.output_size != hidden_size:
            self.weight_hr = self._new("weight_hr", (self.output_size, hidden_size), init)
        states = [Input("B", n, name=s) for s, n in zip(("h", "c"), self.state_sizes)]
        x = Input("B", input_size, name="x")
        with ops.scope(self.owner):
            outs = self.step(x, *states)
        super().__init__(states + [x], list(outs), name=name or type(self).__name__.lower())

    @property
    def output_size(self) -> int:
        """The size of h (the hidden size, or an LSTM's proj_size)."""
        return self.hidden_size

    @property
    def state_sizes(self) -> tuple[int, ...]:
        """The sizes of the carried states, h first."""
        return (self.output_size, self.hidden_size)[:self.n_states]

    def _new(self, name: str, shape: tuple[int, ...], init: str) -> Param:
        p = Param(name + self.suffix, shape, init, owner=self.owner, token=self.token)
        adopt(p, initial_value(shape, init, generator()))
        return p

    def projections(self, x: Node, h: Node) -> tuple[Node, Node]:
        """(x @ W_ih.T + b_ih, h @ W_hh.T + b_hh)."""
        xi = ops.matmul(x, ops.param(self.weight_ih), transpose_b=True)
        hh = ops.matmul(h, ops.param(self.weight_hh), transpose_b=True)
        if self.bias_ih is not None:
            xi = ops.add(xi, ops.param(self.bias_ih)).annotate(name="i2h")
            hh = ops.add(hh, ops.param(self.bias_hh)).annotate(name="h2h")
        return xi, hh

    def gate(self, v: Node, k: int) -> Node:
        """Block k of the stacked gates."""
        return ops.slice_(v, -1, k * self.hidden_size, self.hidden_size)

    def step(self, x: Node, *states: Node) -> tuple[Node, ...]:
        raise NotImplementedError


class RNN(Cell):
    """h' = act(x W_ih^T + b_ih + h W_hh^T + b_hh), act = tanh or relu."""

    def __init__(self, input_size: int, hidden_size: int, nonlinearity: str = "tanh", **kw):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"nonlinearity must be 'tanh' or 'relu', got {nonlinearity!r}")
        self.nonlinearity = nonlinearity
        super().__init__(input_size, hidden_size, **kw)

    def step(self, x: Node, h: Node) -> tuple[Node]:
        xi, hh = self.projections(x, h)
        act = ops.tanh if self.nonlinearity == "tanh" else ops.relu
        return (act(ops.add(xi, hh)).annotate(name="h_next"),)


class LSTM(Cell):
    """Gates i, f, g, o (PyTorch order):
    i = σ(.), f = σ(.), g = tanh(.), o = σ(.);  c' = f*c + i*g;  h' = o * tanh(c').
    With `proj_size=P > 0` (PyTorch's projection): h' = (o * tanh(c')) @ weight_hr.T,
    weight_hr [P, H]; h is [B, P] and weight_hh [4H, P]."""
    gates = 4
    n_states = 2

    def __init__(self, input_size: int, hidden_size: int, proj_size: int = 0, **kw):
        if proj_size < 0 or proj_size >= hidden_size and proj_size:
            raise ValueError(f"proj_size must be in [0, hidden_size={hidden_size}), got "
                             f"{proj_size}")
        self.proj_size = proj_size
        super().__init__(input_size, hidden_size, **kw)

    @property
    def output_size(self) -> int:
        return self.proj_size or self.hidden_size

    def step(self, x: Node, h: Node, c: Node) -> tuple[Node, Node]:
        xi, hh = self.projections(x, h)
        z = ops.add(xi, hh).annotate(name="gates")
        i = ops.sigmoid(self.gate(z, 0)).annotate(name="in_gate")
        f = ops.sigmoid(self.gate(z, 1)).annotate(name="forget_gate")
        g = ops.tanh(self.gate(z, 2)).annotate(name="cell_input")
        o = ops.sigmoid(self.gate(z, 3)).annotate(name="out_gate")
        c_next = ops.add(ops.mul(f, c), ops.mul(i, g)).annotate(name="c_next")
        h_next = ops.mul(o, ops.tanh(c_next))
        if self.weight_hr is not None:
            h_next = ops.matmul(h_next, ops.param(self.weight_hr), transpose_b=True)
        return h_next.annotate(name="h_next"), c_next


class GRU(Cell):
    """Gates r, z, n (PyTorch order):
    r = σ(x_r + h_r), z = σ(x_z + h_z), n = tanh(x_n + r * h_n), h' = (1 - z) * n + z * h."""
    gates = 3

    def step(self, x: Node, h: Node) -> tuple[Node]:
        xi, hh = self.projections(x, h)
        r = ops.sigmoid(ops.add(self.gate(xi, 0), self.gate(hh, 0))).annotate(name="reset_gate")
        z = ops.sigmoid(ops.add(self.gate(xi, 1), self.gate(hh, 1))).annotate(name="update_gate")
        n = ops.tanh(ops.add(self.gate(xi, 2), ops.mul(r, self.gate(hh, 2)))).annotate(
            name="candidate")
        h_next = ops.add(ops.mul(ops.sub(1.0, z), n), ops.mul(z, h)).annotate(name="h_next")
        return (h_next,)


__all__ = ["Cell", "RNN", "LSTM", "GRU"]
