"""hoist_accumulations: the same values as before, with the sums and products moved after."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.passes.accumulate import hoist_accumulations, merge_contracts
from graphrnn.compiler.passes.autodiff import differentiate
from graphrnn.compiler.pipeline import prepare
from graphrnn.compiler.passes.validate import verify
from graphrnn.interpret import array_type, interpret
from graphrnn.ir import Graph, Node, Op, TensorType
from graphrnn.close import close_graph

RNG = np.random.default_rng(11)
B, T, D, H, N = 3, 4, 6, 5, 7


def accumulated(g: Graph) -> Graph:
    out = hoist_accumulations(g)
    verify(out)
    assert hoist_accumulations(out) is out                   # nothing left to move
    return out


def same(a: object, b: object) -> None:
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    assert len(a) == len(b)
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-5)


def loops(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op == Op.LOOP]


def count(g: Graph, op: Op) -> int:
    return sum(1 for n in g.nodes if n.op == op)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def hand_loop(*, reverse: bool = False, lengths: bool = False, read: bool = False
              ) -> tuple[Graph, list[np.ndarray]]:
    """A loop with accumulators `acc += contract(h', x)`, `s += sum(h' * h) * k` and outputs
    `h' @ U` (a product) and `tanh(h')`. `read`: acc is also an output, s feeds h'."""
    w, v, u, k = (ops.input_(s, name=n) for s, n in [((H, H), "W"), ((D, H), "V"),
                                                       ((H, N), "U"), ((), "k")])
    h, acc, s = ops.input_(("B", H), name="h"), ops.input_((H, D), name="acc"), \
        ops.input_((H,), name="s")
    x = ops.input_(("B", D), name="x")
    pre = ops.add(ops.matmul(h, w), ops.matmul(x, v))
    h2 = ops.tanh(ops.add(pre, s) if read else pre)
    acc2 = ops.add(acc, ops.contract(h2, x))
    s2 = ops.add(ops.mul(ops.sum_(ops.mul(h2, h), [0]), k), s)
    ys = [ops.matmul(h2, u), ops.tanh(h2)] + ([acc2] if read else [])
    body = close_graph([w, v, u, k, h, acc, s, x], [h2, acc2, s2] + ys)
    outer = [ops.input_(t.type.shape, name=t.name.upper()) for t in (w, v, u, k)]
    xs = ops.input_(("B", "T", D), name="xs")
    a0 = ops.input_((H, D), name="A0")
    lens = ops.input_(("B",), "int64", name="lengths") if lengths else None
    init = [ops.fill((H,), 0.0, batch_like=xs), a0, ops.fill((H,), 0.0)]
    loop = ops.loop(body, outer, init, [xs], lens, reverse=reverse)
    ins = outer + [xs, a0] + ([lens] if lengths else [])
    graph = close_graph(ins, [ops.get(loop, i) for i in range(len(body.outputs))])
    args = [randn(H, H) * 0.5, randn(D, H) * 0.5, randn(H, N), np.float32(0.7),
            randn(B, T, D), randn(H, D)] + ([np.array([T, 1, 3])] if lengths else [])
    return graph, args


@pytest.mark.parametrize("reverse", [False, True])
def test_sums_and_products_leave_the_loop(reverse: bool) -> None:
    g, args = hand_loop(reverse=reverse)
    out = accumulated(g)
    same(interpret(out, *args), interpret(g, *args))
    (loop,) = loops(out)
    body = loop.attrs["body"]
    assert loop.attrs["n_carry"] == 1 and loop.attrs["reverse"] == reverse
    assert count(body, Op.CONTRACT) == count(body, Op.SUM) == 0
    assert count(body, Op.MATMUL) == 2                       # h W and x V: hoist's business
    (c,) = [n for n in out.nodes if n.op == Op.CONTRACT]
    assert [x.type.shape for x in c.inputs] == [("B", "T", H), ("B", "T", D)]
    assert c.inputs[1].name == "xs"                          # read from the loop's sequence
    acc, s, y = out.outputs[1], out.outputs[2], out.outputs[3]
    assert acc.op == Op.ADD and acc.inputs[0].name == "A0"   # init + the sum
    assert s.op == Op.MUL and s.inputs[0].attrs["axes"] == (0, 1)   # zero init: the sum
    assert y.op == Op.MATMUL and y.type.shape == ("B", "T", N)
    assert out.outputs[4].op == Op.GET                       # tanh(h') stays per step
    # emitted: h' once (for the contract and the product) and h' * h (the sum's operand)
    outs = body.outputs
    assert len(outs) == 4 and [y is outs[0] for y in outs] == [True, False, True, False]
    assert outs[3].op == Op.MUL and outs[1].op == Op.TANH


