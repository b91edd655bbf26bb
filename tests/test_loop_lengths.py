"""Loops over variable-length rows: each row stops (or, reversed, starts) at its own length."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

D, H, T = 3, 4, 6
RNG = np.random.default_rng(5)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def model_with_lengths(reverse: bool) -> gr.gModule:
    """Two carries (h, n) and two outputs: h' = tanh(x U^T + b + h W^T), n' = n + 1;
    outputs h' and h' * 2."""
    h, n, x = gr.Input("B", H), gr.Input("B", 1), gr.Input("B", D)
    h2 = nn.Tanh()(nn.CAddTable()([nn.Linear(D, H)(x), nn.Linear(H, H, bias=False)(h)]))
    body = gr.gModule([h, n, x], [h2, nn.AddConstant(1)(n), h2, nn.MulConstant(2)(h2)])
    xs, h0, n0 = gr.Input("B", "T", D), gr.Input("B", H), gr.Input("B", 1)
    lengths = gr.Input("B", dtype="int64")
    parts = gr.Loop(body, n_carry=2, reverse=reverse)(init=[h0, n0], xs=[xs], lengths=lengths)
    return gr.gModule([xs, h0, n0, lengths], list(parts))


def per_row_numpy(p: dict, xs, h0, n0, lengths, reverse: bool):
    """Each row on its own, over its valid steps only: no masks involved."""
    rows = xs.shape[0]
    h, n = h0.copy(), n0.copy()
    y1 = np.zeros((rows, xs.shape[1], H), np.float32)
    y2 = np.zeros_like(y1)
    for b in range(rows):
        steps = range(lengths[b])
        for t in (reversed(steps) if reverse else steps):
            h[b] = np.tanh(xs[b, t] @ p["linear.weight"].T + p["linear.bias"]
                           + h[b] @ p["linear_1.weight"].T)
            n[b] += 1
            y1[b, t], y2[b, t] = h[b], 2 * h[b]
    return h, n, y1, y2


@pytest.mark.parametrize("reverse", [False, True])
def test_lengths_against_per_row_loops(reverse):
    model = model_with_lengths(reverse)
    xs, h0, n0 = randn(5, T, D), randn(5, H), np.zeros((5, 1), np.float32)
    lengths = np.array([6, 1, 3, 0, 5], np.int64)         # full, short, zero-length rows
    got = model(xs, h0, n0, lengths)
    want = per_row_numpy(model.named_parameters(), xs, h0, n0, lengths, reverse)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)
    h, n, y1, _ = got
    np.testing.assert_array_equal(n[:, 0], lengths)         # each row ran its own steps
    np.testing.assert_array_equal(h[3], h0[3])             # a zero-length row keeps its carry
    assert not y1[3].any() and not y1[1, 1:].any()          # ...and rows emit zeros past it


def test_padding_does_not_leak_into_results():
    model = model_with_lengths(reverse=True)
    xs, h0, n0 = randn(2, T, D), randn(2, H), np.zeros((2, 1), np.float32)
    lengths = np.array([2, 4], np.int64)
    noisy = xs.copy()
    noisy[0, 2:], noisy[1, 4:] = 1e3, -1e3
    for a, b in zip(model(xs, h0, n0, lengths), model(noisy, h0, n0, lengths)):
        np.testing.assert_array_equal(a, b)


def test_full_lengths_equal_no_lengths():
    model = model_with_lengths(reverse=False)
    xs, h0, n0 = randn(3, T, D), randn(3, H), np.zeros((3, 1), np.float32)
    got = model(xs, h0, n0, np.full(3, T, np.int64))
    want = per_row_numpy(model.named_parameters(), xs, h0, n0, np.full(3, T), False)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, atol=1e-5)


@pytest.mark.parametrize("bad", [[7, 2], [-1, 2]])
def test_lengths_out_of_range(bad):
    model = model_with_lengths(reverse=False)
    with pytest.raises(gr.InputError, match=r"\[0, 6\]"):
        model(randn(2, T, D), randn(2, H), np.zeros((2, 1), np.float32), np.array(bad))


def test_lengths_from_an_untyped_input_and_with_zero_steps():
    h, x = nn.Identity()(), nn.Identity()()
    body = gr.gModule([h, x], [nn.CAddTable()([h, x])])
    h0, xs, lengths = nn.Identity()(), nn.Identity()(), nn.Identity()()
    (total,) = gr.Loop(body, n_carry=1)(init=[h0], xs=[xs], lengths=lengths)
    model = gr.gModule([h0, xs, lengths], [total])
    xv = np.arange(12, dtype=np.float32).reshape(2, 3, 2)
    got = model(np.zeros((2, 2), np.float32), xv, np.array([2, 3]))
    np.testing.assert_allclose(got, np.stack([xv[0, :2].sum(0), xv[1].sum(0)]))
    empty = model(np.ones((2, 2), np.float32), np.zeros((2, 0, 2), np.float32),
                  np.array([0, 0]))
    np.testing.assert_array_equal(empty, np.ones((2, 2)))


def test_lengths_must_be_int64_vector():
    h, x = gr.Input("B", 2), gr.Input("B", 2)
    body = gr.gModule([h, x], [nn.CAddTable()([h, x])])
    with pytest.raises(gr.ShapeError, match="lengths must be i64"):
        gr.Loop(body, n_carry=1)(init=[gr.Input("B", 2)], xs=[gr.Input("B", "T", 2)],
                                 lengths=gr.Input("B"))


def test_with_lengths_a_per_step_output_needs_the_batch_axis_at_the_users_line():
    h, x = gr.Input("B", 3), gr.Input("B", 3)
    body = gr.gModule([h, x], [h, gr.ops.sum_(x, axes=(0,))])         # [3]: no rows
    seq, n = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
    with pytest.raises(gr.ShapeError, match=r"test_loop_lengths.py:\d+.*needs the batch axis"):
        gr.Loop(body, n_carry=1)(init=[gr.Input("B", 3)], xs=[seq], lengths=n)
