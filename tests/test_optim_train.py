"""Optimisers on flat vectors, and the fit loop."""
import math

import numpy as np

import graphrnn as gr
from graphrnn import nn, optim
from graphrnn.train import fit, loss_graph


def _vectors(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(n).astype(np.float32), rng.standard_normal(n).astype(np.float32)


def test_sgd_momentum_and_nesterov_match_the_formulas():
    for nesterov in (False, True):
        p, g = _vectors()
        p0, v = p.copy(), np.zeros_like(p)
        opt = optim.SGD((p, g), lr=0.1, momentum=0.9, nesterov=nesterov)
        for _ in range(3):
            opt.step()
            v = 0.9 * v + g
            p0 -= 0.1 * (g + 0.9 * v if nesterov else v)
        np.testing.assert_allclose(p, p0, rtol=1e-6)


def test_adam_matches_reference_and_updates_in_place():
    p, g = _vectors()
    view = p[1:3]
    ref, m, v = p.astype(np.float64).copy(), 0.0, 0.0
    opt = optim.Adam((p, g), lr=0.01)
    for t in range(1, 4):
        opt.step()
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g.astype(np.float64) ** 2
        ref -= 0.01 * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    np.testing.assert_allclose(p, ref, rtol=1e-5)
    assert np.shares_memory(view, p)


def test_adam_in_place_is_bit_for_bit_the_float32_expressions():
    # its in-place update must not change a single bit against the textbook float32 code,
    # so that runs (and the MPI-vs-one-process comparison) stay as they were
    rng = np.random.default_rng(3)
    p, g = rng.standard_normal(1000).astype(np.float32), np.zeros(1000, np.float32)
    ref, m, v = p.copy(), np.zeros_like(p), np.zeros_like(p)
    b1, b2, eps, lr = np.float32(0.9), np.float32(0.999), np.float32(1e-8), np.float32(0.01)
    opt = optim.Adam((p, g), lr=0.01)
    for t in range(1, 6):
        g[...] = rng.standard_normal(1000).astype(np.float32)
        opt.step()
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        step = lr * math.sqrt(1 - float(b2) ** t) / (1 - float(b1) ** t)
        ref -= np.float32(step) * m / (np.sqrt(v) + eps)
    np.testing.assert_array_equal(p, ref)
    assert set(opt.state_dict()) == {"steps", "m", "v"}


def test_rmsprop_adagrad_weight_decay_and_clipping():
    for cls in (optim.RMSProp, optim.Adagrad):
        p, g = _vectors()
        before = p.copy()
        cls((p, g), lr=0.01).step()
        assert np.all(np.sign(before - p) == np.sign(g))
    p, g = _vectors()
    g *= 100
    opt = optim.SGD((p, g), lr=1.0, clip_norm=1.0, weight_decay=0.0)
    before = p.copy()
    opt.step()
    assert abs(np.linalg.norm(before - p) - 1.0) < 1e-4
    assert opt.last_grad_norm > 1.0


def test_schedules():
    assert optim.step_decay(1.0, 10, 0.5)(25) == 0.25
    assert abs(optim.cosine_decay(1.0, 100)(100)) < 1e-12
    assert optim.warmup(lambda s: 1.0, 4)(0) == 0.25
    p, g = _vectors()
    opt = optim.SGD((p, g), lr=optim.exponential_decay(0.1, 0.5))
    opt.step()
    opt.step()
    assert opt.lr == 0.1 * 0.25


def _adding(n, steps, rng):
    v = rng.uniform(0, 1, (n, steps))
    m = np.zeros((n, steps))
    for i in range(n):
        m[i, rng.choice(steps, 2, replace=False)] = 1
    return np.stack([v, m], -1).astype(np.float32), (v * m).sum(1, keepdims=True).astype(np.float32)


def _model(seed):
    gr.manual_seed(seed)
    x = gr.Input("B", "T", 2)
    layer = nn.Recurrent(gr.cells.GRU(2, 16), return_sequences=False)
    return gr.gModule([x], [nn.Linear(16, 1)(layer(x))])


def test_fit_learns_and_is_reproducible():
    X, Y = _adding(600, 5, np.random.default_rng(0))
    runs = []
    for _ in range(2):
        m = _model(1)
        h = fit(m, gr.MSECriterion(), X, Y, epochs=4, batch_size=50, compiled=False,
                optimizer=optim.Adam(m.parameters(), lr=1e-2), validation=(X[:100], Y[:100]),
                progress=False)
        runs.append((h.loss, m.parameters()[0].copy()))
    assert runs[0][0] == runs[1][0]
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert runs[0][0][-1] < 0.6 * runs[0][0][0]
    assert len(h.val_loss) == 4 and h.epochs == 4


def test_loss_graph_shares_the_models_parameters():
    m = _model(2)
    g = loss_graph(m, gr.MSECriterion())
    assert {id(p) for p in g.params()} == {id(p) for p in m.graph.params()}


def test_stateful_chunks_match_the_interpreter_and_learn():
    from graphrnn.gradcheck import gradients
    from graphrnn.stateful import StatefulTrainStep
    gr.manual_seed(3)
    x = gr.Input("B", "T", 2)
    m = gr.gModule([x], [nn.Linear(6, 1)(nn.Recurrent(gr.cells.LSTM(2, 6))(x))])
    crit = gr.MSECriterion()
    step = StatefulTrainStep(m, crit)
    rng = np.random.default_rng(0)
    X = rng.standard_normal((3, 12, 2)).astype(np.float32)
    Y = rng.standard_normal((3, 12, 1)).astype(np.float32)
    _, state = step(X[:, :6], target=Y[:, :6])
    loss, _ = step(X[:, 6:], target=Y[:, 6:], state=state)
    grad = m.parameters()[1].copy()
    graph = step.graph              # (x, target, *state) -> (loss, *state)
    cot = [np.float64(1.0)] + [np.zeros(s.shape) for s in state]
    outs, ref, _ = gradients(graph, X[:, 6:], Y[:, 6:], *state, cotangents=cot)
    assert abs(outs[0] - loss) < 1e-5
    views = m.table.views(grad)
    for key, value in ref.items():
        np.testing.assert_allclose(views[key], value, rtol=1e-4, atol=1e-6)
    # a stream whose target needs memory across chunks: the running sum of inputs
    Xs = rng.uniform(-1, 1, (64, 40, 2)).astype(np.float32)
    Ys = np.cumsum(Xs[..., :1], axis=1) * 0.2
    h = fit(m, crit, Xs, Ys, epochs=6, batch_size=16, stateful_chunk=10, progress=False,
            optimizer=optim.Adam(m.parameters(), lr=1e-2))
    assert h.loss[-1] < 0.5 * h.loss[0]
