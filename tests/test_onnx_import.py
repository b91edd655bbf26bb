"""graphrnn.onnx.load on ordinary models (against ONNX Runtime), on hostile files (each a
clear OnnxImportError, raised before anything large is allocated), and from the command line.
"""
from __future__ import annotations

import subprocess
import sys
import tracemalloc

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphrnn as gr  # noqa: E402
from graphrnn.cli import main  # noqa: E402
from graphrnn.onnx import OnnxImportError, load  # noqa: E402


def _graph(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, dims, t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, dims)


def _embedding_classifier() -> onnx.ModelProto:
    """ids [N, T] -> Gather (embedding) -> MatMul -> Add -> Tanh -> Gemm-free head -> Softmax."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("emb", (11, 4)), ("w", (4, 3)), ("b", (3,)))]
    nodes = [helper.make_node("Gather", ["emb", "ids"], ["e"], name="embed"),
             helper.make_node("MatMul", ["e", "w"], ["m"]),
             helper.make_node("Add", ["m", "b"], ["a"]),
             helper.make_node("Tanh", ["a"], ["t"]),
             helper.make_node("LogSoftmax", ["t"], ["y"], axis=-1)]
    return _graph(nodes, [_vi("ids", ["N", "T"], TensorProto.INT64)], [_vi("y", ["N", "T", 3])],
                  inits)


def _mlp() -> onnx.ModelProto:
    rng = np.random.default_rng(1)
    inits = [numpy_helper.from_array(rng.standard_normal(s).astype(np.float32), n)
             for n, s in (("w1", (8, 5)), ("b1", (8,)), ("w2", (5, 8)))]
    nodes = [helper.make_node("Gemm", ["x", "w1", "b1"], ["h"], transB=1, alpha=0.5),
             helper.make_node("Relu", ["h"], ["r"]),
             helper.make_node("Split", ["r"], ["r1", "r2"], axis=1, num_outputs=2),
             helper.make_node("Sigmoid", ["r1"], ["s1"]),
             helper.make_node("Concat", ["s1", "r2"], ["c"], axis=1),
             helper.make_node("Transpose", ["w2"], ["w2t"], perm=[1, 0]),
             helper.make_node("MatMul", ["c", "w2t"], ["z"]),
             helper.make_node("Softmax", ["z"], ["y"], axis=1)]
    return _graph(nodes, [_vi("x", ["N", 5])], [_vi("y", ["N", 5])], inits, opset=18)


@pytest.mark.parametrize("make,feed", [
    (_embedding_classifier, {"ids": np.array([[1, 2, 10], [0, 5, 5]], np.int64)}),
    (_mlp, {"x": np.random.default_rng(2).standard_normal((4, 5)).astype(np.float32)}),
])
def test_models_match_onnxruntime_compiled(make, feed):
    proto = make()
    want = ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)[0]
    model = load(proto)
    args = [feed[x.name] for x in model.inputs]
    np.testing.assert_allclose(model(*args), want, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(gr.compile(model)(*args), want, atol=1e-5, rtol=1e-5)


def test_load_reads_paths_and_bytes(tmp_path):
    path = tmp_path / "m.onnx"
    onnx.save(_mlp(), str(path))
    x = np.ones((2, 5), np.float32)
    a, b = load(path)(x), load(path.read_bytes())(x)
    np.testing.assert_array_equal(a, b)
    assert set(load(path).named_parameters()) == {"onnx.w1", "onnx.b1", "onnx.w2"}


def test_the_core_imports_without_onnx():
    code = ("import sys; sys.modules['onnx'] = None; import graphrnn, graphrnn.cli\n"
            "try:\n    graphrnn.onnx.load('m.onnx')\nexcept ImportError as e:\n"
            "    assert 'pip install' in str(e), e; print('ok')")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "ok", done.stderr


# ----------------------------------------------------------------------------- hostile files

def _relu_model() -> onnx.ModelProto:
    return _graph([helper.make_node("Relu", ["x"], ["y"], name="r")], [_vi("x", ["N", 3])],
                  [_vi("y", ["N", 3])])


def test_truncated_and_garbage_files(tmp_path):
    data = _mlp().SerializeToString()
    for i, blob in enumerate([data[:len(data) // 2], data[:7], bytes(range(256)) * 40,
                              b"\xff" * 1000, b""]):
        path = tmp_path / f"bad{i}.onnx"
        path.write_bytes(blob)
        with pytest.raises(OnnxImportError, match=f"bad{i}.onnx"):
            load(path)
    with pytest.raises(OnnxImportError, match="cannot read"):
        load(tmp_path / "missing.onnx")


def test_unsupported_operator_names_it_and_the_node():
    m = _graph([helper.make_node("Cos", ["x"], ["y"], name="my_cos")], [_vi("x", ["N", 3])],
               [_vi("y", ["N", 3])])
    with pytest.raises(OnnxImportError, match="Cos node 'my_cos'.*operator Cos is not"):
        load(m)


def test_initializer_size_disagreeing_with_its_shape():
    m = _relu_model()
    t = numpy_helper.from_array(np.zeros(4, np.float32), "w")
    t.dims[:] = [1000]
    m.graph.initializer.append(t)
    with pytest.raises(OnnxImportError, match="'w': shape \\[1000\\] needs 4000 bytes, the "
                                              "file holds 16"):
        load(m)
    t2 = TensorProto(name="v", data_type=TensorProto.FLOAT, dims=[3, 3], float_data=[1., 2.])
    del m.graph.initializer[:]
    m.graph.initializer.append(t2)
    with pytest.raises(OnnxImportError, match="'v': shape \\[3, 3\\] needs 9 values"):
        load(m)


def test_a_cycle_is_refused_by_name():
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="first"),
             helper.make_node("Relu", ["a"], ["b"], name="second")]
    m = _graph(nodes, [_vi("x", ["N", 3])], [_vi("b", ["N", 3])])
    with pytest.raises(OnnxImportError, match="cycle"):
        load(m)


def test_huge_declared_tensor_and_external_data_allocate_nothing():
    m = _relu_model()
    huge = TensorProto(name="huge", data_type=TensorProto.FLOAT, dims=[2 ** 20, 2 ** 9],
                       raw_data=b"1234")
    ext = TensorProto(name="ext", data_type=TensorProto.FLOAT, dims=[2 ** 40])
    ext.data_location = TensorProto.EXTERNAL
    for k, v in (("location", "/dev/zero"), ("offset", "0"), ("length", str(2 ** 42))):
        e = ext.external_data.add()
        e.key, e.value = k, v
    tracemalloc.start()
    try:
        for t, match in ((huge, "declares 2147483648 bytes, more than"),
                         (ext, "external data \\(/dev/zero")):
            del m.graph.initializer[:]
            m.graph.initializer.append(t)
            with pytest.raises(OnnxImportError, match=match):
                load(m)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2 ** 20


def test_unsupported_input_type_and_symbolic_transpose_are_clear():
    m = _graph([helper.make_node("Relu", ["x"], ["y"])], [_vi("x", ["N", 3], TensorProto.INT8)],
               [_vi("y", ["N", 3])])
    with pytest.raises(OnnxImportError, match="graph input 'x': element type INT8"):
        load(m)
    m = _graph([helper.make_node("Transpose", ["x"], ["t"], perm=[1, 0]),
                helper.make_node("Softmax", ["t"], ["s"], axis=0),
                helper.make_node("Reshape", ["s", "shape"], ["y"])],
               [_vi("x", ["N", "M"])], [_vi("y", ["M", "N"])],
               [numpy_helper.from_array(np.array([0, -1], np.int64), "shape")])
    model = load(m)      # the output is handed out untransposed: its layout says how
    assert model.onnx_layouts["outputs"] == {"y": (1, 0)}


# ----------------------------------------------------------------------------- command line

def test_cli_summary_show_convert(tmp_path, capsys):
    src, out = tmp_path / "m.onnx", tmp_path / "m.grnn"
    onnx.save(_mlp(), str(src))
    assert main(["summary", str(src)]) == 0
    assert "onnx.w1" in capsys.readouterr().out
    assert main(["show", str(src), "-o", str(tmp_path / "m.dot")]) == 0
    assert "digraph" in (tmp_path / "m.dot").read_text()
    assert main(["convert", str(src), "-o", str(out)]) == 0
    x = np.random.default_rng(0).standard_normal((3, 5)).astype(np.float32)
    np.testing.assert_allclose(gr.load(out)(x), load(src)(x), atol=0)
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage")
    assert main(["convert", str(tmp_path / "bad.onnx"), "-o", str(out)]) == 2
    assert "not an ONNX model" in capsys.readouterr().err


# ----------------------------------------------------------------------------- Loop

def _for_loop(cond_from_body: bool = False) -> onnx.ModelProto:
    """for i in range(4): h = tanh(h @ W + x), every h stacked; or a computed condition."""
    w = numpy_helper.from_array(
        np.random.default_rng(0).standard_normal((3, 3)).astype(np.float32) * .5, "W")
    cond = (helper.make_node("Less", ["i", "M"], ["cond_out"]) if cond_from_body else
            helper.make_node("Identity", ["cond_in"], ["cond_out"]))
    body = helper.make_graph(
        [cond, helper.make_node("MatMul", ["h_in", "W"], ["m"]),
         helper.make_node("Add", ["m", "x"], ["a"]), helper.make_node("Tanh", ["a"], ["h_out"]),
         helper.make_node("Identity", ["h_out"], ["scan"])], "body",
        [_vi("i", [], TensorProto.INT64), _vi("cond_in", [], TensorProto.BOOL),
         _vi("h_in", ["N", 3])],
        [_vi("cond_out", [], TensorProto.BOOL), _vi("h_out", ["N", 3]), _vi("scan", ["N", 3])])
    trips = numpy_helper.from_array(np.array(4, np.int64), "M")
    node = helper.make_node("Loop", ["M", "", "h0"], ["hT", "hs"], body=body, name="for")
    return _graph([node], [_vi("h0", ["N", 3]), _vi("x", ["N", 3])],
                  [_vi("hT", ["N", 3]), _vi("hs", [4, "N", 3])], [w, trips])


def test_a_for_loop_is_a_graphrnn_loop():
    proto = _for_loop()
    rng = np.random.default_rng(1)
    feed = {k: rng.standard_normal((2, 3)).astype(np.float32) for k in ("h0", "x")}
    want = ort.InferenceSession(proto.SerializeToString(),
                                providers=["CPUExecutionProvider"]).run(None, feed)
    model = load(proto)
    assert sum(n.op.value == "loop" for n in model.graph.nodes) == 1
    args = [feed[x.name] for x in model.inputs]
    for got in (model(*args), gr.compile(model)(*args)):
        for a, b in zip(got, want):
            np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5)


def test_a_while_loop_is_refused_by_name():
    with pytest.raises(OnnxImportError, match="Loop node 'for'.*condition 'cond_out' is "
                                              "computed: a while-loop"):
        load(_for_loop(cond_from_body=True))


def test_folded_values_are_sized_before_they_are_allocated():
    shape = numpy_helper.from_array(np.array([10 ** 6, 10 ** 6], np.int64), "shape")
    m = _graph([helper.make_node("ConstantOfShape", ["shape"], ["c"], name="zeros"),
                helper.make_node("Add", ["x", "c"], ["y"])], [_vi("x", [3])], [_vi("y", [3])],
               [shape])
    with pytest.raises(OnnxImportError, match="ConstantOfShape node 'zeros': a constant of "
                                              "shape \\[1000000, 1000000\\]"):
        load(m)
    m = _for_loop()
    m.graph.initializer[1].CopyFrom(numpy_helper.from_array(np.array(10 ** 15, np.int64), "M"))
    with pytest.raises(OnnxImportError, match="the trip count of shape"):
        load(m)
    data = numpy_helper.from_array(np.arange(4, dtype=np.int64), "d")
    idx = numpy_helper.from_array(np.array([7], np.int64), "i")
    m = _graph([helper.make_node("Gather", ["d", "i"], ["g"], name="pick"),
                helper.make_node("Reshape", ["x", "g"], ["y"])], [_vi("x", [7])],
               [_vi("y", [7])], [data, idx])
    with pytest.raises(OnnxImportError, match="Gather node 'pick': indices 7..7 are out of "
                                              "range"):
        load(m)
