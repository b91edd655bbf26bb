"""Whole programs in the cache: a hit skips the passes and the lowering, even in a new process.

The key follows the structure of the compilation (graph, signature, options, versions), not
parameter values or the source lines nodes were written on; bad entries are discarded and
compiled again.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compile import CompiledModel
from graphrnn.runtime.cache import _EXE_SUFFIX, KernelCache, decode_executable
from graphrnn.trainstep import CompiledTrainStep

RNG = np.random.default_rng(11)


def lstm(d: int = 5, h: int = 7) -> gr.gModule:
    x = gr.Input("B", "T", d, name="x")
    return gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(d, h))(x)])


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def exe_entries(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"*{_EXE_SUFFIX}"))


# ----------------------------------------------------------------------------- new process

CHILD = textwrap.dedent("""
    import json, sys, time
    import numpy as np
    import graphrnn as gr
    from graphrnn import nn
    from graphrnn.compiler import pipeline
    from graphrnn.compile import CompiledModel
    if sys.argv[1] == "load":
        def refuse(*args, **kwargs):
            raise AssertionError("the passes ran on a cache hit")
        pipeline.prepare = pipeline.compile_graph = refuse
        CompiledModel.executable = refuse
    x = gr.Input("B", "T", 32, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(32, 64))(x)])
    model.reset_parameters(seed=4)
    xs = np.random.default_rng(0).standard_normal((1, 9, 32)).astype(np.float32)
    fast = gr.compile(model)
    start = time.perf_counter()
    y = fast(xs)
    seconds = time.perf_counter() - start
    error = float(np.abs(y - gr.interpret(model, xs)).max())
    stats = fast.cache.stats
    print(json.dumps({"seconds": seconds, "error": error, "compiles": fast.compiles,
                      "exe_hits": stats.exe_hits, "misses": stats.misses}))
""")


def run_child(mode: str, cache_dir: Path) -> dict:
    env = dict(os.environ, GRAPHRNN_CACHE_DIR=str(cache_dir), GRAPHRNN_DEBUG="0")
    out = subprocess.run([sys.executable, "-c", CHILD, mode], env=env, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_second_process_loads_the_program_without_running_the_passes(tmp_path) -> None:
    first = run_child("compile", tmp_path)
    assert first["compiles"] == 1 and first["misses"] == 1 and first["error"] < 1e-5
    assert len(exe_entries(tmp_path)) == 1
    second = run_child("load", tmp_path)          # prepare/compile_graph would raise
    assert second["compiles"] == 0 and second["exe_hits"] == 1 and second["misses"] == 0
    assert second["error"] < 1e-5
    assert second["seconds"] < first["seconds"]


# ----------------------------------------------------------------------------- in process

def test_a_fresh_cache_on_the_same_directory_serves_the_program(tmp_path) -> None:
    model, x = lstm(), randn(2, 4, 5)
    first = gr.compile(model, cache=KernelCache(tmp_path))
    first(x)
    fresh = KernelCache(tmp_path)
    again = gr.compile(model, cache=fresh)
    np.testing.assert_allclose(again(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)
    assert (first.compiles, again.compiles, fresh.stats.exe_hits) == (1, 0, 1)
    program = next(iter(again.programs.values()))
    assert program.exe.llvm_ir == "" and program.exe.contract == \
        next(iter(first.programs.values())).exe.contract


def test_the_key_is_structural(tmp_path) -> None:
    cache = KernelCache(tmp_path)

    def key(model: gr.gModule, batch: int = 2, **options) -> str:
        compiled = CompiledModel(model, cache=cache, **options)
        return compiled.structure_key(compiled.types_for(batch=batch))

    a = lstm()
    b = lstm()                              # built on another line: other `where`s
    b.reset_parameters(seed=9)              # other values
    assert key(a) == key(b)
    assert key(a) != key(lstm(5, 8))        # another hidden size
    assert key(a) != key(a, batch=3)
    assert key(a) != key(a, disable=("fuse",))
    assert key(a) != key(a, profile=True)
    train = CompiledTrainStep(a, gr.MSECriterion(), cache=cache)
    cut = CompiledTrainStep(a, gr.MSECriterion(), cache=cache, bptt_max=3)
    types = train.types_for(batch=2)
    assert train.structure_key(types) != cut.structure_key(types)


def test_a_subclass_with_its_own_executable_needs_its_own_key_options(tmp_path) -> None:
    class Custom(CompiledModel):
        def executable(self, types):
            return super().executable(types)

    compiled = Custom(lstm(), cache=KernelCache(tmp_path))
    assert compiled.structure_key(compiled.types_for(batch=1)) is None
    x = randn(1, 3, 5)
    np.testing.assert_allclose(compiled(x), gr.interpret(compiled.model, x), atol=1e-5)
    assert exe_entries(tmp_path) == []          # only object code was cached


@pytest.mark.parametrize("damage", ["truncate", "flip", "bad meta"])
def test_a_bad_program_entry_is_discarded_and_compiled_again(tmp_path, damage: str) -> None:
    model, x = lstm(), randn(2, 3, 5)
    compiled = gr.compile(model, cache=KernelCache(tmp_path))
    compiled(x)
    (entry,) = exe_entries(tmp_path)
    key = entry.name[:-len(_EXE_SUFFIX)]
    if damage == "bad meta":            # a sound container around metadata that is not ours
        KernelCache(tmp_path).store(key, b"\x10\0\0\0\0\0\0\0{'entry_points': 1}obj",
                                    _EXE_SUFFIX)
    else:
        blob = bytearray(entry.read_bytes())
        if damage == "truncate":
            del blob[len(blob) // 2:]
        else:
            blob[-100] ^= 0xFF
        entry.write_bytes(bytes(blob))
    fresh = KernelCache(tmp_path)
    again = gr.compile(model, cache=fresh)
    np.testing.assert_allclose(again(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)
    assert again.compiles == 1 and fresh.stats.discarded == 1 and fresh.stats.exe_hits == 0
    exe, obj = decode_executable(KernelCache(tmp_path).load(key, _EXE_SUFFIX))   # rewritten
    assert exe.entry_points[0].endswith("_forward") and obj


def test_a_debug_level_runs_the_passes(tmp_path, capsys) -> None:
    model, x = lstm(), randn(1, 3, 5)
    gr.compile(model, cache=KernelCache(tmp_path))(x)
    dumped = gr.compile(model, cache=KernelCache(tmp_path), dump=1)
    dumped(x)
    assert dumped.compiles == 1 and "[graphrnn] shapes" in capsys.readouterr().err


def test_a_cached_training_step_gives_the_same_gradients(tmp_path) -> None:
    model, x, y = lstm(), randn(3, 4, 5), randn(3, 4, 7)
    model.reset_parameters(seed=2)
    step = CompiledTrainStep(model, gr.MSECriterion(), cache=KernelCache(tmp_path))
    loss = step(x, target=y)
    grad = model.parameters()[1].copy()
    again = CompiledTrainStep(model, gr.MSECriterion(), cache=KernelCache(tmp_path))
    assert again(x, target=y) == loss and again.compiles == 0
    np.testing.assert_array_equal(model.parameters()[1], grad)
