"""Import rules for ONNX's recurrent operators RNN, LSTM and GRU, as graphrnn loops.

Each direction becomes one `loop` node whose body is the ONNX cell written with primitives,
the same shape of graph as graphrnn's built-in cells (cells.py): one input and one recurrent
matmul on stacked gates, biases added, gates sliced in ONNX's order (LSTM i, o, f, c; GRU
z, r, h), so the compiler hoists the input projection and merges the products as it does for
the built-in cells, and no weights are reordered. Every attribute a recurrent model uses is
read: direction, layout, sequence_lens, initial_h/initial_c, peepholes P, clip,
linear_before_reset and activations (Sigmoid, Tanh, Relu).

The sequence is read batch-first (the loop's layout) through the lazy transpose of values.py,
so a time-major model transposes nothing; Y is [T, dirs, B, H] (layout 0) or [B, T, dirs, H]
(layout 1) read from one [B, T, dirs, H] node.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from .. import ops
from ..ir import Node
from .importer import Importer, rule
from .values import Lazy

_ACTIVATIONS: dict[str, Callable[[Node], Node]] = {
    "sigmoid": ops.sigmoid, "tanh": ops.tanh, "relu": ops.relu}
_DEFAULTS = {"RNN": ["Tanh"], "LSTM": ["Sigmoid", "Tanh", "Tanh"], "GRU": ["Sigmoid", "Tanh"]}
_GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}


def _clip(x: Node, c: float | None) -> Node:
    """min(max(x, -c), c), from relu: c - relu(2c - relu(x + c))."""
    if c is None:
        return x
    return ops.sub(c, ops.relu(ops.sub(2.0 * c, ops.relu(ops.add(x, c)))))


class _Cell:
    """The weights of one direction, as nodes usable inside the loop body."""

    def __init__(self, imp: Importer, kind: str, d: int, dirs: int, hidden: int):
        self.imp, self.kind, self.d, self.dirs, self.h = imp, kind, d, dirs, hidden
        self.consts: list[Node] = []       # outer nodes entering the body
        self.inner: list[Node] = []        # their body inputs

    def weight(self, i: int, what: str, part: slice | None = None, tag: str = "") -> Node | None:
        """Input i's slice for this direction (and `part` of its last axis) in the body."""
        imp, v = self.imp, self.imp.get(i)
        if v is None:
            return None
        name = imp.node.input[i]
        if not isinstance(v, Lazy):
            arr = imp.concrete(v, what)
            if arr.shape[:1] != (self.dirs,):
                raise imp.error(f"{what} has shape {list(arr.shape)}, expected {self.dirs} "
                                "directions first")
            arr = arr[self.d] if part is None else arr[self.d][..., part]
            label = ("forward", "reverse")[self.d] if self.dirs == 2 else ""
            sub = ".".join(x for x in (label, tag) if x)
            if name in imp.initializers:
                return ops.param(imp.param(name, arr, sub).param)
            return ops.const(arr.astype(np.float32))
        node = ops.index(imp.node_of(v), 0, self.d)
        if part is not None:
            node = ops.slice_(node, -1, part.start, part.stop - part.start)
        self.consts.append(node)
        x = ops.input_(node.type.shape, name=f"{what}_{self.d}{tag}")
        self.inner.append(x)
        return x


def _read_activations(imp: Importer, kind: str, dirs: int) -> list[list[Callable]]:
    names = imp.attr("activations")
    per = len(_DEFAULTS[kind])
    names = [a.decode() if isinstance(a, bytes) else a for a in names] if names \
        else _DEFAULTS[kind] * dirs
    if len(names) != per * dirs:
        raise imp.error(f"attribute 'activations' has {len(names)} entries, expected "
                        f"{per * dirs} ({per} per direction)")
    if imp.attr("activation_alpha") is not None or imp.attr("activation_beta") is not None:
        raise imp.error("attributes 'activation_alpha'/'activation_beta' are not supported")
    out = []
    for d in range(dirs):
        fns = []
        for a in names[d * per:(d + 1) * per]:
            fn = _ACTIVATIONS.get(a.lower())
            if fn is None:
                raise imp.error(f"attribute 'activations': {a} is not supported (graphrnn has "
                                f"{', '.join(k.title() for k in _ACTIVATIONS)})")
            fns.append(fn)
        out.append(fns)
    return out