def test_accumulators_read_elsewhere_and_loops_with_lengths_stay() -> None:
    g, args = hand_loop(read=True)
    out = accumulated(g)
    same(interpret(out, *args), interpret(g, *args))
    (loop,) = loops(out)
    assert loop.attrs["n_carry"] == 3                        # acc is an output, s feeds h'
    assert out.outputs[3].op == Op.MATMUL                    # the product still moves
    g, args = hand_loop(lengths=True)
    assert hoist_accumulations(g) is g


def gradient(model: gr.gModule, args: list, truncate: int | None = None) -> Graph:
    """The plain gradient graph of a flattened model, and its arguments with the params."""
    flat, _ = prepare(model.graph, [array_type(np.asarray(a)) for a in args], optimize=False)
    g, _ = differentiate(flat, truncate=truncate)
    return g


def grad_args(g: Graph, args: list, model: gr.gModule) -> list:
    cot = [np.ones(x.type.shape, np.float32) for x in g.inputs[len(args) + 1:]]
    return list(args) + [model.parameters()[0]] + cot


@pytest.mark.parametrize("truncate", [None, 2])
def test_flat_weight_gradients_become_one_assemble_after_the_loops(truncate: int | None
                                                                   ) -> None:
    x = gr.Input("B", "T", D, name="x")
    y = nn.Recurrent(gr.cells.LSTM(D, H), num_layers=2, bidirectional=True)(x)
    model = gr.gModule([x], [ops.mean(y)])
    args = [randn(B, T, D)]
    g = gradient(model, args, truncate)
    out = accumulated(g)
    full = grad_args(g, args, model)
    same(interpret(out, *full), interpret(g, *full))
    back = [n for n in loops(out) if n.name.endswith("_grad")]
    assert len(back) == 4
    for loop in back:
        body = loop.attrs["body"]
        assert loop.attrs["n_carry"] == 2                    # d_h and d_c; no [P] accumulator
        assert {n.op for n in body.nodes}.isdisjoint({Op.CONTRACT, Op.ASSEMBLE, Op.SUM})
        assert (count(body, Op.WHERE) > 0) == bool(truncate)   # the cut stays on d_h
    flat_grad = out.outputs[-1]
    assert flat_grad.op == Op.ASSEMBLE and len(flat_grad.inputs) == 4 * 4
    parts = {p.op for p in flat_grad.inputs} | {p.inputs[0].op for p in flat_grad.inputs
                                                if p.op == Op.RESHAPE}
    # W_ih's, W_hh's and the biases' gradients: slices of one contract over [h, x, 1]
    # (merge_contracts)
    assert parts == {Op.RESHAPE, Op.SLICE} or parts == {Op.SUM, Op.RESHAPE, Op.CONTRACT}
    slices = [p.inputs[0] for p in flat_grad.inputs if p.op == Op.RESHAPE]
    assert all(p.op != Op.SLICE or p.inputs[0].op == Op.CONTRACT for p in slices)


def test_embedding_gradient_scatters_the_whole_sequence() -> None:
    emb, lin = nn.LookupTable(10, 4), nn.Linear(4 + H, H)
    hb, ib = gr.Input("B", H, name="h"), gr.Input("B", dtype="int64", name="ids")
    h2 = nn.Tanh()(lin(nn.JoinTable(1)([emb(ib), hb])))
    cell = gr.gModule([hb, ib], [h2, h2])
    ids = gr.Input("B", "T", dtype="int64", name="ids")
    out = gr.Loop(cell, n_carry=1)(init=[ops.fill((H,), 0.0, batch_like=ids)], xs=[ids])
    model = gr.gModule([ids], [ops.mean(out[1])])
    args = [RNG.integers(0, 10, (B, T))]
    g = gradient(model, args)
    res = accumulated(g)
    full = grad_args(g, args, model)
    same(interpret(res, *full), interpret(g, *full))
    (back,) = [n for n in loops(res) if n.attrs["reverse"]]
    assert count(back.attrs["body"], Op.SCATTER) == 0
    (sc,) = [n for n in res.nodes if n.op == Op.SCATTER]
    assert sc.inputs[1].type == TensorType((B, T), "int64")


