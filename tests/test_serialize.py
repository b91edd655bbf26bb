"""save/load: bit-identical round trips, and damaged or foreign files refused with clear errors."""
from __future__ import annotations

import io
import json
import os
import pickle
import stat
import zipfile

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import codec, nn, ops
from graphrnn.ir import GraphError, Op
from graphrnn.serialize import ModelFileError
from graphrnn.close import close_graph

RNG = np.random.default_rng(11)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- models

def toy_step() -> gr.gModule:
    """The nngraph toy: h' = tanh(Linear(9, 8)([h, x])), inputs untyped."""
    h, x = nn.Identity()(), nn.Identity()()
    return gr.gModule([h, x], [nn.Tanh()(nn.Linear(9, 8)(nn.JoinTable(1)([h, x])))])


def toy_rnn() -> gr.gModule:
    h, x = nn.Identity()(), nn.Identity()()
    h_next = nn.Tanh()(nn.Linear(9, 8)(nn.JoinTable(1)([h, x])))
    step = gr.gModule([h, x], [h_next, h_next])
    xs = gr.Input("B", "T", 1)
    _, hs = gr.Loop(step, n_carry=1)(init=[ops.fill((8,), batch_like=xs)], xs=[xs])
    return gr.gModule([xs], [hs], name="toy_rnn")


def bilstm() -> gr.gModule:
    x, lengths = gr.Input("B", "T", 3), gr.Input("B", dtype="int64")
    h = nn.Recurrent(gr.cells.LSTM(3, 4), num_layers=2, bidirectional=True)([x, lengths])
    return gr.gModule([x, lengths], [nn.Linear(8, 2)(h)], name="bilstm")


def nested() -> gr.gModule:
    """A loop over sequences of sequences, with consts, lengths, int and float CONSTs, a
    FILL of -inf, a lookup, a parameter shared inside and outside the loops, and a FUSED node."""
    proj = nn.Linear(4, 4, name="proj")
    g, h, x = gr.Input("B", 4), gr.Input("B", 4), gr.Input("B", 2)
    scale = ops.const(np.array([0.5, -1.0, 2.0, 0.25], np.float32))
    inner_h = nn.Tanh()(nn.CAddTable()([nn.Linear(6, 4)(nn.JoinTable(1)([h, x])),
                                        ops.mul(g, scale), proj(h)]))
    inner = gr.gModule([g, h, x], [inner_h, inner_h])
    ho, xo = gr.Input("B", 4), gr.Input("B", 3, 2)
    h_in, _ = gr.Loop(inner, n_carry=1, n_consts=1)(
        consts=[ho], init=[ops.fill((4,), batch_like=xo)], xs=[xo])
    outer = gr.gModule([ho, xo], [h_in, ops.relu(h_in)])
    xs, lengths = gr.Input("B", "T", 3, 2), gr.Input("B", dtype="int64")
    _, ys = gr.Loop(outer, n_carry=1)(init=[ops.fill((4,), 0.1, batch_like=xs)], xs=[xs],
                                      lengths=lengths)
    emb = nn.LookupTable(5, 4)(ops.const(np.array([3])))                  # int64 CONST ids
    zero = ops.exp(ops.fill((4,), float("-inf")))
    u, v = gr.Input("B", "T", 4), gr.Input(1, 4)
    body = close_graph([u, v], [ops.tanh(ops.add(u, v))])
    fused = ops.make(Op.FUSED, [ops.add(proj(ys), zero), emb], body=body)
    return gr.gModule([xs, lengths], [fused], name="nested")


def save_load(model: gr.gModule, path) -> gr.gModule:
    gr.save(model, path)
    return gr.load(path)


def assert_identical(a: gr.gModule, b: gr.gModule, *inputs: np.ndarray) -> None:
    """Same outputs bit for bit, same keys, counts and flat layout."""
    ya, yb = gr.interpret(a, *inputs), gr.interpret(b, *inputs)
    for u, v in zip(ya if isinstance(ya, tuple) else [ya], yb if isinstance(yb, tuple) else [yb]):
        assert u.dtype == v.dtype and u.shape == v.shape and u.tobytes() == v.tobytes()
    assert a.table == b.table
    assert list(a.table.slots) == list(b.table.slots)
    assert a.param_count() == b.param_count()
    assert a.flat.tobytes() == b.flat.tobytes()
    assert str(a.graph) == str(b.graph)


# ----------------------------------------------------------------------------- round trips

