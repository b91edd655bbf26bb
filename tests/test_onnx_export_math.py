"""The newer primitives through graphrnn -> ONNX -> ONNX Runtime: elementwise math, row
reductions, normalisation, transpose, shift, batched matmul, casts and while loops, each
equal to graphrnn (the interpreter) within 1e-5 for several batch sizes and lengths."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

F = 4
RNG = np.random.default_rng(5)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def check(model, tmp_path, *batches) -> object:
    """Export once (full_check), then every batch gives graphrnn's outputs in ONNX Runtime."""
    path = tmp_path / "model.onnx"
    proto = gr.onnx.export(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for inputs in batches:
        want = model(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        got = sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape and g.dtype == w.dtype
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return proto


def seq_batches() -> list:
    return [[randn(3, 5, F)], [randn(1, 2, F)], [randn(2, 7, F)]]


UNARY = {
    "abs": ops.abs_, "sign": ops.sign, "erf": ops.erf, "softplus": ops.softplus,
    "sqrt": lambda x: ops.sqrt(ops.abs_(x)),
    "pow3": lambda x: ops.pow_(x, 3.0), "pow_half": lambda x: ops.pow_(ops.abs_(x), 0.5),
    "maximum": lambda x: ops.maximum(x, ops.neg(x)),
    "minimum": lambda x: ops.minimum(x, ops.slice_(x, 2, 0, 1)),
}


@pytest.mark.parametrize("name", list(UNARY))
def test_elementwise(name, tmp_path):
    x = gr.Input("B", "T", F, name="x")
    check(gr.gModule([x], [UNARY[name](x)]), tmp_path, *seq_batches())


def test_softplus_is_stable_for_large_inputs(tmp_path):
    x = gr.Input("B", F, name="x")
    big = np.array([[-1000, -80, 80, 1000], [-20, 0, 20, 88.7]], np.float32)
    check(gr.gModule([x], [ops.softplus(x)]), tmp_path, [big])


def test_nan_wins_in_maximum_and_max(tmp_path):
    x, y = gr.Input("B", F, name="x"), gr.Input("B", F, name="y")
    model = gr.gModule([x, y], [ops.maximum(x, y), ops.minimum(x, y), ops.max_(x, 1),
                                ops.min_(x, 0), ops.arg_onehot(x, 1), ops.arg_onehot(x, 0, True)])
    a = randn(3, F)
    a[1, 2] = np.nan
    b = randn(3, F)
    b[0, 0] = np.nan
    path = tmp_path / "m.onnx"
    gr.onnx.export(model, path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"x": a, "y": b})
    for g, w in zip(got, model(a, b)):
        np.testing.assert_array_equal(np.isnan(g), np.isnan(w))
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    assert np.isnan(got[2][1]) and np.isnan(got[3][2])
    assert got[4][1, 2] == 1 and got[5][1, 2] == 1          # the first NaN, as numpy


REDUCE = {
    "max_last": lambda x: ops.max_(x, -1), "min_time_keep": lambda x: ops.min_(x, 1, True),
    "logsumexp": lambda x: ops.logsumexp(x, -1),
    "logsumexp_time_keep": lambda x: ops.logsumexp(ops.mul(x, 300.0), 1, True),
    "arg_max": lambda x: ops.arg_onehot(x, -1), "arg_min_time": lambda x: ops.arg_onehot(x, 1,
                                                                                        True),
    "layer_norm": lambda x: ops.normalize(x, (F,), 1e-5),
    "layer_norm_2d": lambda x: ops.normalize(ops.reshape(x, ("B", "T", 2, F // 2)),
                                             (2, F // 2), 1e-3),
    "rms_norm": lambda x: ops.normalize(x, (F,), 1e-6, center=False),
}


@pytest.mark.parametrize("name", list(REDUCE))
def test_reductions_and_normalisation(name, tmp_path):
    x = gr.Input("B", "T", F, name="x")
    check(gr.gModule([x], [REDUCE[name](x)]), tmp_path, *seq_batches())


def test_norm_modules(tmp_path):
    x = gr.Input("B", "T", F, name="x")
    model = gr.gModule([x], [nn.LayerNorm(F)(x), nn.RMSNorm(F)(x), nn.Max(1)(x),
                             nn.LogSumExp(-1)(x)])
    check(model, tmp_path, *seq_batches())


SHAPE = {
    "transpose_bt": lambda x: ops.transpose(x, 0, 1),
    "transpose_last": lambda x: ops.transpose(x, -1, 1),
    "shift_right": lambda x: ops.shift(x, 1, 2), "shift_left": lambda x: ops.shift(x, 1, -3),
    "shift_far": lambda x: ops.shift(x, 1, 9), "shift_feat": lambda x: ops.shift(x, -1, -1),
    "shift_none": lambda x: ops.shift(x, 1, 0),
    "bmm": lambda x: ops.bmm(x, ops.transpose(x, 1, 2)),
    "bmm_flags": lambda x: ops.bmm(x, x, transpose_a=True),
    "bmm_both": lambda x: ops.bmm(x, ops.transpose(x, 1, 2), transpose_a=True,
                                  transpose_b=True),
}


@pytest.mark.parametrize("name", list(SHAPE))
def test_transpose_shift_bmm(name, tmp_path):
    x = gr.Input("B", "T", F, name="x")
    check(gr.gModule([x], [SHAPE[name](x)]), tmp_path, *seq_batches())


def test_astype_saturates_and_maps_nan_to_zero(tmp_path):
    x = gr.Input("B", F, name="x")
    ids = ops.astype(x, "int64")
    model = gr.gModule([x], [ids, ops.astype(ids, "float32")])
    special = np.array([[np.nan, 1e30, -1e30, -2.7], [3.9, 0.5, -0.5, 2.0 ** 62]], np.float32)
    check(model, tmp_path, [special], [randn(3, F) * 10])


def test_while_loop_exports_as_a_loop(tmp_path):
    h = gr.Input("B", F)
    h2 = ops.tanh(ops.add(h, 0.5))
    body = gr.gModule([h], [h2, h2, ops.index(h2, 1, 0)])
    h0 = gr.Input("B", F, name="h0")
    h_t, ys, lengths = gr.Loop(body, n_carry=1, stop=True, max_steps=6, pad=-1)(init=[h0])
    start = randn(4, F)
    start[:, 0] = [-3.0, -1.0, 0.2, -6.0]
    check(gr.gModule([h0], [h_t, ys, lengths]), tmp_path, [start], [randn(1, F)])


def test_normalize_grad_is_refused_by_name(tmp_path):
    x, g = gr.Input("B", F, name="x"), gr.Input("B", F, name="g")
    model = gr.gModule([x, g], [ops.normalize_grad(x, g, (F,), 1e-5)])
    with pytest.raises(gr.LoweringError, match="normalize_grad only appears in training"):
        gr.onnx.export(model, tmp_path / "m.onnx")


def test_reshape_to_a_zero_dim(tmp_path):
    """ONNX reads a 0 in Reshape's shape as "the input's dim" unless allowzero is set."""
    x = gr.Input("B", 3, name="x")
    empty = ops.reshape(ops.fill((0, 2), 1.0, batch_like=x), ("B", 2, 0))
    check(gr.gModule([x], [empty, ops.add(x, 1.0)]), tmp_path, [randn(2, 3)], [randn(5, 3)])


def test_empty_batch_and_sequence(tmp_path):
    """Over 0 steps max is -inf, min inf, logsumexp -inf, as graphrnn; 0 rows give 0 rows."""
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [ops.max_(x, 1), ops.min_(x, 1), ops.logsumexp(x, 1),
                             ops.shift(x, 1, 2), ops.arg_onehot(x, -1)])
    check(model, tmp_path, [np.zeros((2, 0, 3), np.float32)], [np.zeros((0, 4, 3), np.float32)])


def test_onnx_runtime_agrees_with_torch(tmp_path):
    """PyTorch as the second oracle for the ops it also has."""
    torch = pytest.importorskip("torch")
    x = gr.Input("B", "T", F, name="x")
    outs = [ops.softplus(ops.mul(x, 40.0)), ops.erf(x), ops.logsumexp(x, -1),
            ops.normalize(x, (F,), 1e-5), ops.normalize(x, (F,), 1e-6, center=False),
            ops.maximum(x, ops.sign(x)), ops.max_(x, 1), ops.bmm(x, x, transpose_b=True),
            ops.transpose(x, 1, 2), ops.pow_(ops.abs_(x), 1.5)]
    path = tmp_path / "m.onnx"
    gr.onnx.export(gr.gModule([x], outs), path)
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    xv = randn(3, 5, F)
    got = sess.run(None, {"x": xv})
    t = torch.from_numpy(xv)
    f = torch.nn.functional
    want = [f.softplus(t * 40.0), torch.erf(t), torch.logsumexp(t, -1),
            f.layer_norm(t, (F,), eps=1e-5), f.rms_norm(t, (F,), eps=1e-6),
            torch.maximum(t, torch.sign(t)), t.max(1).values, t @ t.transpose(1, 2),
            t.transpose(1, 2), t.abs() ** 1.5]
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)
