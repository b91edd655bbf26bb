"""Recurrent: a layer helper that builds the loop around a cell (tiny-dnn's `recurrent_layer`)."""
from __future__ import annotations

from typing import Any

from . import ops
from .gmodule import gModule
from .init import next_dropout_seed
from .ir import GraphError, Node, Table
from .loop import Loop
from .module import Module, as_nodes
from .store import value


class Recurrent(Module):
    """Run a cell over `x[B, T, D]`, stacked `num_layers` deep, optionally in both directions.

    `Recurrent(gr.cells.LSTM(D, H), num_layers=2)(x)` gives `[B, T, H]` (or `[B, H]`, the last
    state, with `return_sequences=False`; `[.., 2H]` when bidirectional, forward half first).
    Parameter keys follow PyTorch's `nn.LSTM`: `weight_ih_l0`, `weight_hh_l1_reverse`, ...
    Called with `[x, lengths]`, rows stop at their own length.

    Initial states, as PyTorch's `rnn(x, h0)` / `lstm(x, (h0, c0))`: `rec(x, h0)` (RNN, GRU)
    or `rec(x, (h0, c0))` (LSTM), each state a node `[num_layers * num_directions, B, H]`
    in PyTorch's order (layer by layer, the reverse direction after the forward one; batch
    in the middle, as in PyTorch even with batch_first) or a list of that many `[B, H]` nodes;
    zeros when not given.
    Final states: `return_state="stacked"` makes the call return PyTorch's pair,
    `(output, h_n)` or `(output, (h_n, c_n))`, h_n `[num_layers * num_directions, B, H]`;
    `return_state=True` a table `(output, *final_states)` of `[B, H]` nodes, ordered by layer,
    then direction, then h before c.
    `dropout=p`: PyTorch's dropout on the outputs of every layer but the last, while training
    (the identity at inference and in `gr.compile(model)`).
    """

    def __init__(self, cell: Any, num_layers: int = 1, bidirectional: bool = False,
                 return_sequences: bool = True, return_state: bool | str = False,
                 dropout: float = 0.0, name: str | None = None):
        super().__init__(name or type(cell).__name__.lower())
        if return_state not in (False, True, "stacked"):
            raise ValueError(f"return_state must be False, True or 'stacked', got "
                             f"{return_state!r}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {dropout}")
        self.dropout = float(dropout)
        self.dropout_seeds = [next_dropout_seed() for _ in range(num_layers - 1)] \
            if dropout else []
        kind = type(cell)
        extra = {"nonlinearity": cell.nonlinearity} if hasattr(cell, "nonlinearity") else {}
        extra["bias"] = cell.bias_ih is not None
        if getattr(cell, "proj_size", 0):
            extra["proj_size"] = cell.proj_size
        self.proj_size = getattr(cell, "proj_size", 0)
        self.state_sizes: tuple[int, ...] = cell.state_sizes
        dirs = 2 if bidirectional else 1
        self.hidden_size, self.dirs = cell.hidden_size, dirs
        self.num_layers, self.return_sequences = num_layers, return_sequences
        self.return_state, self.n_states = return_state, cell.n_states
        self.cells = []
        for layer in range(num_layers):
            d_in = cell.input_size if layer == 0 else dirs * cell.output_size
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                self.cells.append(kind(d_in, cell.hidden_size, name=self.prefix, suffix=suffix,
                                       token=self, **extra))
        if num_layers == 1 and dirs == 1:
            # keep the given cell's own weights (e.g. loaded from PyTorch) for the common case
            first = self.cells[0]
            for a in cell.param_attrs:
                src, dst = getattr(cell, a), getattr(first, a)
                if src is not None:
                    value(dst)[...] = value(src)

    def _body(self, cell: Any) -> Any:
        """The loop body: the cell's new states, and h' again as the per-step output."""
        states = [ops.input_(("B", size), name=s) for s, size in zip(("h", "c"), cell.state_sizes)]
        x = ops.input_(("B", cell.input_size), name="x")
        outs = cell(states + [x])
        outs = [outs] if isinstance(outs, Node) else list(outs)
        return gModule(states + [x], outs + [outs[0]], name=cell.prefix)

    def __call__(self, x: Any = None, hx: Any = None) -> Any:
        if x is None:
            raise TypeError(f"{type(self).__name__} needs an input node")
        with ops.scope(self.prefix):
            return self.build(x, hx)

    def _initial(self, hx: Any) -> list[list[Node]] | None:
        """Per state (h, then c), one [B, H] node per layer and direction."""
        if hx is None:
            return None
        if self.n_states == 2:
            if not (isinstance(hx, (tuple, list)) and len(hx) == 2):
                raise GraphError(f"{self.prefix}: an LSTM takes its initial states as "
                                 "(h0, c0)")
            return [self._one_state(s, what, size)
                    for s, what, size in zip(hx, ("h0", "c0"), self.state_sizes)]
        return [self._one_state(hx, "h0", self.hidden_size)]

    def _one_state(self, s: Any, what: str, size: int) -> list[Node]:
        n = self.num_layers * self.dirs
        if isinstance(s, Node):
            t = s.type
            if t is not None and t.rank == 2 and n == 1:
                return [s]
            if t is not None and (t.rank != 3 or t.shape[0] != n or t.shape[2] != size):
                raise GraphError(f"{self.prefix} at {ops.creation_site()}: {what} must be "
                                 f"[{n}, B, {size}] (num_layers * num_directions, "
                                 f"batch, hidden), got {t}")
            return [ops.index(s, 0, k) for k in range(n)]
        states = as_nodes(s)
        if len(states) != n:
            raise GraphError(f"{self.prefix} at {ops.creation_site()}: {what} must be {n} "
                             f"nodes [B, {size}] (one per layer and direction), "
                             f"got {len(states)}")
        return states

    def _stacked(self, states: list[Node]) -> Node:
        """[B, H] nodes as one [len, B, H] node, PyTorch's h_n."""
        rows = [ops.reshape(s, (1,) + s.type.shape) for s in states]
        return rows[0] if len(rows) == 1 else ops.concat(rows, 0)

    def build(self, x: Any, hx: Any = None) -> Any:
        nodes = as_nodes(x)
        if len(nodes) not in (1, 2):
            raise GraphError(f"{self.prefix}: call with x or [x, lengths]")
        seq, lengths = nodes[0], (nodes[1] if len(nodes) == 2 else None)
        given = self._initial(hx)
        finals: list[Node] = []
        last: list[Node] = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                k = layer * self.dirs + d
                cell = self.cells[k]
                init = [ops.fill((size,), 0.0, batch_like=seq)
                        for size in cell.state_sizes] if given is None else \
                    [states[k] for states in given]
                loop = Loop(self._body(cell), n_carry=self.n_states, reverse=bool(d))
                parts = loop(init=init, xs=[seq], lengths=lengths)
                finals.extend(parts[:self.n_states])
                outs.append(parts[self.n_states])
                if layer == self.num_layers - 1:
                    last.append(parts[0])
            if layer < self.num_layers - 1 or self.return_sequences:
                seq = outs[0] if self.dirs == 1 else ops.concat(outs, -1)
            if layer < self.num_layers - 1 and self.dropout:
                seq = ops.dropout(seq, self.dropout, self.dropout_seeds[layer])
        if self.return_sequences:
            out = seq
        else:
            out = last[0] if self.dirs == 1 else ops.concat(last, -1)
        if self.return_state == "stacked":
            h_n = self._stacked(finals[0::self.n_states])
            if self.n_states == 1:
                return out, h_n
            return out, (h_n, self._stacked(finals[1::self.n_states]))
        return Table([out] + finals) if self.return_state else out
