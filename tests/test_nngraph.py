"""The nngraph-style API: call syntax, inputs, inlining, annotations, names and file:line."""
from __future__ import annotations

import re
import sys

import numpy as np

import graphrnn as gr
from graphrnn import nn

RNG = np.random.default_rng(3)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def here() -> int:
    """The line number of the caller."""
    return sys._getframe(1).f_lineno


def mlp_numpy(model: gr.gModule, h: np.ndarray, x: np.ndarray) -> np.ndarray:
    p = model.named_parameters()
    z = np.concatenate([h, x], 1) @ p["linear.weight"].T + p["linear.bias"]
    return np.tanh(z)


def test_call_syntax_with_untyped_inputs():
    h, x = nn.Identity()(), nn.Identity()()
    y = nn.Tanh()(nn.Linear(9, 8)(nn.JoinTable(1)([h, x])))
    assert y.type is None                              # types come with the data
    model = gr.gModule([h, x], [y])
    for batch in (1, 4):                               # one graph, any batch size
        hv, xv = randn(batch, 5), randn(batch, 4)
        np.testing.assert_allclose(model(hv, xv), mlp_numpy(model, hv, xv), atol=1e-6)


def test_typed_inputs_give_types_at_construction():
    h, x = gr.Input("B", 5), gr.Input("B", 4)
    joined = nn.JoinTable(1)([h, x])
    y = nn.Tanh()(nn.Linear(9, 8)(joined))
    assert joined.type == gr.TensorType(("B", 9))
    assert str(y.type) == "f32[B,8]"
    model = gr.gModule([h, x], [y])
    hv, xv = randn(3, 5), randn(3, 4)
    np.testing.assert_allclose(model(hv, xv), mlp_numpy(model, hv, xv), atol=1e-6)
    assert gr.interpret(model, hv, xv).shape == (3, 8)
    ids = gr.Input("B", dtype="int64")
    assert ids.type.dtype == "int64" and gr.Input(("B", 3)).type.shape == ("B", 3)


def test_gmodule_called_on_nodes_is_inlined_with_the_same_numbers():
    h, x = gr.Input("B", 5), gr.Input("B", 4)
    inner = gr.gModule([h, x], [nn.Tanh()(nn.Linear(9, 5)(nn.JoinTable(1)([h, x])))])
    hv, xv = randn(2, 5), randn(2, 4)
    want_once = inner(hv, xv)
    a, b = gr.Input("B", 5), gr.Input("B", 4)
    once = inner([a, b])
    twice = inner([once, b])                           # same instance again: tied weights
    assert twice.type == gr.TensorType(("B", 5))
    outer = gr.gModule([a, b], [once, twice])
    assert outer.param_count() == inner.param_count() == 9 * 5 + 5
    got_once, got_twice = outer(hv, xv)
    np.testing.assert_allclose(got_once, want_once, atol=1e-6)
    np.testing.assert_allclose(got_twice, inner(want_once, xv), atol=1e-6)
    # no op kind for "module": the inlined nodes are primitives with the module as scope
    assert {n.op for n in outer.graph.nodes} <= {gr.Op.INPUT, gr.Op.PARAM, gr.Op.CONCAT,
                                                gr.Op.MATMUL, gr.Op.ADD, gr.Op.TANH}
    assert any(n.scope.startswith("gmodule/") for n in outer.graph.nodes)


def test_inlining_a_multi_output_gmodule_returns_a_table():
    x = gr.Input("B", 3)
    inner = gr.gModule([x], [nn.Tanh()(x), nn.Sigmoid()(x)])
    y = gr.Input("B", 3)
    t, s = inner(y)
    model = gr.gModule([y], [nn.CSubTable()([t, s])])
    v = randn(2, 3)
    np.testing.assert_allclose(model(v), np.tanh(v) - 1 / (1 + np.exp(-v)), atol=1e-6)


def test_inlining_checks_declared_input_types():
    x = gr.Input("B", 3)
    inner = gr.gModule([x], [nn.Tanh()(x)])
    try:
        inner(gr.Input("B", 4))
    except gr.ShapeError as e:
        assert "f32[B,3]" in str(e)
    else:
        raise AssertionError("a [B,4] node fed a [B,3] input")


