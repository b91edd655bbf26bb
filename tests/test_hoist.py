"""hoist_invariants: the same results as the interpreter before, with the work moved out."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler.passes.flatten import flatten_params
from graphrnn.compiler.passes.hoist import hoist_invariants
from graphrnn.compiler.passes.validate import verify
from graphrnn.interpret import Context, run_graph
from graphrnn.ir import Graph, Op, TensorType
from graphrnn.ops import infer_graph

RNG = np.random.default_rng(0)
B, T = 3, 5


def loops(g: Graph) -> list:
    return [n for n in g.nodes if n.op == Op.LOOP]


def count(g: Graph, op: Op) -> int:
    return sum(1 for n in g.nodes if n.op == op)


def hoisted(g: Graph, **kw: int) -> Graph:
    out = hoist_invariants(g, **kw)
    verify(out)
    return out


def same(a: object, b: object) -> None:
    a, b = (a, b) if isinstance(a, tuple) else ((a,), (b,))
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


def recurrent(cell: type, d: int, h: int, *, layers: int = 1, bidirectional: bool = False,
              lengths: bool = False) -> tuple[gr.gModule, list]:
    x = gr.Input("B", "T", d, name="x")
    args = [RNG.standard_normal((B, T, d)).astype(np.float32)]
    ins = [x]
    if lengths:
        ins.append(gr.Input("B", dtype="int64", name="lengths"))
        args.append(np.array([T, 2, 0]))
    y = nn.Recurrent(cell(d, h), num_layers=layers, bidirectional=bidirectional)(ins)
    return gr.gModule(ins, [y]), args


CONFIGS = [dict(), dict(layers=2), dict(bidirectional=True), dict(lengths=True),
           dict(layers=2, bidirectional=True, lengths=True)]


@pytest.mark.parametrize("cell", [gr.cells.RNN, gr.cells.LSTM, gr.cells.GRU])
@pytest.mark.parametrize("config", CONFIGS, ids=lambda c: "-".join(c) or "plain")
def test_input_projection_leaves_every_loop(cell: type, config: dict) -> None:
    m, args = recurrent(cell, 6, 5, **config)
    g = hoisted(m.graph)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    assert len(loops(g)) == count(g, Op.MATMUL) >= 1       # one projection per loop, outside
    for loop in loops(g):
        body = loop.attrs["body"]
        assert count(body, Op.MATMUL) == 1                 # h @ W_hh only
        assert "x" not in [x.name for x in body.inputs]    # x_t itself is no longer read
        (proj,) = loop.inputs[loop.attrs["n_consts"] + loop.attrs["n_carry"]:][:1]
        assert proj.type.shape[:2] == ("B", "T")


@pytest.mark.parametrize("cell", [gr.cells.LSTM, gr.cells.GRU])
def test_flattened_params_are_views_in_and_out(cell: type) -> None:
    m, args = recurrent(cell, 7, 4, bidirectional=True, lengths=True)
    flat, table = flatten_params(m.graph)
    g = hoisted(flat)
    same(gr.interpret(g, *args, m.parameters()[0]), gr.interpret(m, *args))
    for loop in loops(g):
        body = loop.attrs["body"]
        assert body.inputs[0].name == "params"             # W_hh and b_hh still read from it
        assert count(body, Op.MATMUL) == 1
    outside = [n for n in g.nodes if n.op == Op.MATMUL]
    assert len(outside) == 2 and all(n.inputs[1].op == Op.VIEW for n in outside)


def test_concretely_typed_graph() -> None:
    m, args = recurrent(gr.cells.LSTM, 6, 5, lengths=True)
    typed = infer_graph(m.graph, [TensorType((B, T, 6)), TensorType((B,), "int64")])
    g = hoisted(typed)
    assert count(g, Op.MATMUL) == 1
    want = run_graph(typed, args, Context())
    same(tuple(run_graph(g, args, Context())), tuple(want))


def test_tiny_inputs_stay_per_step() -> None:
    m, args = recurrent(gr.cells.LSTM, 3, 5)
    assert hoist_invariants(m.graph) is m.graph            # K = 3 <= 4: nothing moves
    g = hoisted(m.graph, min_input_size=2)
    assert count(g, Op.MATMUL) == 1
    same(gr.interpret(g, *args), gr.interpret(m, *args))


def test_nngraph_toy_rnn_has_nothing_to_hoist() -> None:
    h, x = gr.Input("B", 8, name="h"), gr.Input("B", 1, name="x")
    h2 = nn.Tanh()(nn.Linear(9, 8)(nn.JoinTable(1)([h, x])))
    cell = gr.gModule([h, x], [h2, h2])
    xs = gr.Input("B", "T", 1, name="xs")
    out = gr.Loop(cell, n_carry=1)(init=[ops.fill((8,), 0.0, batch_like=xs)], xs=[xs])
    m = gr.gModule([xs], [out[1]])
    assert hoist_invariants(m.graph) is m.graph


def step_model(cell_outputs, d: int, h: int, *, consts: list | None = None,
               reverse: bool = False, lengths: bool = False) -> tuple[gr.gModule, list]:
    """A loop over x[B, T, d] whose body `cell_outputs(consts, h, x_t)` returns h'."""
    consts = consts or []
    hb, xb = gr.Input("B", h, name="h"), gr.Input("B", d, name="x")
    cb = [gr.Input(*c.type.shape, name=f"k{i}") for i, c in enumerate(consts)]
    h2 = cell_outputs(cb, hb, xb)
    cell = gr.gModule(cb + [hb, xb], [h2, h2])
    xs = gr.Input("B", "T", d, name="xs")
    args = [RNG.standard_normal((B, T, d)).astype(np.float32)]
    ins = [xs]
    lens = None
    if lengths:
        lens = gr.Input("B", dtype="int64", name="lengths")
        ins.append(lens)
        args.append(np.array([4, T, 1]))
    outer_consts = [c for c in consts if c.op == Op.INPUT]
    ins += outer_consts
    args += [RNG.standard_normal(tuple(B if d_ == "B" else d_ for d_ in c.type.shape))
             .astype(np.float32) for c in outer_consts]
    out = gr.Loop(cell, n_carry=1, n_consts=len(consts), reverse=reverse)(
        consts=consts, init=[ops.fill((h,), 0.0, batch_like=xs)], xs=[xs], lengths=lens)
    return gr.gModule(ins, [out[1], out[0]]), args