def test_nested_loops_sum_through_both_levels() -> None:
    lin = nn.Linear(5, 3)
    ih, ix = gr.Input("B", 3), gr.Input("B", 2)
    inner = gr.Loop(gr.gModule([ih, ix], [nn.Tanh()(lin(nn.JoinTable(1)([ix, ih])))]), 1)
    oh, ox = gr.Input("B", 3), gr.Input("B", 4, 2)
    final = inner(init=[oh], xs=[ox])[0]
    outer = gr.Loop(gr.gModule([oh, ox], [final, final]), 1)
    xs, h0 = gr.Input("B", "T", 4, 2), gr.Input("B", 3)
    model = gr.gModule([xs, h0], [outer(init=[h0], xs=[xs])[1]])
    args = [randn(B, T, 4, 2), randn(B, 3)]
    g = gradient(model, args)
    res = accumulated(g)
    full = grad_args(g, args, model)
    same(interpret(res, *full), interpret(g, *full))
    assert all(n.op != Op.CONTRACT for loop in loops(res)
               for n, _ in loop.attrs["body"].walk())
    (c,) = [n for n in res.nodes if n.op == Op.CONTRACT]
    assert len(c.inputs[0].type.shape) == 4                  # [B, T, S, 3]: both levels


def test_output_projection_of_a_forward_loop() -> None:
    """A char-RNN style body with its output layer inside: one product after the loop."""
    cell, out_layer = gr.cells.GRU(D, H), nn.Linear(H, N)
    hb, xb = gr.Input("B", H, name="h"), gr.Input("B", D, name="x")
    h2 = cell([hb, xb])
    body = gr.gModule([hb, xb], [h2, nn.LogSoftMax()(out_layer(h2))])
    xs = gr.Input("B", "T", D, name="xs")
    parts = gr.Loop(body, n_carry=1)(init=[ops.fill((H,), 0.0, batch_like=xs)], xs=[xs])
    model = gr.gModule([xs], [parts[1]])
    g = accumulated(model.graph)
    args = [randn(B, T, D)]
    same(interpret(g, *args), interpret(model, *args))
    (loop,) = loops(g)
    assert count(loop.attrs["body"], Op.LOG_SOFTMAX) == 0
    assert count(loop.attrs["body"], Op.MATMUL) == 2         # the GRU's own products
    assert g.outputs[0].op == Op.LOG_SOFTMAX


def test_contracts_of_one_left_operand_merge() -> None:
    """contract(a, g1), contract(a, g2), sum(a over rows) -> column slices of
    contract(a, concat(g1, g2, ones)); a contract of another operand, a transposed one and
    a sum over other axes stay."""
    a, g1, g2, other = (ops.input_(s, "float32", name=n) for s, n in [
        ((2, 7, 10), "a"), ((2, 7, 3), "g1"), ((2, 7, 5), "g2"), ((2, 7, 10), "o")])
    outs = [ops.contract(a, g1), ops.contract(a, g2), ops.contract(other, g1),
            ops.contract(a, g2, transpose_out=True), ops.sum_(a, axes=(0, 1)),
            ops.sum_(a, axes=(1,))]
    g = close_graph([a, g1, g2, other], outs)
    merged = merge_contracts(g)
    assert count(merged, Op.CONTRACT) == 3 and count(merged, Op.CONCAT) == 1
    assert count(merged, Op.SUM) == 1                        # the sum over rows is a column
    (whole,) = [n for n in merged.nodes if n.op == Op.CONTRACT and n.type.shape == (10, 9)]
    assert merge_contracts(merged) is merged                 # nothing left to merge
    args = [randn(2, 7, 10), randn(2, 7, 3), randn(2, 7, 5), randn(2, 7, 10)]
    same(interpret(merged, *args), interpret(g, *args))


def test_a_contract_and_a_bias_sum_merge() -> None:
    a, g1 = ops.input_((3, 4, 5), "float32", name="a"), ops.input_((3, 4, 2), "float32", name="g")
    g = close_graph([a, g1], [ops.contract(a, g1), ops.sum_(a, axes=(0, 1))])
    merged = merge_contracts(g)
    assert count(merged, Op.CONTRACT) == 1 and count(merged, Op.SUM) == 0
    args = [randn(3, 4, 5), randn(3, 4, 2)]
    same(interpret(merged, *args), interpret(g, *args))


def test_contracts_wider_than_their_left_operand_stay() -> None:
    """Joining g's wider than `a` would copy more than the reads of `a` it saves (an
    output layer's dy [B, T, 1] against h [B, T, H])."""
    a, h = ops.input_((3, 4, 1), "float32", name="dy"), ops.input_((3, 4, 6), "float32", name="h")
    g = close_graph([a, h], [ops.contract(a, h), ops.sum_(a, axes=(0, 1))])
    assert merge_contracts(g) is g
