"""Compile work grows at most linearly with the graph: counted, never timed.

A hand-unrolled chain that cannot be re-rolled (a new Linear at every step) at T, 2T and 4T:
the nodes every pass returns, the nodes all topological sorts of the pipeline visit, the
nodes made and copied (`Node.replace`) from the model to the lowering, the kernel functions
and the size of the LLVM IR handed to the optimiser. The same chain with
tied steps is re-rolled: then the graphs after re-rolling, the kernels and the IR do not
grow with T.
"""
from __future__ import annotations

import pytest

import graphrnn as gr
from graphrnn import ir, nn
from graphrnn.compiler.pipeline import Trace, compile_graph, compile_training
from graphrnn.ir import TensorType
from graphrnn.losses import loss_graph

STEPS = (6, 12, 24)


def chain(steps: int, tied: bool) -> gr.gModule:
    x, h0 = gr.Input("B", steps, 2, name="x"), gr.Input("B", 8, name="h0")
    xs = nn.SplitTable(1)(x)
    shared = nn.Linear(10, 8)
    h = h0
    for t in range(steps):
        lin = shared if tied else nn.Linear(10, 8)
        h = nn.Tanh()(lin(nn.JoinTable(1)([h, xs[t]])))
    return gr.gModule([x, h0], [nn.Linear(8, 1)(h)])


def work(steps: int, tied: bool, train: bool, monkeypatch: pytest.MonkeyPatch) -> dict:
    """What one compile of the chain does, counted."""
    visited = [0]
    reading_order = ir._reading_order

    def counting(order: list) -> list:
        visited[0] += len(order)
        return reading_order(order)
    monkeypatch.setattr(ir, "_reading_order", counting)
    replaced = [0]
    replace = ir.Node.replace

    def counting_replace(self: ir.Node, **changes: object) -> ir.Node:
        replaced[0] += 1
        return replace(self, **changes)
    monkeypatch.setattr(ir.Node, "replace", counting_replace)
    model = chain(steps, tied)
    made = next(ir._creation_order)
    types = [TensorType((3, steps, 2)), TensorType((3, 8))]
    trace = Trace()
    if train:
        graph = loss_graph(model, gr.MSECriterion())
        exe = compile_training(graph, types + [TensorType((3, 1))], trace=trace)
    else:
        exe = compile_graph(model.graph, types, trace=trace)
    made = next(ir._creation_order) - made
    monkeypatch.setattr(ir, "_reading_order", reading_order)
    monkeypatch.setattr(ir.Node, "replace", replace)
    return {"toposort visits": visited[0], "nodes made": made, "node copies": replaced[0],
            "largest pass output": max(sum(1 for _ in r.graph.walk())
                                       for r in trace if r.graph is not None),
            "largest pass output after reroll": max(
                (sum(1 for _ in r.graph.walk()) for r in _after(trace, "reroll")), default=0),
            "kernel functions": exe.llvm_ir.count("define "),
            "LLVM IR chars": len(exe.llvm_ir)}


def _after(trace: Trace, name: str) -> list:
    names = [r.name for r in trace]
    return [r for r in list(trace)[names.index(name) + 1:] if r.graph is not None]


@pytest.mark.parametrize("train", [False, True], ids=["forward", "training"])
def test_unrolled_chain_compile_work_is_linear(train: bool, monkeypatch) -> None:
    small, mid, big = (work(t, False, train, monkeypatch) for t in STEPS)
    for key in small:
        # work = a + b*T: doubling T at most doubles the growth, and never more than doubles
        assert big[key] - mid[key] <= 2.2 * (mid[key] - small[key]) + 0.05 * small[key], key
        assert big[key] <= 2.2 * mid[key], key
    assert big["kernel functions"] == mid["kernel functions"]     # one copy per distinct kernel


@pytest.mark.parametrize("train", [False, True], ids=["forward", "training"])
def test_rerolled_chain_compile_work_does_not_grow_with_t(train: bool, monkeypatch) -> None:
    small, big = (work(t, True, train, monkeypatch) for t in (STEPS[0], STEPS[-1]))
    assert big["kernel functions"] == small["kernel functions"]
    assert big["LLVM IR chars"] <= 1.02 * small["LLVM IR chars"]
    # the hand-written graph itself is 4x longer; every graph after re-rolling is not
    assert big["largest pass output after reroll"] == small["largest pass output after reroll"]