def test_invariants_become_consts_and_unread_consts_go() -> None:
    s = gr.Input(4, name="s")
    p = nn.Linear(4, 4)

    def body(k, h, x):
        w = ops.tanh(ops.param(p.weight))                  # parameters only
        scale = ops.exp(k[0])                              # a loop const only
        y = ops.add(ops.matmul(h, w), nn.Linear(6, 4)(x))
        return ops.mul(ops.tanh(y), scale)
    m, args = step_model(body, 6, 4, consts=[s], reverse=True, lengths=True)
    g = hoisted(m.graph)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    (loop,) = loops(g)
    body_g = loop.attrs["body"]
    assert {n.op for n in body_g.nodes} & {Op.EXP, Op.PARAM} == set()
    assert [x.name for x in body_g.inputs][:2] == ["tanh_0", "exp_0"]
    assert "k0" not in [x.name for x in body_g.inputs]     # s is read outside only
    assert loop.attrs["n_consts"] == 2 and loop.attrs["reverse"]


def test_axis_ops_move_to_the_sequence_with_shifted_axes() -> None:
    w, v, u = nn.Linear(6, 8), nn.Linear(8, 4), nn.Linear(4, 4)

    def body(k, h, x):
        p = ops.log_softmax(w(x), axis=-1)                 # [B, 8]
        r = ops.reshape(p, ("B", 2, 4))
        q = ops.sum_(r, axes=(2,))                          # [B, 2]
        first = ops.index(r, 1, 0)                         # [B, 4]
        mean = ops.reshape(ops.mean(r, axes=(1,), keepdims=True), ("B", 4))
        cat = ops.concat([q, first, ops.softmax(mean, 1)], axis=1)     # [B, 10]
        return ops.tanh(ops.add(u(h), v(ops.slice_(cat, 1, 1, 8))))
    m, args = step_model(body, 6, 4)
    g = hoisted(m.graph)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    body_ops = {n.op for n in loops(g)[0].attrs["body"].nodes}
    assert body_ops.isdisjoint({Op.LOG_SOFTMAX, Op.SUM, Op.MEAN, Op.RESHAPE, Op.CONCAT})
    assert count(g, Op.MATMUL) == 2                         # w and v, over [B, T, ...]
    outside = {n.op: n for n in g.nodes}
    assert outside[Op.SUM].attrs["axes"] == (3,) and outside[Op.CONCAT].attrs["axis"] == 2
    assert outside[Op.INDEX].attrs["axis"] == 2 and outside[Op.SOFTMAX].attrs["axis"] == 2