def _step(kind: str, cell: _Cell, acts: list[Callable], x: Node, h: Node, c: Node | None,
          clip: float | None, lbr: bool) -> list[Node]:
    """One ONNX cell step: the new states."""
    H, G = cell.h, _GATES[kind]
    w = cell.weight(1, "W")
    r = cell.weight(2, "R")
    wb = cell.weight(3, "B", slice(0, G * H), "Wb")
    rb = cell.weight(3, "B", slice(G * H, 2 * G * H), "Rb")
    xw = ops.matmul(x, w, transpose_b=True)
    if wb is not None:
        xw = ops.add(xw, wb)

    def gate(v: Node, k: int) -> Node:
        return ops.slice_(v, -1, k * H, H) if G > 1 else v

    if kind == "GRU":
        f, g = acts
        rw = ops.matmul(h, r, transpose_b=True)
        if rb is not None:
            rw = ops.add(rw, rb)
        z = f(_clip(ops.add(gate(xw, 0), gate(rw, 0)), clip))
        rt = f(_clip(ops.add(gate(xw, 1), gate(rw, 1)), clip))
        if lbr:
            hh = ops.add(gate(xw, 2), ops.mul(rt, gate(rw, 2)))
        else:
            rh = ops.matmul(ops.mul(rt, h), ops.slice_(r, 0, 2 * H, H), transpose_b=True)
            if rb is not None:
                rh = ops.add(rh, gate(rb, 2))
            hh = ops.add(gate(xw, 2), rh)
        n = g(_clip(hh, clip))
        return [ops.add(ops.mul(ops.sub(1.0, z), n), ops.mul(z, h))]
    z = ops.add(xw, ops.matmul(h, r, transpose_b=True))
    if rb is not None:
        z = ops.add(z, rb)
    if kind == "RNN":
        return [acts[0](_clip(z, clip))]
    f, g, hact = acts
    p = [cell.weight(7, "P", slice(k * H, (k + 1) * H), t) for k, t in enumerate("iof")] \
        if cell.imp.get(7) is not None else [None] * 3

    def peep(v: Node, k: int, state: Node) -> Node:
        return v if p[k] is None else ops.add(v, ops.mul(p[k], state))

    i = f(_clip(peep(gate(z, 0), 0, c), clip))
    fg = f(_clip(peep(gate(z, 2), 2, c), clip))
    ct = g(_clip(gate(z, 3), clip))
    c_new = ops.add(ops.mul(fg, c), ops.mul(i, ct))
    o = f(_clip(peep(gate(z, 1), 1, c_new), clip))
    return [ops.mul(o, hact(c_new)), c_new]


@rule("RNN", "LSTM", "GRU")
def _recurrent(imp: Importer, n: Any) -> list:
    kind = n.op_type
    H = int(imp.attr("hidden_size", 0))
    direction = imp.attr("direction", "forward")
    if direction not in ("forward", "reverse", "bidirectional"):
        raise imp.error(f"attribute 'direction' is {direction!r}")
    dirs = 2 if direction == "bidirectional" else 1
    layout = int(imp.attr("layout", 0))
    if kind == "LSTM" and int(imp.attr("input_forget", 0)):
        raise imp.error("attribute 'input_forget' = 1 (coupled input-forget gate) is not "
                        "supported")
    clip = imp.attr("clip")
    clip = None if clip is None else float(clip)
    lbr = bool(imp.attr("linear_before_reset", 0))
    acts = _read_activations(imp, kind, dirs)
    X = imp.lazy(0, "X")
    if X.rank != 3:
        raise imp.error(f"X must be 3-D, got {list(X.shape)}")
    xs = imp.node_of(X.transposed((1, 0, 2)) if layout == 0 else X)     # [B, T, I]
    if H <= 0:
        W = imp.get(1)
        H = int(W.shape[1]) // _GATES[kind]
    lengths = imp.get(4)
    lengths = None if lengths is None else imp.node_of(imp.lazy(4, "sequence_lens"))
    n_states = 2 if kind == "LSTM" else 1
    given = []
    for k, i in enumerate((5, 6)[:n_states]):
        v = imp.get(i)
        if v is None:
            given.append(None)
            continue
        s = imp.lazy(i, ("initial_h", "initial_c")[k])
        given.append(imp.node_of(s.transposed((1, 0, 2)) if layout == 0 else s))  # [B, dirs, H]
    ys, finals = [], [[] for _ in range(n_states)]
    for d in range(dirs):
        reverse = direction == "reverse" or d == 1
        cell = _Cell(imp, kind, d, dirs, H)
        init = [ops.fill((H,), 0.0, batch_like=xs) if s is None else ops.index(s, 1, d)
                for s in given]
        states = [ops.input_(t.type.shape, name=nm) for t, nm in zip(init, ("h", "c"))]
        x_t = ops.input_((xs.type.shape[0], xs.type.shape[2]), name="x")
        with ops.scope(f"{kind.lower()}_{d}"):
            new = _step(kind, cell, acts[d], x_t, states[0],
                        states[1] if n_states == 2 else None, clip, lbr)
        body = ops.internal_graph(cell.inner + states + [x_t], new + [new[0]])
        loop = ops.loop(body, cell.consts, init, [xs], lengths, reverse=reverse)
        for k in range(n_states):
            finals[k].append(ops.get(loop, k))
        ys.append(ops.get(loop, n_states))
    y = _stack(ys, 2)                                     # [B, T, dirs, H]
    outs: list = [Lazy(y, (1, 2, 0, 3) if layout == 0 else (0, 1, 2, 3))]
    for f in finals:
        s = _stack(f, 1)                                  # [B, dirs, H]
        outs.append(Lazy(s, (1, 0, 2) if layout == 0 else (0, 1, 2)))
    return outs


def _stack(parts: list[Node], axis: int) -> Node:
    rows = [ops.reshape(p, p.type.shape[:axis] + (1,) + p.type.shape[axis:]) for p in parts]
    return rows[0] if len(rows) == 1 else ops.concat(rows, axis)


__all__: list[str] = []
