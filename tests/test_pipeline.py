"""The driver: passes in order, timed, verified and dumped; `disable` and `unroll` honoured."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import cells, nn, ops, settings
from graphrnn.compiler import OPTIMISATIONS, Trace, compile_graph, pipeline, prepare
from graphrnn.interpret import interpret
from graphrnn.ir import Graph, Op, TensorType

RNG = np.random.default_rng(17)
FRONT = ["shapes", "reroll", "unroll", "tie", "flatten"]


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def types(*arrays: np.ndarray) -> list[TensorType]:
    return [TensorType(a.shape, "int64" if a.dtype.kind == "i" else "float32") for a in arrays]


def toy_rnn(**loop_kw) -> tuple[gr.gModule, list[np.ndarray]]:
    h, x = gr.Input("B", 26), gr.Input("B", 1)
    step = gr.gModule([h, x], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x])))])
    xs = gr.Input("B", "T", 1, name="xs")
    (last,) = gr.Loop(step, n_carry=1, **loop_kw)(init=[ops.fill((26,), 0.0, batch_like=xs)],
                                                  xs=[xs])
    return gr.gModule([xs], [nn.Linear(26, 1)(last)]), [randn(4, 3, 1)]


def lstm_lengths() -> tuple[gr.gModule, list[np.ndarray]]:
    x, n = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
    y = nn.Recurrent(cells.LSTM(3, 4), num_layers=2, bidirectional=True,
                     return_sequences=False)([x, n])
    return gr.gModule([x, n], [y]), [randn(3, 4, 3), np.array([4, 1, 2])]


def constants() -> tuple[gr.gModule, list[np.ndarray]]:
    x = gr.Input("B", 3)
    k = ops.exp(ops.const(np.linspace(0, 1, 3, dtype=np.float32)))
    a, b = ops.tanh(ops.mul(x, k)), ops.tanh(ops.mul(x, k))
    return gr.gModule([x], [nn.Linear(3, 2)(ops.add(ops.mul(a, 1.0), b))]), [randn(2, 3)]


MODELS = {"toy_rnn": toy_rnn, "lstm_lengths": lstm_lengths, "constants": constants}


def count(graph: Graph, op: Op) -> int:
    """Nodes doing `op`, loop bodies and FUSED bodies included."""
    return sum(count(n.attrs["body"], op) if n.op == Op.FUSED else int(n.op == op)
               for n, _ in graph.walk())


def test_compile_graph_runs_every_pass_in_order_then_the_lowering():
    model, args = toy_rnn()
    seen = {}

    def lower(graph, table):
        seen["graph"], seen["table"] = graph, table
        return "executable"

    trace = Trace()
    assert compile_graph(model.graph, types(*args), lower=lower, trace=trace) == "executable"
    names = [r.name for r in trace]
    assert names == FRONT + [name for name, _ in OPTIMISATIONS] + ["lower"]
    assert seen["table"] == model.table
    assert seen["graph"] is trace.records[-2].graph
    assert trace.records[-1].graph is None
    assert all(r.seconds >= 0 for r in trace)
    assert not trace.records[1].changed                 # no loop asked to be unrolled
    np.testing.assert_array_equal(interpret(seen["graph"], *args, model.flat),
                                  interpret(model, *args))
    assert "flatten" in str(trace) and "ms" in str(trace)


@pytest.mark.parametrize("level", [1, 2])
def test_dump_prints_pass_names_and_at_level_2_the_graphs(level, capsys):
    model, args = toy_rnn()
    g, _ = prepare(model.graph, types(*args), dump=level)
    err = capsys.readouterr().err
    passes = FRONT + [name for name, _ in OPTIMISATIONS]
    lines = [line for line in err.splitlines() if line.startswith("[graphrnn]")]
    assert [line.split()[1] for line in lines] == passes
    graphs = err.count("graph(%xs")
    assert graphs == (len(passes) if level == 2 else 0)
    if level == 2:
        assert str(g) in err                              # the last dump is the result
        assert "%params" in err and "view(%params" in err


def test_graphrnn_debug_sets_the_level(monkeypatch, capsys):
    model, args = toy_rnn()
    monkeypatch.setenv("GRAPHRNN_DEBUG", "2")
    assert settings.debug_level() == 2
    prepare(model.graph, types(*args))
    assert capsys.readouterr().err.count("graph(%xs") == len(FRONT) + len(OPTIMISATIONS)
    prepare(model.graph, types(*args), dump=0)            # the argument wins
    assert capsys.readouterr().err == ""
    monkeypatch.setenv("GRAPHRNN_DEBUG", "loud")
    with pytest.raises(ValueError, match="GRAPHRNN_DEBUG"):
        settings.debug_level()


def test_verify_is_on_under_pytest_and_can_be_switched_off(monkeypatch):
    monkeypatch.delenv("GRAPHRNN_VERIFY", raising=False)
    assert settings.verify_enabled()
    monkeypatch.setenv("GRAPHRNN_VERIFY", "0")
    assert not settings.verify_enabled()
    monkeypatch.setenv("GRAPHRNN_VERIFY", "1")
    assert settings.verify_enabled()


def break_order(graph: Graph) -> Graph:
    """A faulty pass: lists the nodes backwards."""
    return Graph(graph.inputs, graph.outputs, tuple(reversed(graph.nodes)))


def test_a_pass_that_breaks_the_graph_is_caught_after_it(monkeypatch):
    model, args = toy_rnn()
    monkeypatch.setattr(pipeline, "OPTIMISATIONS", OPTIMISATIONS + [("broken", break_order)])
    with pytest.raises(gr.GraphError, match="after pass 'broken'.*not defined before it"):
        prepare(model.graph, types(*args))
    monkeypatch.setenv("GRAPHRNN_VERIFY", "0")
    prepare(model.graph, types(*args))                    # not checked: no error
    prepare(model.graph, types(*args), disable={"broken"})


@pytest.mark.parametrize("model_name", MODELS)
@pytest.mark.parametrize("disabled", [None, "all", *[name for name, _ in OPTIMISATIONS]])
def test_with_and_without_each_optimisation(model_name, disabled):
    model, args = MODELS[model_name]()
    want = interpret(model, *args)
    trace = Trace()
    if disabled == "all":
        g, table = prepare(model.graph, types(*args), optimize=False, trace=trace)
        assert [r.name for r in trace] == FRONT
    else:
        off = {disabled} if disabled else set()
        g, table = prepare(model.graph, types(*args), disable=off, trace=trace)
        assert disabled not in [r.name for r in trace]
    assert table == model.table
    np.testing.assert_allclose(interpret(g, *args, model.flat), want, rtol=1e-6, atol=1e-6)


def test_the_front_optimisations_do_their_work_in_the_pipeline():
    model, args = constants()
    later = {name for name, _ in OPTIMISATIONS} - {"fold", "cse", "dce"}
    plain, _ = prepare(model.graph, types(*args), optimize=False)
    optimised, _ = prepare(model.graph, types(*args), disable=later)
    assert (count(plain, Op.EXP), count(optimised, Op.EXP)) == (1, 0)          # fold
    assert (count(plain, Op.TANH), count(optimised, Op.TANH)) == (2, 1)        # cse
    assert count(optimised, Op.MUL) == count(plain, Op.MUL) - 2                # x*1, twin
    lstm, largs = lstm_lengths()
    plain, _ = prepare(lstm.graph, types(*largs), optimize=False)
    optimised, _ = prepare(lstm.graph, types(*largs), disable=later)
    # dce: the last layer's loops lose their unread sequence output (h, c, ys -> h, c)
    assert sorted(len(n.type) for n in optimised.nodes if n.op == Op.LOOP) == [2, 2, 3, 3]
    assert all(len(n.type) == 3 for n in plain.nodes if n.op == Op.LOOP)


def test_unknown_pass_names_are_refused():
    model, args = toy_rnn()
    with pytest.raises(ValueError, match="cannot disable fuse_all.*known passes are"):
        prepare(model.graph, types(*args), disable={"fuse_all"})


@pytest.mark.parametrize("unroll,loops,tanh", [(None, 1, 1), (False, 1, 1), (True, 0, 3),
                                               (3, 0, 3)])
def test_unroll_argument(unroll, loops, tanh):
    model, args = toy_rnn()
    g, table = prepare(model.graph, types(*args), unroll=unroll, optimize=False)
    assert (count(g, Op.LOOP), count(g, Op.TANH)) == (loops, tanh)
    assert table.count == 755
    np.testing.assert_array_equal(interpret(g, *args, model.flat), interpret(model, *args))
    optimised, _ = prepare(model.graph, types(*args), unroll=unroll)
    assert count(optimised, Op.LOOP) == loops
    np.testing.assert_allclose(interpret(optimised, *args, model.flat), interpret(model, *args),
                               rtol=1e-6, atol=1e-6)


def test_a_loops_request_is_honoured_unless_unrolling_is_off():
    model, args = toy_rnn(unroll=True)
    loops = [count(prepare(model.graph, types(*args), **kw)[0], Op.LOOP)
             for kw in ({}, {"unroll": False}, {"disable": {"unroll"}})]
    assert loops == [0, 1, 1]


def test_symbolic_input_types_keep_the_graph_generic():
    model, args = toy_rnn()
    g, table = prepare(model.graph, [TensorType(("B", "T", 1))])
    assert g.inputs[0].type == TensorType(("B", "T", 1))
    for x in (randn(2, 5, 1), randn(3, 1, 1)):
        np.testing.assert_array_equal(interpret(g, x, model.flat), interpret(model, x))
    with pytest.raises(gr.GraphError, match="number of steps"):
        prepare(model.graph, [TensorType(("B", "T", 1))], unroll=True)
