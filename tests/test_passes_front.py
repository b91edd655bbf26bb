"""The front passes (infer_shapes, verify, fold, cse, dce): each keeps the interpreter's
results on a zoo of models, and does its own job."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import cells, nn, ops
from graphrnn.compiler import (eliminate_common_subexpressions, eliminate_dead_code, fold_constants,
                               infer_shapes, prepare, unroll_loops, verify)
from graphrnn.interpret import interpret
from graphrnn.ir import Graph, Node, Op, TensorType
from graphrnn.close import close_graph

RNG = np.random.default_rng(3)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def types(*arrays: np.ndarray) -> list[TensorType]:
    return [TensorType(a.shape, "int64" if a.dtype.kind == "i" else "float32") for a in arrays]


def count(graph: Graph, op: Op) -> int:
    return sum(1 for n, _ in graph.walk() if n.op == op)


# ----------------------------------------------------------------------------- the zoo

def toy_rnn():
    h, x = gr.Input("B", 26), gr.Input("B", 1)
    step = gr.gModule([h, x], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x])))])
    xs = gr.Input("B", "T", 1)
    (last,) = gr.Loop(step, n_carry=1)(init=[ops.fill((26,), 0.0, batch_like=xs)], xs=[xs])
    return gr.gModule([xs], [nn.Linear(26, 1)(last)]), [randn(4, 3, 1)]


def recurrent(kind, layers, bidirectional, lengths, **kw):
    def build():
        x, n = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
        layer = nn.Recurrent(kind(3, 4), num_layers=layers, bidirectional=bidirectional, **kw)
        y = layer([x, n] if lengths else x)
        model = gr.gModule([x, n] if lengths else [x], [y])
        return model, [randn(3, 5, 3)] + ([np.array([5, 2, 0])] if lengths else [])
    return build


def nested():
    h, e = gr.Input("B", 4), gr.Input("B", 3)
    rnn = gr.gModule([h, e], [nn.Tanh()(nn.CAddTable()([nn.Linear(3, 4)(e), h]))])
    acc, seq = gr.Input("B", 4), gr.Input("B", "T2", 3)
    inner_last, = gr.Loop(rnn, n_carry=1)(init=[acc], xs=[seq])
    outer = gr.gModule([acc, seq], [nn.CAddTable()([acc, inner_last]), inner_last])
    x, a0 = gr.Input("B", "T1", "T2", 3), gr.Input("B", 4)
    total, lasts = gr.Loop(outer, n_carry=1)(init=[a0], xs=[x])
    return gr.gModule([x, a0], [total, lasts]), [randn(2, 3, 2, 3), randn(2, 4)]


def with_constants():
    """Constant subgraphs, identities and repeated work, inside and outside a loop."""
    s, x = gr.Input("B", 3), gr.Input("B", 3)
    scale = ops.exp(ops.mul(ops.const(np.full(3, 0.5, np.float32)), 2.0))
    s2 = ops.add(ops.mul(ops.tanh(ops.add(x, s)), scale), ops.mul(ops.tanh(ops.add(x, s)), 1.0))
    body = gr.gModule([s, x], [s2, ops.add(s2, 0.0)])
    xs, s0 = gr.Input("B", "T", 3), gr.Input("B", 3)
    last, ys = gr.Loop(body, n_carry=1)(init=[s0], xs=[xs])
    k = ops.sub(ops.const(np.arange(3, dtype=np.float32)), ops.const(np.ones(3, np.float32)))
    y = nn.Linear(3, 2)(nn.MulConstant(1.0)(nn.CAddTable()([last, k])))
    return gr.gModule([xs, s0], [y, ys]), [randn(2, 4, 3), randn(2, 3)]


ZOO = {
    "toy_rnn": toy_rnn,
    "rnn": recurrent(cells.RNN, 1, False, False),
    "lstm_2_bi_lengths": recurrent(cells.LSTM, 2, True, True),
    "gru_bi_last": recurrent(cells.GRU, 1, True, True, return_sequences=False),
    "gru_2_lengths": recurrent(cells.GRU, 2, False, True),
    "nested": nested,
    "constants": with_constants,
}
PASSES = {"fold": fold_constants, "cse": eliminate_common_subexpressions,
          "dce": eliminate_dead_code}


def assert_same(got, want) -> None:
    for g, w in zip(got if isinstance(got, tuple) else [got],
                    want if isinstance(want, tuple) else [want]):
        np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("model_name", ZOO)
@pytest.mark.parametrize("pass_name", PASSES)
@pytest.mark.parametrize("stage", ["typed", "unrolled", "flattened"])
def test_each_pass_keeps_the_interpreters_result(model_name, pass_name, stage):
    model, args = ZOO[model_name]()
    want = interpret(model, *args)
    if stage == "flattened":
        g, _ = prepare(model.graph, types(*args), optimize=False)
        args = args + [model.flat]
    else:
        g = infer_shapes(model.graph, types(*args))
        g = unroll_loops(g) if stage == "unrolled" else g
    out = PASSES[pass_name](g)
    verify(out)
    assert_same(interpret(out, *args), want)
    assert PASSES[pass_name](out) is out                  # one run reaches the fixpoint


# ----------------------------------------------------------------------------- infer_shapes

def test_infer_shapes_types_every_node_and_binds_symbols():
    model, args = ZOO["lstm_2_bi_lengths"]()
    g = infer_shapes(model.graph, types(*args))
    assert all(n.type is not None for n, _ in g.walk())
    assert g.outputs[0].type == TensorType((3, 5, 8))
    assert infer_shapes(g, types(*args)) is g                 # already typed that way
    generic = infer_shapes(model.graph)                       # the declared, symbolic types
    assert generic.outputs[0].type == TensorType(("B", "T", 8))


def test_infer_shapes_names_the_input_that_does_not_fit():
    model, args = ZOO["toy_rnn"]()
    with pytest.raises(gr.ShapeError, match=r"expected f32\[B,T,1\], got f32\[4,3,2\]"):
        infer_shapes(model.graph, [TensorType((4, 3, 2))])
    with pytest.raises(gr.ShapeError, match="expected 1 inputs, got 2"):
        infer_shapes(model.graph, types(*args, *args))
    x = nn.Identity()()
    untyped = gr.gModule([x], [nn.Tanh()(x)])
    with pytest.raises(gr.GraphError, match="no declared type"):
        infer_shapes(untyped.graph)


# ----------------------------------------------------------------------------- verify

def small() -> Graph:
    x = gr.Input("B", 3, name="x")
    model = gr.gModule([x], [nn.Sigmoid()(nn.Tanh()(x))])
    return infer_shapes(model.graph, [TensorType((2, 3))])


def test_verify_accepts_what_the_passes_make():
    for build in ZOO.values():
        model, args = build()
        verify(prepare(model.graph, types(*args))[0])


def test_verify_finds_nodes_out_of_order():
    g = small()
    x, t, s = g.nodes
    with pytest.raises(gr.GraphError, match="sigmoid_0.*not defined before it"):
        verify(Graph(g.inputs, g.outputs, (x, s, t)))
    with pytest.raises(gr.GraphError, match="listed twice"):
        verify(Graph(g.inputs, g.outputs, (x, t, t, s)))


def test_verify_finds_wrong_types_and_arity():
    g = small()
    x, t, s = g.nodes
    bad = s.replace(type=TensorType((2, 4)))
    with pytest.raises(gr.ShapeError, match=r"typed f32\[2,4\], but its inputs"):
        verify(Graph(g.inputs, (bad,), (x, t, bad)))
    untyped = s.replace(type=None)
    with pytest.raises(gr.GraphError, match="no type"):
        verify(Graph(g.inputs, (untyped,), (x, t, untyped)))
    two = s.replace(inputs=(t, x))
    with pytest.raises(gr.GraphError, match="takes 1 inputs, has 2"):
        verify(Graph(g.inputs, (two,), (x, t, two)))


def test_verify_checks_loops_against_their_bodies():
    model, args = ZOO["toy_rnn"]()
    g = infer_shapes(model.graph, types(*args))
    loop = next(n for n in g.nodes if n.op == Op.LOOP)
    body = loop.attrs["body"]
    for change, message in [({"n_carry": 0}, "inputs, expected"),
                            ({"body": body.rebuilt(body.inputs, ())}, "fewer than the 1 carr")]:
        broken = loop.replace(attrs={**loop.attrs, **change})
        new = Graph(g.inputs, g.outputs, tuple(broken if n is loop else n for n in g.nodes))
        with pytest.raises(gr.GraphError, match=message):
            verify(new)
    # a body reading an outer node directly is not closed
    concat = next(n for n in body.nodes if n.op == Op.CONCAT)
    leaky = concat.replace(inputs=(concat.inputs[0], g.inputs[0]))
    leaky_body = Graph(body.inputs, body.outputs,
                       tuple(leaky if n is concat else n for n in body.nodes))
    broken = loop.replace(attrs={**loop.attrs, "body": leaky_body})
    with pytest.raises(gr.GraphError, match="not defined before it.*in the body of loop"):
        verify(Graph(g.inputs, g.outputs, tuple(broken if n is loop else n for n in g.nodes)))


# ----------------------------------------------------------------------------- cse

def test_cse_merges_duplicates_and_keeps_different_nodes():
    x = gr.Input("B", 3)
    a, b = ops.tanh(x), ops.tanh(x)
    c1, c2 = ops.const(np.arange(3.0)), ops.const(np.arange(3.0))
    c3 = ops.const(np.arange(3.0) + 1)
    y = ops.add(ops.add(ops.mul(a, c1), ops.mul(b, c2)), ops.mul(a, c3))
    model = gr.gModule([x], [y])
    g = infer_shapes(model.graph, [TensorType((2, 3))])
    out = eliminate_common_subexpressions(g)
    assert (count(g, Op.TANH), count(out, Op.TANH)) == (2, 1)
    assert (count(g, Op.CONST), count(out, Op.CONST)) == (3, 2)
    assert (count(g, Op.MUL), count(out, Op.MUL)) == (3, 2)
    xv = randn(2, 3)
    np.testing.assert_array_equal(interpret(out, xv), interpret(model, xv))
    assert eliminate_common_subexpressions(out) is out


def test_cse_works_inside_loop_bodies_and_merges_unrolled_params():
    model, args = ZOO["constants"]()
    g = infer_shapes(model.graph, types(*args))
    loop = next(n for n in g.nodes if n.op == Op.LOOP)
    out = eliminate_common_subexpressions(g)
    new_loop = next(n for n in out.nodes if n.op == Op.LOOP)
    assert count(loop.attrs["body"], Op.TANH) == 2 and count(new_loop.attrs["body"], Op.TANH) == 1
    assert_same(interpret(out, *args), interpret(model, *args))


def test_cse_merges_nodes_of_the_same_param():
    x, p = gr.Input("B", 3), gr.Param("w", (3, 3))
    a = ops.matmul(x, ops.param(p), transpose_b=True)
    b = ops.matmul(x, ops.param(p), transpose_b=True)
    other = ops.matmul(x, ops.param(gr.Param("w", (3, 3))), transpose_b=True)
    g = infer_shapes(close_graph([x], [ops.add(ops.add(a, b), other)]), [TensorType((2, 3))])
    out = eliminate_common_subexpressions(g)
    assert (count(g, Op.PARAM), count(out, Op.PARAM)) == (3, 2)
    assert (count(g, Op.MATMUL), count(out, Op.MATMUL)) == (3, 2)
    xv = randn(2, 3)
    np.testing.assert_array_equal(interpret(out, xv), interpret(g, xv))


# ----------------------------------------------------------------------------- dce

def test_dce_removes_nodes_that_reach_no_output():
    g = small()
    x, t, s = g.nodes
    dead = Node(Op.EXP, (t,), {}, t.type, name="dead")
    with_dead = Graph(g.inputs, g.outputs, (x, t, dead, s))
    out = eliminate_dead_code(with_dead)
    assert dead not in out.nodes and len(out.nodes) == 3
    assert eliminate_dead_code(out) is out


def test_dce_drops_loop_outputs_nobody_reads():
    model, args = ZOO["gru_bi_last"]()                     # only the last state is used
    g = infer_shapes(model.graph, types(*args))
    loops = [n for n in g.nodes if n.op == Op.LOOP]
    assert all(len(n.attrs["body"].outputs) == 2 for n in loops)
    out = eliminate_dead_code(g)
    new_loops = [n for n in out.nodes if n.op == Op.LOOP]
    assert all(len(n.attrs["body"].outputs) == 1 and len(n.type) == 1 for n in new_loops)
    assert_same(interpret(out, *args), interpret(model, *args))


def test_dce_drops_unread_consts_and_renumbers_gets():
    k, s, x = gr.Input("B", 2), gr.Input("B", 2), gr.Input("B", 2)
    s2 = nn.CAddTable()([s, x])
    body = gr.gModule([k, s, x], [s2, nn.CMulTable()([s2, k]), nn.Tanh()(s2)])
    kk, s0, xs = gr.Input("B", 2), gr.Input("B", 2), gr.Input("B", "T", 2)
    last, unused, ys = gr.Loop(body, n_carry=1, n_consts=1)(consts=[kk], init=[s0], xs=[xs])
    model = gr.gModule([kk, s0, xs], [last, ys, nn.Tanh()(unused)])
    args = [randn(2, 2), randn(2, 2), randn(2, 3, 2)]
    g = infer_shapes(model.graph, types(*args))
    pruned = g.rebuilt(g.inputs, g.outputs[:2])            # the product output is now unread
    out = eliminate_dead_code(pruned)
    loop = next(n for n in out.nodes if n.op == Op.LOOP)
    assert loop.attrs["n_consts"] == 0 and len(loop.inputs) == 2
    assert len(loop.attrs["body"].outputs) == 2
    assert [n.attrs["index"] for n in out.nodes if n.op == Op.GET] == [0, 1]
    want = interpret(model, *args)
    assert_same(interpret(out, *args), want[:2])


# ----------------------------------------------------------------------------- fold

def test_fold_evaluates_constant_subgraphs():
    model, args = ZOO["constants"]()
    g = infer_shapes(model.graph, types(*args))
    out = fold_constants(g)
    assert count(out, Op.EXP) == 0 and count(out, Op.SUB) == 0
    body = next(n for n in out.nodes if n.op == Op.LOOP).attrs["body"]
    (scale,) = [n for n in body.nodes if n.op == Op.CONST and n.type.shape == (3,)]
    np.testing.assert_array_equal(scale.attrs["value"], np.exp(np.float32(1.0)) * np.ones(3))
    assert_same(interpret(out, *args), interpret(model, *args))
    assert fold_constants(out) is out


def test_fold_removes_identities_only_when_the_type_is_kept():
    x = gr.Input(1, 3)
    y1 = ops.mul(ops.add(x, 0.0), 1.0)                   # both vanish
    y2 = ops.mul(x, ops.const(np.ones((2, 3), np.float32)))   # broadcasts [1,3] to [2,3]: kept
    y3 = ops.div(ops.sub(ops.neg(ops.neg(x)), 0.0), 1.0)
    model = gr.gModule([x], [y1, y2, y3])
    g = infer_shapes(model.graph, [TensorType((1, 3))])
    out = fold_constants(g)
    assert out.outputs[0] is out.inputs[0] and out.outputs[2] is out.inputs[0]
    assert out.outputs[1].op == Op.MUL
    xv = randn(1, 3)
    assert_same(interpret(out, xv), interpret(model, xv))


def test_fold_leaves_inputs_params_and_batch_fills_alone():
    x = gr.Input("B", 3)
    f = ops.fill((3,), 2.0, batch_like=x)
    y = nn.Linear(3, 3)(ops.add(ops.exp(f), ops.exp(ops.fill((3,), 1.0))))
    model = gr.gModule([x], [y])
    g = infer_shapes(model.graph, [TensorType((2, 3))])
    out = fold_constants(g)
    assert count(out, Op.EXP) == 1 and count(out, Op.FILL) == 1 and count(out, Op.PARAM) == 2
    xv = randn(2, 3)
    assert_same(interpret(out, xv), interpret(model, xv))
