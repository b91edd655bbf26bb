"""prepare_training: the differentiated, fully optimised graph against the plain gradient,
the float64 oracle of graphrnn.gradcheck and finite differences; and its loop structure."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler import OPTIMISATIONS, Trace, prepare_training
from graphrnn.compiler.passes.fuse_elementwise import fuse_elementwise
from graphrnn.gradcheck import gradients
from graphrnn.interpret import array_type, interpret
from graphrnn.ir import Graph, Node, Op
from graphrnn.close import close_graph

RNG = np.random.default_rng(5)
B, T, D, H, C = 3, 5, 6, 5, 7


def loss_model(cell: str, *, layers: int = 1, bidirectional: bool = False,
               lengths: bool = False, loss: str = "mse", relu: bool = False
               ) -> tuple[gr.gModule, list[np.ndarray]]:
    """Recurrent(cell) -> Linear -> loss, and arguments for it."""
    x = gr.Input("B", "T", D, name="x")
    ins, args = [x], [RNG.standard_normal((B, T, D)).astype(np.float32)]
    if lengths:
        ins.append(gr.Input("B", dtype="int64", name="lengths"))
        args.append(np.array([T, 2, 4]))
    kw = {"nonlinearity": "relu"} if relu else {}
    rec = nn.Recurrent(getattr(gr.cells, cell)(D, H, **kw), num_layers=layers,
                       bidirectional=bidirectional)(ins if lengths else x)
    width = C if loss == "ce" else 2
    pred = nn.Linear(H * (2 if bidirectional else 1), width)(rec)
    if loss == "ce":
        target = gr.Input("B", "T", dtype="int64", name="target")
        args.append(RNG.integers(0, C, (B, T)))
        out = gr.CrossEntropyCriterion()([pred, target])
    else:
        target = gr.Input("B", "T", width, name="target")
        args.append(RNG.standard_normal((B, T, width)).astype(np.float32))
        out = gr.MSECriterion()([pred, target])
    return gr.gModule(ins + [target], [out]), args


def run(g: Graph, model: gr.gModule, args: list, flat: np.ndarray | None = None,
        dtype: type = np.float32) -> tuple[float, np.ndarray]:
    """(loss, flat gradient) of a training graph with a scalar loss."""
    flat = model.parameters()[0] if flat is None else flat
    loss, grad = interpret(g, *args, flat, np.ones((), dtype), dtype=dtype)
    return float(loss), grad


def oracle(model: gr.gModule, args: list) -> np.ndarray:
    """The float64 gradient of graphrnn.gradcheck, laid out as the flat vector."""
    _, grads, _ = gradients(model, *args)
    flat = np.zeros(model.table.size)
    views = model.table.views(flat)
    for key, g in grads.items():
        views[key][...] = g
    return flat


def types(args: list) -> list:
    return [array_type(np.asarray(a)) for a in args]


CASES = {
    "rnn": ("RNN", {}, {}),
    "rnn-relu-truncated": ("RNN", {"relu": True}, {"truncate": 2}),
    "lstm": ("LSTM", {}, {}),
    "lstm-2-bi-ce": ("LSTM", {"layers": 2, "bidirectional": True, "loss": "ce"}, {}),
    "lstm-lengths-truncated": ("LSTM", {"lengths": True}, {"truncate": 3}),
    "gru-2-lengths": ("GRU", {"layers": 2, "lengths": True}, {}),
    "gru-bi-ce-truncated": ("GRU", {"bidirectional": True, "loss": "ce"}, {"truncate": 2}),
}


@pytest.mark.parametrize("case", CASES)
def test_same_loss_and_flat_gradient_as_the_plain_gradient(case: str) -> None:
    cell, model_kw, train_kw = CASES[case]
    model, args = loss_model(cell, **model_kw)
    trace = Trace()
    g, table, names = prepare_training(model.graph, types(args), trace=trace, **train_kw)
    plain, _, plain_names = prepare_training(model.graph, types(args), optimize=False,
                                             **train_kw)
    assert table == model.table and names == plain_names == (("input", len(args)),)
    # truncated BPTT unrolls after differentiation: unrolled code has no carries to cut
    front = ["shapes", "tie", "flatten", "grad", "unroll"] if "truncate" in train_kw else \
        ["shapes", "reroll", "unroll", "tie", "flatten", "grad"]
    assert [r.name for r in trace] == front + [name for name, _ in OPTIMISATIONS]
    assert [x.name for x in g.inputs][len(args):] == ["params", "d_" + plain.outputs[0].name]
    loss, grad = run(g, model, args)
    want_loss, want_grad = run(plain, model, args)
    assert loss == pytest.approx(want_loss, rel=1e-6)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-4, atol=2e-6)
    if "truncate" not in train_kw:
        np.testing.assert_allclose(grad, oracle(model, args), rtol=2e-4, atol=2e-6)


@pytest.mark.parametrize("case", ["lstm", "gru-2-lengths"])
def test_flat_gradient_matches_finite_differences(case: str) -> None:
    """Central differences of the prepared graph itself, in float64, on sampled entries."""
    cell, model_kw, _ = CASES[case]
    model, args = loss_model(cell, **model_kw)
    g, table, _ = prepare_training(model.graph, types(args))
    flat = model.parameters()[0].astype(np.float64)
    _, grad = run(g, model, args, flat, np.float64)
    eps = 1e-6
    for key, slot in table.slots.items():
        for i in RNG.choice(slot.size, min(3, slot.size), replace=False):
            k = slot.offset + int(i)
            up, down = flat.copy(), flat.copy()
            up[k] += eps
            down[k] -= eps
            fd = (run(g, model, args, up, np.float64)[0]
                  - run(g, model, args, down, np.float64)[0]) / (2 * eps)
            assert grad[k] == pytest.approx(fd, rel=1e-5, abs=1e-8), (key, int(i))


def loops(g: Graph) -> list[Node]:
    return [n for n in g.nodes if n.op == Op.LOOP]


def count(g: Graph, op: Op) -> int:
    return sum(1 for n in g.nodes if n.op == op)


def test_lstm_backward_loop_keeps_only_the_state_gradient_product() -> None:
    model, args = loss_model("LSTM")
    g, table, _ = prepare_training(model.graph, types(args))
    forward, backward = sorted(loops(g), key=lambda n: n.attrs["reverse"])
    assert backward.attrs["reverse"] and backward.attrs["n_carry"] == 2      # d_h, d_c only
    body = backward.attrs["body"]
    (dh,) = [n for n in body.nodes if n.op == Op.MATMUL]                     # d_gates @ W_hh
    assert dh.inputs[1].type.shape == (4 * H, H) and not dh.attrs["transpose_b"]
    assert count(body, Op.CONTRACT) == count(body, Op.ASSEMBLE) == count(body, Op.SUM) == 0
    # d_gates: the four gate gradients side by side, not four padded copies summed
    assert dh.inputs[0].op == Op.CONCAT and count(body, Op.PAD) == 0
    assert [x.op for x in dh.inputs[0].inputs] == [Op.FUSED] * 4
    assert count(forward.attrs["body"], Op.MATMUL) == 1                      # h @ W_hh
    # the input projection runs over the whole sequence once; h W_hh is not recomputed:
    # the forward loop stacks its four gate activations for the backward loop
    big = [n.inputs[1].type.shape for n in g.nodes if n.op == Op.MATMUL
           and n.type.shape == (B, T, 4 * H)]
    assert big == [(4 * H, D)]                                              # x W_ih
    assert forward.attrs["saved"] == 4
    gates = backward.inputs[-4:]
    assert all(x.op == Op.GET and x.inputs[0] is forward and x.type.shape == (B, T, H)
               for x in gates)
    computed = {m.op for n in body.nodes
                for m in (n.attrs["body"].nodes if n.op == Op.FUSED else (n,))}
    assert Op.SIGMOID not in computed                           # the gates are read, not made
    # weight gradients: products over all B*T rows after the loop, W_hh's, W_ih's and the
    # bias's as one (the gate gradients packed once): column slices of d_gates^T [h, x, 1]
    contracts = [n for n in g.nodes if n.op == Op.CONTRACT]
    assert sorted(n.type.shape for n in contracts) == sorted([(2, H), (4 * H, H + D + 1)])
    (seq,) = [n for n in contracts if n.type.shape[0] == 4 * H]
    assert all(x.type.shape[:2] == (B, T) for x in seq.inputs)
    assert seq.inputs[0].op == Op.GET and seq.inputs[0].inputs[0] is backward
    assert seq.inputs[1].op == Op.CONCAT
    assert sorted(n.type.shape for n in g.nodes if n.op == Op.SLICE and n.inputs[0] is seq) \
        == sorted([(4 * H, H), (4 * H, D), (4 * H, 1)])
    # the flat gradient is one ASSEMBLE of every parameter's part
    grad = g.outputs[1]
    assert grad.op == Op.ASSEMBLE
    assert sorted(set(grad.attrs["offsets"])) == sorted(s.offset for s in table.slots.values())


def test_input_gradients_on_request() -> None:
    model, args = loss_model("GRU", bidirectional=True)
    g, _, names = prepare_training(model.graph, types(args), input_grads=True)
    plain, _, _ = prepare_training(model.graph, types(args), input_grads=True, optimize=False)
    assert names == (("input", 0), ("input", 1), ("input", 2))            # x, target, params
    flat = model.parameters()[0]
    got = interpret(g, *args, flat, np.float32(1.0))
    want = interpret(plain, *args, flat, np.float32(1.0))
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-4, atol=2e-6)
    # dx of the whole sequence is one product after each backward loop
    dx = [n for n in g.nodes if n.op == Op.MATMUL and n.type.shape == (B, T, D)]
    assert len(dx) == 2
    assert all(count(n.attrs["body"], Op.MATMUL) == 1 for n in loops(g))


def test_nngraph_toy_rnn_trains_through_the_driver() -> None:
    """The JoinTable step of the nngraph README: one product per step each way."""
    h, x = gr.Input("B", 8), gr.Input("B", 1)
    step = gr.gModule([h, x], [nn.Tanh()(nn.Linear(9, 8)(nn.JoinTable(1)([h, x])))])
    xs, target = gr.Input("B", "T", 1, name="xs"), gr.Input("B", 1, name="target")
    (last,) = gr.Loop(step, n_carry=1)(init=[gr.ops.fill((8,), 0.0, batch_like=xs)], xs=[xs])
    model = gr.gModule([xs, target], [gr.MSECriterion()([nn.Linear(8, 1)(last), target])])
    args = [RNG.standard_normal((B, T, 1)).astype(np.float32),
            RNG.standard_normal((B, 1)).astype(np.float32)]
    g, _, _ = prepare_training(model.graph, types(args))
    plain, _, _ = prepare_training(model.graph, types(args), optimize=False)
    loss, grad = run(g, model, args)
    assert loss == pytest.approx(run(plain, model, args)[0], rel=1e-6)
    np.testing.assert_allclose(grad, oracle(model, args), rtol=2e-4, atol=2e-6)
    for loop in loops(g):
        assert count(loop.attrs["body"], Op.MATMUL) == 1
        assert count(loop.attrs["body"], Op.CONTRACT) == 0


@pytest.mark.parametrize("befores,joined", [((0, 3, 6), True), ((0, 3, 7), False),
                                            ((0, 2, 6), False)])
def test_fuse_joins_padded_pieces_only_when_they_tile_the_axis(befores: tuple,
                                                               joined: bool) -> None:
    """The pad + add form of a gate-sliced cell's gradient, in any order of the terms."""
    width = befores[-1] + 3
    xs = [gr.Input("B", 3, name=f"x{i}") for i in range(3)]
    pads = [gr.ops.pad(gr.ops.tanh(x), 1, b, width - b - 3) for x, b in zip(xs, befores)]
    total = gr.ops.add(gr.ops.add(pads[2], pads[0]), pads[1])
    w = gr.ops.input_((width, 2), name="w")
    g = close_graph(xs + [w], [gr.ops.matmul(total, w)])
    fused = fuse_elementwise(g)
    args = [RNG.standard_normal((2, 3)).astype(np.float32) for _ in xs] + [
        RNG.standard_normal((width, 2)).astype(np.float32)]
    np.testing.assert_allclose(interpret(fused, *args), interpret(g, *args), rtol=1e-6)
    assert (count(fused, Op.CONCAT) == 1) == joined
    assert count(fused, Op.PAD) == (0 if joined else 3)
