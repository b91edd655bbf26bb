"""Shared checks of the shape/product module tests: one model interpreted, compiled, and its
gradients (compiled VJP, interpreter, finite differences) all agreeing."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

import graphrnn as gr
from graphrnn.flat import param_keys
from graphrnn.gradcheck import gradcheck, gradients

RNG = np.random.default_rng(11)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def close(a, b, tol: float = 1e-4) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


@dataclass
class Checked:
    y: np.ndarray                   # the compiled output
    dx: list                        # compiled gradients per input (None for int inputs)
    dparams: dict                   # compiled parameter gradients by key
    cot: np.ndarray                 # the cotangent used


def check(model, *arrays, fd: bool = True, program=None) -> Checked:
    """Forward: compiled == interpreted; backward: compiled VJP == interpreter gradients
    (inputs and parameters), and (fd) the interpreter's gradients == finite differences."""
    want = model(*arrays)
    fast = program if program is not None else gr.compile(model)
    close(fast(*arrays), want)
    cot = RNG.standard_normal(np.shape(want)).astype(np.float32)
    model.parameters()[1][:] = 0
    (y,), dx = gr.compile_vjp(model)(*arrays, cot)
    close(y, want)
    _, p_oracle, x_oracle = gradients(model, *arrays, cotangents=[cot], dtype=np.float32)
    floats = [d for d in dx if d is not None]
    assert len(floats) == len(x_oracle)
    for got, ref in zip(floats, x_oracle):
        close(got, ref)
    views = model.table.views(model.parameters()[1])
    keys = param_keys(model.graph.params())
    for p in model.graph.params():
        close(views[keys[p]], p_oracle[keys[p]])
    if fd:
        result = gradcheck(model, *arrays, rtol=1e-4)
        assert result.ok, str(result)
    return Checked(y, list(dx), {keys[p]: views[keys[p]].copy() for p in model.graph.params()},
                   cot)
