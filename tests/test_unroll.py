"""unroll_loops: unrolled graphs give the interpreter's loop results, step copies share params."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import cells, nn
from graphrnn.compiler import infer_shapes, unroll_loops, verify
from graphrnn.interpret import interpret
from graphrnn.ir import Op, TensorType

RNG = np.random.default_rng(5)
F32 = "float32"


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def count(graph: gr.Graph, op: Op) -> int:
    return sum(1 for n, _ in graph.walk() if n.op == op)


def toy_rnn(**loop_kw) -> gr.gModule:
    """nngraph's toy RNN (input 1, hidden 26) as a loop; the output Linear reads the last h."""
    h, x = gr.Input("B", 26, name="h"), gr.Input("B", 1, name="x")
    step = gr.gModule([h, x], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x])))])
    xs = gr.Input("B", "T", 1, name="xs")
    (last,) = gr.Loop(step, n_carry=1, **loop_kw)(init=[gr.ops.fill((26,), 0.0,
                                                                    batch_like=xs)], xs=[xs])
    return gr.gModule([xs], [nn.Linear(26, 1)(last)])


def typed(model: gr.gModule, *arrays: np.ndarray) -> gr.Graph:
    return infer_shapes(model.graph, [TensorType(a.shape, "int64" if a.dtype.kind == "i"
                                                 else F32) for a in arrays])


def check_same(model: gr.gModule, graph: gr.Graph, *arrays: np.ndarray) -> None:
    """The rewritten graph computes exactly what the model computes."""
    verify(graph)
    want = interpret(model, *arrays)
    got = interpret(graph, *arrays)
    for w, g in zip(want if isinstance(want, tuple) else [want],
                    got if isinstance(got, tuple) else [got]):
        np.testing.assert_array_equal(g, w)


def test_toy_rnn_of_length_3_unrolls_to_3_copies_with_the_same_755_params():
    model = toy_rnn()
    x = randn(4, 3, 1)
    g = typed(model, x)
    u = unroll_loops(g)
    assert count(u, Op.LOOP) == 0
    assert count(u, Op.TANH) == 3
    assert count(u, Op.MATMUL) == 3 + 1             # three steps, then the output Linear
    assert count(u, Op.CONCAT) == 3                 # the JoinTable of each step
    assert {id(p) for p in u.params()} == {id(p) for p in model.graph.params()}
    assert sum(p.size for p in u.params()) == model.param_count() == 755
    assert len({n.name for n in u.nodes}) == len(u.nodes)     # names stay unique
    check_same(model, u, x)


def test_without_a_known_step_count_unrolling_is_refused():
    model = toy_rnn()
    g = infer_shapes(model.graph, [TensorType(("B", "T", 1))])
    with pytest.raises(gr.GraphError, match="number of steps"):
        unroll_loops(g)
    # a loop that asks nothing is left alone by the driver's default
    assert unroll_loops(g, only_requested=True) is g


def test_nothing_to_unroll_returns_the_same_graph():
    x = gr.Input("B", 3)
    model = gr.gModule([x], [nn.Tanh()(x)])
    g = typed(model, randn(2, 3))
    assert unroll_loops(g) is g


@pytest.mark.parametrize("kind,layers,bidirectional", [
    (cells.RNN, 1, False), (cells.LSTM, 2, False), (cells.GRU, 1, True), (cells.LSTM, 2, True)])
@pytest.mark.parametrize("factor", [None, 2, 3])
def test_recurrent_layers_with_lengths(kind, layers, bidirectional, factor):
    x, lengths = gr.Input("B", "T", 3, name="x"), gr.Input("B", dtype="int64", name="lengths")
    layer = nn.Recurrent(kind(3, 4), num_layers=layers, bidirectional=bidirectional,
                         return_state=True)
    model = gr.gModule([x, lengths], list(layer([x, lengths])))
    xv, lv = randn(3, 6, 3), np.array([6, 2, 0])
    g = typed(model, xv, lv)
    u = unroll_loops(g, factor)
    loops = count(u, Op.LOOP)
    assert loops == (0 if factor is None else layers * (2 if bidirectional else 1))
    check_same(model, u, xv, lv)


@pytest.mark.parametrize("reverse", [False, True])
def test_partial_unroll_keeps_a_loop_of_T_over_k_steps(reverse):
    model = toy_rnn(reverse=reverse)
    x = randn(2, 6, 1)
    u = unroll_loops(typed(model, x), 2)
    (loop,) = [n for n in u.nodes if n.op == Op.LOOP]
    assert loop.type[0] == TensorType((2, 26))
    assert loop.attrs["reverse"] is reverse
    assert loop.inputs[1].type == TensorType((2, 3, 2, 1))     # xs as [B, T/k, k, 1]
    assert count(loop.attrs["body"], Op.TANH) == 2
    check_same(model, u, x)


def test_partial_unroll_needs_a_factor_that_divides_T():
    model = toy_rnn()
    x = randn(2, 5, 1)
    with pytest.raises(gr.GraphError, match="not a multiple of 2"):
        unroll_loops(typed(model, x), 2)
    u = unroll_loops(typed(model, x), 5)          # k = T: fully
    assert count(u, Op.LOOP) == 0
    check_same(model, u, x)


