"""Packed weights persist between calls and are repacked exactly when the parameters change.

Every change is seen without help, whatever made it: optimiser steps, load_state_dict,
reset_parameters, writes into the vector handed out by parameters() or into a named view kept
from earlier. A stale pack never gives a result that differs from the interpreter's.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compile import CompiledModel
from graphrnn.compiler.pipeline import prepare
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.runtime.program import Program
from graphrnn.train import InterpretedStep
from graphrnn.trainstep import CompiledTrainStep

RNG = np.random.default_rng(21)
H = 6


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def lstm() -> gr.gModule:
    x = gr.Input("B", "T", 5, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(5, H))(x)])
    model.reset_parameters(seed=1)
    return model


def merged() -> gr.gModule:
    """Two Linears on h in a loop body: merged into one matmul against concat(W1, W2)."""
    hb, xb = gr.Input("B", H), gr.Input("B", H)
    a, b = nn.Linear(H, H)(hb), nn.Linear(H, H)(hb)
    h2 = nn.Tanh()(nn.CAddTable()([nn.CMulTable()([nn.Sigmoid()(a), xb]), b]))
    x, h0 = gr.Input("B", "T", H, name="x"), gr.Input("B", H, name="h0")
    _, ys = gr.Loop(gr.gModule([hb, xb], [h2, h2]), n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [ys])
    model.reset_parameters(seed=2)
    return model


def check(model: gr.gModule, fast: CompiledModel, *inputs: np.ndarray) -> None:
    np.testing.assert_allclose(fast(*inputs), gr.interpret(model, *inputs), rtol=1e-4,
                               atol=1e-5)


def program_of(fast: CompiledModel) -> Program:
    (program,) = fast.programs.values()
    return program


def test_weights_are_packed_once_across_calls(cache) -> None:
    model, x = lstm(), randn(2, 4, 5)
    fast = gr.compile(model, cache=cache)
    for _ in range(3):
        check(model, fast, x)
    program = program_of(fast)
    assert program.exe.contract.pack is not None and program.packs == 1


def test_the_persistent_part_holds_the_packs_and_their_weights(cache) -> None:
    model = merged()
    fast = CompiledModel(model, cache=cache)
    g, _ = prepare(fast.graph, fast.types_for(batch=2))
    sched = schedule(g, g.inputs[-1])
    kinds = sorted(k.kind for k in sched.persistent)
    assert kinds == ["map", "pack"]             # concat(W1, W2), then its panels
    assert all(b not in sched.buffers for b in sched.persist_buffers)


@pytest.mark.parametrize("build", [lstm, merged])
def test_library_updates_are_seen(build, cache) -> None:
    model = build()
    inputs = [randn(3, 4, 5)] if build is lstm else [randn(3, 4, H), randn(3, H)]
    fast = gr.compile(model, cache=cache)
    check(model, fast, *inputs)
    opt = gr.optim.SGD(model, lr=0.5)
    model.parameters()[1][...] = randn(model.table.size)
    for _ in range(2):
        opt.step()
        check(model, fast, *inputs)
    model.load_state_dict({k: v * 2 for k, v in model.state_dict().items()})
    check(model, fast, *inputs)
    model.reset_parameters(seed=7)
    check(model, fast, *inputs)
    model.parameters()[0][...] = randn(model.table.size)     # handed out, then written
    check(model, fast, *inputs)
    packs = program_of(fast).packs
    check(model, fast, *inputs)
    assert program_of(fast).packs == packs                   # nothing changed: no repack


def test_hand_writes_into_a_kept_vector_are_seen(cache) -> None:
    model, x = lstm(), randn(2, 4, 5)
    fast = gr.compile(model, cache=cache)
    flat, _ = model.parameters()
    check(model, fast, x)
    flat *= 0.5
    check(model, fast, x)
    weight = model.named_parameters()["lstm.weight_hh_l0"]
    check(model, fast, x)
    weight += 1.0
    check(model, fast, x)
    packs = program_of(fast).packs
    check(model, fast, x)
    assert program_of(fast).packs == packs                   # nothing changed: no repack


def test_a_program_without_versions_repacks_every_call(cache) -> None:
    model, x = lstm(), randn(2, 4, 5)
    fast = gr.compile(model, cache=cache)
    fast(x)
    own = program_of(fast)
    bare = Program(own.exe, own.library, model.flat)
    for k in range(1, 4):
        model.flat[:8] += 0.25                           # no version: always seen
        np.testing.assert_allclose(bare(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)
        assert bare.packs == k


def test_training_steps_never_see_stale_packs(cache) -> None:
    model, x, y = lstm(), randn(3, 5, 5), randn(3, 5, H)
    step = CompiledTrainStep(model, gr.MSECriterion(), cache=cache)
    oracle = InterpretedStep(model, gr.MSECriterion())
    opt = gr.optim.Adam(model, lr=0.05)
    for _ in range(3):
        loss = step(x, target=y)
        grad = model.parameters()[1].copy()
        want = oracle(x, target=y)
        np.testing.assert_allclose(loss, want, rtol=1e-5)
        np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-3, atol=1e-5)
        opt.step()
