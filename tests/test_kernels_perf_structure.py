"""The structure that makes the kernels fast, checked without timing anything.

- A recurrent step whose gates are slices of one product runs as one gemm kernel: the cell's
  FUSED nodes are the tile's epilogue (no gate buffer, no map kernel in the step), with the
  weights packed so that a tile holds every gate of the same units (LSTM, GRU, a user cell).
- The k-loop of the GEMM micro-kernel keeps its accumulators in registers: no stack access
  inside it, and as many FMAs per k as the plan's tile has accumulators.
- CONTRACT (the weight gradients over all B*T rows) lowers to the packed micro-kernel; the
  backward step's pointwise work is one elementwise loop, writing straight into the
  concatenation the backward product reads.
- A training step range-checks the lengths that differentiation turned into a SEQ_MASK.

Every compiled result is compared with the interpreter.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from asm_loops import k_loops

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen.tiling import accumulators, make_plan, vector_width
from graphrnn.compiler.pipeline import prepare, prepare_training
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.ir import InputError, TensorType
from graphrnn.runtime.cache import KernelCache
from graphrnn.train import InterpretedStep, loss_graph

RNG = np.random.default_rng(5)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def layer(cell: str, d: int, h: int) -> gr.gModule:
    make = {"lstm": gr.cells.LSTM, "gru": gr.cells.GRU, "rnn": gr.cells.RNN}[cell]
    x = gr.Input("B", "T", d, name="x")
    model = gr.gModule([x], [nn.Recurrent(make(d, h))(x)])
    model.reset_parameters(seed=3)
    return model


def user_cell(d: int, h: int) -> gr.gModule:
    """A minimal gated unit written by hand: one Linear on [h, x], two gate slices."""
    hb, xb = gr.Input("B", h, name="h"), gr.Input("B", d, name="x_t")
    z = nn.Linear(h + d, 2 * h)(nn.JoinTable(1)([hb, xb]))
    forget = nn.Sigmoid()(nn.Narrow(1, 0, h)(z))
    cand = nn.Tanh()(nn.Narrow(1, h, h)(z))
    keep = nn.AddConstant(1.0)(nn.MulConstant(-1.0)(forget))
    h2 = nn.CAddTable()([nn.CMulTable()([forget, hb]), nn.CMulTable()([keep, cand])])
    x, h0 = gr.Input("B", "T", d, name="x"), gr.Input("B", h, name="h0")
    _, ys = gr.Loop(gr.gModule([hb, xb], [h2, h2]), n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [ys])
    model.reset_parameters(seed=4)
    return model


def loop_body(sched):
    (loop,) = [k for k in sched.kernels if k.kind == "loop"]
    return loop


def forward_schedule(model: gr.gModule, types: list[TensorType]):
    g, _ = prepare(model.graph, types)
    return schedule(g, g.inputs[-1])


# ----------------------------------------------------------------------------- fused steps

@pytest.mark.parametrize("cell, segments", [("lstm", 4), ("gru", 3)])
def test_the_cell_update_is_the_recurrent_gemms_epilogue(cell: str, segments: int) -> None:
    sched = forward_schedule(layer(cell, 7, 13), [TensorType((5, "T", 7))])
    loop = loop_body(sched)
    (gemm,) = [k for k in loop.body if k.kind == "gemm"]
    assert gemm.group is not None and gemm.segments == segments
    assert not [k for k in loop.body if k.kind == "map"]          # nothing left pointwise
    (pack,) = [k for top in sched.kernels for k in top.walk()
               if k.kind == "pack" and k.node is gemm.matmul]
    assert pack.segments == segments                               # gate-interleaved panels
    stored = [m for m, home in gemm.stages if home is not None]
    assert stored and all(m.type.shape == (5, 13) for m in stored)
    # the [B, G*H] gate pre-activations have no buffer of their own
    assert not [b for b in sched.buffers if b.size.c == 5 * segments * 13]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("b, h", [(1, 13), (5, 37), (7, 6), (3, 100)])
def test_fused_steps_match_the_interpreter(cell: str, b: int, h: int,
                                           cache: KernelCache) -> None:
    model = layer(cell, 5, h)
    x = randn(b, 4, 5)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(x), gr.interpret(model, x),
                               rtol=1e-4, atol=2e-6)


def test_a_hand_written_cell_gets_the_same_epilogue(cache: KernelCache) -> None:
    model = user_cell(3, 11)
    sched = forward_schedule(model, [TensorType((4, "T", 3)), TensorType((4, 11))])
    (gemm,) = [k for k in loop_body(sched).body if k.kind == "gemm"]
    assert gemm.group is not None and gemm.segments == 2
    x, h0 = randn(4, 6, 3), randn(4, 11)
    np.testing.assert_allclose(gr.compile(model, cache=cache)(x, h0),
                               gr.interpret(model, x, h0), rtol=1e-4, atol=2e-6)


def two_layers_in_one_body(d: int, h: int) -> gr.gModule:
    """Two LSTM cells stacked inside one loop body: two groups, the second one's product
    reading the first one's stored member."""
    states = [gr.Input("B", h, name=f"s{i}") for i in range(4)]
    xt = gr.Input("B", d, name="xt")
    low = gr.cells.LSTM(d, h)([states[0], states[1], xt])
    high = gr.cells.LSTM(h, h)([states[2], states[3], low[0]])
    body = gr.gModule([*states, xt], [low[0], low[1], high[0], high[1], high[0]])
    x = gr.Input("B", "T", d, name="x")
    inits = [gr.Input("B", h, name=f"init{i}") for i in range(4)]
    outs = gr.Loop(body, n_carry=4)(init=inits, xs=[x])
    model = gr.gModule([x, *inits], [outs[4]])
    model.reset_parameters(seed=7)
    return model


