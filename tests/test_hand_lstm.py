"""A hand-written LSTM and the built-in one optimise to the same kernel structure, and the
bench's hand-written LSTM (`graphrnn bench`'s graphrnn-hand) compiles to the built-in's kernels.

After merge -> hoist -> fuse (+ dce) every form has one matmul over the whole sequence before
the loop (the input projection), one matmul in the body (h against the [4H, H] weights) and
an epilogue of FUSED nodes with no elementwise op left outside them.
"""
from __future__ import annotations

import re
from typing import Callable

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.bench.peers import build_hand_lstm, build_layer
from graphrnn.compiler.passes.dce import eliminate_dead_code
from graphrnn.compiler.passes.flatten import flatten_params
from graphrnn.compiler.passes.fuse_elementwise import FUSABLE, fuse_elementwise
from graphrnn.compiler.passes.hoist import hoist_invariants
from graphrnn.compiler.passes.merge import merge_matmuls
from graphrnn.compiler.pipeline import prepare
from graphrnn.compiler.passes.validate import verify
from graphrnn.ir import Graph, Node, Op, TensorType

RNG = np.random.default_rng(3)
B, T, D, H = 3, 5, 6, 4
PASSES = (merge_matmuls, hoist_invariants, fuse_elementwise, eliminate_dead_code)


def separate_linears(h: Node, c: Node, x: Node) -> tuple[Node, ...]:
    """Four Linear(D, H) for x and four Linear(H, H) for h, one pair per gate."""
    def gate(act: nn.Module) -> Node:
        return act(nn.CAddTable()([nn.Linear(D, H)(x), nn.Linear(H, H)(h)]))
    i, f, g, o = gate(nn.Sigmoid()), gate(nn.Sigmoid()), gate(nn.Tanh()), gate(nn.Sigmoid())
    return i, f, g, o


def narrowed_linear(h: Node, c: Node, x: Node) -> tuple[Node, ...]:
    """One Linear(D, 4H) and one Linear(H, 4H); gates cut out with Narrow."""
    z = nn.CAddTable()([nn.Linear(D, 4 * H)(x), nn.Linear(H, 4 * H)(h)])
    cut = [nn.Narrow(1, k * H, H)(z) for k in range(4)]
    return (nn.Sigmoid()(cut[0]), nn.Sigmoid()(cut[1]), nn.Tanh()(cut[2]),
            nn.Sigmoid()(cut[3]))


def hand_step(gates: Callable) -> Callable:
    """The cell equations on top of `gates`: c' = f*c + i*g, h' = o*tanh(c')."""
    def step(h: Node, c: Node, x: Node) -> tuple[Node, Node]:
        i, f, g, o = gates(h, c, x)
        c2 = nn.CAddTable()([nn.CMulTable()([f, c]), nn.CMulTable()([i, g])])
        return nn.CMulTable()([o, nn.Tanh()(c2)]), c2
    return step


def builtin_step(h: Node, c: Node, x: Node) -> tuple[Node, Node]:
    return tuple(gr.cells.LSTM(D, H)([h, c, x]))


def lstm_loop(step: Callable, lengths: bool, reverse: bool) -> gr.gModule:
    """`step` run by a gr.Loop over xs[B, T, D]; outputs (hs, c_final)."""
    h, c, x = gr.Input("B", H, name="h"), gr.Input("B", H, name="c"), gr.Input("B", D, name="x")
    h2, c2 = step(h, c, x)
    cell = gr.gModule([h, c, x], [h2, c2, h2])
    xs = gr.Input("B", "T", D, name="xs")
    ins = [xs] + ([gr.Input("B", dtype="int64", name="lengths")] if lengths else [])
    init = [ops.fill((H,), 0.0, batch_like=xs) for _ in range(2)]
    parts = gr.Loop(cell, n_carry=2, reverse=reverse)(
        init=init, xs=[xs], lengths=ins[1] if lengths else None)
    return gr.gModule(ins, [parts[2], parts[1]])


def recurrent_lstm(lengths: bool) -> gr.gModule:
    """The built-in cell in nn.Recurrent (forward only)."""
    xs = gr.Input("B", "T", D, name="xs")
    ins = [xs] + ([gr.Input("B", dtype="int64", name="lengths")] if lengths else [])
    rec = nn.Recurrent(gr.cells.LSTM(D, H), return_state=True)
    out, _, c = rec(ins if lengths else xs)
    return gr.gModule(ins, [out, c])


FORMS = {
    "separate": lambda lengths, reverse: lstm_loop(hand_step(separate_linears), lengths,
                                                   reverse),
    "narrow": lambda lengths, reverse: lstm_loop(hand_step(narrowed_linear), lengths, reverse),
    "builtin": lambda lengths, reverse: (lstm_loop(builtin_step, lengths, True) if reverse
                                         else recurrent_lstm(lengths)),
}