def test_the_loops_own_request_is_honoured():
    model = toy_rnn(unroll=2)
    x = randn(2, 4, 1)
    g = typed(model, x)
    u = unroll_loops(g, only_requested=True)
    (loop,) = [n for n in u.nodes if n.op == Op.LOOP]
    assert count(loop.attrs["body"], Op.TANH) == 2 and loop.attrs["unroll"] is None
    check_same(model, u, x)
    full = unroll_loops(typed(toy_rnn(unroll=True), x), only_requested=True)
    assert count(full, Op.LOOP) == 0


def nested(inner_unroll: int | bool | None = None) -> gr.gModule:
    """The outer body runs an inner RNN over each row's sub-sequence: x[B, T1, T2, D]."""
    h, e = gr.Input("B", 4, name="h"), gr.Input("B", 3, name="e")
    rnn = gr.gModule([h, e], [nn.Tanh()(nn.CAddTable()([nn.Linear(3, 4)(e),
                                                        nn.Linear(4, 4)(h)]))])
    acc, seq = gr.Input("B", 4, name="acc"), gr.Input("B", "T2", 3, name="seq")
    h0 = gr.ops.fill((4,), 0.5, batch_like=seq)
    inner_last, = gr.Loop(rnn, n_carry=1, name="inner", unroll=inner_unroll)(init=[h0],
                                                                             xs=[seq])
    outer = gr.gModule([acc, seq], [nn.CAddTable()([acc, inner_last]), inner_last])
    x, a0 = gr.Input("B", "T1", "T2", 3, name="x"), gr.Input("B", 4, name="a0")
    total, lasts = gr.Loop(outer, n_carry=1, name="outer")(init=[a0], xs=[x])
    return gr.gModule([x, a0], [total, lasts])


def test_nested_loops_unroll_the_outer_and_keep_the_inner():
    model = nested()
    x, a = randn(2, 3, 4, 3), randn(2, 4)
    u = unroll_loops(typed(model, x, a))
    inner = [n for n in u.nodes if n.op == Op.LOOP]
    assert len(inner) == 3                         # one inner loop per outer step
    assert all(n.attrs["body"] is inner[0].attrs["body"] for n in inner)
    check_same(model, u, x, a)


@pytest.mark.parametrize("asked", [True, 2])
def test_an_inner_loop_that_asks_is_unrolled_inside_the_outer_body(asked):
    model = nested(inner_unroll=asked)
    x, a = randn(2, 3, 4, 3), randn(2, 4)
    u = unroll_loops(typed(model, x, a), only_requested=True)
    (outer,) = [n for n in u.nodes if n.op == Op.LOOP]
    inner = [n for n in outer.attrs["body"].nodes if n.op == Op.LOOP]
    assert len(inner) == (0 if asked is True else 1)
    assert count(outer.attrs["body"], Op.TANH) == (4 if asked is True else 2)
    check_same(model, u, x, a)


def test_a_loop_with_a_length_and_no_sequences():
    k, s = gr.Input("B", 2, name="k"), gr.Input("B", 2, name="s")
    s2 = nn.CAddTable()([s, k])
    body = gr.gModule([k, s], [s2, nn.CMulTable()([s2, s2])])
    kk, s0 = gr.Input("B", 2), gr.Input("B", 2)
    last, ys = gr.Loop(body, n_carry=1, n_consts=1, length=4)(consts=[kk], init=[s0])
    model = gr.gModule([kk, s0], [last, ys])
    kv, sv = randn(3, 2), randn(3, 2)
    g = typed(model, kv, sv)
    for factor in (None, 2):
        u = unroll_loops(g, factor)
        check_same(model, u, kv, sv)
    assert count(unroll_loops(g), Op.LOOP) == 0


def test_two_sequences_two_outputs_and_a_const_in_reverse():
    k, h, s = gr.Input("B", 4, name="k"), gr.Input("B", 4, name="h"), gr.Input("B", 4, name="s")
    a, b = gr.Input("B", 3, name="a"), gr.Input("B", 4, name="b")
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(3, 4)(a), nn.CMulTable()([h, b]), k]))
    s2 = nn.CAddTable()([s, h2])
    body = gr.gModule([k, h, s, a, b], [h2, s2, h2, nn.ReLU()(s2)])
    ins = [gr.Input("B", 4), gr.Input("B", 4), gr.Input("B", 4), gr.Input("B", "T", 3),
           gr.Input("B", "T", 4), gr.Input("B", dtype="int64")]
    parts = gr.Loop(body, n_carry=2, n_consts=1, reverse=True)(consts=ins[:1], init=ins[1:3],
                                                               xs=ins[3:5], lengths=ins[5])
    model = gr.gModule(ins, list(parts))
    args = [randn(3, 4), randn(3, 4), randn(3, 4), randn(3, 4, 3), randn(3, 4, 4),
            np.array([1, 4, 3])]
    for factor in (None, 2, 4):
        check_same(model, unroll_loops(typed(model, *args), factor), *args)
