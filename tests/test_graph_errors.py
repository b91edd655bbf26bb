"""Bad graphs are refused with GraphError/ShapeError naming the node and the user's line."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

ME = __file__.rsplit("/", 1)[-1]


def line(back: int = 1) -> str:
    """`file:line` of the caller's line, `back` lines up."""
    return f"{ME}:{sys._getframe(1).f_lineno - back}"


def test_cycle_is_refused_naming_a_node_on_it():
    x = gr.Input("B", 3)
    a = nn.Tanh()(x)
    where_a = line()
    b = nn.Sigmoid()(a)
    where_b = line()
    object.__setattr__(a, "inputs", (b,))       # the only way to make one: nodes are frozen
    with pytest.raises(gr.GraphError, match="cycle") as err:
        gr.gModule([x], [b])
    assert where_a in str(err.value) or where_b in str(err.value)


def test_self_loop_is_a_cycle():
    x = gr.Input("B", 3)
    a = nn.Tanh()(x)
    object.__setattr__(a, "inputs", (a,))
    with pytest.raises(gr.GraphError, match="cycle"):
        gr.ir.toposort([a])


def test_dangling_input():
    x, unused = gr.Input("B", 3), gr.Input("B", 3).annotate(name="unused")
    where = line()
    with pytest.raises(gr.GraphError, match="dangling input") as err:
        gr.gModule([x, unused], [nn.Tanh()(x)])
    assert str(err.value).startswith(f"unused ({where})")


def test_a_branch_no_output_uses_is_not_part_of_the_model():
    # nodes know only their inputs, so a held node off the path is another model's business
    x = gr.Input("B", 3)
    y = nn.Tanh()(x)
    other = nn.Linear(3, 2)(x)
    model = gr.gModule([x], [y])
    assert model.param_count() == 0 and not any(n.op == gr.Op.MATMUL for n in model.graph.nodes)
    assert gr.gModule([x], [other]).param_count() == 8


def test_computing_on_an_unused_split_part_is_fine():
    x = gr.Input("B", 3, 2)
    first, second, third = nn.SplitTable(1)(x)
    stray = nn.Tanh()(third)
    model = gr.gModule([x], [nn.CAddTable()([first, second])])
    v = np.ones((1, 3, 2), np.float32)
    np.testing.assert_allclose(model(v), 2 * v[:, 0], atol=1e-6)
    del stray


def test_unused_split_parts_are_fine():
    x = gr.Input("B", 3, 2)
    first, _, _ = nn.SplitTable(1)(x)
    model = gr.gModule([x], [nn.Tanh()(first)])
    v = np.ones((1, 3, 2), np.float32)
    np.testing.assert_allclose(model(v), np.tanh(v[:, 0]), atol=1e-6)


def test_input_handles_may_be_reused_for_a_second_model():
    x = gr.Input("B", 3)
    y = nn.Tanh()(x)
    first = gr.gModule([x], [y])
    second = gr.gModule([x], [nn.Sigmoid()(x)])        # y belongs to the first model
    assert first.graph.outputs[0].op == gr.Op.TANH
    assert second.graph.outputs[0].op == gr.Op.SIGMOID


def test_output_depends_on_undeclared_input():
    x = gr.Input("B", 3)
    hidden = gr.Input("B", 3).annotate(name="h0")
    where = line()
    with pytest.raises(gr.GraphError, match="not among the graph's inputs") as err:
        gr.gModule([x], [nn.CAddTable()([x, hidden])])
    assert str(err.value).startswith(f"h0 ({where})")


def test_graph_inputs_must_be_input_nodes():
    x = gr.Input("B", 3)
    with pytest.raises(gr.GraphError, match="input node"):
        gr.gModule([nn.Tanh()(x)], [nn.Tanh()(x)])
    with pytest.raises(gr.GraphError, match="twice"):
        gr.gModule([x, x], [nn.Tanh()(x)])


def test_linear_on_the_wrong_width_fails_at_the_users_line():
    x = gr.Input("B", 26)
    with pytest.raises(gr.ShapeError) as err:
        nn.Linear(27, 26)(x)
    msg = str(err.value)
    assert msg.startswith(f"linear/matmul ({line(2)})")
    assert "27" in msg and "f32[B,26]" in msg


def test_linear_on_the_wrong_width_with_untyped_inputs_fails_when_run():
    x = nn.Identity()()
    y = nn.Linear(27, 26)(x)
    where = line()
    model = gr.gModule([x], [y])
    with pytest.raises(gr.ShapeError, match=where):
        model(np.zeros((2, 26), np.float32))


