"""The random generator's builder: the graph being built at each level (the model, a loop body,
a sub-module), its randomness and sizes, and the modules it reuses or ties.

The op table comes in from outside (`randgraph.OPS`): an op may grow a level of its own (a
loop body, a sub-module), which draws ops again, so the builder holds the table it draws from.
"""
from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

from .. import cells, nn
from ..gmodule import gModule
from ..ir import Dim, Node, TensorType
from ..losses import CrossEntropyCriterion, MSECriterion
from .randvalues import STEPS_SLACK, TAME, GenParams, Generated, InputSpec, Value, draw_inputs

CELL_KINDS = ("rnn_tanh", "rnn_relu", "gru", "lstm")
OpFn = Callable[..., "Value | None"]


def make_cell(kind: str, d: int, h: int, bias: bool) -> cells.Cell:
    if kind.startswith("rnn_"):
        return cells.RNN(d, h, kind[4:], bias=bias)
    return {"gru": cells.GRU, "lstm": cells.LSTM}[kind](d, h, bias=bias)


# ----------------------------------------------------------------------------- levels

class Level:
    """One graph being built (the model, a loop body or a sub-module) and its values."""

    def __init__(self, builder: "Builder", depth: int, parent: "Level | None"):
        self.b, self.depth, self.parent = builder, depth, parent
        self.values: list[Value] = []
        self.inputs: list[Node] = []
        self.externs: list[tuple[Node, tuple[Dim, ...], Dim]] = []   # int values asked outside

    def add(self, node: Node, lo: float, hi: float, high: Dim | None = None) -> Value:
        if not lo <= hi:
            raise AssertionError(f"interval [{lo}, {hi}] of {node} is empty")
        v = Value(node, float(lo), float(hi), high)
        self.values.append(v)
        return v

    def take(self, *vs: Value) -> Any:
        for v in vs:
            v.used = True
        return vs[0].node if len(vs) == 1 else [v.node for v in vs]

    def input_like(self, t: TensorType, lo: float, hi: float, high: Dim | None = None) -> Value:
        x = nn.Input(*t.shape, dtype=t.dtype)
        self.inputs.append(x)
        return self.add(x, lo, hi, high)

    def floats(self, pred: Callable[[Value], bool] = lambda v: True) -> list[Value]:
        return [v for v in self.values if v.is_float and pred(v)]

    def unused(self) -> list[Value]:
        return [v for v in self.values if not v.used]

    def int_value(self, shape: tuple[Dim, ...], high: Dim) -> Value:
        """An int64 value of `shape` in [0, high]: reused, a new model input, or (in a body)
        a new body input that the enclosing level fills."""
        same = [v for v in self.values if v.high == high and v.shape == shape]
        if same and self.b.chance(0.5):
            return self.b.pick(same)
        x = nn.Input(*shape, dtype="int64")
        if self.parent is None:
            self.b.specs.append(InputSpec(shape, high))
            self.inputs.append(x)
        else:
            self.externs.append((x, shape, high))
        return self.add(x, 0, self.b.bound_size(high), high)

    def resolve_externs(self) -> list[Value]:
        """The enclosing level's values for this level's extern inputs, in order."""
        return [self.parent.int_value(shape, high) for _, shape, high in self.externs]


# ----------------------------------------------------------------------------- the builder

