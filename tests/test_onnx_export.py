"""graphrnn -> ONNX -> ONNX Runtime equals graphrnn: built-in cells as ONNX RNN/LSTM/GRU nodes,
user-written loops as Scan, per-row lengths, nngraph graphs; dynamic batch and time axes."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import main as cli_main

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

D, H = 3, 5
RNG = np.random.default_rng(11)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def run_onnx(path, *inputs) -> list[np.ndarray]:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(None, {i.name: x for i, x in zip(sess.get_inputs(), inputs)})


def roundtrip(model, tmp_path, *batches) -> object:
    """Export once; every batch of inputs (any B, any T) gives graphrnn's outputs."""
    path = tmp_path / "model.onnx"
    proto = gr.onnx.export(model, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for inputs in batches:
        want = model(*inputs)
        want = want if isinstance(want, tuple) else (want,)
        got = run_onnx(path, *inputs)
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)
    return proto


def op_types(proto_or_graph) -> list[str]:
    """Every node's op type, those inside subgraphs (If branches, Scan bodies) too."""
    graph = getattr(proto_or_graph, "graph", proto_or_graph)
    kinds = []
    for n in graph.node:
        kinds.append(n.op_type)
        for a in n.attribute:
            if a.type == onnx.AttributeProto.GRAPH:
                kinds += op_types(a.g)
    return kinds


CELLS = {
    "rnn_tanh": lambda: gr.cells.RNN(D, H),
    "rnn_relu": lambda: gr.cells.RNN(D, H, nonlinearity="relu", bias=False),
    "lstm": lambda: gr.cells.LSTM(D, H),
    "lstm_nobias": lambda: gr.cells.LSTM(D, H, bias=False),
    "gru": lambda: gr.cells.GRU(D, H),
    "gru_nobias": lambda: gr.cells.GRU(D, H, bias=False),
}
ONNX_OP = {"rnn": "RNN", "lstm": "LSTM", "gru": "GRU"}


