"""A piece two concatenations read, computed by an elementwise cluster, is stored into both
(codegen/group_kernels.placements): a GRU's backward step writes its gate gradients straight
into the two sequences its weight gradients read, with no per-step concat kernel; a forward
program with such a body too. Compiled results against the interpreter."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.interpret import array_type
from graphrnn.ir import Op, TensorType
from graphrnn.train import loss_graph

from train_checks import check_mse_step

RNG = np.random.default_rng(29)
B, T, D, H = 4, 6, 5, 8


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def gru(bidirectional: bool = False) -> gr.gModule:
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(D, H), bidirectional=bidirectional)(x)])
    model.reset_parameters(seed=6)
    return model


def loop_kernels(sched) -> list:
    return [k for top in sched.kernels for k in top.walk() if k.kind == "loop"]


def test_gru_backward_step_writes_both_concatenations_in_place() -> None:
    g = loss_graph(gru(), gr.MSECriterion())
    pg, _, _ = prepare_training(g, [TensorType((B, "T", D)), TensorType((B, "T", H))],
                                unit_cotangent=True)
    backward = [k for k in loop_kernels(schedule(pg, pg.inputs[-1], training=True))
                if k.node.attrs["reverse"]]
    (body,) = [k.body for k in backward]
    concats = [n for n in backward[0].node.attrs["body"].nodes if n.op == Op.CONCAT]
    assert len(concats) == 2 and set(concats[0].inputs) & set(concats[1].inputs)
    assert sorted(k.node.name for k in body if k.kind == "placed") == \
        sorted(c.name for c in concats)
    assert not [k for k in body if k.node.op == Op.CONCAT and k.kind != "placed"]
    (cluster,) = [k for k in body if k.kind == "map" and k.stages]
    assert len(cluster.copies) == 2          # the two gate gradients both concats hold


@pytest.mark.parametrize("bidirectional", [False, True])
def test_gru_training_step_matches_the_interpreter(bidirectional: bool) -> None:
    model = gru(bidirectional)
    x, y = randn(B, T, D), randn(B, T, 2 * H if bidirectional else H)
    check_mse_step(model, x, y)


def shared_pieces_model(plain_piece: bool) -> gr.gModule:
    """A step whose two outputs are concatenations sharing two elementwise pieces; with
    `plain_piece` a shared piece is a product (no cluster computes it: copied)."""
    hb, xb = gr.Input("B", H), gr.Input("B", H)
    a = nn.Tanh()(nn.CAddTable()([hb, xb]))
    b = nn.Sigmoid()(nn.CMulTable()([hb, xb]))
    if plain_piece:
        b = nn.Linear(H, H)(b)
    c = nn.Tanh()(nn.CSubTable()([hb, xb]))
    d = nn.Sigmoid()(nn.CAddTable()([hb, hb]))
    h2 = nn.Tanh()(nn.CMulTable()([a, c]))
    body = gr.gModule([hb, xb], [h2, nn.JoinTable(1)([a, b, c]), nn.JoinTable(1)([a, b, d])])
    x, h0 = gr.Input("B", "T", H, name="x"), gr.Input("B", H, name="h0")
    _, one, two = gr.Loop(body, n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [one, two])
    model.reset_parameters(seed=7)
    return model


@pytest.mark.parametrize("plain_piece", [False, True])
def test_forward_program_with_shared_pieces_matches_the_interpreter(plain_piece: bool) -> None:
    model = shared_pieces_model(plain_piece)
    args = [randn(B, T, H), randn(B, H)]
    g, _ = prepare(model.graph, [array_type(a) for a in args])
    (loop,) = loop_kernels(schedule(g, g.inputs[-1]))
    copied = [k for k in loop.body if k.kind == "map" and k.stages and k.copies]
    assert bool(copied) is not plain_piece
    want = gr.interpret(model, *args)
    got = gr.compile(model)(*args)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