def member_read_mid_group(h: int) -> gr.gModule:
    """A product reads a member that comes before the group's last member."""
    hb, xb = gr.Input("B", h, name="h"), gr.Input("B", h, name="x_t")
    z = nn.Linear(h, 2 * h)(hb)
    a = nn.Sigmoid()(nn.Narrow(1, 0, h)(z))
    side = nn.Linear(h, h)(a)
    b = nn.CMulTable()([a, nn.Tanh()(nn.CAddTable()([nn.Narrow(1, h, h)(z), xb]))])
    h2 = nn.Tanh()(nn.CAddTable()([side, b]))
    x, h0 = gr.Input("B", "T", h, name="x"), gr.Input("B", h, name="h0")
    _, ys, gates = gr.Loop(gr.gModule([hb, xb], [h2, b, a]), n_carry=1)(init=[h0], xs=[x])
    model = gr.gModule([x, h0], [ys, gates])
    model.reset_parameters(seed=8)
    return model


def test_groups_next_to_other_kernels(cache: KernelCache) -> None:
    model = two_layers_in_one_body(5, 9)
    types = [TensorType((3, "T", 5))] + [TensorType((3, 9))] * 4
    groups = [k for k in loop_body(forward_schedule(model, types)).body if k.group]
    assert len(groups) == 2
    inputs = [randn(3, 6, 5)] + [randn(3, 9) for _ in range(4)]
    np.testing.assert_allclose(gr.compile(model, cache=cache)(*inputs),
                               gr.interpret(model, *inputs), rtol=1e-4, atol=2e-6)
    model = member_read_mid_group(9)
    body = loop_body(forward_schedule(model, [TensorType((4, "T", 9)),
                                              TensorType((4, 9))])).body
    order = [k.kind for k in body]
    assert order[0] == "gemm" and body[0].group is not None and "gemm" in order[1:]
    x, h0 = randn(4, 5, 9), randn(4, 9)
    for got, want in zip(gr.compile(model, cache=cache)(x, h0), gr.interpret(model, x, h0)):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=2e-6)


# ----------------------------------------------------------------------------- the k-loop

def test_the_k_loop_keeps_its_tile_in_registers() -> None:
    x = gr.Input(64, 128, name="x")
    model = gr.gModule([x], [nn.Linear(128, 512)(x)])
    asm = gr.compile(model).asm(np.zeros((64, 128), np.float32))
    plan = make_plan(128, 512, 64)
    assert plan.mr * plan.nv <= accumulators()
    loops = k_loops(asm)
    assert loops
    reg = "zmm" if plan.vw == 16 else "ymm"
    main = max(loops, key=lambda body: sum("vfmadd" in x for x in body))
    assert sum(bool(re.search(rf"vfmadd\w+\s.*%{reg}", x)) for x in main) == plan.mr * plan.nv
    for body in loops:
        assert not [x for x in body if "(%rsp)" in x], "\n".join(body)


def test_tiles_fill_the_register_file() -> None:
    plan = make_plan(512, 2048, 64)
    assert plan.vw == vector_width()
    assert plan.mr * plan.nv == accumulators()          # 6 x 4 zmm, or 3 x 4 ymm
    gates = make_plan(512, 2048, 64, segments=4)        # one vector per gate, MR rows
    assert gates.nv == 1 and gates.mr * 4 == accumulators()
    assert make_plan(512, 2048, 1).mr == 1              # a GEMV: one row, wide panels


# ----------------------------------------------------------------------------- training

def lstm_training_schedule(b: int = 4, d: int = 6, h: int = 16):
    model = layer("lstm", d, h)
    g = loss_graph(model, gr.MSECriterion())
    pg, _, _ = prepare_training(g, [TensorType((b, "T", d)), TensorType((b, "T", h))],
                                unit_cotangent=True)
    return model, schedule(pg, pg.inputs[-1], training=True)


