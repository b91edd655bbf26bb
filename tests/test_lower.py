"""Layouts, the schedule and arena plan, and the lowering of every op kind (vs the interpreter)."""
from __future__ import annotations

import re

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.compiler import prepare
from graphrnn.compiler.codegen.strides import ONE, ZERO, Layout, Lin, collapse
from graphrnn.compiler.codegen.lower import lower_graph
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.ir import Graph, LoweringError, Op, TensorType
from graphrnn.close import close_graph

RNG = np.random.default_rng(2)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def check(inputs, outputs, arrays, cache) -> None:
    model = gr.gModule(inputs, outputs)
    got, want = gr.compile(model, cache=cache)(*arrays), model.forward(*arrays)
    got = got if isinstance(got, tuple) else (got,)
    want = want if isinstance(want, tuple) else (want,)
    for g, w in zip(got, want):
        assert g.shape == w.shape and g.dtype == w.dtype
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def prepared(model: gr.gModule, types: list[TensorType]) -> Graph:
    return prepare(model.graph, types)[0]


def lstm_model(d: int = 8, h: int = 6) -> gr.gModule:
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(d, h))(x)])


# ----------------------------------------------------------------------------- layouts

def test_layouts() -> None:
    t = Lin(0, 1)                                   # the step count
    lay = Layout.contiguous((3, "T", 4))
    assert lay.strides == (t * 4, Lin(4), ONE) and lay.size == t * 12
    off, row = lay.index(1, 2)                      # x[:, 2]
    assert off == Lin(8) and row.shape == (Lin(3), Lin(4)) and not row.is_contiguous()
    assert row.reshape((12,)) is None and lay.reshape((3, "T", 2, 2)) is not None
    b = Layout.contiguous((4,)).broadcast_to((Lin(3), Lin(4)))
    assert b.strides == (ZERO, ONE)
    merged = collapse([Layout.contiguous((2, 3, 4)), Layout.contiguous((2, 3, 4))])
    assert merged[0].shape == (Lin(24),)
    kept = collapse([Layout.contiguous((2, 3, 4)), b.broadcast_to((Lin(2), Lin(3), Lin(4)))])
    assert kept[0].shape == (Lin(6), Lin(4)) and kept[1].strides == (ZERO, ONE)
    with pytest.raises(LoweringError, match="squared"):
        t * t


# ----------------------------------------------------------------------------- schedule

def test_buffers_with_disjoint_lifetimes_share_the_arena() -> None:
    x = gr.Input("B", 1000, name="x")
    y = x
    for _ in range(6):
        y = ops.exp(ops.neg(y))                 # each one a buffer: no fusing below
    model = gr.gModule([x], [ops.sum_(y)])
    g, _ = prepare(model.graph, [TensorType((4, 1000))], disable=("fuse",))
    sched = schedule(g, g.inputs[-1])
    arena = [b for b in sched.buffers if b.io < 0]
    assert len(arena) >= 10
    assert sched.fixed_floats <= 2 * 4000 + 32    # two live at a time, not twelve
    for a in arena:
        assert a.offset.c % 16 == 0
        for b in arena:
            if a is not b and a.start <= b.end and b.start <= a.end:
                assert a.offset.c + a.size.c <= b.offset.c or b.offset.c + b.size.c <= a.offset.c


def test_loop_schedule_of_an_lstm() -> None:
    g = prepared(lstm_model(), [TensorType((3, "T", 8))])
    sched = schedule(g, g.inputs[-1])
    (loop,) = [k for k in sched.kernels if k.kind == "loop"]
    kinds = [k.kind for k in loop.prologue]
    assert kinds.count("copy") == 2 and "pack" in kinds        # initial carry; W_hh packed once
    assert "pack" not in [k.kind for k in loop.body]
    assert not [k for k in loop.body if k.kind == "copy"]      # y_t written in place
    assert any(k.kind == "gemm" for k in sched.kernels)        # the hoisted input projection
    assert sched.step_floats > 0                               # [B, T, 4H] scales with T
    for b in sched.buffers:
        assert b.size.c == 0 or b.size.s == 0
    for k in loop.walk():
        assert re.fullmatch(r"k\d+_\w+", k.name)


