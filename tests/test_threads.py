"""`gr.compile(model, threads=n)`: one call's batch run as parts of rows on several cores.

What the tests hold the feature to:
- forward: every row is computed by the same kernels whatever the batch size of its part, so a
  split call returns the one-thread result bit for bit (odd sizes, lengths, 2 and 3 parts);
- training: each part's loss and gradient combine as the criterion's batch reduction (a mean
  by rows_i / B, a sum by adding), equal to one thread within float32 rounding and to the
  interpreter;
- stateful models: each part carries its own rows' state, streams equal one thread's;
- the rule: parts of fewer than MIN_ROWS_PER_PART rows or MIN_FLOPS_PER_PART flops are not
  made, nor are parts of a graph whose rows depend on each other (`split.reason` says why);
- `threads` below 1 (or not an integer) is refused.
Most tests lower MIN_FLOPS_PER_PART to 0 so that small models (fast to compile) split.
"""
from __future__ import annotations

import threading

import numpy as np
import pytest

import graphrnn as gr
import row_models
from row_models import grads
from graphrnn import nn, ops
from graphrnn import threads as threads_mod
from graphrnn.losses import Criterion
from graphrnn.rows import MEAN, ROWS, SUM, row_plan
from graphrnn.stateful import StatefulTrainStep
from graphrnn.threads import MIN_FLOPS_PER_PART, MIN_ROWS_PER_PART, split_rows
from graphrnn.train import InterpretedStep, loss_graph

RNG = np.random.default_rng(11)
D, H = 5, 7


@pytest.fixture
def eager(monkeypatch: pytest.MonkeyPatch) -> None:
    """Split whenever each part has MIN_ROWS_PER_PART rows, however little its work."""
    monkeypatch.setattr(threads_mod, "MIN_FLOPS_PER_PART", 0.0)


def layer(cell: str = "LSTM", d: int = D, h: int = H, seed: int = 3) -> gr.gModule:
    gr.manual_seed(seed)
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [nn.Recurrent(getattr(gr.cells, cell)(d, h))(x)])


def tagger() -> gr.gModule:
    return row_models.tagger(D, H)


def data(b: int, t: int, d: int = D) -> np.ndarray:
    return row_models.sequences(RNG, b, t, d)


# ----------------------------------------------------------------------------- forward

@pytest.mark.parametrize("threads,batch", [(2, 37), (3, 37), (2, 16)])
def test_split_forward_is_the_one_thread_result_bit_for_bit(eager: None, threads: int,
                                                              batch: int) -> None:
    model = tagger()
    x, n = data(batch, 9), RNG.integers(0, 10, batch)
    fast = gr.compile(model, threads=threads)
    parts = fast.parts_for(batch, 9)
    assert parts == split_rows(batch, threads) and len(parts) == threads
    y = fast(x, n)
    np.testing.assert_array_equal(y, gr.compile(model)(x, n))
    np.testing.assert_allclose(y, gr.interpret(model, x, n), rtol=1e-4, atol=1e-5)
    assert y.shape == (batch, 9, 3) and y.flags.c_contiguous


@pytest.mark.parametrize("cell", ["GRU", "RNN"])
def test_other_cells_split_bit_for_bit(eager: None, cell: str) -> None:
    model = layer(cell)
    x = data(20, 6)
    np.testing.assert_array_equal(gr.compile(model, threads=2)(x), gr.compile(model)(x))


@pytest.mark.parametrize("batch", [17, 23])
def test_joined_step_products_split_bit_for_bit(eager: None, batch: int) -> None:
    """An LSTM whose input projection is joined into the step product (compiler/join.py):
    a part's last row tile is narrower than the whole batch's, and must round the same."""
    from graphrnn.compiler.passes import join
    assert join.MIN_ROWS is not None and join.MIN_ROWS <= MIN_ROWS_PER_PART
    model = layer("LSTM", d=37, h=24)
    x = data(batch, 5, d=37)
    np.testing.assert_array_equal(gr.compile(model, threads=2)(x), gr.compile(model)(x))