def test_contract_lowers_to_the_packed_micro_kernel(cache: KernelCache) -> None:
    model, sched = lstm_training_schedule()
    kernels = [k for top in sched.kernels for k in top.walk()]
    contracts = [k for k in kernels if k.node.op.value == "contract"]
    assert contracts and all(k.kind == "gemm" and k.packed is not None for k in contracts)
    x, y = randn(4, 9, 6), randn(4, 9, 16)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    loss = step(x, target=y)
    grad = model.parameters()[1].copy()
    ref = InterpretedStep(model, gr.MSECriterion())
    assert ref(x, target=y) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad, model.parameters()[1], rtol=1e-4, atol=1e-6)


def test_the_backward_step_is_one_pointwise_loop_into_the_concat() -> None:
    _, sched = lstm_training_schedule()
    loops = [k for k in sched.kernels if k.kind == "loop"]
    backward = loops[-1]
    maps = [k for k in backward.body if k.kind == "map"]
    assert len(maps) == 1 and len(maps[0].stages) >= 8
    assert [k for k in backward.body if k.kind == "placed"]        # no concat copy
    assert not [k for k in backward.body if k.kind == "copy"]


def test_column_sums_over_leading_axes(cache: KernelCache) -> None:
    for shape, axes, keep in [((4, 5, 37), (0, 1), False), ((9, 33), (0,), True),
                              ((6, 7, 8), (1,), False)]:
        x = gr.Input(*shape, name="x")
        model = gr.gModule([x], [gr.ops.sum_(x, axes=axes, keepdims=keep)])
        a = randn(*shape)
        np.testing.assert_allclose(gr.compile(model, cache=cache)(a),
                                   a.astype(np.float64).sum(axis=axes, keepdims=keep),
                                   rtol=1e-5, atol=1e-5)


def masked_rnn() -> gr.gModule:
    x, n = gr.Input("B", "T", 3, name="x"), gr.Input("B", dtype="int64", name="lengths")
    ys = nn.Recurrent(gr.cells.RNN(3, 5))([x, n])
    model = gr.gModule([x, n], [nn.Linear(5, 1)(ys)])
    model.reset_parameters(seed=6)
    return model


def test_training_steps_range_check_the_lengths(cache: KernelCache) -> None:
    model = masked_rnn()
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, cache=cache)
    x, y = randn(3, 7, 3), randn(3, 7, 1)
    loss = step(x, np.array([7, 0, 4]), target=y)
    assert loss == pytest.approx(InterpretedStep(model, gr.MSECriterion())(
        x, np.array([7, 0, 4]), target=y), rel=1e-5)
    for bad in ([8, 0, 4], [-1, 2, 3]):
        with pytest.raises(InputError, match="lengths must lie in"):
            step(x, np.array(bad), target=y)


def test_weights_from_the_parameters_alone(cache: KernelCache) -> None:
    """Weights that are functions of the parameters are packed in the pack entry when plain
    kernels make them; when a product's epilogue group makes them (a kernel of several
    nodes), every call. Right before and after the parameters change."""
    x = gr.Input("B", 6, name="x")
    w1, w2 = nn.Linear(6, 6, bias=False), nn.Linear(6, 12, bias=False)
    a = gr.ops.tanh(gr.ops.param(w1.weight))
    b = gr.ops.mul(gr.ops.sigmoid(gr.ops.param(w1.weight)), a)
    z = gr.ops.matmul(gr.ops.param(w1.weight), gr.ops.param(w2.weight), transpose_b=True)
    gate = gr.ops.mul(gr.ops.sigmoid(gr.ops.slice_(z, -1, 0, 6)),
                      gr.ops.tanh(gr.ops.slice_(z, -1, 6, 6)))
    outs = [gr.ops.matmul(x, w, transpose_b=True) for w in (a, gr.ops.add(b, a), gate)]
    model = gr.gModule([x], outs)
    model.reset_parameters(seed=9)
    g, _ = prepare(model.graph, [TensorType((3, 6))])
    sched = schedule(g, g.inputs[-1])
    packs = [k for top in sched.kernels for k in top.walk() if k.kind == "pack"]
    (grouped,) = [k for k in sched.kernels if k.group is not None]
    assert grouped not in sched.persistent
    per_call = [k.node.inputs[1] for k in packs if k not in sched.persistent]
    assert per_call == [grouped.stages[0][0]]           # the group's member: per call
    assert len(packs) == 4                              # the rest: once per update
    fast = gr.compile(model, cache=cache)
    xv = randn(3, 6)
    for _ in range(2):
        for got, want in zip(fast(xv), gr.interpret(model, xv)):
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        flat, _ = model.parameters()
        flat += 0.25
