"""Random valid models for differential testing: every module and op, loops inside loops.

    model, inputs = random_model(np.random.default_rng(7), max_depth=2, max_width=4)

The same generator state gives the same model, parameter values and inputs. Every model is
accepted by the API: the generator only makes what the shape rules allow and uses every node it
makes (nngraph's dangling-node rule). Each value carries an interval [lo, hi] that holds for
every input the generator draws, so `exp` never overflows, `log` only sees positive values and
a carried state stays inside the interval it started in, however many steps a loop runs.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..gmodule import gModule
from .randbuilder import Builder
from .randcells import op_cell_loop, op_cell_step, op_recurrent
from .randloops import op_loop
from .randmath import op_math, op_pair
from .randops import (op_const, op_cwise, op_div, op_dropout, op_exp, op_join, op_linear,
                      op_log, op_lookup, op_map, op_narrow, op_pick, op_reduce, op_reshape,
                      op_scale, op_softmax, op_split, op_submodule)
from .randrows import op_extreme, op_logsumexp, op_norm
from .randshape import SHAPE_OPS, SHAPE_WEIGHTS
from .randvalues import GenParams, Generated, InputSpec, Value, draw_inputs

OPS: dict[str, Callable[..., Value | None]] = {
    "linear": op_linear, "map": op_map, "exp": op_exp, "log": op_log, "scale": op_scale,
    "softmax": op_softmax, "reduce": op_reduce, "narrow": op_narrow, "reshape": op_reshape,
    "split": op_split, "join": op_join, "cwise": op_cwise, "div": op_div,
    "dropout": op_dropout, "const": op_const, "lookup": op_lookup, "pick": op_pick,
    "submodule": op_submodule, "cell_step": op_cell_step, "cell_loop": op_cell_loop,
    "recurrent": op_recurrent, "loop": op_loop, "math": op_math, "pair": op_pair,
    "extreme": op_extreme, "logsumexp": op_logsumexp, "norm": op_norm, **SHAPE_OPS,
}

OP_WEIGHTS: dict[str, float] = {
    "linear": 3.0, "map": 3.0, "exp": 1.0, "log": 1.0, "scale": 1.5, "softmax": 1.0,
    "reduce": 1.0, "narrow": 1.0, "reshape": 1.0, "split": 1.0, "join": 1.5, "cwise": 2.0,
    "div": 0.8, "dropout": 0.5, "const": 1.0, "lookup": 0.8, "pick": 0.5, "submodule": 0.5,
    "cell_step": 0.8, "cell_loop": 0.7, "recurrent": 0.8, "loop": 2.5, "math": 1.5,
    "pair": 1.0,
    "extreme": 0.7, "logsumexp": 0.6, "norm": 0.8, **SHAPE_WEIGHTS,
}


def random_model(rng: np.random.Generator, *, max_depth: int = 2, max_width: int = 4,
                 allow_loops: bool = True, **knobs: Any) -> tuple[gModule, list[np.ndarray]]:
    """A random valid model and example inputs (see `generate` for every knob)."""
    g = generate(rng, GenParams(max_depth=max_depth, max_width=max_width,
                                allow_loops=allow_loops, **knobs))
    return g.model, g.inputs


def generate(rng: np.random.Generator, params: GenParams = GenParams()) -> Generated:
    """A random valid model, its inputs and their specs, all drawn from `rng`."""
    return Builder(rng, params, OPS, OP_WEIGHTS).build()


def generate_seeded(seed: int, params: GenParams = GenParams()) -> Generated:
    return generate(np.random.default_rng(seed), params)


__all__ = ["GenParams", "InputSpec", "Generated", "Value", "random_model", "generate",
           "generate_seeded", "draw_inputs", "OPS", "OP_WEIGHTS"]