def test_threads_calling_one_split_model_get_their_own_results(eager: None) -> None:
    model = layer()
    fast = gr.compile(model, threads=2)
    inputs = [data(16, 3 + 2 * i) for i in range(4)]       # one program: T is a runtime dim
    want = [gr.compile(model)(x) for x in inputs]
    got: list = [None] * 4
    errors: list = []

    def work(i: int) -> None:
        try:
            for _ in range(5):
                got[i] = fast(inputs[i])
        except BaseException as e:          # noqa: BLE001  (reported by the main thread)
            errors.append(e)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    for g, w in zip(got, want):
        np.testing.assert_array_equal(g, w)


def test_bad_inputs_are_refused_as_for_one_thread(eager: None) -> None:
    fast = gr.compile(layer(), threads=2)
    with pytest.raises(gr.InputError, match=r"dim 2 should be 5"):
        fast(data(20, 4, d=4))
    with pytest.raises(gr.InputError, match="float32"):
        fast(data(20, 4).astype(np.float64))
    gr.manual_seed(1)
    ids = gr.Input("B", "T", dtype="int64", name="ids")
    emb = gr.compile(gr.gModule([ids], [nn.Linear(4, 2)(nn.LookupTable(6, 4)(ids))]),
                     threads=2)
    good = RNG.integers(0, 6, (20, 3))
    np.testing.assert_array_equal(emb(good), gr.compile(emb.model)(good))
    bad = good.copy()
    bad[17, 1] = 6                          # in the second part
    with pytest.raises(gr.InputError, match=r"ids must lie in \[0, 6\)"):
        emb(bad)


# ----------------------------------------------------------------------------- training

def test_split_training_step_is_the_batch_mean(eager: None) -> None:
    model = layer()
    x, y = data(23, 8), data(23, 8, d=H)
    one = gr.compile(model, loss=gr.MSECriterion(), train=True)
    two = gr.compile(model, loss=gr.MSECriterion(), train=True, threads=2)
    assert two.parts_for(23, 8) == ((0, 12), (12, 23))
    loss_1 = one(x, target=y)
    grad_1 = grads(model)
    model.parameters()[1][...] = np.nan                 # the split step overwrites it all
    loss_2 = two(x, target=y)
    grad_2 = grads(model)
    assert loss_2 == pytest.approx(loss_1, rel=1e-6)
    np.testing.assert_allclose(grad_2, grad_1, rtol=1e-5, atol=1e-8)
    ref = InterpretedStep(model, gr.MSECriterion())
    assert ref(x, target=y) == pytest.approx(loss_2, rel=1e-5)
    np.testing.assert_allclose(grad_2, grads(model), rtol=1e-4, atol=1e-6)
    assert two.loss(x, target=y) == pytest.approx(loss_1, rel=1e-6)


def test_cross_entropy_with_lengths_and_truncation_splits_into_the_same_step(
        eager: None) -> None:
    model = tagger()
    x, n = data(22, 10), RNG.integers(0, 11, 22)
    target = RNG.integers(0, 3, (22, 10))
    crit = gr.CrossEntropyCriterion()
    one = gr.compile(model, loss=crit, train=True, bptt_max=4)
    three = gr.compile(model, loss=crit, train=True, bptt_max=4, threads=3)
    assert len(three.parts_for(22, 10)) == 2            # 22 // 3 = 7 rows: too few for three
    loss_1, grad_1 = one(x, n, target=target), grads(model)
    loss_3, grad_3 = three(x, n, target=target), grads(model)
    assert loss_3 == pytest.approx(loss_1, rel=1e-6)
    np.testing.assert_allclose(grad_3, grad_1, rtol=1e-5, atol=1e-8)
    ref = InterpretedStep(model, crit, bptt_max=4)
    assert ref(x, n, target=target) == pytest.approx(loss_3, rel=1e-5)
    np.testing.assert_allclose(grad_3, grads(model), rtol=1e-4, atol=1e-6)


