"""ops.astype (Op.ASTYPE): float32 <-> int64, interpreted and compiled alike, NaN and values out
of the int64 range included (never an undefined value), and its place in a gradient graph."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import ops


def model():
    x, i = gr.Input("B", 4, name="x"), gr.Input("B", dtype="int64", name="i")
    return gr.gModule([x, i], [ops.astype(x, "int64"), ops.astype(i, "float32")])


def test_astype_truncates_and_saturates_like_the_interpreter():
    xs = np.array([[1.7, -2.5, np.nan, 3e30], [-3e30, 0.0, -0.9, 12345678.0],
                   [np.inf, -np.inf, 2.0 ** 62, -(2.0 ** 63)]], np.float32)
    ids = np.array([3, -(2 ** 40), 7])
    want = model()(xs, ids)
    info = np.iinfo(np.int64)
    np.testing.assert_array_equal(want[0], [[1, -2, 0, info.max], [info.min, 0, 0, 12345678],
                                            [info.max, info.min, 2 ** 62, info.min]])
    np.testing.assert_array_equal(want[1], ids.astype(np.float32))
    fast = gr.compile(model())
    for b in (3, 1):
        got = fast(xs[:b], ids[:b])
        np.testing.assert_array_equal(got[0], want[0][:b])
        np.testing.assert_array_equal(got[1], want[1][:b])
        assert got[0].dtype == np.int64 and got[1].dtype == np.float32
    assert len(fast.programs) == 1


def test_astype_types_and_errors():
    x = gr.Input("B", 2)
    assert ops.astype(x, "float32") is x
    assert str(ops.astype(x, "int64").type) == "i64[B,2]"
    with pytest.raises(gr.ShapeError, match="astype"):
        ops.make(gr.Op.ASTYPE, [x], dtype="float64")


def test_ids_as_floats_in_a_differentiated_model():
    x, i = gr.Input("B", 3, name="x"), gr.Input("B", 3, dtype="int64", name="i")
    y = ops.mul(ops.tanh(x), ops.astype(i, "float32"))
    m = gr.gModule([x, i], [y])
    rng = np.random.default_rng(0)
    xs, ids = rng.standard_normal((4, 3)), rng.integers(-3, 4, (4, 3))
    result = gr.gradcheck(m, xs, ids)
    assert result.ok, str(result)
    _, grads = gr.compile_vjp(m)(xs.astype(np.float32), ids, np.ones((4, 3), np.float32))
    np.testing.assert_allclose(grads[0], (1 - np.tanh(xs) ** 2) * ids, rtol=1e-5, atol=1e-6)
    assert grads[1] is None
