"""Recurrent: a layer helper that builds the loop around a cell (tiny-dnn's `recurrent_layer`)."""
from __future__ import annotations

from typing import Any

from . import ops
from .gmodule import gModule
from .ir import GraphError, Node, Table
from .loop import Loop
from .module import Module, as_nodes
from .store import value


class Recurrent(Module):
    """Run a cell over `x[B, T, D]`, stacked `num_layers` deep, optionally in both directions.

    `Recurrent(gr.cells.LSTM(D, H), num_layers=2)(x)` gives `[B, T, H]` (or `[B, H]`, the last
    state, with `return_sequences=False`; `[.., 2H]` when bidirectional, forward half first).
    Parameter keys follow PyTorch's `nn.LSTM`: `weight_ih_l0`, `weight_hh_l1_reverse`, ...
    Called with `[x, lengths]`, rows stop at their own length. With `return_state=True` the
    call returns a table `(output, *final_states)`, states ordered by layer then direction.
    """

    def __init__(self, cell: Any, num_layers: int = 1, bidirectional: bool = False,
                 return_sequences: bool = True, return_state: bool = False,
                 name: str | None = None):
        super().__init__(name or type(cell).__name__.lower())
        kind = type(cell)
        extra = {"nonlinearity": cell.nonlinearity} if hasattr(cell, "nonlinearity") else {}
        extra["bias"] = cell.bias_ih is not None
        dirs = 2 if bidirectional else 1
        self.hidden_size, self.dirs = cell.hidden_size, dirs
        self.num_layers, self.return_sequences = num_layers, return_sequences
        self.return_state, self.n_states = return_state, cell.n_states
        self.cells = []
        for layer in range(num_layers):
            d_in = cell.input_size if layer == 0 else dirs * cell.hidden_size
            for d in range(dirs):
                suffix = f"_l{layer}" + ("_reverse" if d else "")
                self.cells.append(kind(d_in, cell.hidden_size, name=self.prefix, suffix=suffix,
                                       token=self, **extra))
        if num_layers == 1 and dirs == 1:
            # keep the given cell's own weights (e.g. loaded from PyTorch) for the common case
            first = self.cells[0]
            for a in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                src, dst = getattr(cell, a), getattr(first, a)
                if src is not None:
                    value(dst)[...] = value(src)

    def _body(self, cell: Any) -> Any:
        """The loop body: the cell's new states, and h' again as the per-step output."""
        states = [ops.input_(("B", cell.hidden_size), name=s) for s in ("h", "c")[:self.n_states]]
        x = ops.input_(("B", cell.input_size), name="x")
        outs = cell(states + [x])
        outs = [outs] if isinstance(outs, Node) else list(outs)
        return gModule(states + [x], outs + [outs[0]], name=cell.prefix)

    def build(self, x: Any) -> Any:
        nodes = as_nodes(x)
        if len(nodes) not in (1, 2):
            raise GraphError(f"{self.prefix}: call with x or [x, lengths]")
        seq, lengths = nodes[0], (nodes[1] if len(nodes) == 2 else None)
        finals: list[Node] = []
        last: list[Node] = []
        for layer in range(self.num_layers):
            outs = []
            for d in range(self.dirs):
                cell = self.cells[layer * self.dirs + d]
                init = [ops.fill((cell.hidden_size,), 0.0, batch_like=seq)
                        for _ in range(self.n_states)]
                loop = Loop(self._body(cell), n_carry=self.n_states, reverse=bool(d))
                parts = loop(init=init, xs=[seq], lengths=lengths)
                finals.extend(parts[:self.n_states])
                outs.append(parts[self.n_states])
                if layer == self.num_layers - 1:
                    last.append(parts[0])
            if layer < self.num_layers - 1 or self.return_sequences:
                seq = outs[0] if self.dirs == 1 else ops.concat(outs, -1)
        if self.return_sequences:
            out = seq
        else:
            out = last[0] if self.dirs == 1 else ops.concat(last, -1)
        return Table([out] + finals) if self.return_state else out