def test_entry_point_abi_and_flags() -> None:
    exe = lower_graph(*prepare(lstm_model().graph, [TensorType((3, "T", 8))]))
    (entry,) = exe.entry_points
    assert re.fullmatch(r"graphrnn_[0-9a-f]{8}_forward", entry)
    head = re.search(rf'define void @"{entry}"\((.*)\)', exe.llvm_ir).group(1)
    assert re.fullmatch(r'float\* noalias %"params", float\* noalias %"arena", '
                        r'i8\*\* noalias %"io", i64 %"steps"', head)
    for flag in ("nnan", "ninf", "reassoc", " fast "):
        assert flag not in exe.llvm_ir
    assert "@expf" not in exe.llvm_ir and "llvm.exp." not in exe.llvm_ir
    assert "llvm.fma.v8f32" in exe.llvm_ir
    assert exe.io == (TensorType((3, "T", 8)), TensorType((3, "T", 6)))
    assert exe.contract.symbol == "T" and exe.arena_floats == exe.contract.arena[0]


def test_the_ir_does_not_depend_on_t() -> None:
    model = lstm_model()
    symbolic = lower_graph(*prepare(model.graph, [TensorType((2, "T", 8))])).llvm_ir
    assert len(re.findall(r"loop_\w+\.head", symbolic)) >= 1
    fixed = lower_graph(*prepare(model.graph, [TensorType((2, 40, 8))])).llvm_ir
    assert abs(len(fixed) - len(symbolic)) < 0.2 * len(symbolic)


def test_lowering_errors_name_the_node() -> None:
    x = gr.Input("B", 4, name="x")
    w = gr.Input(4, 4, name="w")
    body_x, body_w = gr.Input("B", 4), gr.Input(4, 4)
    body = close_graph([body_x, body_w], [ops.matmul(body_x, body_w)])
    fused = ops.make(Op.FUSED, [x, w], body=body, name="bad_fusion")
    g, table = prepare(close_graph([x, w], [fused]), [TensorType((2, 4)),
                                                      TensorType((4, 4))], optimize=False)
    with pytest.raises(LoweringError, match=r"lowering bad_fusion \(fused\) at test_lower"):
        lower_graph(g, table)


# ----------------------------------------------------------------------------- op kinds

def test_maps_and_broadcasting(cache) -> None:
    x, w = gr.Input("B", 7, name="x"), gr.Input(7, name="w")
    outs = [ops.exp(x), ops.log(ops.add(ops.mul(x, x), 1.0)), ops.tanh(x), ops.sigmoid(x),
            ops.relu(x), ops.neg(x), ops.step(x), ops.div(x, ops.add(ops.mul(w, w), 0.5)),
            ops.sub(w, x), ops.where(ops.relu(x), x, w)]
    check([x, w], outs, [randn(3, 7), randn(7)], cache)


def test_long_rows_use_vectors_and_a_tail(cache) -> None:
    x, y = gr.Input("B", 37, name="x"), gr.Input("B", 1, name="y")
    check([x, y], [ops.sigmoid(ops.mul(ops.add(x, 1.0), y))], [randn(5, 37), randn(5, 1)], cache)


def test_reductions_and_softmax(cache) -> None:
    x = gr.Input("B", 4, 6, name="x")
    outs = [ops.sum_(x), ops.mean(x, axes=(1,)), ops.sum_(x, axes=(0, 2), keepdims=True),
            ops.mean(x, axes=(2,), keepdims=True), ops.softmax(x, -1), ops.log_softmax(x, 1),
            ops.softmax(x, 0)]
    check([x], outs, [randn(3, 4, 6) * 4], cache)


def test_views_and_copies(cache) -> None:
    x = gr.Input("B", 4, 6, name="x")
    part = ops.slice_(x, 2, 1, 3)
    outs = [part, ops.index(x, 1, 2), ops.reshape(x, ("B", 24)), ops.reshape(part, ("B", 12)),
            ops.concat([x, ops.slice_(x, 1, 0, 2)], 1), ops.pad(x, 1, 2, 1),
            ops.expand(ops.slice_(x, 1, 0, 1), x), nn.Dropout(0.5)(x), x]
    check([x], outs, [randn(3, 4, 6)], cache)


def test_constants_and_fills(cache) -> None:
    x = gr.Input("B", 6, name="x")
    outs = [ops.add(x, ops.const(np.arange(6, dtype=np.float32))),
            ops.fill((6,), 2.5, batch_like=x), ops.fill((2,), 3, dtype="int64", batch_like=x)]
    check([x], outs, [randn(4, 6)], cache)


