"""Every nn module against hand-written numpy, through gModule and the reference interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

RNG = np.random.default_rng(7)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def run_module(module, *arrays, table: bool = False):
    """Apply `module` to typed inputs shaped like `arrays`; run the closed graph on them."""
    xs = [gr.Input(*a.shape, dtype="int64" if a.dtype.kind == "i" else "float32")
          for a in arrays]
    out = module(xs if (table or len(xs) > 1) else xs[0])
    outs = list(out) if isinstance(out, tuple) else [out]
    return gr.gModule(xs, outs)(*arrays)


def close(a, b, tol: float = 1e-5) -> None:
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=tol, atol=tol)


def test_identity_passes_through_and_makes_inputs():
    x = randn(3, 4)
    close(run_module(nn.Identity(), x), x)
    inp = nn.Identity()()
    assert inp.op == gr.Op.INPUT and inp.type is None


@pytest.mark.parametrize("bias", [True, False])
def test_linear_uses_pytorch_layout(bias):
    lin = nn.Linear(4, 3, bias=bias)
    assert lin.weight.shape == (3, 4)
    assert (lin.bias is not None) == bias
    x = randn(5, 4)
    inp = gr.Input("B", 4)
    model = gr.gModule([inp], [lin(inp)])
    w = model.named_parameters()["linear.weight"]
    want = x @ w.T + (model.named_parameters()["linear.bias"] if bias else 0)
    close(model(x), want)
    assert set(model.named_parameters()) == ({"linear.weight", "linear.bias"} if bias
                                             else {"linear.weight"})


def test_linear_on_sequences_applies_to_last_axis():
    lin = nn.Linear(4, 2)
    x = randn(2, 5, 4)
    inp = gr.Input("B", "T", 4)
    model = gr.gModule([inp], [lin(inp)])
    p = model.named_parameters()
    close(model(x), x @ p["linear.weight"].T + p["linear.bias"])


@pytest.mark.parametrize("module, fn", [
    (nn.Tanh, np.tanh),
    (nn.Sigmoid, lambda v: 1.0 / (1.0 + np.exp(-v))),
    (nn.ReLU, lambda v: np.maximum(v, 0.0)),
])
def test_elementwise_maps(module, fn):
    x = randn(4, 6) * 3
    close(run_module(module(), x), fn(x))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_join_table(axis):
    a, b = randn(2, 3, 4), randn(2, 3, 4)
    close(run_module(nn.JoinTable(axis), a, b), np.concatenate([a, b], axis=axis))


@pytest.mark.parametrize("axis", [0, 1, 2, -1])
def test_split_table(axis):
    x = randn(2, 3, 4)
    outs = run_module(nn.SplitTable(axis), x)
    want = [np.take(x, i, axis=axis) for i in range(x.shape[axis])]
    outs = list(outs) if len(want) > 1 else [outs]
    assert len(outs) == len(want)
    for o, w in zip(outs, want):
        close(o, w)


@pytest.mark.parametrize("i", [0, 1, 2, -1, -3])
def test_select_table(i):
    arrays = [randn(2, 3) for _ in range(3)]
    xs = [gr.Input(2, 3) for _ in arrays]
    picked = nn.SelectTable(i)(xs)
    assert picked is xs[i]
    # the other entries are outputs too, so no input dangles
    close(gr.gModule(xs, [nn.Identity()(picked)] + xs)(*arrays)[0], arrays[i])


def test_select_table_out_of_range_names_the_table_size():
    a, b = gr.Input(2, 3), gr.Input(2, 3)
    with pytest.raises(gr.GraphError, match="2 entries"):
        nn.SelectTable(2)([a, b])


def test_narrow_and_reshape():
    x = randn(3, 8)
    close(run_module(nn.Narrow(1, 2, 4), x), x[:, 2:6])
    close(run_module(nn.Narrow(-1, 0, 1), x), x[:, 0:1])
    close(run_module(nn.Reshape(2, 4), x), x.reshape(3, 2, 4))
    close(run_module(nn.Reshape(8), randn(3, 2, 4)).shape, (3, 8))


@pytest.mark.parametrize("module, fn", [
    (nn.CAddTable, lambda a, b: a + b),
    (nn.CSubTable, lambda a, b: a - b),
    (nn.CMulTable, lambda a, b: a * b),
])
@pytest.mark.parametrize("n", [2, 3])
def test_table_arithmetic(module, fn, n):
    arrays = [randn(3, 5) for _ in range(n)]
    want = arrays[0]
    for a in arrays[1:]:
        want = fn(want, a)
    close(run_module(module(), *arrays), want)


def test_constants():
    x = randn(3, 4)
    close(run_module(nn.MulConstant(2.5), x), 2.5 * x)
    close(run_module(nn.AddConstant(-1.5), x), x - 1.5)


def test_softmax_and_log_softmax():
    x = randn(3, 5) * 4
    e = np.exp(x - x.max(-1, keepdims=True))
    sm = e / e.sum(-1, keepdims=True)
    close(run_module(nn.SoftMax(), x), sm)
    close(run_module(nn.LogSoftMax(), x), np.log(sm))
    e0 = np.exp(x - x.max(0, keepdims=True))
    close(run_module(nn.SoftMax(0), x), e0 / e0.sum(0, keepdims=True))


def test_lookup_table_with_int64_ids():
    emb = nn.LookupTable(10, 4)
    ids = np.array([[1, 9, 0], [3, 3, 2]], dtype=np.int64)
    inp = gr.Input("B", "T", dtype="int64")
    model = gr.gModule([inp], [emb(inp)])
    w = model.named_parameters()["lookuptable.weight"]
    assert w.shape == (10, 4)
    close(model(ids), w[ids])
    # an untyped input keeps integer data as int64 ids
    raw = nn.Identity()()
    close(gr.gModule([raw], [nn.LookupTable(10, 4)(raw)])(ids).shape, (2, 3, 4))


@pytest.mark.parametrize("bad", [10, -1])
def test_lookup_table_out_of_range_ids(bad):
    inp = gr.Input("B", dtype="int64")
    model = gr.gModule([inp], [nn.LookupTable(10, 4)(inp)])
    with pytest.raises(gr.InputError, match=r"\[0, 10\)"):
        model(np.array([1, bad]))


def test_lookup_table_refuses_float_ids_at_construction():
    inp = gr.Input("B")
    with pytest.raises(gr.ShapeError, match="int64"):
        nn.LookupTable(10, 4)(inp)


def test_dropout_is_identity_in_eval():
    inp = gr.Input("B", 100)
    model = gr.gModule([inp], [nn.Dropout(0.5)(inp)])
    x = randn(8, 100)
    close(model(x), x)
    close(model.train().eval()(x), x)


def test_dropout_in_training():
    p = 0.3
    inp = gr.Input("B", 1000)
    model = gr.gModule([inp], [nn.Dropout(p)(inp)]).train()
    x = np.abs(randn(10, 1000)) + 0.5          # no zeros of its own
    y = model(x)
    dropped = y == 0
    assert abs(dropped.mean() - p) < 0.02
    close(y[~dropped], x[~dropped] / (1 - p))
    np.testing.assert_array_equal(model(x), y)                      # same seed, same mask
    np.testing.assert_array_equal(model.forward(x, seed=5), model.forward(x, seed=5))
    assert not np.array_equal(model.forward(x, seed=5) == 0, dropped)


def test_two_dropout_nodes_draw_different_masks():
    inp = gr.Input("B", 500)
    model = gr.gModule([inp], [nn.Dropout(0.5)(inp), nn.Dropout(0.5)(inp)]).train()
    a, b = model(np.ones((4, 500), np.float32))
    assert not np.array_equal(a == 0, b == 0)


def test_dropout_rejects_bad_probability():
    with pytest.raises(ValueError):
        nn.Dropout(1.0)


# ----------------------------------------------------------------------------- criteria

def log_softmax(x: np.ndarray) -> np.ndarray:
    m = x.max(-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(-1, keepdims=True))


def nll(logp: np.ndarray, target: np.ndarray) -> float:
    return float(-np.take_along_axis(logp, target[..., None], -1).mean())


def graph_loss(crit, pred: np.ndarray, target: np.ndarray) -> float:
    p = gr.Input(*pred.shape)
    t = gr.Input(*target.shape, dtype="int64" if target.dtype.kind == "i" else "float32")
    loss = crit([p, t])
    assert loss.type == gr.TensorType(())
    return float(gr.gModule([p, t], [loss])(pred, target))


def test_mse_criterion():
    pred, target = randn(4, 3), randn(4, 3)
    want = float(((pred - target) ** 2).mean())
    assert graph_loss(gr.MSECriterion(), pred, target) == pytest.approx(want, rel=1e-5)
    assert gr.MSECriterion().forward(pred, target) == pytest.approx(want, rel=1e-5)


@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4)])
def test_class_nll_and_cross_entropy(shape):
    scores = randn(*shape)
    target = RNG.integers(0, shape[-1], shape[:-1]).astype(np.int64)
    logp = log_softmax(scores)
    want = nll(logp, target)
    assert graph_loss(gr.ClassNLLCriterion(), logp, target) == pytest.approx(want, rel=1e-5)
    assert gr.ClassNLLCriterion().forward(logp, target) == pytest.approx(want, rel=1e-5)
    assert graph_loss(gr.CrossEntropyCriterion(), scores, target) == pytest.approx(want, rel=1e-5)
    assert gr.CrossEntropyCriterion().forward(scores, target) == pytest.approx(want, rel=1e-5)


def test_class_nll_target_out_of_range():
    with pytest.raises(gr.InputError):
        gr.ClassNLLCriterion().forward(randn(2, 3), np.array([0, 3]))


def test_criterion_on_model_output_in_one_graph():
    """A loss node stacked on a model: [B, T, C] scores and [B, T] targets."""
    x = gr.Input("B", "T", 3)
    target = gr.Input("B", "T", dtype="int64")
    scores = nn.Linear(3, 4)(x)
    model = gr.gModule([x, target], [gr.CrossEntropyCriterion()([scores, target])])
    xs = randn(2, 5, 3)
    ts = RNG.integers(0, 4, (2, 5)).astype(np.int64)
    p = model.named_parameters()
    want = nll(log_softmax(xs @ p["linear.weight"].T + p["linear.bias"]), ts)
    assert float(model(xs, ts)) == pytest.approx(want, rel=1e-5)


def test_criterion_needs_two_inputs():
    with pytest.raises(TypeError):
        gr.MSECriterion()([gr.Input(2, 3)])
