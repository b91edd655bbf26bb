"""The random generator's values: the size knobs, input specs, the generated case, and the
intervals [lo, hi] every value carries, so that the bounds hold for every drawn input."""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Any, Callable, Sequence

import numpy as np

from .. import nn
from ..gmodule import gModule
from ..ir import Dim, Node

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
            # 9 rows: enough for a loop's step products to be joined (compiler/passes/join.py)
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


__all__ = ["TAME", "STEPS_SLACK", "GenParams", "InputSpec", "Generated", "Value", "draw_inputs",
           "hull", "times", "MAPS"]
