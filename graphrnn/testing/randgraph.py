"""Random valid models for differential testing: every module and op, loops inside loops.

    model, inputs = random_model(np.random.default_rng(7), max_depth=2, max_width=4)

The same generator state gives the same model, parameter values and inputs. Every model is
accepted by the API: the generator only makes what the shape rules allow and uses every node it
makes (nngraph's dangling-node rule). Each value carries an interval [lo, hi] that holds for
every input the generator draws, so `exp` never overflows, `log` only sees positive values and
a carried state stays inside the interval it started in, however many steps a loop runs.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

from .. import cells, nn
from ..gmodule import gModule
from ..ir import Dim, Node, TensorType
from ..losses import CrossEntropyCriterion, MSECriterion

TAME = 30.0            # a value that may exceed this is scaled or squashed right away
STEPS_SLACK = 2        # bounds hold for every T up to the drawn one plus this


@dataclass(frozen=True)
class GenParams:
    """The size knobs of one random model; smaller numbers give smaller models."""
    max_depth: int = 2          # loops (and sub-modules) nested this deep
    max_width: int = 4          # largest feature dim
    max_ops: int = 8            # ops drawn at the top level (about half as many in a body)
    allow_loops: bool = True
    allow_cells: bool = True
    max_batch: int = 3
    max_steps: int = 4

    def smaller(self) -> list["GenParams"]:
        """Every one-step reduction of these knobs, for shrinking a failing case."""
        floors = {"max_depth": 0, "max_width": 1, "max_ops": 1, "max_batch": 1, "max_steps": 0}
        out = []
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool):
                if v:
                    out.append(self._with(f.name, False))
            else:
                for w in sorted({floors[f.name], v // 2, v - 1}):
                    if floors[f.name] <= w < v:
                        out.append(self._with(f.name, w))
        return out

    def _with(self, name: str, value: Any) -> "GenParams":
        return GenParams(**{**asdict(self), name: value})


@dataclass(frozen=True)
class InputSpec:
    """How to draw one input: its shape ("B", "T" or ints); int64 inputs lie in [0, high]."""
    shape: tuple[Dim, ...]
    high: Dim | None = None     # None: a float input; "T": as many as the steps
    scale: float = 1.0          # float inputs are uniform in [-scale, scale]


@dataclass
class Generated:
    """A random model, its inputs, and how to draw inputs for other sizes."""
    model: gModule
    inputs: list[np.ndarray]
    specs: list[InputSpec]
    batch: int
    steps: int
    symbolic: bool              # inputs declared with "B" and "T" (else with their sizes)
    any_steps: bool = False     # the model takes any T from 1 to steps + STEPS_SLACK

    def draw(self, rng: np.random.Generator, batch: int, steps: int) -> list[np.ndarray]:
        return draw_inputs(self.specs, rng, batch, steps)

    def other_sizes(self, rng: np.random.Generator) -> list[list[np.ndarray]]:
        """Inputs of another sequence length (same batch) and of another batch size (same
        length: 1, one more, or 9), for the models that take them."""
        out = []
        if self.any_steps:
            steps = [t for t in range(1, self.steps + STEPS_SLACK + 1) if t != self.steps]
            out.append(self.draw(rng, self.batch, int(rng.choice(steps))))
        if self.symbolic:
            r = rng.random()
            # 9 rows: enough for a loop's step products to be joined (compiler/join.py)
            batch = 1 if self.batch > 1 and r < 0.4 else self.batch + 1 if r < 0.75 else 9
            out.append(self.draw(rng, batch, self.steps))
        return out


@dataclass
class Value:
    """A node the generator may build on, with bounds that hold for every drawn input."""
    node: Node
    lo: float
    hi: float
    high: Dim | None = None     # int64 values: entries lie in [0, high]
    used: bool = False

    @property
    def shape(self) -> tuple[Dim, ...]:
        return self.node.type.shape

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def is_float(self) -> bool:
        return self.high is None

    @property
    def bound(self) -> float:
        return max(abs(self.lo), abs(self.hi))


def draw_inputs(specs: Sequence[InputSpec], rng: np.random.Generator, batch: int,
                steps: int) -> list[np.ndarray]:
    """Arrays for the specs; lengths reach both 0 and their maximum when the batch allows."""
    sizes = {"B": batch, "T": steps}
    out = []
    for s in specs:
        shape = tuple(sizes.get(d, d) if isinstance(d, str) else d for d in s.shape)
        if s.high is None:
            out.append(rng.uniform(-s.scale, s.scale, shape).astype(np.float32))
            continue
        high = sizes["T"] if s.high == "T" else int(s.high)
        a = rng.integers(0, high + 1, shape).astype(np.int64)
        if a.ndim == 1 and a.size >= 2 and rng.random() < 0.7:
            i, j = rng.choice(a.size, 2, replace=False)
            a[i], a[j] = 0, high
        out.append(a)
    return out


def random_model(rng: np.random.Generator, *, max_depth: int = 2, max_width: int = 4,
                 allow_loops: bool = True, **knobs: Any) -> tuple[gModule, list[np.ndarray]]:
    """A random valid model and example inputs (see `generate` for every knob)."""
    g = generate(rng, GenParams(max_depth=max_depth, max_width=max_width,
                                allow_loops=allow_loops, **knobs))
    return g.model, g.inputs


def generate(rng: np.random.Generator, params: GenParams = GenParams()) -> Generated:
    """A random valid model, its inputs and their specs, all drawn from `rng`."""
    return Builder(rng, params).build()


def generate_seeded(seed: int, params: GenParams = GenParams()) -> Generated:
    return generate(np.random.default_rng(seed), params)


# ----------------------------------------------------------------------------- intervals

def hull(*ivs: tuple[float, float]) -> tuple[float, float]:
    return min(i[0] for i in ivs), max(i[1] for i in ivs)


def times(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    p = [x * y for x in a for y in b]
    return min(p), max(p)


def _sigmoid(x: float) -> float:
    return 0.5 * (1.0 + math.tanh(0.5 * x))


MAPS: dict[str, tuple[Callable, Callable]] = {
    "tanh": (nn.Tanh, math.tanh),
    "sigmoid": (nn.Sigmoid, _sigmoid),
    "relu": (nn.ReLU, lambda x: max(x, 0.0)),
}


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
    def __init__(self, rng: np.random.Generator, p: GenParams):
        self.rng, self.p = rng, p
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
        inputs = draw_inputs(self.specs, self.rng, self.batch, self.steps)
        any_steps = self.symbolic and self.has_t and not self.t_fixed
        return Generated(model, inputs, self.specs, self.batch, self.steps, self.symbolic,
                         any_steps)

    def loss(self, lv: Level) -> Node | None:
        """A scalar criterion on some value: cross-entropy against int targets, or MSE."""
        rows = lv.floats(lambda v: v.rank == 2 and isinstance(v.shape[1], int) and v.shape[1] > 0)
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
            names = [k for k, w in OP_WEIGHTS.items() if self._allowed(k, lv)]
            w = np.array([OP_WEIGHTS[k] for k in names])
            before = len(lv.values)
            for name in self.rng.choice(names, len(names), replace=False, p=w / w.sum()):
                if OPS[name](self, lv, v) is not None:
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
            return OPS["map"](self, lv, v, kind=self.pick(["tanh", "sigmoid"]))
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


# the op table builds on the classes above, as nn.py's gModule import does
from .randops import OP_WEIGHTS, OPS, make_cell

__all__ = ["GenParams", "InputSpec", "Generated", "Value", "random_model", "generate",
           "generate_seeded", "draw_inputs"]
