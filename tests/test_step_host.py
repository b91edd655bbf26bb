"""The host side of a compiled training step: what it allocates, combines and checks per call.

- a batch run as row blocks combines the blocks' losses and gradients with `scale_add` (one
  pass per block after the first), which gives numpy's weighted sum bit for bit;
- the blocks' shared gradient buffer is kept between calls, and a whole batch's gradient is
  written straight into the model's flat gradient (no vector of parameter size made per call);
- the parameter bytes are compared once per call, yet writes between calls, in place or by a
  (compiled) optimiser step, are seen by the next call, blocked or whole.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.fused_update import SMALL, scale_add
from graphrnn.train import InterpretedStep

RNG = np.random.default_rng(11)
D, H = 3, 6


def lstm() -> gr.gModule:
    gr.manual_seed(4)
    x = gr.Input("B", "T", D, name="x")
    return gr.gModule([x], [nn.Linear(H, 2)(nn.Recurrent(gr.cells.LSTM(D, H))(x))])


def data(b: int, t: int, d: int) -> np.ndarray:
    return RNG.standard_normal((b, t, d)).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 7, SMALL - 1, SMALL, SMALL + 13, 41701])
@pytest.mark.parametrize("a,b", [(0.25, 0.75), (1.0, 1.0), (1.0, 1 / 3)])
def test_scale_add_is_numpys_weighted_sum_bit_for_bit(n: int, a: float, b: float) -> None:
    out, x = data(1, 1, n).ravel(), data(1, 1, n).ravel()
    want = np.float32(a) * out + np.float32(b) * x
    scale_add(out, a, x, b)
    np.testing.assert_array_equal(out, want)


def test_scale_add_takes_any_arrays_through_numpy() -> None:
    out, x = np.ones(2 * SMALL, np.float32)[::2], np.full(SMALL, 2, np.float32)  # strided
    scale_add(out, 0.5, x, 0.25)
    np.testing.assert_array_equal(out, 1.0)
    loss, other = np.array(2.0, np.float32), np.array(4.0, np.float32)            # 0-d
    scale_add(loss, 0.5, other, 0.5)
    assert loss == 3.0


def test_blocks_reuse_their_buffer_and_a_whole_batch_writes_the_model_gradient() -> None:
    model = lstm()
    x, y = data(12, 5, D), data(12, 5, 2)
    blocked = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=4)
    blocked(x, target=y)
    spares = [a for free in blocked.split._spares.values() for a in free]
    assert len(spares) == 2                 # the loss's and the gradient's shared buffers
    blocked(x, target=y)
    again = [a for free in blocked.split._spares.values() for a in free]
    assert all(any(a is b for b in spares) for a in again) and len(again) == 2
    whole = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=0)
    flat_grad = model.parameters()[1]
    flat_grad[...] = np.nan
    program = whole.program_for((x, y))
    seen = []
    run = program.run
    program.run = lambda arrays, steps, outs, **kw: (seen.append(outs[1]),
                                                      run(arrays, steps, outs, **kw))
    whole(x, target=y)
    assert seen and seen[0] is flat_grad and np.isfinite(flat_grad).all()


@pytest.mark.parametrize("micro_batch", [0, 3])
@pytest.mark.parametrize("fused", [None, False])
def test_writes_between_calls_are_seen_by_the_next_call(micro_batch: int, fused) -> None:
    model = lstm()
    crit = gr.MSECriterion()
    x, y = data(10, 6, D), data(10, 6, 2)
    step = gr.compile(model, loss=crit, train=True, micro_batch=micro_batch)
    ref = InterpretedStep(model, crit)
    params, grads = model.parameters()
    opt = gr.optim.Adam((params, grads), lr=0.05, weight_decay=0.01, fused=fused)
    for k in range(3):
        loss = step(x, target=y)
        got = grads.copy()
        want_loss, want = ref(x, target=y), grads.copy()
        assert loss == pytest.approx(want_loss, rel=1e-5)
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
        opt.step()                          # a compiled (or numpy) update in place
        if k == 1:
            params[: params.size // 2] *= 0.5       # and a write by hand