def test_concat_mismatch():
    a, b = gr.Input("B", 3, 4), gr.Input("B", 5, 4)
    with pytest.raises(gr.ShapeError, match=r"dim 1") as err:
        nn.JoinTable(2)([a, b])
    assert line(1) in str(err.value)
    with pytest.raises(gr.ShapeError, match="rank"):
        nn.JoinTable(1)([gr.Input("B", 3), gr.Input("B", 3, 1)])
    with pytest.raises(gr.ShapeError, match="symbolic"):
        nn.JoinTable(0)([gr.Input("B", 3), gr.Input("B", 3)])


def test_loop_body_returning_a_carry_of_the_wrong_size():
    h, x = gr.Input("B", 4), gr.Input("B", 3)
    wrong = nn.Linear(7, 5)(nn.JoinTable(1)([h, x]))
    body_line = line()
    body = gr.gModule([h, x], [wrong])
    with pytest.raises(gr.ShapeError, match="carried state 0") as err:
        gr.Loop(body, n_carry=1)(init=[gr.Input("B", 4)], xs=[gr.Input("B", "T", 3)])
    loop_line = line(1)
    msg = str(err.value)
    assert body_line in msg and loop_line in msg
    assert "f32[B,4]" in msg and "f32[B,5]" in msg


def test_loop_body_carry_mismatch_found_when_run_with_untyped_inputs():
    h, x = nn.Identity()(), nn.Identity()()
    body = gr.gModule([h, x], [nn.JoinTable(1)([h, x])])
    a, b = nn.Identity()(), nn.Identity()()
    model = gr.gModule([a, b], list(gr.Loop(body, n_carry=1)(init=[a], xs=[b])))
    with pytest.raises(gr.ShapeError, match="carried state 0"):
        model(np.zeros((2, 4), np.float32), np.zeros((2, 3, 1), np.float32))


def test_loop_arity_errors():
    h, x = gr.Input("B", 4), gr.Input("B", 3)
    body = gr.gModule([h, x], [nn.Tanh()(h), x])
    with pytest.raises(gr.GraphError, match="fewer than"):
        gr.Loop(body, n_carry=3)
    with pytest.raises(TypeError):
        gr.Loop("not a graph", n_carry=1)
    xs_a, xs_b = gr.Input("B", 5, 3), gr.Input("B", 6, 3)
    two = gr.Input("B", 3)
    body2 = gr.gModule([h, x, two], [nn.CAddTable()([nn.Linear(3, 4)(x), h,
                                                     nn.Linear(3, 4)(two)])])
    with pytest.raises(gr.ShapeError, match="steps"):
        gr.Loop(body2, n_carry=1)(init=[gr.Input("B", 4)], xs=[xs_a, xs_b])


def test_tying_different_shapes_is_a_graph_error_naming_the_node():
    a, b = nn.Linear(3, 2), nn.Linear(4, 2)
    b.share(a, "weight")
    share_line = line()
    x, y = gr.Input("B", 3), gr.Input("B", 4)
    out_a = a(x)
    out_b = b(y)
    use_line = line()
    with pytest.raises(gr.GraphError, match="cannot tie") as err:
        gr.gModule([x, y], [out_a, out_b])
    msg = str(err.value)
    assert "linear_1.weight [2, 4] to linear.weight [2, 3]" in msg
    assert use_line in msg and f"shared at {share_line}" in msg


def test_split_table_needs_a_known_length():
    with pytest.raises(gr.GraphError, match="symbolic"):
        nn.SplitTable(1)(gr.Input("B", "T", 3))
    with pytest.raises(gr.GraphError, match="known"):
        nn.SplitTable(1)(nn.Identity()())


def test_run_time_input_errors_name_the_input():
    x = gr.Input("B", 4).annotate(name="features")
    model = gr.gModule([x], [nn.Tanh()(x)])
    with pytest.raises(gr.ShapeError, match=r"features .*expected f32\[B,4\], got f32\[2,5\]"):
        model(np.zeros((2, 5), np.float32))
    with pytest.raises(gr.InputError, match="takes 1 inputs"):
        model(np.zeros((2, 4)), np.zeros(1))
    with pytest.raises(gr.InputError, match="dtype"):
        model(np.zeros((2, 4), bool))
    ids = gr.Input("B", dtype="int64")
    emb = gr.gModule([ids], [nn.LookupTable(3, 2)(ids)])
    with pytest.raises(gr.InputError, match="i64"):
        emb(np.zeros(2, np.float32))


def test_modules_refuse_non_nodes():
    with pytest.raises(TypeError):
        nn.Tanh()(np.zeros(3))
    with pytest.raises(TypeError):
        nn.Linear(2, 2)()
    with pytest.raises(TypeError):
        nn.JoinTable(1)("x")
