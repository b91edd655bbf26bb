"""fuse_elementwise: FUSED nodes that compute what the elementwise ops computed."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.passes.flatten import flatten_params
from graphrnn.compiler.passes.fuse_elementwise import FUSABLE, fuse_elementwise
from graphrnn.compiler.passes.validate import verify
from graphrnn.ir import Graph, Node, Op, TensorType

RNG = np.random.default_rng(2)
B, T, D, H = 3, 4, 6, 5


def fused(g: Graph) -> Graph:
    out = fuse_elementwise(g)
    verify(out)
    return out


def count(g: Graph, op: Op) -> int:
    return sum(1 for n in g.nodes if n.op == op)


def stray(g: Graph) -> list[Node]:
    """Elementwise nodes left outside FUSED bodies, loop bodies included."""
    return [n for n, _ in g.walk() if n.op in FUSABLE]


def close(a: object, b: object) -> None:
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("cell,groups", [(gr.cells.LSTM, 3), (gr.cells.GRU, 4),
                                         (gr.cells.RNN, 1)])
def test_recurrent_layers(cell: type, groups: int) -> None:
    x = gr.Input("B", "T", D, name="x")
    lengths = gr.Input("B", dtype="int64", name="lengths")
    m = gr.gModule([x, lengths], [nn.Recurrent(cell(D, H), bidirectional=True)([x, lengths])])
    args = [RNG.standard_normal((B, T, D)).astype(np.float32), np.array([T, 2, 1])]
    g = fused(m.graph)
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    assert stray(g) == []
    for loop in (n for n in g.nodes if n.op == Op.LOOP):
        body = loop.attrs["body"]
        # each group ends where a value is read twice or by a non-elementwise op
        assert count(body, Op.FUSED) == groups
        assert all(n.name.startswith("fused_") for n in body.nodes if n.op == Op.FUSED)


def test_lstm_epilogue_groups() -> None:
    x = gr.Input("B", "T", D, name="x")
    m = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(D, H))(x)])
    g = fused(m.graph)
    body = [n for n in g.nodes if n.op == Op.LOOP][0].attrs["body"]
    by_root = {n.doc: n for n in body.nodes if n.op == Op.FUSED}
    assert set(by_root) == {"computes gates", "computes c_next", "computes h_next"}
    c_next = by_root["computes c_next"]
    assert [op.value for op in sorted({n.op for n in c_next.attrs["body"].nodes}
                                      - {Op.INPUT}, key=str)] == ["add", "mul", "sigmoid",
                                                                   "tanh"]
    assert [x.name for x in c_next.inputs] == ["slice_0", "slice_1", "slice_2", "c"]
    h_next = by_root["computes h_next"]
    assert [x.name for x in h_next.inputs] == ["slice_3", c_next.name]
    assert h_next.name == "fused_sigmoid_tanh_mul_0"
    for f in by_root.values():
        assert [x.type for x in f.attrs["body"].inputs] == [x.type for x in f.inputs]
        assert f.type == f.attrs["body"].outputs[0].type


def test_multi_use_values_end_groups_and_scalars_go_inside() -> None:
    a, b = gr.Input("B", 4, name="a"), gr.Input(4, name="b")
    y = ops.tanh(ops.add(a, b))                           # read twice: its own group
    out1 = ops.mul(ops.sub(1.0, y), 2.0)
    out2 = ops.exp(ops.neg(y))
    out3 = ops.sum_(ops.sigmoid(y), axes=(1,))
    m = gr.gModule([a, b], [out1, out2, out3, y])
    g = fused(m.graph)
    args = [RNG.standard_normal((B, 4)).astype(np.float32),
            RNG.standard_normal(4).astype(np.float32)]
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    fs = [n for n in g.nodes if n.op == Op.FUSED]
    assert len(fs) == 4 and stray(g) == []
    first = next(f for f in fs if f.doc == "computes tanh_0")
    assert [x.name for x in first.inputs] == ["a", "b"]
    one_minus = next(f for f in fs if len(f.inputs) == 1 and count(f.attrs["body"], Op.CONST))
    assert count(one_minus.attrs["body"], Op.CONST) == 2    # 1.0 and 2.0 copied in
    assert count(g, Op.CONST) == 0


def test_same_operand_twice_and_idempotence() -> None:
    a = gr.Input("B", 4, name="a")
    sq = ops.mul(ops.relu(a), ops.relu(a))
    m = gr.gModule([a], [ops.div(sq, ops.add(ops.exp(a), 1.0))])
    g = fused(m.graph)
    v = RNG.standard_normal((B, 4)).astype(np.float32)
    close(gr.interpret(g, v), gr.interpret(m, v))
    (f,) = [n for n in g.nodes if n.op == Op.FUSED]
    assert [x.name for x in f.inputs] == ["a"]
    assert fuse_elementwise(g) is g


def test_nothing_to_fuse_returns_the_graph() -> None:
    x = gr.Input("B", D, name="x")
    m = gr.gModule([x], [ops.softmax(ops.matmul(x, ops.param(nn.Linear(D, 3).weight),
                                                transpose_b=True))])
    assert fuse_elementwise(m.graph) is m.graph


def test_flattened_graph_with_views() -> None:
    x = gr.Input("B", "T", D, name="x")
    m = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(D, H), num_layers=2)(x)])
    flat, _ = flatten_params(m.graph)
    g = fused(flat)
    v = RNG.standard_normal((B, T, D)).astype(np.float32)
    close(gr.interpret(g, v, m.parameters()[0]), gr.interpret(m, v))
    assert stray(g) == []


UNARY = [ops.tanh, ops.sigmoid, ops.relu, ops.neg, lambda v: ops.exp(ops.tanh(v))]
BINARY = [ops.add, ops.sub, ops.mul, lambda p, q: ops.div(p, ops.add(ops.mul(q, q), 1.0))]


@pytest.mark.parametrize("seed", range(12))
def test_random_elementwise_graphs(seed: int) -> None:
    rng = np.random.default_rng(seed)
    shapes = [("B", 4), (4,), ("B", 1), ()]
    ins = [gr.Input(*s, name=f"in{k}") for k, s in enumerate(shapes)]
    values = list(ins)
    for _ in range(int(rng.integers(4, 14))):
        if rng.random() < 0.4:
            values.append(UNARY[rng.integers(len(UNARY))](values[rng.integers(len(values))]))
        else:
            p, q = (values[i] for i in rng.integers(len(values), size=2))
            values.append(BINARY[rng.integers(len(BINARY))](p, q))
    read = {id(x) for v in values for x in v.inputs}
    outs = [v for v in values[len(ins):] if id(v) not in read]      # every sink, or dangling
    used = {id(x) for o in outs for x in _leaves(o)}
    m = gr.gModule([x for x in ins if id(x) in used], outs)
    g = fused(m.graph)
    args = [rng.standard_normal(tuple(B if d == "B" else d for d in x.type.shape))
            .astype(np.float32) for x in m.graph.inputs]
    close(gr.interpret(g, *args), gr.interpret(m, *args))
    assert stray(g) == []
    for f in (n for n in g.nodes if n.op == Op.FUSED):
        assert isinstance(f.type, TensorType) and len(f.attrs["body"].outputs) == 1


def _leaves(n: Node) -> list[Node]:
    seen, stack, out = set(), [n], []
    while stack:
        v = stack.pop()
        if id(v) in seen:
            continue
        seen.add(id(v))
        if v.op == Op.INPUT:
            out.append(v)
        stack.extend(v.inputs)
    return out
