"""PyTorch recurrent models exported to ONNX, imported and compiled: PyTorch's numbers.

nn.LSTM and nn.GRU, two layers, bidirectional, batch-first and time-major, go through
`torch.onnx.export` (the TorchScript exporter, offline) and `graphrnn.onnx.load`; the
compiled model gives PyTorch's outputs within 1e-5 for several batch sizes and lengths from
one program, and ONNX Runtime agrees on the same file.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import graphrnn as gr  # noqa: E402
import graphrnn.onnx  # noqa: E402


class Wrapped(torch.nn.Module):
    def __init__(self, kind: str, batch_first: bool):
        super().__init__()
        self.rnn = getattr(torch.nn, kind)(8, 16, num_layers=2, bidirectional=True,
                                           batch_first=batch_first)

    def forward(self, x):
        return self.rnn(x)[0]


def _export(tmp_path, kind: str, batch_first: bool):
    torch.manual_seed(0)
    m = Wrapped(kind, batch_first).eval()
    path = tmp_path / f"{kind}_{batch_first}.onnx"
    axes = {0: "batch", 1: "seq"} if batch_first else {0: "seq", 1: "batch"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(m, (torch.randn(3, 5, 8),), str(path), dynamo=False,
                          input_names=["x"], output_names=["y"],
                          dynamic_axes={"x": axes, "y": axes})
    return m, path


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_batch_first_export_matches_pytorch(tmp_path, kind):
    m, path = _export(tmp_path, kind, True)
    model = graphrnn.onnx.load(path)
    assert model.onnx_layouts == {"inputs": {}, "outputs": {}}
    fast = gr.compile(model)
    rng = np.random.default_rng(1)
    for b, t in ((3, 5), (1, 17), (6, 2)):
        x = rng.standard_normal((b, t, 8)).astype(np.float32)
        want = m(torch.from_numpy(x)).detach().numpy()
        np.testing.assert_allclose(fast(x), want, atol=1e-5, rtol=0)
        np.testing.assert_allclose(model(x), want, atol=1e-5, rtol=0)
    assert len(fast.programs) == 1          # one program for every batch size and length
    # the initializers are the parameters, under their names
    names = {t.name for t in onnx.load(str(path)).graph.initializer}
    for key in model.named_parameters():        # W.forward, B.reverse.Wb, ...
        assert any(key.startswith(n + ".") for n in names), key
    assert model.param_count() == sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("kind", ["LSTM", "GRU"])
def test_time_major_export_is_read_batch_first(tmp_path, kind):
    ort = pytest.importorskip("onnxruntime")
    m, path = _export(tmp_path, kind, False)
    model = graphrnn.onnx.load(path)
    assert model.onnx_layouts == {"inputs": {"x": (1, 0, 2)}, "outputs": {"y": (1, 0, 2)}}
    fast = gr.compile(model)
    x = np.random.default_rng(2).standard_normal((7, 4, 8)).astype(np.float32)   # [T, B, F]
    want = m(torch.from_numpy(x)).detach().numpy()
    got = np.transpose(fast(np.transpose(x, (1, 0, 2))), (1, 0, 2))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"x": x})[0], want, atol=1e-5, rtol=0)