def test_batch_axis_ops_and_batched_consts_stay_per_step() -> None:
    enc = gr.Input("B", 4, name="enc")
    w, u = nn.Linear(6, 4), nn.Linear(4, 4)

    def body(k, h, x):
        y = ops.add(w(x), k[0])                            # [B, 4] const: meets T, not B
        z = ops.softmax(w(x), axis=0)                      # along the batch
        return ops.tanh(ops.add(ops.add(u(h), y), z))
    m, args = step_model(body, 6, 4, consts=[enc])
    g = hoisted(m.graph)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    body_g = loops(g)[0].attrs["body"]
    assert "k0" in [x.name for x in body_g.inputs]
    assert count(body_g, Op.SOFTMAX) == 1 and count(body_g, Op.MATMUL) == 1


def test_slices_of_a_hoisted_value_are_recomputed_in_the_body() -> None:
    w, u = nn.Linear(6, 8), nn.Linear(4, 4)

    def body(k, h, x):
        p = w(x)
        a, b = ops.slice_(p, 1, 0, 4), ops.slice_(p, 1, 4, 4)
        return ops.tanh(ops.add(ops.add(u(h), a), ops.mul(h, b)))
    m, args = step_model(body, 6, 4)
    g = hoisted(m.graph)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    (loop,) = loops(g)
    assert loop.attrs["n_xs"] == 1 and loop.inputs[-1].type.shape == ("B", "T", 8)
    assert count(loop.attrs["body"], Op.SLICE) == 2


def test_dropout_stays_in_the_body() -> None:
    w, v, u = nn.Linear(6, 4), nn.Linear(6, 4), nn.Linear(4, 4)
    drop = nn.Dropout(0.3, seed=7)

    def body(k, h, x):
        masked = ops.matmul(h, drop(ops.param(u.weight)))      # a new mask at every step
        return ops.tanh(ops.add(ops.add(masked, w(drop(x))), v(x)))
    m, args = step_model(body, 6, 4)
    g = hoisted(m.graph)
    assert count(g, Op.MATMUL) == 1                         # v(x) only
    assert count(loops(g)[0].attrs["body"], Op.DROPOUT) == 2
    same(gr.interpret(g, *args, training=True, seed=3),
         gr.interpret(m, *args, training=True, seed=3))


def test_lookup_of_ids_moves_with_the_projection() -> None:
    emb, w, u = nn.LookupTable(10, 6), nn.Linear(6, 4), nn.Linear(4, 4)
    hb, ib = gr.Input("B", 4, name="h"), gr.Input("B", dtype="int64", name="ids")
    h2 = ops.tanh(ops.add(u(hb), w(emb(ib))))
    cell = gr.gModule([hb, ib], [h2, h2])
    ids = gr.Input("B", "T", dtype="int64", name="ids")
    out = gr.Loop(cell, n_carry=1)(init=[ops.fill((4,), 0.0, batch_like=ids)], xs=[ids])
    m = gr.gModule([ids], [out[1]])
    g = hoisted(m.graph)
    x = RNG.integers(0, 10, (B, T))
    same(gr.interpret(g, x), gr.interpret(m, x))
    assert count(g, Op.LOOKUP) == 1 and count(loops(g)[0].attrs["body"], Op.LOOKUP) == 0