def test_toy_rnn_round_trip(tmp_path):
    step = toy_step()
    assert_identical(step, save_load(step, tmp_path / "step.grnn"), randn(2, 8), randn(2, 1))
    rnn = toy_rnn()
    again = save_load(rnn, tmp_path / "rnn.grnn")
    assert isinstance(again, gr.gModule) and again.name == "toy_rnn"
    assert_identical(rnn, again, randn(3, 5, 1))


def test_bidirectional_two_layer_lstm_round_trip(tmp_path):
    model = bilstm()
    model.reset_parameters(seed=3)
    again = save_load(model, tmp_path / "lstm.grnn")
    assert len(again.table.slots) == 2 * 2 * 4 + 2
    assert_identical(model, again, randn(3, 6, 3), np.array([6, 2, 4]))
    # the loaded parameters are views of the loaded model's own flat vector
    for p in again.graph.params():
        assert gr.value(p).base is again.flat.base or gr.value(p).base is again.flat


def test_nested_loops_consts_lengths_and_fused_round_trip(tmp_path):
    model = nested()
    again = save_load(model, tmp_path / "nested.grnn")
    assert_identical(model, again, randn(2, 4, 3, 2), np.array([4, 1]))
    ops_seen = {n.op for n, _ in again.graph.walk()}
    assert {Op.LOOP, Op.CONST, Op.FILL, Op.LOOKUP, Op.FUSED} <= ops_seen
    consts = [n.attrs["value"] for n, _ in again.graph.walk() if n.op == Op.CONST]
    assert sorted(str(v.dtype) for v in consts) == ["float32", "int64"]
    # proj is read in the inner loop body and at top level: one storage, one key
    assert [k for k in again.table.slots if k.startswith("proj.")] == ["proj.weight", "proj.bias"]


def test_the_codec_alone_round_trips_a_graph_through_json():
    model = nested()
    params = model.graph.params()
    uses, index = [0] * len(params), {id(p): i for i, p in enumerate(params)}
    doc = json.loads(json.dumps(codec.encode_graph(model.graph, index)))
    again = close_graph(*codec.decode_graph(doc, params, uses, "graph", 0))
    assert str(again) == str(model.graph) and all(uses)
    doc["nodes"][0]["op"] = "py/object"
    with pytest.raises(ModelFileError, match=r"nodes\[0\]: unknown op 'py/object'"):
        codec.decode_graph(doc, params, uses, "graph", 0)


def test_tied_parameters_are_stored_once(tmp_path):
    x = gr.Input("B", 4)
    a, b = nn.Linear(4, 4), nn.Linear(4, 4)
    b.share(a, "weight")
    model = gr.gModule([x], [b(nn.Tanh()(a(x)))])
    path = tmp_path / "tied.grnn"
    again = save_load(model, path)
    assert_identical(model, again, randn(2, 4))
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n.startswith("params/"))
    assert names == sorted(f"params/{k}.npy" for k in model.table.slots)
    assert len(names) == 3                       # a.weight (shared), a.bias, b.bias


def test_attribute_values_keep_their_kind(tmp_path):
    x = gr.Input("B", 2)
    extra = {"t": (1, "B", (2.5, None)), "l": [True, False], "d": {"k": (1,)},
             "nan": float("nan"), "inf": float("-inf"), "s": np.float32(1.5),
             "i": np.int64(-7), "a": np.arange(6, dtype=np.int32).reshape(2, 3),
             "ty": gr.TensorType(("B", 3), "int64"), "kind": Op.TANH}
    model = gr.gModule([x], [ops.make(Op.TANH, [x], **extra)])
    got = save_load(model, tmp_path / "attrs.grnn").graph.outputs[0].attrs
    assert got["t"] == (1, "B", (2.5, None)) and isinstance(got["t"][2], tuple)
    assert got["l"] == [True, False] and got["d"] == {"k": (1,)}
    assert np.isnan(got["nan"]) and got["inf"] == float("-inf")
    assert type(got["s"]) is np.float32 and got["s"] == np.float32(1.5)
    assert type(got["i"]) is np.int64 and got["i"] == -7
    assert got["a"].dtype == np.int32 and np.array_equal(got["a"], extra["a"])
    assert got["ty"] == extra["ty"] and got["kind"] is Op.TANH


