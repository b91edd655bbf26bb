"""The memory section of `graphrnn bench` on a tiny LSTM (no timing asserted): one fresh child
process per variant, checkpointing shrinks the arena and leaves the gradients unchanged, the
arena of BPTT grows with T, the measured peak is the step's own, the table and options."""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np
import pytest

from graphrnn.bench.run import add_arguments
from graphrnn.bench.memory import peak_of, run_memory
from graphrnn.bench.report import format_memory, format_table

CONFIG = (2, 40, 4, 4)
VARIANT_KEYS = {"checkpoint", "arena_bytes", "arena_bytes_2t", "arena_bytes_per_step",
                "last_arena_bytes", "last_arena_bytes_2t", "method", "rss_before_bytes",
                "peak_rss_bytes", "step_peak_bytes", "ms", "min_ms", "first_call_ms", "rounds",
                "compile_s", "loss", "max_abs_diff"}


@pytest.fixture(scope="module")
def memory():
    return json.loads(json.dumps(run_memory(CONFIG, (8,), repeats=1)))


def test_every_variant_has_every_field(memory):
    assert memory["config"] == list(CONFIG) and memory["checkpoints"] == [8]
    assert memory["t2"] == 2 * CONFIG[1] and memory["failed"] == []
    assert [v["checkpoint"] for v in memory["variants"]] == [None, 8]
    for v in memory["variants"]:
        assert set(v) == VARIANT_KEYS
        assert v["rounds"] >= 1 and v["min_ms"] <= v["ms"] and v["compile_s"] > 0
        assert v["peak_rss_bytes"] >= v["rss_before_bytes"] > 0
        assert v["step_peak_bytes"] == max(v["peak_rss_bytes"] - v["rss_before_bytes"], 0)
        if sys.platform.startswith("linux"):
            assert v["method"] == "VmHWM"
            # the arena is zero-filled, so all its pages are touched during the step; up to
            # 16 of them may come back from heap pages already resident (a small arena is
            # taken from the heap, not mapped fresh), which do not raise the high-water mark
            assert v["step_peak_bytes"] >= v["arena_bytes"] - 17 * 4096
        assert v["arena_bytes_per_step"] == pytest.approx(
            (v["arena_bytes_2t"] - v["arena_bytes"]) / CONFIG[1])


def test_checkpointing_shrinks_the_arena_and_keeps_the_gradients(memory):
    off, ckpt = memory["variants"]
    assert off["max_abs_diff"] is None
    assert ckpt["max_abs_diff"] < 1e-5
    assert ckpt["loss"] == pytest.approx(off["loss"], abs=1e-6)
    assert ckpt["arena_bytes"] < off["arena_bytes"]
    assert ckpt["last_arena_bytes"] < off["last_arena_bytes"]
    # BPTT saves every step: the arena grows with T, checkpointed much more slowly
    off_growth = off["last_arena_bytes_2t"] - off["last_arena_bytes"]
    assert off_growth > 0
    assert ckpt["last_arena_bytes_2t"] - ckpt["last_arena_bytes"] < off_growth / 4
    assert ckpt["arena_bytes_per_step"] < off["arena_bytes_per_step"]


def test_the_gradients_match_the_interpreter(memory):
    """The children's loss is the interpreter's on the same layer, weights and data."""
    import graphrnn as gr
    from graphrnn.bench.peers import build_layer
    from graphrnn.train import InterpretedStep
    b, t, d, h = CONFIG
    model = build_layer("lstm", d, h)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((b, t, d)).astype(np.float32)
    y = rng.standard_normal((b, t, h)).astype(np.float32)
    loss = InterpretedStep(model, gr.MSECriterion())(x, target=y)
    for v in memory["variants"]:
        assert v["loss"] == pytest.approx(loss, abs=1e-5)


def test_the_peak_is_the_steps_own():
    """An earlier, larger allocation does not count; a freed one inside the call does."""
    big = np.ones(24 << 20, np.float32)         # 96 MiB touched, then freed
    del big

    def call() -> int:
        a = np.ones(8 << 20, np.float32)        # 32 MiB, freed before the call returns
        return int(a[-1])
    value, peak = peak_of(call)
    assert value == 1
    if peak["method"] == "VmHWM":
        assert 30 << 20 <= peak["step_peak_bytes"] < 64 << 20
    else:
        assert peak["step_peak_bytes"] >= 0


def test_the_table(memory):
    lines = format_memory(memory)
    assert lines[0].startswith("training memory: LSTM (B, T, D, H) = (2, 40, 4, 4)")
    off = next(ln for ln in lines if ln.startswith("off "))
    k8 = next(ln for ln in lines if ln.startswith("k=8 "))
    assert "1.00x" in off and off.split()[-4] == "-"            # no diff against itself
    assert float(k8.split()[-4]) < 1e-5
    assert not any(ln.startswith("WARNING") for ln in lines)
    failed = format_memory(dict(memory, failed=["k=3"]))
    assert failed[-1].startswith("WARNING: the memory variant k=3 failed")
    host = {"cpu": "test", "llvm_cpu": "test", "avx512f": False, "logical_cpus": 1,
            "loadavg": [0.0], "loadavg_end": [0.0], "versions": {}}
    table = format_table({"host": host, "peak": None, "compile": None, "rows": [],
                          "memory": memory})
    assert "\n".join(lines) in table


def test_the_options():
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--memory-config", "2,40,4,4", "--checkpoints", "8", "20"])
    assert args.memory_config == CONFIG and args.checkpoints == [8, 20]
    assert not args.no_memory and parser.parse_args(["--no-memory"]).no_memory
    for bad in ("0", "-3", "x"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--checkpoints", bad])