def optimise(g: Graph) -> Graph:
    for p in PASSES:
        g = p(g)
        verify(g)
    return g


def structure(g: Graph) -> tuple[int, int, tuple, int]:
    """(matmuls before the loop, in the body, body matmul weight shape, FUSED in the body)."""
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    body = loop.attrs["body"]
    mms = [n for n in body.nodes if n.op == Op.MATMUL]
    assert [n for n in body.nodes if n.op in FUSABLE] == []          # no stray elementwise
    assert [n for n in g.nodes if n.op in FUSABLE] == []
    outer = sum(1 for n in g.nodes if n.op == Op.MATMUL)
    weight = mms[0].inputs[1].type.shape if len(mms) == 1 else None
    return outer, len(mms), weight, sum(1 for n in body.nodes if n.op == Op.FUSED)


def arguments(lengths: bool) -> list:
    args = [RNG.standard_normal((B, T, D)).astype(np.float32)]
    return args + ([np.array([T, 3, 1])] if lengths else [])


def close(a: tuple, b: tuple) -> None:
    for x, y in zip(a, b):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("lengths,reverse", [(False, False), (True, False), (True, True)])
def test_same_kernel_structure_and_results(lengths: bool, reverse: bool) -> None:
    shapes = {}
    for name, make in FORMS.items():
        m = make(lengths, reverse)
        args = arguments(lengths)
        g = optimise(m.graph)
        close(gr.interpret(g, *args), gr.interpret(m, *args))
        shapes[name] = structure(g)
    assert set(shapes.values()) == {(1, 1, (4 * H, H), 3)}, shapes


@pytest.mark.parametrize("form", list(FORMS))
def test_after_flatten_params(form: str) -> None:
    m = FORMS[form](True, False)
    flat, table = flatten_params(m.graph)
    g = optimise(flat)
    args = arguments(True)
    close(gr.interpret(g, *args, m.parameters()[0]), gr.interpret(m, *args))
    assert structure(g) == (1, 1, (4 * H, H), 3)
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    (proj,) = [n for n in g.nodes if n.op == Op.MATMUL]
    assert proj.type.shape == ("B", "T", 4 * H)
    assert all(x.op in (Op.VIEW, Op.CONCAT, Op.INPUT) for x in proj.inputs)


def test_the_separate_form_is_merged_before_it_is_hoisted() -> None:
    m = FORMS["separate"](False, False)
    g = merge_matmuls(m.graph)
    (loop,) = [n for n in g.nodes if n.op == Op.LOOP]
    assert sum(1 for n in loop.attrs["body"].nodes if n.op == Op.MATMUL) == 2
    g = hoist_invariants(g)
    concats = [n for n in g.nodes if n.op == Op.CONCAT]
    assert sorted(n.type.shape for n in concats) == [(4 * H,), (4 * H,), (4 * H, H),
                                                     (4 * H, D)]


@pytest.mark.parametrize("form", list(FORMS))
def test_through_the_driver(form: str) -> None:
    m = FORMS[form](True, True)
    args = arguments(True)
    g, table = prepare(m.graph, [TensorType(a.shape, "int64" if a.dtype.kind == "i"
                                            else "float32") for a in args])
    assert table == m.table
    close(gr.interpret(g, *args, m.parameters()[0]), gr.interpret(m, *args))
    assert structure(g) == (1, 1, (4 * H, H), 3)


def kernel_bodies(llvm_ir: str) -> list[tuple[str, str]]:
    """(kernel kind and ops, its body with value names left out), in the module's order."""
    found = re.findall(r'define internal void @"k\d+_([^"]+)"[^\n]*\n(.*?)\n}', llvm_ir, re.S)
    return [(name, re.sub(r'%"?[\w.]+"?|@"?k\d+_[\w]*"?', "_", body)) for name, body in found]


@pytest.mark.parametrize("d", [128, 24], ids=["joined", "hoisted"])
def test_the_bench_hand_lstm_compiles_to_the_builtin_kernels(d: int) -> None:
    # every kernel the same code; in training the one that assembles the flat gradient
    # differs only in the offsets of each model's own parameter order
    h = 16
    built, hand = build_layer("lstm", d, h), build_hand_lstm(d, h)
    x, y = np.zeros((3, 4, d), np.float32), np.zeros((3, 4, h), np.float32)
    fwd = [kernel_bodies(gr.compile(m).llvm_ir(x)) for m in (built, hand)]
    assert fwd[0] == fwd[1] and any("gemm" in k for k, _ in fwd[0])
    train = [kernel_bodies(gr.compile(m, loss=gr.MSECriterion(), train=True).llvm_ir(x, y))
             for m in (built, hand)]
    assert [k for k, _ in train[0]] == [k for k, _ in train[1]]
    assert [a[0] for a, b in zip(*train) if a != b] == ["map_assemble"]