def test_matmuls(cache) -> None:
    x, s = gr.Input("B", "T", 3, 6, name="x"), gr.Input("B", "T", 6, name="s")
    outs = [nn.Linear(6, 17)(x), nn.Linear(3, 9)(ops.slice_(s, 2, 2, 3)),
            nn.Linear(5, 70, bias=False)(ops.slice_(ops.index(s, 1, 0), 1, 0, 5)),
            ops.matmul(ops.index(s, 1, 1), ops.const(randn(6, 2)))]
    check([x, s], outs, [randn(2, 5, 3, 6), randn(2, 5, 6)], cache)


def test_matmul_over_several_row_blocks(cache) -> None:
    """B*T rows in blocks of about 96 KiB of `a` each, the last block and tile partial."""
    x = gr.Input("B", "T", 256, name="x")
    check([x], [nn.Linear(256, 20)(x)], [randn(2, 107, 256)], cache)


def test_matmul_epilogues(cache) -> None:
    """A FUSED reader of a matmul runs on its accumulators; odd operands fall back."""
    x, z = gr.Input("B", 6, name="x"), gr.Input("B", 11, 2, name="z")
    w, col = gr.Input(11, 6, name="w"), gr.Input(11, 1, name="col")
    y = nn.Linear(6, 11)(x)                                     # matmul + bias: absorbed
    strided = ops.add(ops.matmul(x, w, transpose_b=True), ops.index(z, 2, 0))   # stride 2
    broadcast = ops.matmul(x, ops.expand(col, w), transpose_b=True)   # packed from stride 0
    outs = [ops.tanh(y), strided, broadcast, y]
    check([x, z, w, col], outs, [randn(5, 6), randn(5, 11, 2), randn(11, 6), randn(11, 1)],
          cache)
    g = prepared(gr.gModule([x], [ops.sigmoid(nn.Linear(6, 11)(x))]), [TensorType((5, 6))])
    (gemm,) = [k for k in schedule(g, g.inputs[-1]).kernels if k.kind == "gemm"]
    assert gemm.node.op == Op.FUSED and gemm.matmul.op == Op.MATMUL


def test_indexing_ops(cache) -> None:
    ids, x = gr.Input("B", 5, dtype="int64", name="ids"), gr.Input("B", 5, 7, name="x")
    outs = [nn.LookupTable(10, 4)(ids), ops.pick(x, ops.slice_(ids, 1, 0, 5)),
            ops.onehot(ids, 10), ops.scatter(x, ids, 10)]
    check([ids, x], outs, [RNG.integers(0, 7, (3, 5)), randn(3, 5, 7)], cache)


def test_sequence_ops(cache) -> None:
    x, n = gr.Input("B", "T", 3, name="x"), gr.Input("B", dtype="int64", name="n")
    g = gr.Input("B", "T", 4, name="g")
    outs = [ops.seq_mask(x, n), ops.seq_mask(x, n, every=2), ops.contract(x, g),
            ops.contract(x, g, transpose_out=True),
            ops.assemble([ops.index(ops.index(x, 0, 0), 0, 0), ops.index(ops.index(g, 0, 1),
                                                                           0, 1)], [0, 3], 9)]
    check([x, n, g], outs, [randn(3, 5, 3), np.array([5, 2, 0]), randn(3, 5, 4)], cache)


@pytest.mark.parametrize("temperature", [0.0, 0.8])
def test_sampling(temperature: float, cache) -> None:
    logits, u, t = gr.Input("B", 6, name="l"), gr.Input("B", name="u"), gr.Input(name="t")
    check([logits, u, t], [ops.sample(logits, u, t)],
          [randn(40, 6), RNG.random(40).astype(np.float32), np.float32(temperature)], cache)


def test_losses(cache) -> None:
    x, t = gr.Input("B", 6, name="x"), gr.Input("B", dtype="int64", name="t")
    y = gr.Input("B", 6, name="y")
    check([x, t, y], [gr.CrossEntropyCriterion()([x, t]), gr.MSECriterion()([x, y])],
          [randn(4, 6), RNG.integers(0, 6, 4), randn(4, 6)], cache)
