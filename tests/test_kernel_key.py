"""Kernel keys: twins found before they are emitted, never two codes under one key."""
from __future__ import annotations

import numpy as np
import pytest
from llvmlite import ir

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.codegen import kernel_twins
from graphrnn.compiler.codegen.kernel_key import KeyMemo, kernel_key
from graphrnn.compiler.codegen.strides import Layout, Lin
from graphrnn.ir import Graph, LoweringError, Node, Op, TensorType
from graphrnn.runtime.cache import KernelCache

F = TensorType((4, 3))


def fused(name: str, scale: float) -> Node:
    """A FUSED node y = x * scale + x over a body graph of its own."""
    x = Node(Op.INPUT, (), {"index": 0}, F, name=f"{name}_in")
    c = Node(Op.CONST, (), {"value": np.float32(scale)}, TensorType(()), name=f"{name}_c")
    m = Node(Op.MUL, (x, c), {}, F, name=f"{name}_mul")
    y = Node(Op.ADD, (m, x), {}, F, name=f"{name}_add")
    body = Graph((x,), (y,), (x, c, m, y))
    outer = Node(Op.INPUT, (), {"index": 0}, F, name=f"{name}_x")
    return Node(Op.FUSED, (outer,), {"body": body}, F, name=name)


def key_of(rule, node: Node, layouts=(Layout.contiguous((4, 3)),) * 2):
    return kernel_key(rule, node, list(layouts), 0, (), KeyMemo())


def make_rule(node: Node, flag: bool):
    def rule(em, nd, out, ins):
        return (node, flag, em, nd, out, ins)
    return rule


def test_equal_structure_under_other_names_gives_one_key() -> None:
    a, b = fused("a", 2.0), fused("b", 2.0)
    assert key_of(make_rule(a, True), a) == key_of(make_rule(b, True), b)
    assert key_of(make_rule(a, True), a) is not None


def test_what_the_emitter_is_handed_changes_the_key() -> None:
    a = fused("a", 2.0)
    base = key_of(make_rule(a, True), a)
    assert key_of(make_rule(fused("c", 3.0), True), a) != base   # a constant in a body
    assert key_of(make_rule(a, False), a) != base                 # a value in the closure
    assert key_of(make_rule(a, 1), a) != base                     # 1 is not True
    assert key_of(make_rule(-0.0, True), a) != key_of(make_rule(0.0, True), a)
    assert key_of(make_rule(float("nan"), True), a) == key_of(make_rule(float("nan"), True), a)
    assert key_of(make_rule(a, True), a, (Layout.contiguous((8, 3)),) * 2) != base
    rows = Layout.contiguous((3,)).broadcast_to((Lin(4), Lin(3)))   # other strides
    assert key_of(make_rule(a, True), a, (Layout.contiguous((4, 3)), rows)) != base
    assert kernel_key(make_rule(a, True), a, [Layout.contiguous((4, 3))] * 2, 1, (),
                      KeyMemo()) != base                          # a scalar argument more


def test_values_the_key_cannot_describe_give_no_key() -> None:
    a = fused("a", 2.0)
    fn = ir.Function(ir.Module(), ir.FunctionType(ir.VoidType(), [ir.IntType(64)]), "f")
    assert key_of(make_rule(fn.args[0], True), a) is None         # a value of another function
    assert key_of(make_rule({1, 2}, True), a) is None              # a set: its order is hashing's
    assert key_of(make_rule(object(), True), a) is None


def bidirectional() -> tuple[gr.gModule, np.ndarray]:
    x = gr.Input("B", "T", 5, name="x")
    seq = nn.Recurrent(gr.cells.LSTM(5, 6), bidirectional=True)(x)
    x0 = np.random.default_rng(0).standard_normal((3, 4, 5)).astype(np.float32)
    return gr.gModule([x], [seq]), x0


def test_a_layers_two_directions_are_emitted_once(cache, monkeypatch) -> None:
    monkeypatch.setattr(kernel_twins, "CHECK_KEYS", False)
    emitted, asked = [], []
    original = kernel_twins.KernelTwins.function

    def counted(self, emit, *args):
        asked.append(1)
        return original(self, lambda: emitted.append(1) or emit(), *args)
    monkeypatch.setattr(kernel_twins.KernelTwins, "function", counted)
    model, x = bidirectional()
    got = gr.compile(model, cache=cache)(x)
    np.testing.assert_allclose(got, model.forward(x), rtol=1e-4, atol=1e-5)
    assert len(emitted) < len(asked)


def test_one_key_over_two_codes_is_an_error(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(kernel_twins, "CHECK_KEYS", True)
    monkeypatch.setattr(kernel_twins, "kernel_key", lambda *args: "one key")
    model, x = bidirectional()
    with pytest.raises(LoweringError, match="one kernel key but different code"):
        gr.compile(model, cache=KernelCache(tmp_path))(x)     # a cache that has no program
