"""`graphrnn bench --onnx`: the imported file and ONNX Runtime on the same inputs, agreeing,
with medians for both (the figures themselves are not asserted: they depend on the machine)."""
from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from graphrnn.bench.onnx_command import format_result  # noqa: E402
from graphrnn.bench.onnx_file import bench_file  # noqa: E402
from graphrnn.cli import main  # noqa: E402


def _gru(path) -> None:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.uniform(-.3, .3, s).astype(np.float32), n)
             for n, s in (("W", (2, 12, 3)), ("R", (2, 12, 4)), ("B", (2, 24)))]
    node = helper.make_node("GRU", ["X", "W", "R", "B"], ["Y"], hidden_size=4,
                            direction="bidirectional", linear_before_reset=1)
    graph = helper.make_graph(
        [node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["T", "N", 3])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["T", 2, "N", 4])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 14)]), str(path))


def test_bench_file_checks_and_times_both(tmp_path):
    path = tmp_path / "gru.onnx"
    _gru(path)
    r = bench_file(str(path), batch=3, steps=6, repeats=2, budget_s=0.2)
    assert r["max_abs_diff"] < 1e-5
    assert set(r["ms"]) == set(r["cpu_ms"]) == {"graphrnn", "onnxruntime"}
    assert r["rounds"]["graphrnn"] >= 1 and all(v > 0 for v in r["ms"].values())
    text = format_result(r)
    assert "B=3 T=6" in text and "onnxruntime" in text


def test_bench_command_reports_a_bad_file(tmp_path, capfd):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not a model")
    assert main(["bench", "--onnx", str(bad), "--repeats", "1", "--budget", "0.1"]) == 1
    assert "not an ONNX model" in capfd.readouterr().err
