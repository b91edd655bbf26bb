"""A product whose left operand is a concatenation along K that nothing else reads (the
joined step product's [x_t, h], a user's JoinTable before a Linear) reads the pieces in
place: the schedule gives the concatenation a "split" kernel (no code, no buffer) and the
k-loop walks each piece's rows against its k-rows of the panel. Results stay the
interpreter's: every batch size (one row: the GEMV walk, reversed on odd steps), every
piece width, inside and outside loops, with k blocks (where the split is refused)."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
import graphrnn.compiler.codegen.tiling as tiling
import graphrnn.compiler.passes.join as join
from graphrnn import nn
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.pipeline import prepare
from graphrnn.ir import Op, TensorType
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(11)


@pytest.fixture(autouse=True)
def joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Join the projections from 2 rows, a symbolic batch too, on every ISA."""
    monkeypatch.setattr(join, "MIN_ROWS", 2)
    monkeypatch.setattr(join, "MIN_SYMBOLIC_INPUT", 1)
    monkeypatch.setattr(join, "MIN_REGISTERS", 0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def layer(cell: str, d: int, h: int) -> gr.gModule:
    make = {"lstm": gr.cells.LSTM, "rnn": gr.cells.RNN}[cell]
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(d, h))(x)])
    model.reset_parameters(seed=5)
    return model


def kernels(model: gr.gModule, types: list[TensorType]) -> list:
    g, _ = prepare(model.graph, types)
    return [k for top in schedule(g, g.inputs[-1]).kernels for k in top.walk()]


def concat_kinds(ks: list) -> list[str]:
    return [k.kind for k in ks if k.node.op == Op.CONCAT and k.kind != "pack"]


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
def test_the_joined_step_reads_x_and_h_in_place(cell: str) -> None:
    ks = kernels(layer(cell, 9, 20), [TensorType((6, "T", 9))])
    (loop,) = [k for k in ks if k.kind == "loop"]
    body = [k.kind for k in loop.body]
    assert "split" in body and "map" not in body and "copy" not in body
    (split,) = [k for k in loop.body if k.kind == "split"]
    assert split.node.op == Op.CONCAT and split.dest is None       # no buffer of its own


@pytest.mark.parametrize("cell", ["rnn", "lstm"])
@pytest.mark.parametrize("b, d, h", [(1, 9, 20), (2, 3, 5), (7, 16, 16), (13, 40, 33),
                                     (64, 33, 70)])
def test_split_products_match_the_interpreter(cell: str, b: int, d: int, h: int,
                                              cache: KernelCache) -> None:
    model = layer(cell, d, h)
    fast = gr.compile(model, cache=cache)
    for rows in (b, 1):                 # one program: B rows, then one row (the GEMV walk)
        x = randn(rows, 5, d)
        np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=1e-4, atol=2e-6)


def test_a_join_table_before_a_linear_outside_a_loop(cache: KernelCache) -> None:
    a, c = gr.Input("B", "T", 7, name="a"), gr.Input("B", "T", 12, name="c")
    y = nn.Tanh()(nn.Linear(19, 10)(nn.JoinTable(2)([a, c])))
    model = gr.gModule([a, c], [y])
    model.reset_parameters(seed=6)
    ks = kernels(model, [TensorType((3, 4, 7)), TensorType((3, 4, 12))])
    assert concat_kinds(ks) == ["split"]
    xa, xc = randn(3, 4, 7), randn(3, 4, 12)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(xa, xc),
                               gr.interpret(model, xa, xc), rtol=1e-4, atol=2e-6)


def test_a_concatenation_read_elsewhere_is_written(cache: KernelCache) -> None:
    a, c = gr.Input("B", 5, name="a"), gr.Input("B", 6, name="c")
    joined = nn.JoinTable(1)([a, c])
    model = gr.gModule([a, c], [nn.Linear(11, 4)(joined), nn.Tanh()(joined)])
    model.reset_parameters(seed=7)
    ks = kernels(model, [TensorType((4, 5)), TensorType((4, 6))])
    assert "split" not in concat_kinds(ks)
    xa, xc = randn(4, 5), randn(4, 6)
    for got, want in zip(gr.compile(model, cache=cache)(xa, xc), gr.interpret(model, xa, xc)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-6)


def test_k_blocks_keep_the_concatenation(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Panels walked in blocks of k-rows (kc) need one `a`: the concatenation is written."""
    monkeypatch.setattr(tiling, "_k_block", lambda k, width: 8 if k.const and k.c > 8 else 0)
    model = layer("lstm", 9, 12)
    ks = kernels(model, [TensorType((5, "T", 9))])
    assert "split" not in concat_kinds(ks) and "map" in concat_kinds(ks)
    x = randn(5, 4, 9)
    np.testing.assert_allclose(gr.compile(model, cache=KernelCache(tmp_path))(x),
                               gr.interpret(model, x), rtol=1e-4, atol=2e-6)
