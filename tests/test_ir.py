"""The IR: types, nodes, graphs, names, printing, the rewrite helper, and every primitive op
evaluated by the interpreter against numpy."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.passes.rewrite import rewrite
from graphrnn.compiler.passes.tie import tie_params
from graphrnn.interpret import EVAL_RULES, Context
from graphrnn.executable import Contract, Executable
from graphrnn.flat import ParamTable, Slot
from graphrnn.ir import Node, Op, TensorType, node_error, toposort, type_str
from graphrnn.close import close_graph

RNG = np.random.default_rng(1)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def test_tensor_type():
    t = TensorType(("B", "T", 3))
    assert str(t) == "f32[B,T,3]" and t.rank == 3 and not t.is_concrete()
    assert t.bind({"B": 2, "T": 5}) == TensorType((2, 5, 3))
    assert str(TensorType((4,), "int64")) == "i64[4]"
    assert TensorType((np.int64(3),)).shape == (3,)
    with pytest.raises(gr.ShapeError):
        TensorType((3,), "float16")
    with pytest.raises(gr.ShapeError):
        TensorType((-1,))
    assert type_str((t, None)) == "(f32[B,T,3], ?)"


def test_nodes_are_identities_and_replace_returns_self_when_unchanged():
    x = gr.Input("B", 3)
    a, b = ops.tanh(x), ops.tanh(x)
    assert a != b and len({a, b}) == 2
    assert a.replace(inputs=(x,), name=a.name, type=TensorType(("B", 3))) is a
    c = ops.const(np.arange(6.0).reshape(2, 3))
    assert c.replace(attrs=dict(c.attrs)) is c               # array attrs compare by identity
    renamed = a.replace(name="act")
    assert renamed is not a and renamed.name == "act" and a.name == ""
    assert renamed.inputs == a.inputs and renamed.seq == a.seq
    assert a.annotate(name="first") is a and a.name == "first"


def test_node_error_template():
    x = gr.Input("B", 3).annotate(name="feat")
    err = node_error(x, "expected f32[B,32], got f32[B,31]")
    assert isinstance(err, gr.GraphError)
    assert str(err) == f"feat ({x.where}): expected f32[B,32], got f32[B,31]"
    assert issubclass(gr.ShapeError, gr.GraphError) and issubclass(gr.GraphError, ValueError)
    assert issubclass(gr.InputError, ValueError) and issubclass(gr.LoweringError, RuntimeError)


def test_toposort_follows_creation_order():
    x = gr.Input("B", 3)
    a = ops.tanh(x)
    b = ops.sigmoid(x)
    c = ops.add(b, a)
    assert toposort([c]) == [x, a, b, c]
    assert toposort([c, a]) == [x, a, b, c]


def test_build_makes_fresh_named_nodes_and_keeps_handles():
    x = gr.Input("B", 3)
    y = ops.tanh(ops.tanh(x))
    g = close_graph([x], [y])
    assert [n.name for n in g.nodes] == ["input_0", "tanh_0", "tanh_1"]
    assert x.name == "" and g.inputs[0] is not x and g.outputs[0] is g.nodes[-1]
    assert g.node("tanh_1") is g.outputs[0]
    with pytest.raises(KeyError):
        g.node("nope")
    pos = {id(n): i for i, n in enumerate(g.nodes)}
    assert all(pos[id(i)] < pos[id(n)] for n in g.nodes for i in n.inputs)


def test_rebuilt_drops_unreachable_nodes():
    x = gr.Input("B", 3)
    g = close_graph([x], [ops.tanh(x), ops.sigmoid(x)])
    smaller = g.rebuilt(g.inputs, g.outputs[:1])
    assert [n.op for n in smaller.nodes] == [Op.INPUT, Op.TANH]


def loop_model() -> gr.gModule:
    h, xt = gr.Input("B", 2), gr.Input("B", 2)
    lin = nn.Linear(2, 2)
    body = gr.gModule([h, xt], [nn.Tanh()(nn.CAddTable()([lin(h), xt]))])
    x, h0 = gr.Input("B", "T", 2), gr.Input("B", 2)
    (last,) = gr.Loop(body, n_carry=1)(init=[h0], xs=[x])
    return gr.gModule([x, h0], [lin(last)])


def test_walk_and_params_reach_into_loop_bodies():
    model = loop_model()
    ops_seen = [n.op for n, _ in model.graph.walk()]
    assert Op.LOOP in ops_seen and Op.TANH in ops_seen
    assert [p.name for p in model.graph.params()] == ["weight", "bias"]
    assert model.param_count() == 6


def test_printing_one_line_per_node_with_the_body_indented():
    text = str(loop_model().graph)
    lines = text.splitlines()
    assert lines[0] == "graph(%input_0 : f32[B,T,2], %input_1 : f32[B,2]) {"
    assert any(ln.startswith("  %loop_0 : (f32[B,2]) = loop(%input_1, %input_0") for ln in lines)
    assert any(ln.startswith("    graph(") for ln in lines)
    assert any(ln.startswith("      %tanh_0 : f32[B,2] = tanh(%add_1)") for ln in lines)
    assert "%linear.weight : f32[2,2] = param()" in text
    assert lines[-2] == "  return (%add_0)" and lines[-1] == "}"
    assert "test_ir.py:" in text


def test_printing_shows_the_attrs_that_matter():
    x = gr.Input("B", 3)
    y = ops.mul(ops.add(x, ops.fill((3,), 1.5, batch_like=x)), ops.const(np.float32(2)))
    text = str(close_graph([x], [y]))
    assert "fill(%input_0, shape=(3,), value=1.5, dtype='float32')" in text
    assert "= const(2.)" in text


def test_rewrite_returns_the_same_graph_when_nothing_changes():
    g = loop_model().graph
    assert rewrite(g, lambda n: n) is g
    assert tie_params(g) is g


def test_rewrite_reaches_loop_bodies_and_leaves_the_input_alone():
    model = loop_model()
    g = model.graph
    swapped = rewrite(g, lambda n: Node(Op.SIGMOID, n.inputs, {}, n.type, None, n.name)
                      if n.op == Op.TANH else n)
    assert swapped is not g
    assert Op.SIGMOID in [n.op for n, _ in swapped.walk()]
    assert Op.SIGMOID not in [n.op for n, _ in g.walk()]
    x, h = randn(2, 3, 2), randn(2, 2)
    p = model.named_parameters()
    state = h
    for t in range(3):
        state = 1 / (1 + np.exp(-(state @ p["linear.weight"].T + p["linear.bias"] + x[:, t])))
    np.testing.assert_allclose(gr.interpret(swapped, x, h),
                               state @ p["linear.weight"].T + p["linear.bias"], atol=1e-5)


def test_param_table_and_executable_are_plain_hashable_data():
    t = ParamTable({"w": Slot(0, (2, 3))}, 16)
    assert t == ParamTable({"w": Slot(0, (2, 3))}, 16)
    assert hash(t) == hash(ParamTable({"w": Slot(0, (2, 3))}, 16))
    c = Contract(("x",), ("y",), None, (64, 0))
    e = Executable("; ir", ("forward",), t, 64, (TensorType(("B", 3)),), c)
    assert hash(e) == hash(Executable("; ir", ("forward",), t, 64, (TensorType(("B", 3)),), c))
    other = Executable("; ir", ("forward",), t, 64, (TensorType(("B", 3)),),
                       dataclasses.replace(c, pack=("pack", 16)))
    assert e != other                     # the contract is part of the identity
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.symbol = "T"  # type: ignore[misc]


# ----------------------------------------------------------------------------- primitives

def evaluate(make, *arrays, **kw):
    """Run `make(*input_nodes)` on typed inputs shaped like `arrays` through the interpreter."""
    xs = [gr.Input(*a.shape, dtype="int64" if a.dtype.kind == "i" else "float32")
          for a in arrays]
    out = make(*xs)
    return gr.interpret(close_graph(xs, [out]), *arrays, **kw)


def close(a, b):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fn, ref", [
    (ops.neg, np.negative), (ops.exp, np.exp), (ops.tanh, np.tanh),
    (ops.sigmoid, lambda v: 1 / (1 + np.exp(-v))), (ops.relu, lambda v: np.maximum(v, 0)),
    (lambda v: ops.log(ops.exp(v)), lambda v: v),
])
def test_unary_ops(fn, ref):
    x = randn(3, 4)
    close(evaluate(fn, x), ref(x))


@pytest.mark.parametrize("fn, ref", [
    (ops.add, np.add), (ops.sub, np.subtract), (ops.mul, np.multiply), (ops.div, np.divide)])
def test_binary_ops_broadcast(fn, ref):
    a, b = randn(2, 3, 4), randn(4) + 3
    close(evaluate(fn, a, b), ref(a, b))
    close(evaluate(lambda x: fn(x, 2.0), a), ref(a, np.float32(2.0)))
    with pytest.raises(gr.ShapeError, match="broadcast"):
        fn(gr.Input(2, 3), gr.Input(2, 4))


def test_matmul():
    a, w = randn(2, 5, 3), randn(3, 4)
    close(evaluate(ops.matmul, a, w), a @ w)
    close(evaluate(lambda x, y: ops.matmul(x, y, transpose_b=True), a, w.T.copy()), a @ w)
    with pytest.raises(gr.ShapeError, match="last dim"):
        ops.matmul(gr.Input(2, 3), gr.Input(4, 4))


@pytest.mark.parametrize("axes, keep", [(None, False), ((1,), False), ((0, 2), True), ((-1,),
                                                                                        False)])
def test_reductions(axes, keep):
    x = randn(2, 3, 4)
    close(evaluate(lambda v: ops.sum_(v, axes, keep), x),
          x.sum(axis=None if axes is None else axes, keepdims=keep))
    close(evaluate(lambda v: ops.mean(v, axes, keep), x),
          x.mean(axis=None if axes is None else axes, keepdims=keep))


def test_softmax_ops_are_stable():
    x = randn(2, 5) * 100
    e = np.exp(x - x.max(-1, keepdims=True))
    close(evaluate(ops.softmax, x), e / e.sum(-1, keepdims=True))
    got = evaluate(ops.log_softmax, x)
    assert np.isfinite(got).all()
    close(got, x - x.max(-1, keepdims=True) - np.log(e.sum(-1, keepdims=True)))


def test_indexing_ops():
    w, ids = randn(6, 3), np.array([[0, 5], [2, 2]], np.int64)
    close(evaluate(ops.lookup, w, ids), w[ids])
    x, idx = randn(2, 3, 4), np.array([[0, 3, 1], [2, 2, 0]], np.int64)
    close(evaluate(ops.pick, x, idx), np.take_along_axis(x, idx[..., None], -1)[..., 0])
    with pytest.raises(gr.ShapeError):
        ops.pick(gr.Input(2, 3), gr.Input(3, dtype="int64"))


def test_structure_ops():
    a, b = randn(2, 3), randn(2, 5)
    close(evaluate(lambda x, y: ops.concat([x, y], -1), a, b), np.concatenate([a, b], -1))
    x = randn(2, 6, 3)
    close(evaluate(lambda v: ops.slice_(v, 1, 2, 3), x), x[:, 2:5])
    close(evaluate(lambda v: ops.index(v, -1, 2), x), x[..., 2])
    close(evaluate(lambda v: ops.reshape(v, (2, 3, 6)), x), x.reshape(2, 3, 6))
    with pytest.raises(gr.ShapeError):
        ops.slice_(gr.Input(2, 6), 1, 4, 3)
    with pytest.raises(gr.ShapeError):
        ops.index(gr.Input(2, 6), 1, 6)
    with pytest.raises(gr.ShapeError):
        ops.reshape(gr.Input("B", 6), ("B", 4))


def test_leaf_ops():
    x = randn(3, 2)
    close(evaluate(lambda v: ops.add(v, ops.fill((2,), 1.5, batch_like=v)), x), x + 1.5)
    filled = ops.fill((2, 2), 7.0)
    assert filled.type == TensorType((2, 2))
    close(evaluate(lambda v: ops.add(v, ops.const(np.array([1.0, 2.0]))), x), x + [1, 2])
    assert ops.const(np.array([1, 2])).type.dtype == "int64"


def test_view_slices_a_flat_vector():
    flat = np.arange(40, dtype=np.float32)
    close(evaluate(lambda v: ops.view(v, 16, (2, 3)), flat), flat[16:22].reshape(2, 3))


def test_fused_runs_its_elementwise_body():
    a, b = gr.Input("B", 3), gr.Input("B", 3)
    body = close_graph([a, b], [ops.mul(ops.tanh(a), b)])
    x, y = randn(2, 3), randn(2, 3)
    got = evaluate(lambda p, q: ops.make(Op.FUSED, [p, q], body=body), x, y)
    close(got, np.tanh(x) * y)


def test_dropout_op_in_training_only():
    x = np.ones((4, 50), np.float32)
    close(evaluate(lambda v: ops.dropout(v, 0.5, seed=3), x), x)
    y = evaluate(lambda v: ops.dropout(v, 0.5, seed=3), x, training=True)
    assert set(np.unique(y)) == {0.0, 2.0}


def test_float64_interpretation():
    x = randn(2, 3).astype(np.float64)
    assert evaluate(ops.tanh, x, dtype=np.float64).dtype == np.float64


def test_eval_rule_for_an_input_without_a_value():
    x = gr.Input("B", 3).annotate(name="lost")
    with pytest.raises(gr.InputError, match="lost"):
        EVAL_RULES[Op.INPUT](x, [], Context())
