"""ONNX RNN/LSTM/GRU with every attribute a recurrent model uses, against ONNX Runtime.

Weights are initializers (parameters of the flat vector), the batch and time dims symbolic:
one compiled program serves two batch sizes and lengths (time-major inputs are read
batch-first, `model.onnx_layouts`, which the backend applies), and matches the interpreter
and ONNX Runtime on the same file.
"""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import graphrnn as gr  # noqa: E402
import graphrnn.onnx  # noqa: E402
from graphrnn.onnx.backend import CompiledBackend, InterpretedBackend  # noqa: E402

GATES = {"RNN": 1, "LSTM": 4, "GRU": 3}
I, H = 5, 6


def _model(kind: str, *, direction: str = "forward", layout: int = 0, lengths: bool = False,
           initial: bool = False, peepholes: bool = False, clip: float | None = None,
           lbr: int | None = None, activations: list[str] | None = None,
           outputs: tuple[str, ...] = ("Y", "Y_h", "Y_c"), seed: int = 0) -> onnx.ModelProto:
    rng = np.random.default_rng(seed)
    dirs = 2 if direction == "bidirectional" else 1
    g = GATES[kind]
    inits = [numpy_helper.from_array(rng.uniform(-.5, .5, s).astype(np.float32), n)
             for n, s in (("W", (dirs, g * H, I)), ("R", (dirs, g * H, H)),
                          ("B", (dirs, 2 * g * H)))]
    seq = ["T", "N"] if layout == 0 else ["N", "T"]
    ins = [helper.make_tensor_value_info("X", TensorProto.FLOAT, seq + [I])]
    names = ["X", "W", "R", "B", "", "", "", ""]
    if lengths:
        ins.append(helper.make_tensor_value_info("L", TensorProto.INT32, ["N"]))
        names[4] = "L"
    state = [dirs, "N", H] if layout == 0 else ["N", dirs, H]
    if initial:
        ins.append(helper.make_tensor_value_info("h0", TensorProto.FLOAT, state))
        names[5] = "h0"
        if kind == "LSTM":
            ins.append(helper.make_tensor_value_info("c0", TensorProto.FLOAT, state))
            names[6] = "c0"
    if peepholes:
        inits.append(numpy_helper.from_array(
            rng.uniform(-.5, .5, (dirs, 3 * H)).astype(np.float32), "P"))
        names[7] = "P"
    while names[-1] == "":
        names.pop()
    n_out = 3 if kind == "LSTM" else 2
    outs = [o if o in outputs else "" for o in ("Y", "Y_h", "Y_c")[:n_out]]
    attrs: dict = {"hidden_size": H, "direction": direction, "layout": layout}
    if clip is not None:
        attrs["clip"] = clip
    if lbr is not None:
        attrs["linear_before_reset"] = lbr
    if activations is not None:
        attrs["activations"] = activations
    node = helper.make_node(kind, names, outs, name="rec", **attrs)
    ydims = (["T", dirs, "N", H] if layout == 0 else ["N", "T", dirs, H])
    vouts = [helper.make_tensor_value_info(o, TensorProto.FLOAT, ydims if o == "Y" else state)
             for o in outs if o]
    graph = helper.make_graph([node], "rec", ins, vouts, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)])


CASES = [
    ("RNN", {}), ("RNN", {"direction": "reverse", "activations": ["Relu"]}),
    ("RNN", {"direction": "bidirectional", "lengths": True, "initial": True}),
    ("LSTM", {}), ("LSTM", {"layout": 1, "initial": True}),
    ("LSTM", {"direction": "bidirectional", "lengths": True, "peepholes": True}),
    ("LSTM", {"direction": "reverse", "clip": 0.7, "lengths": True}),
    ("LSTM", {"activations": ["Sigmoid", "Relu", "Tanh"], "outputs": ("Y_h",)}),
    ("GRU", {}), ("GRU", {"lbr": 1, "direction": "bidirectional", "initial": True}),
    ("GRU", {"lbr": 0, "layout": 1, "lengths": True, "clip": 1.5}),
    ("GRU", {"lbr": 1, "direction": "reverse", "activations": ["Relu", "Tanh"],
             "outputs": ("Y",)}),
]


def _feed(model: onnx.ModelProto, n: int, t: int, rng) -> dict:
    feed = {}
    for vi in model.graph.input:
        dims = [n if d.dim_param == "N" else t if d.dim_param == "T" else d.dim_value
                for d in vi.type.tensor_type.shape.dim]
        if vi.name == "L":
            feed["L"] = rng.integers(0, t + 1, n).astype(np.int32)
            feed["L"][0] = t
        else:
            feed[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def _reference(session, feed: dict, layout: int) -> list:
    if layout == 0:
        return session.run(None, feed)
    swap = {k: (np.swapaxes(v, 0, 1) if v.ndim == 3 else v) for k, v in feed.items()}
    outs = session.run(None, swap)
    return [np.transpose(o, (2, 0, 1, 3)) if o.ndim == 4 else np.swapaxes(o, 0, 1)
            for o in outs]


@pytest.mark.parametrize("kind,kw", CASES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(CASES)])
def test_matches_onnxruntime(kind, kw):
    proto = _model(kind, **kw)
    # ONNX Runtime has no layout 1: its reference is the layout-0 model on transposed data
    ref = _model(kind, **dict(kw, layout=0))
    session = ort.InferenceSession(ref.SerializeToString(), providers=["CPUExecutionProvider"])
    runs = [backend.prepare(proto) for backend in (InterpretedBackend, CompiledBackend)]
    rng = np.random.default_rng(3)
    for n, t in ((3, 7), (1, 4)):
        feed = _feed(proto, n, t, rng)
        want = _reference(session, feed, kw.get("layout", 0))
        for rep in runs:
            got = rep.run(feed)
            assert len(got) == len(want)
            for a, b in zip(got, want):
                np.testing.assert_allclose(a, b, atol=2e-5, rtol=1e-4)


def test_initializers_are_parameters_per_direction():
    model = graphrnn.onnx.load(_model("LSTM", direction="bidirectional", peepholes=True))
    views = model.named_parameters()
    assert views["W.forward"].shape == (4 * H, I) and views["W.reverse"].shape == (4 * H, I)
    assert views["B.reverse.Rb"].shape == (4 * H,) and views["P.forward.f"].shape == (H,)
    assert all(v.base is model.flat or v.base is model.flat.base for v in views.values())


def test_gradients_of_an_imported_lstm_match_finite_differences():
    model = graphrnn.onnx.load(_model("LSTM", outputs=("Y",)))
    x = np.random.default_rng(0).standard_normal((3, 2, I)).astype(np.float32)  # [T, B, I]
    assert gr.gradcheck(model, x)


@pytest.mark.parametrize("attr,value,match", [
    ("activations", ["Sigmoid", "HardSigmoid", "Tanh"], "HardSigmoid is not supported"),
    ("activations", ["Sigmoid"], "expected 3"),
    ("input_forget", 1, "input_forget"),
])
def test_unsupported_attributes_name_the_node(attr, value, match):
    proto = _model("LSTM")
    proto.graph.node[0].attribute.append(helper.make_attribute(attr, value))
    with pytest.raises(graphrnn.onnx.OnnxImportError, match=f"LSTM node 'rec'.*{match}"):
        graphrnn.onnx.load(proto)