def test_annotate_names_and_docs_reach_the_built_graph():
    x = gr.Input("B", 4).annotate(name="x")
    h = nn.Linear(4, 3)(x).annotate(name="hidden", doc="the hidden layer")
    y = nn.Tanh()(h).annotate(name="out")
    model = gr.gModule([x], [y])
    assert model.graph.inputs[0].name == "x"
    assert model.graph.node("hidden").doc == "the hidden layer"
    assert model.graph.node("hidden").op == gr.Op.ADD
    assert model.graph.outputs[0].name == "out"
    assert "%hidden : f32[B,3] = add(" in str(model.graph)


def test_same_annotation_twice_stays_unique():
    x = gr.Input("B", 4)
    a = nn.Tanh()(x).annotate(name="act")
    b = nn.Sigmoid()(a).annotate(name="act")
    names = [n.name for n in gr.gModule([x], [b]).graph.nodes]
    assert len(names) == len(set(names)) and "act" in names


def test_user_names_win_over_generated_ones():
    x = gr.Input("B", 4)
    first = nn.Tanh()(x)
    second = nn.Tanh()(first).annotate(name="tanh_0")
    g = gr.gModule([x], [second]).graph
    assert g.outputs[0].name == "tanh_0" and g.nodes[1].name == "tanh_1"


def build_demo() -> gr.gModule:
    """A model with every kind of node: modules, a loop with a cell, a loss, dropout."""
    x = gr.Input("B", "T", 3)
    target = gr.Input("B", "T", dtype="int64")
    h0 = gr.ops.fill((4,), 0.0, batch_like=x)
    cell = gr.cells.GRU(3, 4)
    body_h, body_x = gr.Input("B", 4), gr.Input("B", 3)
    hn = cell([body_h, body_x])
    step = gr.gModule([body_h, body_x], [hn, nn.Dropout(0.2)(hn)])
    last, ys = gr.Loop(step, n_carry=1)(init=[h0], xs=[x])
    scores = nn.Linear(4, 5)(ys)
    loss = gr.CrossEntropyCriterion()([scores, target])
    return gr.gModule([x, target], [loss, nn.Tanh()(last)])


def strip_where(text: str) -> str:
    return re.sub(r"\S+\.py:\d+", "", text)


def test_unnamed_nodes_get_stable_readable_unique_names():
    gr.manual_seed(11)
    a = build_demo()
    gr.manual_seed(11)
    b = build_demo()
    assert strip_where(str(a.graph)) == strip_where(str(b.graph))
    for n, g in a.graph.walk():
        assert re.fullmatch(r"[A-Za-z_][\w.]*", n.name), n.name
    for _, g in [(None, a.graph)] + [(n, n.attrs["body"]) for n, _ in a.graph.walk()
                                     if n.op == gr.Op.LOOP]:
        names = [n.name for n in g.nodes]
        assert len(names) == len(set(names))
    # parameter nodes are named by their state_dict keys
    params = {n.name for n, _ in a.graph.walk() if n.op == gr.Op.PARAM}
    assert params == set(a.state_dict())
    assert {"gru.weight_ih", "linear.weight", "linear.bias"} <= params
    assert "matmul_0" in str(a.graph) and "tanh_0" in str(a.graph)


def test_every_node_records_the_users_line():
    x = gr.Input("B", 4)
    line_x = here() - 1
    y = nn.Tanh()(nn.Linear(4, 2)(x))
    line_y = here() - 1
    model = gr.gModule([x], [y])
    me = __file__.rsplit("/", 1)[-1]
    assert model.graph.inputs[0].where == f"{me}:{line_x}"
    for n in model.graph.nodes[1:]:
        assert n.where == f"{me}:{line_y}", n
    # nodes made inside library code (cells, losses) point at the user's line too
    cell = gr.cells.LSTM(3, 2)
    line_cell = here() - 1
    assert {n.where for n in cell.graph.nodes} == {f"{me}:{line_cell}"}
    assert f"{me}:{line_y}" in str(model.graph)
