"""Parameters: tying by identity and by `share`/`clone`, the flat vector, state, init."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.init import initial_value, key_generator
from graphrnn.flat import ALIGN_FLOATS, layout_params
from graphrnn.ir import Param


def toy_rnn(lin: nn.Linear | None = None) -> gr.gModule:
    """The nngraph toy: input 1, hidden 26, length 3; one Linear(27, 26) used at every step."""
    x, h0 = gr.Input("B", 3, 1), gr.Input("B", 26)
    lin = lin or nn.Linear(27, 26)
    h = h0
    for x_t in nn.SplitTable(1)(x):
        h = nn.Tanh()(lin(nn.JoinTable(1)([h, x_t])))
    return gr.gModule([x, h0], [nn.Linear(26, 1)(h)])


def toy_numpy(p: dict, x: np.ndarray, h: np.ndarray) -> np.ndarray:
    for t in range(x.shape[1]):
        h = np.tanh(np.concatenate([h, x[:, t]], 1) @ p["linear.weight"].T + p["linear.bias"])
    return h @ p["linear_1.weight"].T + p["linear_1.bias"]


def test_toy_rnn_has_755_parameters():
    model = toy_rnn()
    assert model.param_count() == 755 == 27 * 26 + 26 + 26 + 1
    assert model.table.count == 755
    flat, grad = model.parameters()
    # the flat vector holds exactly those 755 values, one after another
    assert flat.size == model.table.size == 755 and grad.shape == flat.shape
    views = model.table.views(flat)
    assert sum(v.size for v in views.values()) == 755
    covered = np.zeros(flat.size, int)
    for s in model.table.slots.values():
        covered[s.offset:s.offset + s.size] += 1
    assert (covered == 1).all()
    assert sorted(model.state_dict()) == sorted(
        ["linear.weight", "linear.bias", "linear_1.weight", "linear_1.bias"])


def test_toy_rnn_against_numpy():
    model = toy_rnn()
    x = np.random.default_rng(0).standard_normal((4, 3, 1)).astype(np.float32)
    h = np.zeros((4, 26), np.float32)
    np.testing.assert_allclose(model(x, h), toy_numpy(model.named_parameters(), x, h),
                               atol=1e-5)


def test_calling_a_module_several_times_ties_one_param():
    model = toy_rnn()
    params = [n.param for n in model.graph.nodes if n.op == gr.Op.PARAM]
    assert len(params) == len({id(p) for p in params}) == 4      # one PARAM node per Param
    uses = [n for n in model.graph.nodes if n.op == gr.Op.MATMUL]
    assert len(uses) == 4 and len({id(n.inputs[1]) for n in uses}) == 2


def test_flat_vector_views_and_alignment():
    model = toy_rnn()
    flat, grad = model.parameters()
    assert flat.dtype == grad.dtype == np.float32
    assert flat.ctypes.data % 64 == 0 and grad.ctypes.data % 64 == 0
    for key, value in model.named_parameters().items():
        slot = model.table.slots[key]
        assert slot.offset % ALIGN_FLOATS == 0
        assert np.shares_memory(value, flat)
        assert value.ctypes.data == flat.ctypes.data + 4 * slot.offset
        assert value.base is flat                     # views are one level deep
    flat[:] = 0.5                                     # writing the vector writes every param
    assert all((v == 0.5).all() for v in model.named_parameters().values())
    lin = [p for p in model.graph.params() if p.name == "weight"][0]
    assert np.shares_memory(gr.value(lin), flat)
    assert np.shares_memory(model.store.grad_of(lin), grad)


def test_a_param_lives_in_the_flat_vector_of_the_model_that_asks():
    x = gr.Input("B", 4)
    inner = gr.gModule([x], [nn.Linear(4, 3)(x)])
    inner.parameters()[0][:] = 1.0
    y = gr.Input("B", 4)
    outer = gr.gModule([y], [nn.Tanh()(inner(y))])   # closing moves the params to outer
    flat = outer.parameters()[0]
    assert (flat[:12] == 1.0).all()
    flat[:] = 2.0
    inner_flat = inner.parameters()[0]               # ...and asking moves them back
    assert (inner_flat[:12] == 2.0).all()
    for v in inner.named_parameters().values():
        assert np.shares_memory(v, inner_flat)
    v = np.ones((1, 4), np.float32)
    np.testing.assert_allclose(outer(v), np.tanh(inner(v)), atol=1e-6)


def test_share_ties_parameters_across_instances():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.share(a, "weight", "bias")
    x = gr.Input("B", 4)
    model = gr.gModule([x], [a(x), b(x)])
    assert model.param_count() == 15                 # one weight and one bias
    assert np.array_equal(gr.value(b.weight), gr.value(a.weight))
    flat, _ = model.parameters()
    flat[:] = np.arange(flat.size, dtype=np.float32)  # updating the flat vector changes both
    assert np.shares_memory(gr.value(b.weight), flat)
    assert np.shares_memory(gr.value(a.weight), flat)
    np.testing.assert_array_equal(gr.value(b.weight), gr.value(a.weight))
    ya, yb = model(np.ones((2, 4), np.float32))
    np.testing.assert_array_equal(ya, yb)


def test_share_only_named_parameters():
    a, b = nn.Linear(4, 3), nn.Linear(4, 3)
    b.share(a, "weight")
    x = gr.Input("B", 4)
    model = gr.gModule([x], [a(x), b(x)])
    assert model.param_count() == 12 + 3 + 3
    assert sorted(model.state_dict()) == ["linear.bias", "linear.weight", "linear_1.bias"]


def test_clone_ties_named_parameters():
    a = nn.Linear(5, 2)
    b = a.clone("weight", "bias")
    c = a.clone()                                     # a copy of the values, not tied
    x = gr.Input("B", 5)
    model = gr.gModule([x], [a(x), b(x), c(x)])
    assert model.param_count() == 2 * 12
    ones = np.ones((1, 5), np.float32)
    ya, yb, yc = model(ones)
    np.testing.assert_array_equal(ya, yb)
    np.testing.assert_array_equal(ya, yc)
    gr.value(a.weight)[...] += 1.0                    # moves a and its tied clone b only
    ya, yb, yc = model(ones)
    np.testing.assert_array_equal(ya, yb)
    assert not np.allclose(ya, yc)
    part = a.clone("weight")
    assert part.weight.tied_to is a.weight and part.bias.tied_to is None
    np.testing.assert_array_equal(gr.value(part.bias), gr.value(a.bias))


def test_tying_different_shapes_names_the_node():
    a, b = nn.Linear(4, 3), nn.Linear(5, 3)
    b.share(a, "weight")
    line = sys._getframe().f_lineno - 1
    x, y = gr.Input("B", 4), gr.Input("B", 5)
    with pytest.raises(gr.GraphError) as err:
        gr.gModule([x, y], [a(x), b(y)])
    msg = str(err.value)
    assert "linear.weight" in msg and "[3, 5]" in msg and "[3, 4]" in msg
    assert f"test_params.py:{line}" in msg             # where the sharing was declared


def test_share_needs_the_parameter_on_both_sides():
    with pytest.raises(gr.GraphError):
        nn.Linear(4, 3).share(nn.Linear(4, 3, bias=False), "bias")


def test_state_dict_round_trip():
    a, b = toy_rnn(), toy_rnn()
    x = np.random.default_rng(1).standard_normal((2, 3, 1)).astype(np.float32)
    h = np.zeros((2, 26), np.float32)
    assert not np.allclose(a(x, h), b(x, h))
    state = a.state_dict()
    b.load_state_dict(state)
    np.testing.assert_array_equal(a(x, h), b(x, h))
    state["linear.bias"][:] = 7                       # state_dict returns copies
    assert not (a.named_parameters()["linear.bias"] == 7).any()
    flat_before = b.parameters()[0]
    b.load_state_dict(state)
    assert b.parameters()[0] is flat_before and (b.named_parameters()["linear.bias"] == 7).all()
    with pytest.raises(KeyError):
        b.load_state_dict({"linear.weight": state["linear.weight"]})
    with pytest.raises(ValueError):
        b.load_state_dict({**state, "linear.bias": np.zeros(3)})


def test_reset_parameters_is_deterministic():
    a, b = toy_rnn(), toy_rnn()
    a.reset_parameters(seed=3)
    b.reset_parameters(seed=3)
    np.testing.assert_array_equal(a.parameters()[0], b.parameters()[0])
    first = a.parameters()[0].copy()
    a.reset_parameters(seed=4)
    assert not np.array_equal(first, a.parameters()[0])
    k = 1 / np.sqrt(27)                               # Linear's U(-1/sqrt(in), 1/sqrt(in))
    w = a.named_parameters()["linear.weight"]
    assert np.abs(w).max() <= k and np.abs(w).max() > 0.9 * k


def test_manual_seed_makes_construction_deterministic():
    gr.manual_seed(5)
    a = toy_rnn()
    gr.manual_seed(5)
    b = toy_rnn()
    c = toy_rnn()
    np.testing.assert_array_equal(a.parameters()[0], b.parameters()[0])
    assert not np.array_equal(b.parameters()[0], c.parameters()[0])


def test_xavier_bounds():
    shape = (30, 50)
    bound = np.sqrt(6.0 / (30 + 50))
    v = initial_value(shape, "xavier_uniform", key_generator(0, "w"))
    assert v.dtype == np.float32 and v.shape == shape
    assert np.abs(v).max() <= bound and np.abs(v).max() > 0.95 * bound
    n = initial_value((200, 300), "xavier_normal", key_generator(0, "w"))
    assert abs(n.std() - np.sqrt(2.0 / 500)) < 0.002
    model = toy_rnn()
    model.reset_parameters(seed=1, scheme="xavier_uniform")
    w = model.named_parameters()["linear.weight"]
    assert np.abs(w).max() <= np.sqrt(6.0 / (27 + 26))
    b = model.named_parameters()["linear.bias"]       # 1-D parameters keep their own init
    assert np.abs(b).max() <= 1 / np.sqrt(27)


@pytest.mark.parametrize("spec, check", [
    ("zeros", lambda v: not v.any()),
    ("ones", lambda v: (v == 1).all()),
    ("uniform(-0.5,0.5)", lambda v: np.abs(v).max() <= 0.5),
    ("normal(2,0.1)", lambda v: abs(v.mean() - 2) < 0.05),
])
def test_init_specs(spec, check):
    assert check(initial_value((20, 20), spec, key_generator(0, spec)))


def test_unknown_init_spec():
    with pytest.raises(ValueError):
        initial_value((2,), "kaiming", key_generator(0, "x"))


def test_layout_is_first_use_order_with_unique_keys():
    token = object()
    ps = [Param("weight", (3, 5), owner="linear", token=token),
          Param("bias", (3,), owner="linear", token=token),
          Param("weight", (2, 2), owner="linear")]
    table, keys = layout_params(ps)
    assert list(table.slots) == ["linear.weight", "linear.bias", "linear_1.weight"]
    assert [s.offset for s in table.slots.values()] == [0, 15, 18]
    assert table.size == table.count == 15 + 3 + 4
    flat = np.arange(22, dtype=np.float32)
    views = table.views(flat)
    assert all(np.shares_memory(v, flat) for v in views.values())
    with pytest.raises(gr.InputError):
        table.views(np.zeros(21, np.float32))
