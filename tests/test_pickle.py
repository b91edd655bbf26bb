"""Models and compiled models pickle (for multiprocessing, joblib, Dask, Ray).

A compiled model pickles as its model and options, and compiles again (or loads from the
kernel cache) on the other side; outputs are identical after the round trip.
"""
from __future__ import annotations

import multiprocessing
import pickle

import numpy as np

import graphrnn as gr
from graphrnn import nn

D, H = 3, 6


def model() -> gr.gModule:
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(gr.cells.LSTM(D, H), name="lstm")(x)
    return gr.gModule([x], [nn.Linear(H, 2)(h)])


def inputs() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((2, 5, D)).astype(np.float32)


def test_a_model_round_trips() -> None:
    m = model()
    m.parameters()[0][...] *= 1.5
    again = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(again(inputs()), m(inputs()))
    np.testing.assert_array_equal(again.parameters()[0], m.parameters()[0])
    again.parameters()[0][...] = 0                   # its own storage, not the original's
    assert np.abs(m.parameters()[0]).sum() > 0


def test_a_compiled_model_round_trips() -> None:
    fast = gr.compile(model())
    want = fast(inputs())
    again = pickle.loads(pickle.dumps(fast))
    assert type(again) is type(fast) and len(again.programs) == 0
    np.testing.assert_array_equal(again(inputs()), want)


def test_models_sharing_parameters_round_trip_together() -> None:
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(gr.cells.GRU(D, H), return_sequences=False, name="gru")(x)
    enc, full = gr.gModule([x], [h]), gr.gModule([x], [nn.Linear(H, 1)(h)])
    full.parameters()[0][...] *= 2.0                 # full owns the GRU weights now
    want = gr.compile(enc)(inputs())
    enc2, full2 = pickle.loads(pickle.dumps((enc, full)))
    np.testing.assert_allclose(gr.compile(enc2)(inputs()), want, rtol=1e-6)
    full2.parameters()[0][...] *= 0.0                # the copies still share their GRU
    np.testing.assert_array_equal(gr.compile(enc2)(inputs()), np.zeros((2, H), np.float32))


def _run(fast, x):
    return fast(x)


def test_a_compiled_model_crosses_a_spawned_process() -> None:
    fast = gr.compile(model())
    x = inputs()
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        got = pool.apply_async(_run, (fast, x)).get(timeout=300)
    np.testing.assert_array_equal(got, fast(x))


def test_a_module_alone_keeps_its_values() -> None:
    lin = nn.Linear(3, 2)
    again = pickle.loads(pickle.dumps(lin))
    np.testing.assert_array_equal(gr.value(again.weight), gr.value(lin.weight))
    assert gr.value(again.weight) is not gr.value(lin.weight)
