"""gr.profile and `graphrnn profile`: per-kernel times of a compiled model, by IR node."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.cli import main
from graphrnn.profile import summarize

RNG = np.random.default_rng(41)
T = 6


def lstm() -> gr.gModule:
    x = gr.Input("B", "T", 8, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(8, 16))(x)])
    model.reset_parameters(seed=1)
    return model


def test_the_table_lists_the_matmuls_and_the_loop(cache) -> None:
    # the program of batch size 2: its input projection hoisted (the general program joins it
    # to the step product)
    report = gr.profile(lstm(), RNG.standard_normal((2, T, 8)).astype(np.float32),
                        repeats=3, cache=cache, specialize=True)
    assert sum(r.percent for r in report.rows) == pytest.approx(100.0, abs=0.5)
    assert [r.ms for r in report.rows] == sorted((r.ms for r in report.rows), reverse=True)
    gemms = [r for r in report.rows if r.kind == "gemm"]
    assert len(gemms) == 2                                # x @ W_ih hoisted, h @ W_hh
    assert {r.calls for r in gemms} == {1, T}             # the body's runs at every step
    assert all(any(n.startswith("matmul") for n in r.nodes) for r in gemms)
    (loop,) = [r for r in report.rows if r.kind == "loop"]
    assert loop.nodes == ("loop_0",) and loop.calls == 1
    assert report.native_ms > 0 and report.call_ms >= report.native_ms
    text = str(report)
    assert "matmul_1" in text and "loop_0" in text and "%" in text
    (entry,) = [r for r in report.rows if r.kernel == "(entry)"]
    assert sum(report.by_node().values()) + entry.percent == pytest.approx(100.0, abs=0.5)


def test_own_times_subtract_the_kernels_inside_a_loop() -> None:
    records = [("total", "entry", (), -1), ("k1_loop", "loop", ("loop_0",), 0),
               ("k2_gemm", "gemm", ("matmul_1",), 1), ("k3_map", "map", ("tanh_0",), 0)]
    counters = np.array([1000, 2, 700, 2, 500, 20, 200, 2], np.int64)
    report = summarize(records, counters, hz=1e6, repeats=2, call_ms=1.0)
    own = {r.kernel: (r.ms, r.percent, r.calls) for r in report.rows}
    assert own["k2_gemm"] == (0.25, 50.0, 10)
    assert own["k1_loop"] == (0.1, 20.0, 1)
    assert own["k3_map"] == (0.1, 20.0, 1)
    assert own["(entry)"] == (0.05, 10.0, 1)
    assert report.native_ms == 0.5 and report.rows[0].kernel == "k2_gemm"


def test_the_command(tmp_path, capsys) -> None:
    source = tmp_path / "models.py"
    source.write_text("import graphrnn as gr\nfrom graphrnn import nn\n\n"
                      "def model():\n"
                      "    x = gr.Input('B', 'T', 4, name='x')\n"
                      "    n = gr.Input('B', dtype='int64', name='n')\n"
                      "    return gr.gModule([x, n], [nn.Recurrent(gr.cells.GRU(4, 5))([x, n])])\n")
    status = main(["profile", f"{source}:model", "--batch", "3", "--steps", "4",
                   "--repeats", "2"])
    out = capsys.readouterr().out
    assert status == 0 and "kernel" in out and "loop_0" in out and "gemm" in out
    assert main(["profile", f"{source}:model", "--repeats", "0"]) == 2
