"""join_projections (the driver's step "join", before hoist_invariants): with many rows, a
cell's input and recurrent projections become one step product over concat(x_t, h); results
stay the interpreter's."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
import graphrnn.compiler.passes.join as join
from graphrnn import nn
from graphrnn.compiler.passes.flatten import flatten_params
from graphrnn.compiler.passes.hoist import hoist_invariants
from graphrnn.compiler.passes.join import join_loops
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.compiler.passes.validate import verify
from graphrnn.interpret import Context, run_graph
from graphrnn.ir import Graph, Op, TensorType
from graphrnn.ops import infer_graph
from graphrnn.bench.peers import named_grads
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(3)
T, D, H = 4, 10, 6


@pytest.fixture(autouse=True)
def joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Join from 8 rows, a symbolic batch too, on every ISA (the choice: test_join_choice.py)."""
    monkeypatch.setattr(join, "MIN_ROWS", 8)
    monkeypatch.setattr(join, "MIN_SYMBOLIC_INPUT", 1)
    monkeypatch.setattr(join, "MIN_REGISTERS", 0)


def layer(cell: type, rows: int, *, bidirectional: bool = False, lengths: bool = False
          ) -> tuple[gr.gModule, Graph, list]:
    """A recurrent layer typed for `rows` batch rows, its typed graph and inputs."""
    x = gr.Input("B", "T", D, name="x")
    ins, types = [x], [TensorType((rows, T, D))]
    args = [RNG.standard_normal((rows, T, D)).astype(np.float32)]
    if lengths:
        ins.append(gr.Input("B", dtype="int64", name="lengths"))
        types.append(TensorType((rows,), "int64"))
        args.append(RNG.integers(0, T + 1, rows))
    m = gr.gModule(ins, [nn.Recurrent(cell(D, H), bidirectional=bidirectional)(ins)])
    return m, infer_graph(m.graph, types), args


def step_products(g: Graph) -> list[list[Op]]:
    """For each loop: the ops feeding the left operand of each matmul in its body."""
    return [[m.inputs[0].op for m in n.attrs["body"].nodes if m.op == Op.MATMUL]
            for n in g.nodes if n.op == Op.LOOP]


def outer_matmuls(g: Graph) -> int:
    return sum(1 for n in g.nodes if n.op == Op.MATMUL)


def same(a: object, b: object) -> None:
    a, b = (a, b) if isinstance(a, (tuple, list)) else ((a,), (b,))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("cell", [gr.cells.LSTM, gr.cells.RNN])
@pytest.mark.parametrize("config", [dict(), dict(bidirectional=True, lengths=True)],
                         ids=["plain", "bi-lengths"])
def test_many_rows_join_the_projections(cell: type, config: dict) -> None:
    m, typed, args = layer(cell, 16, **config)
    g = hoist_invariants(join_loops(typed))
    verify(g)
    assert outer_matmuls(g) == 0                          # no [B, T, G*H] projection
    assert all(ops == [Op.CONCAT] for ops in step_products(g))
    same(tuple(run_graph(g, args, Context())), tuple(run_graph(typed, args, Context())))


def test_flattened_weights_are_joined_once_before_the_loop() -> None:
    m, typed, args = layer(gr.cells.LSTM, 16)
    flat, _ = flatten_params(typed)
    g = hoist_invariants(join_loops(flat))
    verify(g)
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    consts = loop.inputs[:loop.attrs["n_consts"]]
    assert any(c.op == Op.CONCAT and c.type.shape == (4 * H, D + H) for c in consts)
    same(tuple(run_graph(g, [*args, m.parameters()[0]], Context())),
         tuple(run_graph(typed, args, Context())))


def test_few_rows_keep_the_hoisted_projection() -> None:
    _, typed, _ = layer(gr.cells.LSTM, 3)
    g = hoist_invariants(join_loops(typed))
    assert outer_matmuls(g) == 1
    assert step_products(g) == [[Op.INPUT]]


def test_symbolic_batch_is_joined() -> None:
    # one program for every batch size: a batch of unknown size counts as many rows
    m, _, _ = layer(gr.cells.LSTM, 16)
    assert outer_matmuls(hoist_invariants(join_loops(m.graph))) == 0


def test_gru_keeps_its_projections_apart() -> None:
    _, typed, args = layer(gr.cells.GRU, 16)
    g = hoist_invariants(join_loops(typed))
    assert outer_matmuls(g) == 1
    same(tuple(run_graph(g, args, Context())), tuple(run_graph(typed, args, Context())))


@pytest.mark.parametrize("rows", [17, None])
def test_min_rows_is_read_at_call_time(rows: int | None,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    _, typed, _ = layer(gr.cells.LSTM, 16)
    monkeypatch.setattr(join, "MIN_ROWS", rows)
    assert outer_matmuls(hoist_invariants(join_loops(typed))) == 1


def test_training_graph_joins_the_forward_loop() -> None:
    m, _, _ = layer(gr.cells.LSTM, 16)
    g = prepare_training(m.graph, [TensorType((16, T, D))])[0]
    assert outer_matmuls(g) == 0
    assert step_products(prepare(m.graph, [TensorType((16, T, D))])[0]) == [[Op.CONCAT]]


@pytest.mark.parametrize("lengths", [False, True])
def test_compiled_forward_matches_the_interpreter(lengths: bool, tmp_path) -> None:
    m, _, args = layer(gr.cells.LSTM, 16, lengths=lengths)
    got = gr.compile(m, cache=KernelCache(tmp_path))(*args)
    same(got, gr.interpret(m, *args))


def test_compiled_training_matches_the_hoisted_projection(tmp_path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    m, _, (x,) = layer(gr.cells.LSTM, 16)
    y = RNG.standard_normal((16, T, H)).astype(np.float32)
    results = []
    for rows in (16, None):
        monkeypatch.setattr(join, "MIN_ROWS", rows)
        step = gr.compile(m, loss=gr.MSECriterion(), train=True,
                          cache=KernelCache(tmp_path / str(rows)))
        loss = float(np.asarray(step(x, target=y)))
        results.append((loss, named_grads(m)))
    (l1, g1), (l2, g2) = results
    assert l1 == pytest.approx(l2, rel=1e-5)
    for name in g1:
        np.testing.assert_allclose(g1[name], g2[name], rtol=1e-4, atol=1e-6)