@pytest.mark.parametrize("cell", list(CELLS))
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_builtin_layers_become_onnx_rnn_nodes(cell, layers, bidirectional, tmp_path):
    rec = nn.Recurrent(CELLS[cell](), num_layers=layers, bidirectional=bidirectional,
                       return_state="stacked")
    x = gr.Input("B", "T", D, name="x")
    out, state = rec(x)
    states = list(state) if isinstance(state, tuple) else [state]
    model = gr.gModule([x], [nn.Linear(rec.dirs * H, 2)(out)] + states)
    proto = roundtrip(model, tmp_path, [randn(4, 6, D)], [randn(1, 9, D)], [randn(3, 1, D)])
    kinds = op_types(proto)
    assert kinds.count(ONNX_OP[cell.split("_")[0]]) == layers * rec.dirs
    assert "Scan" not in kinds
    dims = [d.dim_param or d.dim_value for d in proto.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["B", "T", D]


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh"])
def test_lengths_become_sequence_lens(cell, tmp_path):
    rec = nn.Recurrent(CELLS[cell](), num_layers=2, bidirectional=True, return_state=True)
    x, lengths = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="lengths")
    model = gr.gModule([x, lengths], list(rec([x, lengths])))
    roundtrip(model, tmp_path, [randn(4, 7, D), np.array([7, 3, 0, 5])],
              [randn(2, 3, D), np.array([2, 3])])
    bare = gr.onnx.to_onnx(model, guard_empty=False)          # the nodes at top level
    nodes = [n for n in bare.graph.node if n.op_type == ONNX_OP[cell.split("_")[0]]]
    assert len(nodes) == 4 and all(n.input[4] for n in nodes)  # sequence_lens is given
    path = tmp_path / "bare.onnx"
    onnx.save(bare, str(path))
    x_val, len_val = randn(3, 5, D), np.array([5, 1, 3])
    for got, want in zip(run_onnx(path, x_val, len_val), model(x_val, len_val)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_from_torch_models_export(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    m = torch.nn.LSTM(D, H, num_layers=2, bidirectional=True, batch_first=True)
    model = gr.from_torch(m)
    x = randn(3, 5, D)
    roundtrip(model, tmp_path, [x])
    with torch.no_grad():
        out, (h, c) = m(torch.tensor(x))
    got = run_onnx(tmp_path / "model.onnx", x)
    for g, w in zip(got, (out, h, c)):
        np.testing.assert_allclose(g, w.numpy(), rtol=1e-5, atol=1e-5)


def test_from_torch_with_lengths_and_initial_state_exports(tmp_path):
    torch = pytest.importorskip("torch")
    torch.manual_seed(1)
    model = gr.from_torch(torch.nn.GRU(D, H, num_layers=2, bidirectional=True),
                          lengths=True, initial_state=True)
    roundtrip(model, tmp_path, [randn(3, 5, D), np.array([5, 2, 4]), randn(4, 3, H)],
              [randn(1, 2, D), np.array([1]), randn(4, 1, H)])


def test_lstm_projection_goes_through_scan(tmp_path):
    rec = nn.Recurrent(gr.cells.LSTM(D, H, proj_size=2), bidirectional=True, return_state=True)
    x, lengths = gr.Input("B", "T", D), gr.Input("B", dtype="int64")
    model = gr.gModule([x, lengths], list(rec([x, lengths])))
    proto = roundtrip(model, tmp_path, [randn(3, 6, D), np.array([6, 2, 4])])
    assert op_types(proto).count("Scan") == 2


def user_cell_model():
    """A hand-written cell (not a built-in): h' = tanh(W [h, x] + b) * softmax gate, with a
    loop-invariant input, run backwards with per-row lengths, carrying a step counter."""
    h, x, k, ctx = (gr.Input("B", 4, name="h"), gr.Input("B", D, name="x"),
                    gr.Input("B", 1, name="k"), gr.Input("B", 4, name="ctx"))
    z = nn.Linear(D + 4, 4)(nn.JoinTable(1)([h, x]))
    gate = nn.SoftMax(-1)(nn.CAddTable()([z, ctx]))
    h_next = nn.CMulTable()([nn.Tanh()(z), gate])
    k_next = nn.AddConstant(1.0)(k)
    body = gr.gModule([ctx, h, k, x], [h_next, k_next, nn.Sigmoid()(h_next)], name="cell")
    xs, lengths = gr.Input("B", "T", D, name="xs"), gr.Input("B", dtype="int64", name="len")
    c = gr.Input("B", 4, name="context")
    init = [gr.ops.fill((4,), 0.0, batch_like=xs), gr.ops.fill((1,), 0.0, batch_like=xs)]
    h_fin, k_fin, ys = gr.Loop(body, n_carry=2, n_consts=1, reverse=True)(
        consts=[c], init=init, xs=[xs], lengths=lengths)
    return gr.gModule([xs, lengths, c], [h_fin, k_fin, ys], name="user_loop")


def test_user_written_cell_becomes_scan(tmp_path):
    model = user_cell_model()
    proto = roundtrip(model, tmp_path, [randn(4, 6, D), np.array([6, 0, 2, 5]), randn(4, 4)],
                      [randn(1, 3, D), np.array([3]), randn(1, 4)])
    assert op_types(proto).count("Scan") == 1


def test_nngraph_toy_and_ops(tmp_path):
    """The nngraph tutorial's hand-unrolled RNN, plus lookup, reductions, slices, reshape."""
    x, h0 = gr.Input("B", 3, 1, name="x"), gr.Input("B", 26, name="h0")
    xs = nn.SplitTable(1)(x)
    step = nn.Linear(27, 26)
    h = h0
    for t in range(3):
        h = nn.Tanh()(step(nn.JoinTable(1)([h, xs[t]])))
    ids = gr.Input("B", "T", dtype="int64", name="ids")
    emb = nn.LookupTable(7, 4)(ids)                                 # [B, T, 4]
    pooled = gr.ops.mean(emb, axes=[1])                             # [B, 4]
    total = gr.ops.sum_(nn.Narrow(1, 1, 2)(pooled), axes=[1], keepdims=True)
    flat = nn.Reshape(26)(nn.Reshape(2, 13)(h))
    probs = nn.LogSoftMax()(nn.Linear(30, 5)(nn.JoinTable(1)([flat, pooled])))
    model = gr.gModule([x, h0, ids], [nn.Linear(26, 1)(h), total, probs], name="toy_rnn")
    roundtrip(model, tmp_path, [randn(4, 3, 1), randn(4, 26), RNG.integers(0, 7, (4, 5))],
              [randn(2, 3, 1), randn(2, 26), RNG.integers(0, 7, (2, 1))])


def test_ops_without_counterpart_and_untyped_inputs_are_named(tmp_path):
    x, u = gr.Input("B", 3, name="x"), gr.Input("B", name="u")
    model = gr.gModule([x, u], [gr.ops.sample(x, u, gr.ops.const(1.0))])
    with pytest.raises(gr.LoweringError, match=r"sample.*test_onnx_export.py:\d+.*the op "
                                               r"'sample' has no ONNX counterpart"):
        gr.onnx.export(model, tmp_path / "m.onnx")
    y = nn.Identity()()
    with pytest.raises(gr.GraphError, match="no declared shape"):
        gr.onnx.export(gr.gModule([y], [nn.Tanh()(y)]), tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()


def test_command_line_export_of_a_saved_model(tmp_path, capsys):
    rec = nn.Recurrent(gr.cells.GRU(D, H), num_layers=2)
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [rec(x)], name="reader")
    gr.save(model, tmp_path / "reader.grnn")
    assert cli_main(["export", str(tmp_path / "reader.grnn"), "-o",
                     str(tmp_path / "reader.onnx")]) == 0
    assert "GRU" in capsys.readouterr().out                # recognised from the file too
    xs = randn(2, 4, D)
    np.testing.assert_allclose(run_onnx(tmp_path / "reader.onnx", xs)[0], model(xs),
                               rtol=1e-5, atol=1e-5)
    u = gr.Input("B", name="u")
    bad = gr.gModule([x, u], [gr.ops.sample(gr.ops.index(x, 1, 0), u, gr.ops.const(0.0))],
                     name="bad")
    gr.save(bad, tmp_path / "bad.grnn")
    assert cli_main(["export", str(tmp_path / "bad.grnn"), "-o", str(tmp_path / "b.onnx")]) == 2
    assert "no ONNX counterpart" in capsys.readouterr().err


def test_the_core_imports_without_onnx_or_torch():
    code = ("import sys; import graphrnn\n"
            "print([m for m in ('onnx', 'onnxruntime', 'torch') if m in sys.modules])\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    code = ("import sys; sys.modules['onnx'] = None; import graphrnn as gr\n"
            "x = gr.Input('B', 2); m = gr.gModule([x], [gr.nn.Tanh()(x)])\n"
            "try:\n    gr.onnx.export(m, 'never.onnx')\nexcept ImportError as e:\n"
            "    print('ImportError', e)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert "ImportError" in out and "pip install" in out


def test_the_ops_passes_introduce_have_counterparts_too(tmp_path):
    """where, step, expand, pad, one-hot, contract, scatter and seq_mask (what gradients and
    masks are made of) export as well."""
    ops = gr.ops
    x, ids = gr.Input("B", "T", 3, name="x"), gr.Input("B", "T", dtype="int64", name="ids")
    lengths = gr.Input("B", dtype="int64", name="lengths")
    gated = ops.where(ops.step(x), x, 0.5)
    spread = ops.expand(ops.mean(x, axes=[1], keepdims=True), x)
    outs = [gated, spread, ops.pad(x, 2, 1, 2), ops.onehot(ids, 5),
            ops.contract(x, ops.onehot(ids, 4)), ops.contract(x, spread, transpose_out=True),
            ops.scatter(x, ids, 5), ops.seq_mask(x, lengths, every=2), ops.seq_mask(x)]
    model = gr.gModule([x, ids, lengths], outs)
    roundtrip(model, tmp_path, [randn(4, 6, 3), RNG.integers(0, 4, (4, 6)), np.array([6, 0, 3, 5])],
              [randn(1, 2, 3), RNG.integers(0, 4, (1, 2)), np.array([1])])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn_tanh", "lstm_proj"])
def test_empty_batches_and_sequences(cell, tmp_path):
    """ONNX Runtime's GRU, LSTM and Scan abort on them: the export answers them itself."""
    made = gr.cells.LSTM(D, H, proj_size=2) if cell == "lstm_proj" else CELLS[cell]()
    rec = nn.Recurrent(made, bidirectional=True, return_state=True)
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], list(rec(x)))
    roundtrip(model, tmp_path, [randn(0, 3, D)], [randn(2, 0, D)], [randn(0, 0, D)],
              [randn(2, 3, D)])
