"""graphrnn -> ONNX -> gr.onnx.load -> graphrnn gives the model's outputs: built-in LSTM/GRU
layers, the nngraph toy, a user-written cell (a Scan), and the newer primitives that have a
one-node ONNX counterpart (the import reads them back as those primitives)."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.module import graph_of

onnx = pytest.importorskip("onnx")

D, H = 3, 5
RNG = np.random.default_rng(17)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def through_onnx(model, *batches) -> gr.gModule:
    """Export (no empty-batch guards: a plain graph), load back, compare on every batch."""
    proto = gr.onnx.to_onnx(model, guard_empty=False)
    onnx.checker.check_model(proto, full_check=True)
    back = gr.onnx.load(proto.SerializeToString())
    # a Scan reads time-major: the import may declare such inputs/outputs time-major
    layouts = back.onnx_layouts
    in_perms = [layouts["inputs"].get(x.name) for x in graph_of(back).inputs]
    out_perms = [layouts["outputs"].get(o.name) for o in proto.graph.output]
    for inputs in batches:
        want = model(*inputs)
        got = back(*[x if p is None else np.transpose(x, p) for x, p in zip(inputs, in_perms)])
        want, got = (w if isinstance(w, tuple) else (w,) for w in (want, got))
        got = [g if p is None else np.transpose(g, p) for g, p in zip(got, out_perms)]
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-6, atol=1e-6)
    return back


@pytest.mark.parametrize("cell", [lambda: gr.cells.LSTM(D, H), lambda: gr.cells.GRU(D, H)],
                         ids=["lstm", "gru"])
def test_builtin_layers(cell):
    rec = nn.Recurrent(cell(), num_layers=2, bidirectional=True)
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(2 * H, 2)(rec(x))])
    through_onnx(model, [randn(3, 6, D)], [randn(1, 2, D)])


def test_nngraph_toy():
    h = gr.Input("B", 26, name="h")
    x_t = gr.Input("B", 1, name="x_t")
    step = gr.gModule([h, x_t], [nn.Tanh()(nn.Linear(27, 26)(nn.JoinTable(1)([h, x_t])))])
    x, h0 = gr.Input("B", 3, 1, name="x"), gr.Input("B", 26, name="h0")
    h_last = gr.Loop(step, n_carry=1, length=3)(init=[h0], xs=[x])[0]
    model = gr.gModule([x, h0], [nn.Linear(26, 1)(h_last)])
    through_onnx(model, [randn(4, 3, 1), randn(4, 26)], [randn(1, 3, 1), randn(1, 26)])


def test_user_written_cell_via_scan():
    h, x_t = gr.Input("B", H), gr.Input("B", D)
    pre = nn.Linear(D + H, H)(nn.JoinTable(1)([h, x_t]))
    h2 = ops.mul(ops.sigmoid(pre), ops.tanh(pre))
    body = gr.gModule([h, x_t], [h2, h2])
    x, h0 = gr.Input("B", "T", D, name="x"), gr.Input("B", H, name="h0")
    h_t, ys = gr.Loop(body, n_carry=1)(init=[h0], xs=[x])
    through_onnx(gr.gModule([x, h0], [h_t, ys]), [randn(2, 5, D), randn(2, H)])


def test_new_primitives():
    x = gr.Input("B", "T", 4, name="x")
    y = ops.softplus(ops.erf(x))
    y = ops.maximum(ops.pow_(ops.sqrt(ops.abs_(x)), 3.0), ops.minimum(y, ops.sign(x)))
    normed = nn.LayerNorm(4)(y)
    swapped = ops.transpose(normed, 1, 2)                          # [B, 4, T]
    pooled = ops.logsumexp(swapped, -1)                            # [B, 4]
    ids = gr.Input("B", dtype="int64", name="ids")
    model = gr.gModule([x, ids], [pooled, normed, ops.astype(ids, "float32")])
    back = through_onnx(model, [randn(3, 5, 4), np.array([4, -2, 9])],
                        [randn(1, 1, 4), np.array([0])])
    kinds = {n.op for n in graph_of(back).nodes}
    assert {gr.Op.SOFTPLUS, gr.Op.ERF, gr.Op.MAXIMUM, gr.Op.MINIMUM, gr.Op.SIGN, gr.Op.POW,
            gr.Op.SQRT, gr.Op.ABS, gr.Op.NORMALIZE, gr.Op.LOGSUMEXP, gr.Op.ASTYPE} <= kinds


def test_nan_guarded_max_and_int_casts_come_back():
    """max/min reductions and float -> int64 casts export with IsNaN/Where guards (ONNX Runtime
    skips NaNs; ONNX leaves such casts open); the import reads the guards back."""
    x = gr.Input("B", "T", 4, name="x")
    ids = ops.astype(ops.mul(x, 1e19), "int64")
    model = gr.gModule([x], [ops.max_(x, -1), ops.min_(x, 1, True), ids])
    special = randn(2, 3, 4)
    special[0, 1, 2], special[1, 0, 0], special[1, 2, 3] = np.nan, np.inf, -1e-19
    back = through_onnx(model, [special], [randn(1, 2, 4)])
    got = back(special)
    assert np.isnan(got[0][0, 1]) and np.isnan(got[1][0, 0, 2]) and got[2][0, 1, 2] == 0
    assert got[2][1, 0, 0] == np.iinfo(np.int64).max
    fast = gr.compile(back)(special)
    for f, g in zip(fast, got):
        np.testing.assert_array_equal(f, g)


def test_while_loop():
    h = gr.Input("B", 4)
    h2 = ops.tanh(ops.add(h, 0.5))
    body = gr.gModule([h], [h2, h2, ops.index(h2, 1, 0)])
    h0 = gr.Input("B", 4, name="h0")
    h_t, ys, lengths = gr.Loop(body, n_carry=1, stop=True, max_steps=6, pad=-1)(init=[h0])
    start = randn(4, 4)
    start[:, 0] = [-3.0, -1.0, 0.2, -6.0]
    through_onnx(gr.gModule([h0], [h_t, ys, lengths]), [start])


def test_reductions_are_read_back_as_primitives():
    """ReduceMax/Min/LogSumExp from another producer (attribute axes, opset 17)."""
    h = onnx.helper
    tp = onnx.TensorProto
    nodes = [h.make_node("ReduceMax", ["x"], ["a"], axes=[2], keepdims=0),
             h.make_node("ReduceMin", ["x"], ["b"], axes=[1], keepdims=1),
             h.make_node("ReduceLogSumExp", ["x"], ["c"], axes=[-1], keepdims=0),
             h.make_node("Max", ["x", "s"], ["d"]),
             h.make_node("Cast", ["c"], ["e"], to=tp.INT64)]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info("x", tp.FLOAT, ["B", "T", 4]),
                                      h.make_tensor_value_info("s", tp.FLOAT, [4])],
                         [h.make_tensor_value_info(n, tp.FLOAT, None) for n in "abcd"] +
                         [h.make_tensor_value_info("e", tp.INT64, None)])
    proto = h.make_model(graph, opset_imports=[h.make_opsetid("", 17)])
    model = gr.onnx.load(proto)
    x, s = randn(2, 3, 4), randn(4)
    a, b, c, d, e = model(x, s)
    np.testing.assert_allclose(a, x.max(2), rtol=1e-6)
    np.testing.assert_allclose(b, x.min(1, keepdims=True), rtol=1e-6)
    want_c = np.log(np.exp(x.astype(np.float64)).sum(-1))
    np.testing.assert_allclose(c, want_c, rtol=1e-5)
    np.testing.assert_array_equal(d, np.maximum(x, s))
    assert e.dtype == np.int64
    np.testing.assert_array_equal(e, np.trunc(c).astype(np.int64))


def test_logic_ops_are_read_as_masks():
    """Bool ONNX values as float masks, exact for NaN, inf and neighbouring floats."""
    h, tp = onnx.helper, onnx.TensorProto
    c = onnx.numpy_helper.from_array(np.float32(0.5), "c")
    nodes = [h.make_node("Greater", ["x", "y"], ["gt"]), h.make_node("Less", ["x", "y"], ["lt"]),
             h.make_node("Equal", ["x", "c"], ["eq"]), h.make_node("IsNaN", ["x"], ["nan"]),
             h.make_node("Or", ["gt", "nan"], ["either"]), h.make_node("Not", ["lt"], ["ge"]),
             h.make_node("And", ["ge", "either"], ["both"]),
             h.make_node("Where", ["both", "x", "y"], ["w"])]
    nodes += [h.make_node("Cast", [v], [f"{v}_f"], to=tp.FLOAT)
              for v in ("gt", "lt", "eq", "nan", "both")]
    outs = ["gt_f", "lt_f", "eq_f", "nan_f", "both_f", "w"]
    graph = h.make_graph(nodes, "g", [h.make_tensor_value_info(v, tp.FLOAT, ["N"])
                                      for v in "xy"],
                         [h.make_tensor_value_info(v, tp.FLOAT, None) for v in outs],
                         initializer=[c])
    model = gr.onnx.load(h.make_model(graph, opset_imports=[h.make_opsetid("", 17)]))
    big = np.finfo(np.float32).max
    x = np.array([1, np.nan, np.inf, -np.inf, 0.5, big, np.inf, 0.5, -0.0], np.float32)
    y = np.array([2, 1, np.inf, 0, np.nan, -big, 1, np.nextafter(np.float32(0.5), 1), 0],
                 np.float32)
    with np.errstate(invalid="ignore"):
        gt, lt = x > y, x < y
        both = ~lt & (gt | np.isnan(x))
        want = [gt, lt, x == 0.5, np.isnan(x), both, np.where(both, x, y)]
    for got in (model(x, y), gr.compile(model)(x, y)):
        for g, w in zip(got, want):
            np.testing.assert_array_equal(g, np.asarray(w, np.float32))
