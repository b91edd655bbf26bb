"""merge_matmuls: one product per shared left operand, the same results as before."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.passes.flatten import flatten_params
from graphrnn.compiler.passes.hoist import hoist_invariants
from graphrnn.compiler.passes.merge import merge_matmuls, reuse_merged_products
from graphrnn.compiler.passes.validate import verify
from graphrnn.ir import Graph, Op
from graphrnn.store import adopt

RNG = np.random.default_rng(1)
B, T, D, H = 3, 4, 6, 5


def count(g: Graph, op: Op) -> int:
    return sum(1 for n in g.nodes if n.op == op)


def body_of(g: Graph) -> Graph:
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    return loop.attrs["body"]


def merged(g: Graph) -> Graph:
    out = merge_matmuls(g)
    verify(out)
    return out


def close(a: np.ndarray, b: np.ndarray) -> None:
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def gated_cell(gates: list, *, xbias: bool = True) -> gr.gModule:
    """A cell with one Linear per gate for x and one for h: h' = sum_k act_k(x W_k + h U_k)."""
    h, x = gr.Input("B", H, name="h"), gr.Input("B", D, name="x")
    parts = [act(nn.CAddTable()([nn.Linear(D, H, bias=xbias)(x), nn.Linear(H, H)(h)]))
             for act in gates]
    h2 = nn.CAddTable()(parts) if len(parts) > 1 else parts[0]
    return gr.gModule([h, x], [h2, h2])


def in_loop(cell: gr.gModule, *, lengths: bool = False,
            reverse: bool = False) -> tuple[gr.gModule, list]:
    xs = gr.Input("B", "T", D, name="xs")
    ins, args = [xs], [RNG.standard_normal((B, T, D)).astype(np.float32)]
    lens = None
    if lengths:
        lens = gr.Input("B", dtype="int64", name="lengths")
        ins.append(lens)
        args.append(np.array([T, 1, 3]))
    out = gr.Loop(cell, n_carry=1, reverse=reverse)(
        init=[ops.fill((H,), 0.0, batch_like=xs)], xs=[xs], lengths=lens)
    return gr.gModule(ins, [out[1]]), args


GATES = [nn.Sigmoid(), nn.Sigmoid(), nn.Tanh(), nn.Sigmoid()]


@pytest.mark.parametrize("lengths,reverse", [(False, False), (True, True)])
def test_four_gates_become_two_matmuls_with_merged_biases(lengths: bool, reverse: bool) -> None:
    m, args = in_loop(gated_cell(GATES), lengths=lengths, reverse=reverse)
    assert count(body_of(m.graph), Op.MATMUL) == 8
    g = merged(m.graph)
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    body = body_of(g)
    mms = [n for n in body.nodes if n.op == Op.MATMUL]
    assert len(mms) == 2
    assert sorted(n.inputs[1].type.shape for n in mms) == [(4 * H, H), (4 * H, D)]
    assert all(n.inputs[1].op == Op.CONCAT and n.attrs["transpose_b"] for n in mms)
    biases = [n for n in body.nodes if n.op == Op.CONCAT and n.type.rank == 1]
    assert len(biases) == 2 and count(body, Op.SLICE) == 8


def test_flattened_weights_are_views() -> None:
    m, args = in_loop(gated_cell(GATES), lengths=True)
    flat, _ = flatten_params(m.graph)
    g = merged(flat)
    close(gr.interpret(g, *args, m.parameters()[0]), gr.interpret(m, *args))
    body = body_of(g)
    concats = [n for n in body.nodes if n.op == Op.CONCAT]
    assert len(concats) == 4 and all(x.op == Op.VIEW for n in concats for x in n.inputs)
    assert count(body, Op.MATMUL) == 2


def test_biases_stay_apart_unless_every_matmul_has_one() -> None:
    m, args = in_loop(gated_cell(GATES, xbias=False))
    g = merged(m.graph)
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    body = body_of(g)
    assert count(body, Op.MATMUL) == 2
    biases = [n for n in body.nodes if n.op == Op.CONCAT and n.type.rank == 1]
    assert len(biases) == 1                                 # only the h side's


def test_a_matmul_read_twice_keeps_its_bias_add_apart() -> None:
    x = gr.Input("B", D, name="x")
    a, b = nn.Linear(D, 3), nn.Linear(D, 4)
    ya, yb = a(x), b(x)
    raw = ya.inputs[0]                                     # x @ W_a^T, also an output
    m = gr.gModule([x], [ops.tanh(ya), yb, raw])
    g = merged(m.graph)
    v = RNG.standard_normal((B, D)).astype(np.float32)
    for got, want in zip(gr.interpret(g, v), gr.interpret(m, v)):
        close(got, want)
    assert count(g, Op.MATMUL) == 1 and count(g, Op.ADD) == 2