class Builder:
    def __init__(self, rng: np.random.Generator, p: GenParams, ops: dict[str, OpFn],
                 weights: dict[str, float]):
        self.rng, self.p = rng, p
        self.ops, self.weights = ops, weights      # name -> op, and how often it is drawn
        self.batch = self.int(1, p.max_batch)
        self.steps = 0 if p.max_steps == 0 or self.chance(0.1) else self.int(1, p.max_steps)
        self.symbolic = not self.chance(0.15)
        self.bdim: Dim = "B" if self.symbolic else self.batch
        self.tdim: Dim = "T" if self.symbolic else self.steps
        self.specs: list[InputSpec] = []
        self.has_t = False          # some model input has the time dim
        self.t_fixed = False        # some loop over T asks to be unrolled: T must divide
        self.linears: list[nn.Linear] = []
        self.lookups: list[nn.LookupTable] = []
        self.cells: list[tuple[str, cells.Cell]] = []

    # -- randomness
    def chance(self, p: float) -> bool:
        return bool(self.rng.random() < p)

    def int(self, lo: int, hi: int) -> int:
        return int(self.rng.integers(lo, hi + 1)) if hi > lo else lo

    def pick(self, items: Sequence[Any]) -> Any:
        return items[int(self.rng.integers(len(items)))]

    def width(self) -> int:
        return self.int(1, self.p.max_width)

    def feat(self, max_rank: int = 2) -> tuple[int, ...]:
        return tuple(self.width() for _ in range(1 if self.chance(0.75) else max_rank))

    # -- sizes
    def size(self, d: Dim) -> int:
        """The size of d in the drawn inputs."""
        return {"B": self.batch, "T": self.steps}.get(d, 0) if isinstance(d, str) else int(d)

    def bound_size(self, d: Dim) -> int:
        """The largest size of d that the bounds hold for: T may grow by STEPS_SLACK, B by 1."""
        return {"B": self.batch + 1, "T": self.steps + STEPS_SLACK}.get(d, 0) \
            if isinstance(d, str) else int(d)

    # -- the model
    def build(self) -> Generated:
        top = Level(self, 0, None)
        for i in range(self.int(1, 3)):
            seq = (self.p.allow_loops or self.p.allow_cells) and self.chance(0.55)
            shape = (self.bdim,) + ((self.tdim,) if seq else ()) + self.feat()
            self.has_t |= seq
            scale = self.pick([0.5, 1.0, 2.0])
            x = nn.Input(*shape, name=f"x{i}")
            top.inputs.append(x)
            self.specs.append(InputSpec(shape, None, scale))
            top.add(x, -scale, scale)
        self.grow(top, max(1, self.int(self.p.max_ops // 2, self.p.max_ops)))
        outs = [v.node for v in top.unused() if v.is_float]
        for v in top.unused():
            v.used = True
        ints = [v.node for v in top.values if not v.is_float]
        if ints and self.chance(0.1):
            outs.append(self.pick(ints))
        loss = self.loss(top) if self.chance(0.2) else None
        if loss is not None:
            outs.append(loss)
        if self.chance(0.1):
            outs.append(self.pick(outs))
        model = gModule(top.inputs, outs, name="fuzz")
        model.reset_parameters(seed=self.int(0, 2**31 - 1))
        # off the inits' exact values: a zero bias of a one-element layer norm is a constant
        # 0 that a step function of it turns into a kink every redraw of the inputs meets
        flat = model.parameters()[0]
        flat += self.rng.normal(0.0, 0.05, flat.shape).astype(np.float32)
        inputs = draw_inputs(self.specs, self.rng, self.batch, self.steps)
        any_steps = self.symbolic and self.has_t and not self.t_fixed
        return Generated(model, inputs, self.specs, self.batch, self.steps, self.symbolic,
                         any_steps)

    def loss(self, lv: Level) -> Node | None:
        """A scalar criterion on some value: cross-entropy against int targets, or MSE."""
        rows = lv.floats(lambda v: v.rank == 2 and v.shape[0] == self.bdim
                         and isinstance(v.shape[1], int) and v.shape[1] > 0)
        if rows and self.chance(0.5):
            v = self.pick(rows)
            target = lv.int_value((self.bdim,), v.shape[1] - 1)
            target.used = True
            return CrossEntropyCriterion()([v.node, target.node])
        full = lv.floats(lambda v: all(self.size(d) > 0 for d in v.shape))
        if not full:
            return None
        v = self.pick(full)
        twins = lv.floats(lambda u: u.node.type == v.node.type)
        return MSECriterion()([v.node, self.pick(twins).node])

    def grow(self, lv: Level, n: int) -> None:
        """Apply `n` random ops, each to a random value (unused ones preferred)."""
        for _ in range(n):
            fresh = lv.floats(lambda v: not v.used)
            v = self.pick(fresh if fresh and self.chance(0.7) else lv.floats())
            names = [k for k, w in self.weights.items() if self._allowed(k, lv)]
            w = np.array([self.weights[k] for k in names])
            before = len(lv.values)
            for name in self.rng.choice(names, len(names), replace=False, p=w / w.sum()):
                if self.ops[name](self, lv, v) is not None:
                    break
            for out in lv.values[before:]:
                if out.is_float and not out.used and out.bound > TAME:
                    self.tame(lv, out)

    def _allowed(self, name: str, lv: Level) -> bool:
        nested = lv.depth < self.p.max_depth
        if name in ("loop",):
            return nested and self.p.allow_loops
        if name in ("recurrent", "cell_loop"):
            return nested and self.p.allow_cells
        if name == "cell_step":
            return self.p.allow_cells
        if name == "submodule":
            return nested
        return True

    def tame(self, lv: Level, v: Value) -> Value:
        if self.chance(0.5):
            return self.ops["map"](self, lv, v, kind=self.pick(["tanh", "sigmoid"]))
        c = 2.0 ** -math.ceil(math.log2(v.bound / 4.0))
        return lv.add(nn.MulConstant(c)(lv.take(v)), v.lo * c, v.hi * c)

    # -- modules, reused (tied by construction) or shared (tied by `share`)
    def linear(self, k: int, out: int | None = None) -> nn.Linear:
        same = [m for m in self.linears if m.in_features == k and out in (None, m.out_features)]
        if same and self.chance(0.3):
            return self.pick(same)
        out = out or self.width()
        mod = nn.Linear(k, out, bias=self.chance(0.75))
        twins = [m for m in self.linears if (m.in_features, m.out_features) == (k, out)]
        if twins and self.chance(0.5):
            other = self.pick(twins)
            both = mod.bias is not None and other.bias is not None
            mod.share(other, *(("weight", "bias") if both else ("weight",)))
        self.linears.append(mod)
        return mod

    def lookup_table(self, n: int) -> nn.LookupTable:
        same = [m for m in self.lookups if m.n == n]
        if same and self.chance(0.4):
            return self.pick(same)
        mod = nn.LookupTable(n, self.width())
        self.lookups.append(mod)
        return mod

    def cell(self, kind: str, d: int, h: int) -> cells.Cell:
        same = [c for k, c in self.cells if k == kind and (c.input_size, c.hidden_size) == (d, h)]
        if same and self.chance(0.4):
            return self.pick(same)
        c = make_cell(kind, d, h, self.chance(0.8))
        self.cells.append((kind, c))
        return c



__all__ = ["CELL_KINDS", "Level", "Builder", "make_cell"]