def test_the_file_is_an_npz_archive_with_a_json_graph(tmp_path):
    model = bilstm()
    path = tmp_path / "m.grnn"
    gr.save(model, path)
    with np.load(path, allow_pickle=False) as npz:
        weight = model.named_parameters()["linear.weight"]
        assert np.array_equal(npz["params/linear.weight"], weight)
        doc = json.loads(npz["graph.json"])
    assert doc["format"] == "graphrnn-model" and doc["version"] == 1
    assert doc["graphrnn"] == gr.__version__ and doc["model"] == {"class": "gModule",
                                                                  "name": "bilstm"}
    assert [r["key"] for r in doc["params"]] == list(model.table.slots)
    first = path.read_bytes()
    gr.save(model, path)
    assert path.read_bytes() == first            # the same model gives the same bytes


def test_save_needs_a_model(tmp_path):
    with pytest.raises(TypeError, match="gModule"):
        gr.save(nn.Linear(2, 2), tmp_path / "x.grnn")


# ----------------------------------------------------------------------------- atomic writes

def test_a_failed_write_leaves_the_old_file_intact(tmp_path, monkeypatch):
    path = tmp_path / "m.grnn"
    old = toy_step()
    gr.save(old, path)
    before = path.read_bytes()

    def fail(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        gr.save(bilstm(), path)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.grnn"]    # no temporary file left behind
    assert_identical(old, gr.load(path), randn(2, 8), randn(2, 1))


def test_replacing_a_file_keeps_its_mode(tmp_path):
    path = tmp_path / "m.grnn"
    gr.save(toy_step(), path)
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    path.chmod(0o640)
    gr.save(toy_step(), path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o640


# ----------------------------------------------------------------------------- damaged files

def tiny(tmp_path) -> tuple[gr.gModule, bytes]:
    x = gr.Input("B", 2)
    model = gr.gModule([x], [nn.Linear(2, 2)(x)])
    gr.save(model, tmp_path / "tiny.grnn")
    return model, (tmp_path / "tiny.grnn").read_bytes()


def test_every_truncation_is_a_clear_error(tmp_path):
    model, data = tiny(tmp_path)
    assert_identical(model, gr.load(io.BytesIO(data)), randn(2, 2))
    for k in range(len(data)):                  # in memory: the same reader as for a path
        with pytest.raises((ModelFileError, GraphError)):
            gr.load(io.BytesIO(data[:k]))
    path = tmp_path / "cut.grnn"
    for k in (0, 3, 4, 100, len(data) // 2, len(data) - 22, len(data) - 1):
        path.write_bytes(data[:k])
        with pytest.raises((ModelFileError, GraphError), match=str(path)):
            gr.load(path)


def test_every_flipped_byte_is_refused_or_harmless(tmp_path):
    model, data = tiny(tmp_path)
    x = randn(3, 2)
    for k in range(len(data)):
        try:
            again = gr.load(io.BytesIO(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]))
        except (ModelFileError, GraphError):
            continue
        assert_identical(model, again, x)       # a zip field nobody reads, say


def rewrite(path, change=None, members: dict[str, bytes] | None = None) -> None:
    """Rewrite a saved file: `change(doc)` edits graph.json, `members` replaces members."""
    with zipfile.ZipFile(path) as z:
        contents = {n: z.read(n) for n in z.namelist()}
    if change is not None:
        doc = json.loads(contents["graph.json"])
        change(doc)
        contents["graph.json"] = json.dumps(doc).encode()
    contents.update(members or {})
    with zipfile.ZipFile(path, "w") as z:
        for n, data in contents.items():
            z.writestr(n, data)


def saved(tmp_path, model=None):
    path = tmp_path / "m.grnn"
    gr.save(model if model is not None else toy_step(), path)
    return path


def node_named(doc: dict, name: str) -> dict:
    return next(n for n in doc["graph"]["nodes"] if n["name"] == name)


def test_a_newer_version_asks_for_an_upgrade(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda d: d.update(version=2))
    with pytest.raises(ModelFileError, match="version 2, newer .*upgrade graphrnn"):
        gr.load(path)
    rewrite(path, lambda d: d.update(version="1"))
    with pytest.raises(ModelFileError, match="version"):
        gr.load(path)


@pytest.mark.parametrize("change", [lambda d: d.pop("format"),
                                    lambda d: d.update(format="something-else"),
                                    lambda d: d.update(format={"py/object": "os.system"})])
def test_a_missing_format_marker_is_not_a_model_file(tmp_path, change):
    path = saved(tmp_path)
    rewrite(path, change)
    with pytest.raises(ModelFileError, match="not a graphrnn model file"):
        gr.load(path)


def test_foreign_files_are_not_model_files(tmp_path):
    path = tmp_path / "foreign"
    cases = {"random": np.random.default_rng(0).bytes(3000), "empty": b"",
             "json": json.dumps({"format": "graphrnn-model", "version": 1}).encode()}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("hello.txt", "hello")
    cases["zip"] = buf.getvalue()
    buf = io.BytesIO()
    np.savez(buf, a=np.ones(3))
    cases["npz"] = buf.getvalue()
    for name, data in cases.items():
        path.write_bytes(data)
        with pytest.raises(ModelFileError, match="not a graphrnn model file"):
            gr.load(path)
    with pytest.raises(FileNotFoundError):
        gr.load(tmp_path / "missing.grnn")


def test_an_unknown_op_is_named(tmp_path):
    path = saved(tmp_path)
    rewrite(path, lambda d: node_named(d, "tanh_0").update(op="frobnicate"))
    with pytest.raises(ModelFileError, match="unknown op 'frobnicate'"):
        gr.load(path)


@pytest.mark.parametrize("change", [
    lambda d: node_named(d, "tanh_0").update(op="__class__"),
    lambda d: node_named(d, "concat_0")["attrs"].update(axis={"py/object": "os.system"}),
    lambda d: node_named(d, "concat_0")["attrs"].update(
        axis={"__reduce__": ["os.system", ["touch pwned"]]}),
    lambda d: node_named(d, "tanh_0").update({"py/object": "subprocess.Popen"}),
    lambda d: d["model"].update({"class": {"py/type": "builtins.eval"}}),
    lambda d: d["params"][0].update(init={"__class__": "Param"}),
])
def test_json_naming_python_objects_is_refused_as_data(tmp_path, change):
    path = saved(tmp_path)
    rewrite(path, change)
    with pytest.raises(ModelFileError):
        gr.load(path)
    assert not (tmp_path / "pwned").exists()


class Tripwire:
    """Unpickling this creates a file: proof that a pickle was executed."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


def test_pickled_payloads_are_never_unpickled(tmp_path):
    marker = str(tmp_path / "unpickled")
    buf = io.BytesIO()
    np.save(buf, np.array([Tripwire(marker)], dtype=object), allow_pickle=True)
    for member, data in (("params/linear.bias.npy", buf.getvalue()),
                         ("graph.json", buf.getvalue()),
                         ("graph.json", pickle.dumps(Tripwire(marker)))):
        path = saved(tmp_path)
        rewrite(path, members={member: data})
        with pytest.raises(ModelFileError):
            gr.load(path)
        assert not os.path.exists(marker)


def test_a_cycle_is_reported_by_node_names(tmp_path):
    path = saved(tmp_path)

    def cycle(d):
        names = [n["name"] for n in d["graph"]["nodes"]]
        node_named(d, "concat_0")["inputs"][1] = names.index("add_0")
    rewrite(path, cycle)
    with pytest.raises(GraphError, match="cycle: concat_0 -> matmul_0 -> add_0 -> concat_0"):
        gr.load(path)


@pytest.mark.parametrize("change, message", [
    (lambda d: node_named(d, "matmul_0")["inputs"].pop(), "cannot take 1 inputs"),
    (lambda d: node_named(d, "matmul_0")["inputs"].__setitem__(0, 99), "not a node index"),
    (lambda d: node_named(d, "concat_0")["attrs"].pop("axis"), "'axis' is missing"),
    (lambda d: node_named(d, "linear.weight").update(param=7), "not a node index below 2"),
    (lambda d: d["params"][0].update(shape=[3, 3]), "expected float32|its inputs give"),
    (lambda d: d["params"][1].update(key="other"), "missing from the archive"),
    (lambda d: node_named(d, "tanh_0").update(type={"shape": ["B", 3], "dtype": "int8"}),
     "unknown dtype"),
    (lambda d: node_named(d, "tanh_0").pop("doc"), "missing fields"),
    (lambda d: d["params"][0].update(key="linear.renamed"), "linear.renamed"),
    (lambda d: d["graph"].update(inputs=[0]), "dangling|not among"),
])
def test_malformed_graphs_are_clear_errors(tmp_path, change, message):
    path = saved(tmp_path)
    rewrite(path, change)
    with pytest.raises((ModelFileError, GraphError), match=message):
        gr.load(path)


def test_a_wrong_stored_type_is_caught(tmp_path):
    path = saved(tmp_path, bilstm())
    rewrite(path, lambda d: node_named(d, "concat_1").update(
        type={"shape": ["B", "T", 9], "dtype": "float32"}))
    with pytest.raises(ModelFileError, match="f32\\[B,T,9\\].*f32\\[B,T,8\\]"):
        gr.load(path)