def test_untransposed_weights_join_along_n() -> None:
    x = gr.Input("B", D, name="x")
    lin = [nn.Linear(D, n) for n in (2, 3, 4)]
    outs = [ops.matmul(x, ops.param(l.weight), transpose_b=True) for l in lin[:1]]
    plain = [gr.Param(f"w{k}", (D, n), owner="plain") for k, n in enumerate((3, 4))]
    for p in plain:
        adopt(p, RNG.standard_normal(p.shape).astype(np.float32))
    outs += [ops.relu(ops.matmul(x, ops.param(p))) for p in plain]
    m = gr.gModule([x], outs)
    g = merged(m.graph)
    v = RNG.standard_normal((B, D)).astype(np.float32)
    for got, want in zip(gr.interpret(g, v), gr.interpret(m, v)):
        close(got, want)
    (cat,) = [n for n in g.nodes if n.op == Op.CONCAT]
    assert cat.attrs["axis"] == 1 and cat.type.shape == (D, 7)
    assert count(g, Op.MATMUL) == 2                        # the transposed one is apart


def test_nothing_to_merge_returns_the_graph() -> None:
    for cell in (gr.cells.LSTM(D, H), gr.cells.GRU(D, H)):
        x = gr.Input("B", "T", D, name="x")
        m = gr.gModule([x], [nn.Recurrent(cell)(x)])
        assert merge_matmuls(m.graph) is m.graph
    h = gr.Input("B", H, name="h")
    toy = gr.gModule([h], [nn.Linear(H, H)(nn.Tanh()(nn.Linear(H, H)(h)))])
    assert merge_matmuls(toy.graph) is toy.graph


def test_hand_gru_merges_and_the_joined_weights_leave_the_loop() -> None:
    h, x = gr.Input("B", H, name="h"), gr.Input("B", D, name="x")
    xr, xz, xn = (nn.Linear(D, H)(x) for _ in range(3))
    hr, hz, hn = (nn.Linear(H, H)(h) for _ in range(3))
    r = nn.Sigmoid()(nn.CAddTable()([xr, hr]))
    z = nn.Sigmoid()(nn.CAddTable()([xz, hz]))
    n = nn.Tanh()(nn.CAddTable()([xn, nn.CMulTable()([r, hn])]))
    h2 = nn.CAddTable()([nn.CMulTable()([nn.AddConstant(1.0)(nn.MulConstant(-1.0)(z)), n]),
                         nn.CMulTable()([z, h])])
    m, args = in_loop(gr.gModule([h, x], [h2, h2]), lengths=True)
    g = merged(m.graph)
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    assert count(body_of(g), Op.MATMUL) == 2
    g = hoist_invariants(g)
    verify(g)
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    body = body_of(g)
    assert count(body, Op.CONCAT) == 0 and count(body, Op.MATMUL) == 1
    assert count(g, Op.CONCAT) == 4 and count(g, Op.MATMUL) == 1


def test_a_product_a_merged_product_already_computes_becomes_its_slice():
    """SRU's shape after accumulate, merge and hoist: x @ [W; S] merged, and the loop's own
    x @ W hoisted next to it: one GEMM, the copy a slice of it."""
    x = gr.Input("B", "T", D, name="x")
    w, s = nn.Linear(D, 3 * H, bias=False), nn.Linear(D, H, bias=False)
    both = ops.matmul(x, ops.concat([ops.param(w.weight), ops.param(s.weight)], 0),
                      transpose_b=True)
    again = ops.matmul(x, ops.param(w.weight), transpose_b=True)
    g = gr.gModule([x], [ops.tanh(both), ops.sigmoid(again)]).graph
    out = reuse_merged_products(g)
    verify(out)
    assert count(g, Op.MATMUL) == 2 and count(out, Op.MATMUL) == 1
    xv = RNG.standard_normal((B, T, D)).astype(np.float32)
    for a, b in zip(gr.interpret(out, xv), gr.interpret(g, xv)):
        close(a, b)
    assert reuse_merged_products(out) is out


def test_matmuls_of_one_weight_in_a_group_share_one_part_of_the_product():
    """A forward product and its recomputed copy (a training step's) read one weight: the
    merged product holds it once."""
    x = gr.Input("B", D, name="x")
    w, s = nn.Linear(D, H, bias=False), nn.Linear(D, H, bias=False)
    a, b = (ops.matmul(x, ops.param(w.weight), transpose_b=True) for _ in range(2))
    c = ops.matmul(x, ops.param(s.weight), transpose_b=True)
    g = gr.gModule([x], [ops.tanh(a), ops.sigmoid(b), ops.exp(c)]).graph
    out = merged(g)
    (m,) = [n for n in out.nodes if n.op == Op.MATMUL]
    assert m.type.shape[-1] == 2 * H
    xv = RNG.standard_normal((B, D)).astype(np.float32)
    for p, q in zip(gr.interpret(out, xv), gr.interpret(g, xv)):
        close(p, q)

