"""`graphrnn bench --distributed` on a tiny configuration, end to end through the command line
(real mpiexec jobs and Dask clusters; no timing asserted), and the per-phase CPU clock."""
from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn.bench import scaling
from graphrnn.bench.scaling_rank import PhaseClock
from graphrnn.cli import main as cli_main
from graphrnn.distributed.mpi import Collectives
from graphrnn.runtime.program import Program
from graphrnn.trainstep import train_step

TINY = scaling.ScalingConfig(steps=5, hidden=8, batch=16, train_rows=64, epochs=2,
                             infer_rows=256, chunk=64, rounds=2)


def test_the_phase_clock_times_the_native_step_and_puts_the_calls_back():
    model = scaling.build_model(TINY)
    step = train_step(model, gr.MSECriterion())
    x, y = np.ones((4, 5, 2), np.float32), np.ones((4, 1), np.float32)
    step(x, target=y)
    originals = (Program._run, Collectives.wait)
    with PhaseClock() as clock:
        for _ in range(3):
            step(x, target=y)
    assert (Program._run, Collectives.wait) == originals
    got = clock.per_step_ms(3)
    assert set(got) == {"native", "waits", "rest", "other threads", "wall", "native wall",
                        "waits wall"}
    assert got["native"] > 0 and got["waits"] == 0 and got["wall"] >= got["native wall"] > 0


needs_mpiexec = pytest.mark.skipif(
    not (Path(sys.executable).parent / "mpiexec").exists()
    or not all(importlib.util.find_spec(m) for m in ("mpi4py", "distributed")),
    reason="needs the distributed extra (mpi4py, the mpich wheel's mpiexec, dask)")


@needs_mpiexec
def test_bench_distributed_reports_both_scalings(monkeypatch, capsys):
    monkeypatch.setenv("HYDRA_LAUNCHER", "fork")
    monkeypatch.setenv("GRAPHRNN_VERIFY", "0")
    monkeypatch.setattr(scaling, "QUICK", TINY)
    assert cli_main(["bench", "--distributed", "--quick", "--json", "--no-bind"]) == 0
    result = json.loads(capsys.readouterr().out)
    samples, med = result["samples"], result["median"]
    assert set(samples) == {"train1", "train2", "control", "infer1", "infer2"}
    for name, values in samples.items():
        assert len(values) == TINY.rounds and all(v > 0 for v in values), name
        assert med[name] == pytest.approx(float(np.median(values)))
    assert result["training_scaling"] == pytest.approx(med["train2"] / med["train1"])
    assert result["inference_scaling"] == pytest.approx(med["infer2"] / med["infer1"])
    assert result["control_capacity"] == pytest.approx(med["control"] / med["train1"])
    assert result["config"]["bind"] is False and result["config"]["hidden"] == TINY.hidden
    assert result["isa"]["name"] in ("avx512", "avx2", "avx", "sse")
    # every run's phases: one entry per rank, the native step on each
    for label, ranks in (("1 rank(s)", 1), ("2 rank(s)", 2)):
        runs = result["cpu_ms_per_step"][label]
        assert len(runs) == TINY.rounds
        assert all(len(run) == ranks and all(p["native"] > 0 for p in run) for run in runs)
    for name in ("infer1", "infer2"):
        calls = result["cpu_s_per_predict"][name]
        assert len(calls) == TINY.rounds and all(c["workers"] > 0 for c in calls)
    text = scaling.format_scaling(result)
    assert "scaling 1 -> 2: training" in text and "inference" in text and "control" in text
    assert "ms per step, 2 rank(s), rank 1: CPU native" in text
    assert "CPU s per predict call, 2 worker(s): workers" in text