def test_nested_loops_hoist_through_both_levels() -> None:
    d, h = 6, 4
    w, u = nn.Linear(d, h), nn.Linear(h, h)
    g_in, xs_in = gr.Input("B", h, name="g"), gr.Input("B", d, name="xs")
    g2 = ops.tanh(ops.add(w(xs_in), u(g_in)))
    inner = gr.gModule([g_in, xs_in], [g2])
    h_in, xt = gr.Input("B", h, name="h"), gr.Input("B", "S", d, name="xt")
    final = gr.Loop(inner, n_carry=1)(init=[h_in], xs=[xt])[0]
    outer = gr.gModule([h_in, xt], [final, final])
    x = gr.Input("B", "T", "S", d, name="x")
    out = gr.Loop(outer, n_carry=1, reverse=True)(init=[ops.fill((h,), 0.0, batch_like=x)],
                                                  xs=[x])
    m = gr.gModule([x], [out[1]])
    g = hoisted(m.graph)
    args = [RNG.standard_normal((B, T, 3, d)).astype(np.float32)]
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    (proj,) = [n for n in g.nodes if n.op == Op.MATMUL]
    assert proj.type.shape == ("B", "T", "S", h)            # x_s @ W for every t and s
    (loop,) = loops(g)
    (inner_loop,) = loops(loop.attrs["body"])
    assert count(loop.attrs["body"], Op.MATMUL) == 0
    assert count(inner_loop.attrs["body"], Op.MATMUL) == 1


@pytest.mark.parametrize("seed", range(10))
def test_random_bodies(seed: int) -> None:
    """Random mixes of x_t, h, parameters and the allowlisted ops, hoisted or not."""
    rng = np.random.default_rng(seed)
    vec, mat = nn.Linear(4, 4), nn.Linear(4, 4)
    unary = [ops.tanh, ops.sigmoid, ops.neg, lambda v: ops.softmax(v, 1),
             lambda v: ops.concat([ops.slice_(v, 1, 2, 2), ops.slice_(v, 1, 0, 2)], 1),
             lambda v: ops.matmul(v, ops.param(mat.weight), transpose_b=True),
             lambda v: ops.mul(v, ops.sum_(v, axes=(1,), keepdims=True))]
    second = [lambda: ops.param(vec.bias), lambda: ops.const(np.float32(0.5)),
              lambda: ops.tanh(ops.reshape(ops.param(vec.bias), (1, 4)))]

    def body(k, h, x):
        pool = [h, x, x]
        for _ in range(int(rng.integers(3, 9))):
            v = pool[int(rng.integers(len(pool)))]
            r = rng.random()
            if r < 0.5:
                pool.append(unary[int(rng.integers(len(unary)))](v))
            else:
                w = (pool[int(rng.integers(len(pool)))] if r < 0.75
                     else second[int(rng.integers(len(second)))]())
                pool.append([ops.add, ops.mul, ops.sub][int(rng.integers(3))](v, w))
        read = {id(x) for v in pool for x in v.inputs}
        sinks = [v for v in pool[3:] if id(v) not in read] or [pool[-1]]
        total = sinks[0]
        for v in sinks[1:]:
            total = ops.add(total, v)
        return ops.tanh(ops.add(total, ops.mul(h, 0.5)))
    m, args = step_model(body, 4, 4, reverse=bool(seed % 2), lengths=seed % 3 == 0)
    g = hoisted(m.graph, min_input_size=0)
    same(gr.interpret(g, *args), gr.interpret(m, *args))
    assert hoisted(g, min_input_size=0) is g                # nothing left to move
