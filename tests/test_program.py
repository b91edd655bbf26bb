"""runtime.Program: one native call over validated inputs, fresh outputs, workspaces, params."""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler import compile_graph
from graphrnn.ir import TensorType
from graphrnn.runtime.jit import Engine
from graphrnn.runtime.program import Program, address, as_input, bind_dims

RNG = np.random.default_rng(5)


def build(model: gr.gModule, types: list[TensorType], params=None) -> Program:
    exe = compile_graph(model.graph, types)
    engine = Engine()
    return Program(exe, engine.load(engine.compile_to_object(exe.llvm_ir).obj),
                   model.flat if params is None else params)


@pytest.fixture(scope="module")
def rnn() -> tuple[gr.gModule, Program]:
    x = gr.Input("B", "T", 6, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    y, h = nn.Recurrent(gr.cells.RNN(6, 4), return_state=True)([x, n])
    model = gr.gModule([x, n], [y, h])
    return model, build(model, [TensorType((2, "T", 6)), TensorType((2,), "int64")])


def test_program_runs_and_returns_fresh_arrays(rnn) -> None:
    model, program = rnn
    x, n = RNG.standard_normal((2, 5, 6)).astype(np.float32), np.array([5, 2])
    y1, h1 = program(x, n)
    y2, h2 = program(x, n)
    assert y1 is not y2 and not np.shares_memory(y1, y2)
    np.testing.assert_array_equal(y1, y2)
    want_y, want_h = model.forward(x, n)
    np.testing.assert_allclose(y1, want_y, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(h1, want_h, rtol=1e-4, atol=1e-5)
    assert program.names == ("x", "lengths") and len(program.out_types) == 2


def test_the_arena_grows_with_the_steps(rnn) -> None:
    model, program = rnn
    for t in (3, 40, 2):
        x, n = RNG.standard_normal((2, t, 6)).astype(np.float32), np.array([t, 1])
        np.testing.assert_allclose(program(x, n)[0], model.forward(x, n)[0], rtol=1e-4,
                                   atol=1e-5)
    contract = program.exe.contract
    assert contract.arena[1] + contract.arena_rows[1] > 0   # some buffers scale with T


def test_the_executable_describes_its_checks(rnn) -> None:
    _, program = rnn
    assert program.symbol == "T"
    assert ("lengths", 1, (0, 1)) in program.checks   # lengths in [0, 0 + 1 * steps]
    assert program.exe.entry_points[0].startswith("graphrnn_")


def test_validation_returns_the_step_count(rnn) -> None:
    _, program = rnn
    arrays, steps = program.validate([np.zeros((2, 7, 6), np.float32), [1, 7]])
    assert steps == 7 and arrays[1].dtype == np.int64
    with pytest.raises(gr.InputError, match="lengths must lie in"):
        program.validate([np.zeros((2, 7, 6), np.float32), [1, 8]])


def test_params_are_the_models_own_vector(rnn) -> None:
    model, program = rnn
    assert program.params is model.flat
    x, n = RNG.standard_normal((2, 4, 6)).astype(np.float32), np.array([4, 4])
    before = program(x, n)[1]
    saved = model.flat.copy()
    model.flat *= 0.5
    try:
        after = program(x, n)[1]
        np.testing.assert_allclose(after, model.forward(x, n)[1], rtol=1e-4, atol=1e-5)
        assert not np.allclose(before, after)
    finally:
        model.flat[...] = saved
    with pytest.raises(gr.InputError, match="parameter vector"):
        program.bind_params(np.zeros(3, np.float32))


def test_concurrent_calls_use_separate_workspaces(rnn) -> None:
    _, program = rnn
    xs = [RNG.standard_normal((2, 30 + i, 6)).astype(np.float32) for i in range(6)]
    n = np.array([20, 30])
    want = [program(x, n)[0] for x in xs]
    got: dict[int, np.ndarray] = {}

    def work(i: int) -> None:
        for _ in range(30):
            got[i] = program(xs[i], n)[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(6):
        np.testing.assert_array_equal(got[i], want[i])


def test_helpers() -> None:
    a = np.arange(6, dtype=np.float32)
    assert address(a) == a.ctypes.data
    frozen = a.copy()
    frozen.flags.writeable = False
    assert address(frozen) == frozen.ctypes.data
    empty = np.zeros(0, np.float32)
    assert address(empty) == empty.ctypes.data
    t = TensorType(("B", "T", 2))
    with pytest.raises(gr.InputError, match="rank 3"):
        as_input("x", t, np.zeros((2, 2), np.float32))
    arrays = [np.zeros((3, 5, 2), np.float32), np.zeros((3, 5, 2), np.float32)]
    assert bind_dims(["a", "b"], [TensorType((3, "T", 2))] * 2, arrays, "T") == 5
    with pytest.raises(gr.InputError, match="T=5"):
        bind_dims(["a", "b"], [TensorType((3, "T", 2))] * 2,
                  [arrays[0], np.zeros((3, 4, 2), np.float32)], "T")


def test_a_model_without_parameters_or_time() -> None:
    x = gr.Input("B", 4, name="x")
    model = gr.gModule([x], [gr.ops.softmax(x)])
    program = build(model, [TensorType((2, 4))], params=np.zeros(0, np.float32))
    v = RNG.standard_normal((2, 4)).astype(np.float32)
    np.testing.assert_allclose(program(v), model.forward(v), rtol=1e-5, atol=1e-6)
    assert program.symbol is None