class SumSquares(Criterion):
    """sum((pred - target)^2): a sum over the batch, so the parts' losses add up."""

    def loss(self, pred: gr.Node, target: gr.Node) -> gr.Node:
        d = ops.sub(pred, target)
        return ops.sum_(ops.mul(d, d))


def test_a_sum_reduced_loss_adds_the_parts(eager: None) -> None:
    model = layer("GRU")
    x, y = data(16, 5), data(16, 5, d=H)
    one = gr.compile(model, loss=SumSquares(), train=True)
    two = gr.compile(model, loss=SumSquares(), train=True, threads=2)
    assert two.split.out_kinds == (SUM, SUM)
    loss_1, grad_1 = one(x, target=y), grads(model)
    loss_2, grad_2 = two(x, target=y), grads(model)
    assert loss_2 == pytest.approx(loss_1, rel=1e-6)
    np.testing.assert_allclose(grad_2, grad_1, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- stateful

def test_stateful_stream_split_equals_one_thread_bit_for_bit(eager: None) -> None:
    model = layer("GRU")
    xs = data(18, 30)
    one = gr.compile(model, stateful=True)
    two = gr.compile(model, stateful=True, threads=2)
    for chunk in (slice(0, 7), slice(7, 7), slice(7, 8), slice(8, 30)):
        np.testing.assert_array_equal(two(xs[:, chunk]), one(xs[:, chunk]))
        for a, b in zip(two.state, one.state):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(gr.InputError, match="reset_state"):
        two(xs[:10])
    two.reset_state()
    np.testing.assert_array_equal(two(xs[:10]), gr.compile(model, stateful=True)(xs[:10]))


def test_stateful_training_chunks_carry_each_parts_rows(eager: None) -> None:
    model = layer()
    x, y = data(16, 12), data(16, 12, d=H)
    one = StatefulTrainStep(model, gr.MSECriterion())
    two = StatefulTrainStep(model, gr.MSECriterion(), threads=2)
    s1 = s2 = None
    for chunk in (slice(0, 5), slice(5, 12)):
        loss_1, s1 = one(x[:, chunk], target=y[:, chunk], state=s1)
        grad_1 = grads(model)
        loss_2, s2 = two(x[:, chunk], target=y[:, chunk], state=s2)
        assert loss_2 == pytest.approx(loss_1, rel=1e-6)
        np.testing.assert_allclose(grads(model), grad_1, rtol=1e-5, atol=1e-8)
        for a, b in zip(s2, s1):
            np.testing.assert_array_equal(a, b)


# ----------------------------------------------------------------------------- the rule

def test_parts_follow_the_rows_and_flops_thresholds() -> None:
    d, h = 64, 64
    fast = gr.compile(layer("LSTM", d, h), threads=2)       # nothing is compiled here
    per_step = 2 * (d + h) * 4 * h                          # x and h projections, 4 gates
    assert fast.split.flops_per_row(10) == 10 * per_step
    half = 32
    enough = int(np.ceil(MIN_FLOPS_PER_PART / (half * per_step)))
    assert fast.parts_for(64, enough) == ((0, 32), (32, 64))
    assert fast.parts_for(64, enough - 1) == ((0, 64),)
    long = 100 * enough
    rows = 2 * MIN_ROWS_PER_PART
    assert fast.parts_for(rows, long) == ((0, rows // 2), (rows // 2, rows))
    assert fast.parts_for(rows - 1, long) == ((0, rows - 1),)
    assert gr.compile(fast.model).parts_for(64, long) == ((0, 64),)    # threads=1
    four = gr.compile(fast.model, threads=4)
    assert len(four.parts_for(3 * MIN_ROWS_PER_PART, long)) == 3
    step = gr.compile(fast.model, loss=gr.MSECriterion(), train=True, threads=2)
    assert step.split.flops_per_row(10) == 3 * 10 * per_step   # forward and backward


def test_graphs_whose_rows_mix_never_split(eager: None) -> None:
    x = gr.Input("B", 4, name="x")
    over_batch = gr.gModule([x], [nn.SoftMax(axis=0)(nn.Linear(4, 4)(x))])
    x = gr.Input("B", 4, name="x")
    centred = gr.gModule([x], [ops.sub(x, ops.mean(x, axes=(0,), keepdims=True))])
    xb = RNG.standard_normal((32, 4)).astype(np.float32)
    for model in (over_batch, centred):
        fast = gr.compile(model, threads=2)
        assert "mixes the rows" in fast.split.reason
        assert fast.parts_for(32) == ((0, 32),)
        np.testing.assert_allclose(fast(xb), gr.interpret(model, xb), rtol=1e-5, atol=1e-6)
    free = nn.Identity()()
    untyped = gr.compile(gr.gModule([free], [nn.Linear(4, 2)(free)]), threads=2)
    assert "no declared type" in untyped.split.reason
    gr.manual_seed(0)
    xs = gr.Input("B", "T", D, name="x")
    dropped = gr.gModule([xs], [nn.Dropout(0.3)(nn.Recurrent(gr.cells.RNN(D, H))(xs))])
    assert gr.compile(dropped, threads=2).split.reason == ""    # inference: dropout is identity
    step = gr.compile(dropped, loss=gr.MSECriterion(), train=True, threads=2)
    assert "mixes the rows" in step.split.reason                # training: masks by flat index


def test_row_kinds_of_losses() -> None:
    model = layer()
    assert row_plan(loss_graph(model, gr.MSECriterion()), training=True).outputs == (MEAN,)
    assert row_plan(loss_graph(model, SumSquares()), training=True).outputs == (SUM,)
    assert row_plan(model.graph, training=False).outputs == (ROWS,)

    class Shifted(Criterion):
        def __init__(self, inner: Criterion, extra: float, square: bool = False):
            super().__init__()
            self.inner, self.extra, self.square = inner, extra, square

        def loss(self, pred: gr.Node, target: gr.Node) -> gr.Node:
            v = self.inner.loss(pred, target)
            return ops.mul(v, v) if self.square else ops.add(ops.mul(v, 0.5), self.extra)
    # mean weights add up to 1, so a constant shift survives; a sum's would be counted twice
    assert row_plan(loss_graph(model, Shifted(gr.MSECriterion(), 2.0)),
                    training=True).outputs == (MEAN,)
    for crit in (Shifted(SumSquares(), 2.0), Shifted(gr.MSECriterion(), 0, square=True)):
        assert "mixes the rows" in row_plan(loss_graph(model, crit), training=True).reason


def test_threads_must_be_a_positive_integer() -> None:
    model = layer()
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            gr.compile(model, threads=bad)
        with pytest.raises(ValueError, match="threads must be a positive integer"):
            gr.compile(model, loss=gr.MSECriterion(), train=True, threads=bad)
    assert gr.compile(model).threads == 1
    assert gr.compile(model, threads=np.int64(2)).threads == 2


def test_program_run_writes_into_the_buffers_it_is_given() -> None:
    model = layer()
    x = data(6, 4)
    program = gr.compile(model).program_for([x])
    arrays, steps = program.validate([x])
    (shape, dtype), = program.output_shapes(steps)
    big = np.zeros((10,) + shape[1:], dtype)
    program.run(arrays, steps, [big[2:8]])
    np.testing.assert_array_equal(big[2:8], program(x))
    assert not big[:2].any() and not big[8:].any()
    with pytest.raises(gr.InputError, match="writable contiguous"):
        program.run(arrays, steps, [big[:6, :, ::2]])
