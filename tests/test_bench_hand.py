"""The hand-written LSTM of `graphrnn bench` ("graphrnn-hand"): built from primitives, loaded
with the built-in layer's weights, it computes the built-in's function (checked against the
interpreter), is timed in LSTM rows only, and is never the fastest peer."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.bench.run import HAND, IMPLS, PEER_NAMES, Row, bench_row
from graphrnn.bench.report import format_table
from graphrnn.ir import Op
from graphrnn.bench.peers import (HAND_KEYS, build_hand_lstm, build_layer, hand_impl,
                                  load_builtin_weights, named_grads)
from graphrnn.train import InterpretedStep

B, T, D, H = 3, 6, 2, 5


def layers() -> tuple:
    builtin = build_layer("lstm", D, H)
    hand = build_hand_lstm(D, H, seed=7)             # other weights until loaded
    weights = {k.split(".", 1)[1]: v.copy() for k, v in builtin.named_parameters().items()}
    load_builtin_weights(hand, weights)
    return builtin, hand


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(2)
    return (rng.standard_normal((B, T, D)).astype(np.float32),
            rng.standard_normal((B, T, H)).astype(np.float32))


def test_it_is_built_from_primitives_not_the_cell():
    hand = build_hand_lstm(D, H)
    assert sorted(hand.named_parameters()) == sorted(HAND_KEYS.values())
    (loop,) = [n for n in hand.graph.nodes if n.op == Op.LOOP]
    ops = {n.op for n in loop.attrs["body"].nodes}
    assert {Op.MATMUL, Op.SIGMOID, Op.TANH, Op.MUL, Op.ADD, Op.SLICE} <= ops


def test_forward_and_gradients_match_the_interpreted_builtin():
    builtin, hand = layers()
    x, y = data()
    ref = gr.interpret(builtin, x)
    assert np.max(np.abs(gr.interpret(build_hand_lstm(D, H, seed=7), x) - ref)) > 1e-3
    np.testing.assert_allclose(gr.interpret(hand, x), ref, atol=1e-6)
    call, convert = hand_impl(hand, "forward", x, None)
    np.testing.assert_allclose(convert(call()), ref, atol=1e-5)
    ref_loss = InterpretedStep(builtin, gr.MSECriterion())(x, target=y)
    ref_grads = named_grads(builtin)
    call, convert = hand_impl(hand, "train", x, y)
    loss, grads = convert(call())
    assert loss == pytest.approx(ref_loss, abs=1e-5)
    assert set(grads) == set(ref_grads) == set(HAND_KEYS)
    for k in ref_grads:
        np.testing.assert_allclose(grads[k], ref_grads[k], atol=1e-5)


@pytest.mark.parametrize("mode", ["forward", "train"])
def test_the_lstm_rows_time_it_and_check_it(mode):
    row = bench_row("lstm", (B, T, D, H), mode, repeats=1, impls=("graphrnn", HAND))
    assert set(row.ms) == {"graphrnn", HAND}
    assert row.max_abs_diff[HAND] < 1e-5
    out = row.to_json()
    assert out["ratios"][HAND] == pytest.approx(row.ms[HAND] / row.ms["graphrnn"])


def test_other_cells_and_two_threads_leave_it_out():
    row = bench_row("gru", (B, T, D, H), "forward", repeats=1, impls=("graphrnn", HAND))
    assert row.not_applicable == {HAND: "the hand-written cell is an LSTM"}
    row = bench_row("lstm", (4, T, D, H), "forward", threads=2, repeats=1, impls=(HAND,))
    assert row.not_applicable == {HAND: "the hand-written LSTM is measured on one thread"}


def test_it_is_not_a_peer_and_the_table_shows_its_ratio():
    assert HAND in IMPLS and HAND not in PEER_NAMES
    rows = [Row("lstm", [B, T, D, H], mode, 1, gflop=1.0,
                ms={"graphrnn": 10.0, HAND: ms, "torch": 20.0})
            for mode, ms in (("forward", 5.0), ("train", 11.0))]
    out = [r.to_json() for r in rows]
    assert [r["fastest_peer"] for r in out] == ["torch", "torch"]     # faster, yet no peer
    host = {"cpu": "test", "llvm_cpu": "test", "avx512f": False, "logical_cpus": 1,
            "loadavg": [0.0], "loadavg_end": [0.0], "versions": {}}
    table = format_table({"host": host, "peak": None, "compile": None, "rows": out})
    assert "5.000 (0.50x)" in table and "11.0 (1.10x)" in table
    assert "/ built-in cell, median over the rows: forward 0.50x, train 1.10x" in table
