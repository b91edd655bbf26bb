"""flatten_params: every parameter a view of one vector, laid out exactly like the model's."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import cells, nn
from graphrnn.compiler import flatten_params, infer_shapes, prepare, unroll_loops, verify
from graphrnn.interpret import interpret
from graphrnn.flat import layout_params
from graphrnn.ir import Op, TensorType

RNG = np.random.default_rng(9)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def types(*arrays: np.ndarray) -> list[TensorType]:
    return [TensorType(a.shape, "int64" if a.dtype.kind == "i" else "float32") for a in arrays]


def toy_rnn() -> gr.gModule:
    h, x = gr.Input("B", 26, name="h"), gr.Input("B", 1, name="x")
    step = gr.gModule([h, x], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x])))])
    xs = gr.Input("B", "T", 1, name="xs")
    (last,) = gr.Loop(step, n_carry=1)(init=[gr.ops.fill((26,), 0.0, batch_like=xs)],
                                       xs=[xs])
    return gr.gModule([xs], [nn.Linear(26, 1)(last)])


def lstm_stack() -> gr.gModule:
    x, lengths = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
    y = nn.Recurrent(cells.LSTM(3, 5), num_layers=2, bidirectional=True)([x, lengths])
    return gr.gModule([x, lengths], [nn.Linear(10, 2)(y)])


def views(graph: gr.Graph) -> list[gr.Node]:
    return [n for n, _ in graph.walk() if n.op == Op.VIEW]


def check_layout(model: gr.gModule, graph: gr.Graph, table: gr.ParamTable) -> None:
    """The table is the model's, every view reads its parameter's slot, no PARAM is left."""
    assert table == model.table
    flat = graph.inputs[-1]
    assert flat.name == "params" and flat.type == TensorType((model.table.size,))
    assert not any(n.op == Op.PARAM for n, _ in graph.walk())
    named = model.named_parameters()
    for v in views(graph):
        slot = model.table.slots[v.name]
        assert (v.attrs["offset"], tuple(v.attrs["shape"])) == (slot.offset, slot.shape)
        got = model.flat[slot.offset:slot.offset + slot.size].reshape(slot.shape)
        np.testing.assert_array_equal(got, named[v.name])
    assert {v.name for v in views(graph)} == set(model.table.slots)


def test_toy_rnn_params_sit_at_the_models_offsets():
    model = toy_rnn()
    x = randn(4, 3, 1)
    g, table = flatten_params(infer_shapes(model.graph, types(x)))
    verify(g)
    check_layout(model, g, table)
    assert table.count == 755
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    assert loop.inputs[0] is g.inputs[-1] and loop.attrs["n_consts"] == 1
    assert loop.attrs["body"].inputs[0].name == "params"
    np.testing.assert_array_equal(interpret(g, x, model.flat), interpret(model, x))


def test_flattened_graph_reads_the_vector_it_is_given():
    model = toy_rnn()
    x = randn(2, 3, 1)
    g, table = flatten_params(infer_shapes(model.graph, types(x)))
    other = model.flat * 0.5
    before = interpret(g, x, other)
    model.flat[...] *= 0.5                         # the params are views of model.flat
    np.testing.assert_array_equal(before, interpret(model, x))


def test_recurrent_stack_with_lengths():
    model = lstm_stack()
    x, lv = randn(3, 4, 3), np.array([4, 1, 3])
    g, table = flatten_params(infer_shapes(model.graph, types(x, lv)))
    verify(g)
    check_layout(model, g, table)
    assert all(n.inputs[0] is g.inputs[-1] for n in g.nodes if n.op == Op.LOOP)
    np.testing.assert_array_equal(interpret(g, x, lv, model.flat), interpret(model, x, lv))


@pytest.mark.parametrize("unroll", [True, 2])
def test_the_driver_keeps_the_models_layout_after_unrolling(unroll):
    model = lstm_stack()
    x, lv = randn(3, 4, 3), np.array([4, 1, 3])
    g, table = prepare(model.graph, types(x, lv), unroll=unroll, optimize=False)
    check_layout(model, g, table)
    np.testing.assert_array_equal(interpret(g, x, lv, model.flat), interpret(model, x, lv))


def test_layout_follows_the_given_order():
    model = toy_rnn()
    x = randn(2, 3, 1)
    g0 = unroll_loops(infer_shapes(model.graph, types(x)))
    order = list(reversed(model.graph.params()))
    g, table = flatten_params(g0, order=order)
    want, keys = layout_params(order)
    assert table == want
    assert [s.offset for s in table.slots.values()] == sorted(
        s.offset for s in table.slots.values())
    assert table.slots[keys[order[0]]].offset == 0
    flat = np.zeros(table.size, np.float32)
    views_ = table.views(flat)
    for p in order:
        views_[keys[p]][...] = gr.value(p)
    np.testing.assert_array_equal(interpret(g, x, flat), interpret(model, x))
    with pytest.raises(gr.GraphError, match="missing from the layout"):
        flatten_params(g0, order=order[:1])


def test_shared_parameters_get_one_slot():
    a = nn.Linear(3, 3)
    b = nn.Linear(3, 3).share(a, "weight", "bias")
    x = gr.Input("B", 3)
    model = gr.gModule([x], [b(nn.Tanh()(a(x)))])
    xv = randn(2, 3)
    g, table = prepare(model.graph, types(xv))
    assert len(table.slots) == 2 and table == model.table
    weights = [v for v in views(g) if tuple(v.attrs["shape"]) == (3, 3)]
    assert len(weights) == 1                        # one view, read by both matmuls
    np.testing.assert_array_equal(interpret(g, xv, model.flat), interpret(model, xv))


def test_params_in_a_nested_loop_reach_the_inner_body_as_consts():
    h, e = gr.Input("B", 4, name="h"), gr.Input("B", 3, name="e")
    rnn = gr.gModule([h, e], [nn.Tanh()(nn.CAddTable()([nn.Linear(3, 4)(e), h]))])
    acc, seq = gr.Input("B", 4), gr.Input("B", "T2", 3)
    inner_last, = gr.Loop(rnn, n_carry=1)(init=[acc], xs=[seq])
    outer = gr.gModule([acc, seq], [inner_last])
    x, a0 = gr.Input("B", "T1", "T2", 3), gr.Input("B", 4)
    total, = gr.Loop(outer, n_carry=1)(init=[a0], xs=[x])
    model = gr.gModule([x, a0], [nn.Linear(4, 2)(total)])
    xv, av = randn(2, 3, 2, 3), randn(2, 4)
    g, table = flatten_params(infer_shapes(model.graph, types(xv, av)))
    verify(g)
    check_layout(model, g, table)
    (outer_loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    body = outer_loop.attrs["body"]
    (inner_loop,) = [n for n in body.nodes if n.op == Op.LOOP]
    assert inner_loop.inputs[0] is body.inputs[0] and body.inputs[0].name == "params"
    np.testing.assert_array_equal(interpret(g, xv, av, model.flat), interpret(model, xv, av))


def test_loops_without_params_take_no_vector():
    s, k = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([s, k], [nn.CAddTable()([s, k])])
    x, s0 = gr.Input("B", "T", 2), gr.Input("B", 2)
    last, = gr.Loop(body, n_carry=1)(init=[s0], xs=[x])
    model = gr.gModule([x, s0], [nn.Linear(2, 2)(last)])
    xv, sv = randn(2, 3, 2), randn(2, 2)
    g, table = flatten_params(infer_shapes(model.graph, types(xv, sv)))
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    assert loop.attrs["n_consts"] == 0
    np.testing.assert_array_equal(interpret(g, xv, sv, model.flat), interpret(model, xv, sv))


def test_a_model_without_params_gets_an_empty_vector():
    x = gr.Input("B", 3)
    model = gr.gModule([x], [nn.Tanh()(x)])
    xv = randn(2, 3)
    g, table = flatten_params(infer_shapes(model.graph, types(xv)))
    assert table.size == 0 and g.inputs[-1].type == TensorType((0,))
    np.testing.assert_array_equal(interpret(g, xv, np.zeros(0, np.float32)), np.tanh(xv))
    with pytest.raises(gr.GraphError, match="already named 'params'"):
        flatten_params(g)
