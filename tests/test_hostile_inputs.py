"""Hostile and broken inputs: each ends in a clear Python exception or a correct result.

CASES is the table of docs/hostile_inputs.md in code: one row per kind of bad input, with the
test that covers it. Rows covered by another test file are run here only in the subprocess
test, which performs every hostile call of the table in one fresh process and checks that
the process ends normally (no signal, no hang); rows covered nowhere else are tests here.
"""
from __future__ import annotations

import io
import re
import subprocess
import sys
import textwrap
import tracemalloc
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import graphrnn as gr
import test_compile_errors as calls
import test_serialize as files
from graphrnn import nn
from graphrnn.ir import GraphError, InputError
from graphrnn.runtime.cache import KernelCache
from graphrnn.serialize import ModelFileError

ROOT = Path(__file__).resolve().parent.parent
LOAD_ERRORS = (ModelFileError, GraphError)


@dataclass
class Context:
    """What the cases share: a scratch directory and lazily compiled models."""
    tmp: Path
    made: dict

    def get(self, name: str, build: Callable[["Context"], Any]) -> Any:
        if name not in self.made:
            self.made[name] = build(self)
        return self.made[name]

    @property
    def cache(self) -> KernelCache:
        return self.get("cache", lambda c: KernelCache(c.tmp / "kernels"))

    @property
    def gru(self) -> tuple[gr.gModule, Any]:
        """test_compile_errors' model (x, lengths, ids -> GRU) and its compiled form."""
        def build(c: Context) -> tuple[gr.gModule, Any]:
            x = gr.Input("B", "T", calls.D, name="x")
            n = gr.Input("B", dtype="int64", name="lengths")
            ids = gr.Input("B", "T", dtype="int64", name="ids")
            seq = nn.CAddTable()([x, nn.LookupTable(calls.V, calls.D)(ids)])
            model = gr.gModule([x, n, ids], [nn.Recurrent(gr.cells.GRU(calls.D, calls.H))(
                [seq, n])])
            return model, gr.compile(model, cache=c.cache)
        return self.get("gru", build)

    @property
    def lstm(self) -> tuple[gr.gModule, Any, Any]:
        """x[B, T, 4] -> LSTM -> Linear(2): the model, its forward and its training step."""
        def build(c: Context) -> tuple:
            gr.manual_seed(1)
            x = gr.Input("B", "T", 4, name="x")
            model = gr.gModule([x], [nn.Linear(5, 2)(nn.Recurrent(gr.cells.LSTM(4, 5))(x))])
            return (model, gr.compile(model, cache=c.cache),
                    gr.compile(model, loss=gr.MSECriterion(), train=True, cache=c.cache))
        return self.get("lstm", build)


def refused(kinds: type | tuple, call: Callable, *args: Any, match: str = "",
            **kwargs: Any) -> str:
    """Run `call(*args, **kwargs)`; it must raise one of `kinds` (`match` in the message)."""
    try:
        call(*args, **kwargs)
    except kinds as e:
        assert re.search(match, str(e)), f"{type(e).__name__}: {e} (expected {match!r})"
        return type(e).__name__
    except Exception as e:                  # noqa: BLE001  (the wrong kind of error)
        raise AssertionError(f"raised {type(e).__name__}: {e}; expected {kinds}") from e
    raise AssertionError(f"returned normally; expected {kinds}")


# ----------------------------------------------------------------------------- the rows

def bad_call(name: str) -> Callable[[Context], str]:
    def case(c: Context) -> str:
        inputs, fragment = calls.bad_calls()[name]
        return refused(InputError, c.gru[1], *inputs, match=re.escape(fragment))
    return case


def fixed_layouts(c: Context) -> str:
    model, fast = c.gru
    x, n, ids = calls.good()
    flipped = np.ascontiguousarray(x[:, ::-1])[:, ::-1]
    wide = np.repeat(x, 2, axis=2)[:, :, ::2]
    for variant in (flipped, wide):
        assert not variant.flags.c_contiguous
        np.testing.assert_allclose(fast(variant, n, ids), model.forward(x, n, ids),
                                   rtol=1e-4, atol=1e-5)
    return "result"


def empty_batch(c: Context) -> str:
    """B=0: an empty result of the right shape, compiled and interpreted; a training step
    on it gives the mean of nothing (NaN) as its loss and zero gradients."""
    model, fast = c.gru
    x, n, ids = np.zeros((0, 6, calls.D), np.float32), np.zeros(0, np.int64), \
        np.zeros((0, 6), np.int64)
    assert fast(x, n, ids).shape == gr.interpret(model, x, n, ids).shape == (0, 6, calls.H)
    lstm, forward, step = c.lstm
    empty = np.zeros((0, 6, 4), np.float32)
    assert forward(empty).shape == (0, 6, 2)
    assert np.isnan(step(empty, target=np.zeros((0, 6, 2), np.float32)))
    assert not lstm.parameters()[1].any()
    return "result"


def zero_steps(c: Context) -> str:
    model, fast = c.gru
    x, _, ids = calls.good(0)
    assert fast(x, np.zeros(calls.B, np.int64), ids).shape == (calls.B, 0, calls.H)
    return refused(InputError, fast, x, np.array([1, 0, 0]), ids, match="lengths")


def nan_and_inf(c: Context) -> str:
    """NaN and +-inf propagate as IEEE arithmetic says: the compiled model puts NaN and inf
    exactly where the interpreter does; a training step returns a NaN loss."""
    rng = np.random.default_rng(8)
    x = rng.standard_normal((4, 7, 4)).astype(np.float32)
    x[0, 1, 2], x[1, 2, 0], x[2, 0, 1], x[3, 4] = np.nan, np.inf, -np.inf, np.inf
    model, forward, step = c.lstm
    gmodel, gru = c.gru
    _, n, ids = calls.good(7)
    for want, got in ((gr.interpret(model, x), forward(x)),
                      (gr.interpret(gmodel, x[:3], n, ids), gru(x[:3], n, ids))):
        assert np.isnan(want).any()
        np.testing.assert_array_equal(np.isnan(got), np.isnan(want))
        np.testing.assert_array_equal(np.isinf(got), np.isinf(want))
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert np.isnan(step(x, target=np.zeros((4, 7, 2), np.float32)))
    return "result"


def claimed_rows(c: Context) -> str:
    """2**31 rows claimed by zero-strided views: refused before any program is compiled or
    any memory is reserved (plain, stateful and training calls alike)."""
    model, fast, step = c.lstm
    rows = 1 << 31
    x = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (rows, 3, 4), (0, 0, 0))
    y = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (rows, 3, 2), (0, 0, 0))
    stream = gr.compile(model, stateful=True, cache=c.cache)
    compiled = (len(fast.programs), len(step.programs))
    tracemalloc.start()
    try:
        for call, args, kw in ((fast, (x,), {}), (stream, (x,), {}), (step, (x,), {"target": y})):
            refused(InputError, call, *args, **kw, match="too large")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20, peak
    assert (len(fast.programs), len(step.programs), len(stream.programs)) == (*compiled, 0)
    return "InputError"


def graph_cycle(c: Context) -> str:
    x = gr.Input("B", 3)
    a = nn.Tanh()(x)
    b = nn.Sigmoid()(a)
    object.__setattr__(a, "inputs", (b,))       # nodes are frozen: the only way to make one
    return refused(GraphError, gr.gModule, [x], [b], match="cycle")


def file_cycle(c: Context) -> str:
    path = files.saved(c.tmp)

    def cycle(d: dict) -> None:
        names = [n["name"] for n in d["graph"]["nodes"]]
        files.node_named(d, "concat_0")["inputs"][1] = names.index("add_0")
    files.rewrite(path, cycle)
    return refused(GraphError, gr.load, path, match="cycle")


def truncated_file(c: Context) -> str:
    _, data = files.tiny(c.tmp)
    for k in range(len(data)):
        refused(LOAD_ERRORS, gr.load, io.BytesIO(data[:k]))
    return "ModelFileError"


def flipped_bytes(c: Context) -> str:
    model, data = files.tiny(c.tmp)
    x = np.ones((2, 2), np.float32)
    for k in range(0, len(data), 7):
        try:
            again = gr.load(io.BytesIO(data[:k] + bytes([data[k] ^ 0xFF]) + data[k + 1:]))
        except LOAD_ERRORS:
            continue
        np.testing.assert_array_equal(gr.interpret(again, x), gr.interpret(model, x))
    return "ModelFileError"


def file_change(change: Callable[[dict], None], match: str = "") -> Callable[[Context], str]:
    def case(c: Context) -> str:
        path = files.saved(c.tmp)
        files.rewrite(path, change)
        return refused(ModelFileError, gr.load, path, match=match)
    return case


def foreign_file(c: Context) -> str:
    path = c.tmp / "foreign.grnn"
    path.write_bytes(np.random.default_rng(0).bytes(2000))
    return refused(ModelFileError, gr.load, path, match="not a graphrnn model file")


def corrupt_cache(c: Context) -> str:
    """Every entry of a real model's disk cache damaged: a fresh cache discards them,
    recompiles, and the model gives the right result."""
    model, _ = c.gru
    directory = c.tmp / "damaged"
    args = calls.good()
    want = gr.compile(model, cache=KernelCache(directory))(*args)
    for k, entry in enumerate(sorted(directory.iterdir())):
        blob = bytearray(entry.read_bytes())
        if k % 2:
            blob[len(blob) // 2] ^= 0x10                    # one flipped bit
        else:
            del blob[len(blob) // 3:]                       # cut short
        entry.write_bytes(bytes(blob))
    fresh = KernelCache(directory)
    np.testing.assert_array_equal(gr.compile(model, cache=fresh)(*args), want)
    assert fresh.stats.discarded >= 1 and fresh.stats.misses >= 1, fresh.stats
    return "result"


@dataclass(frozen=True)
class Row:
    case: Callable[[Context], str]
    covered: str = ""           # the test elsewhere that covers the row ("" = this file)


def _input_row(name: str) -> Row:
    return Row(bad_call(name), "test_compile_errors.py::test_bad_inputs_raise_input_error")


CASES: dict[str, Row] = {
    **{name: _input_row(name) for name in (
        "too few inputs", "wrong rank", "wrong feature size", "mismatched batch", "float64",
        "int array for a float input", "object array", "strings", "float lengths",
        "lengths above T", "negative lengths", "ids out of range", "negative ids",
        "mismatched T", "huge T")},
    "non-contiguous and negative strides": Row(
        fixed_layouts, "test_compile_errors.py::test_layouts_numpy_can_fix_are_accepted"),
    "empty batch": Row(empty_batch),
    "zero steps": Row(zero_steps, "test_compile_errors.py::test_zero_steps_need_zero_lengths"),
    "nan and inf": Row(nan_and_inf),
    "2**31 rows": Row(claimed_rows),
    "cycle in a graph": Row(graph_cycle,
                            "test_graph_errors.py::test_cycle_is_refused_naming_a_node_on_it"),
    "cycle in a file": Row(file_cycle, "test_serialize.py::test_a_cycle_is_reported_by_node_names"),
    "truncated file": Row(truncated_file,
                          "test_serialize.py::test_every_truncation_is_a_clear_error"),
    "flipped bytes": Row(flipped_bytes,
                         "test_serialize.py::test_every_flipped_byte_is_refused_or_harmless"),
    "wrong format version": Row(file_change(lambda d: d.update(version=2), "upgrade"),
                                "test_serialize.py::test_a_newer_version_asks_for_an_upgrade"),
    "json naming python objects": Row(
        file_change(lambda d: files.node_named(d, "concat_0")["attrs"].update(
            axis={"py/object": "os.system"})),
        "test_serialize.py::test_json_naming_python_objects_is_refused_as_data"),
    "foreign file": Row(foreign_file, "test_serialize.py::test_foreign_files_are_not_model_files"),
    "corrupted kernel cache": Row(corrupt_cache),
}


@pytest.fixture(scope="module")
def context(tmp_path_factory: pytest.TempPathFactory) -> Context:
    return Context(tmp_path_factory.mktemp("hostile"), {})


@pytest.mark.parametrize("name", sorted(n for n, row in CASES.items() if not row.covered))
def test_row(name: str, context: Context) -> None:
    CASES[name].case(context)


def test_the_table_lists_every_row_and_its_test() -> None:
    text = (ROOT / "docs" / "hostile_inputs.md").read_text()
    for name, row in CASES.items():
        assert f"| {name} |" in text, name
        where = row.covered or "test_hostile_inputs.py::test_row"
        assert where in text, (name, where)
        module, function = where.split("::")
        assert f"def {function}(" in (ROOT / "tests" / module).read_text(), where


_RUNNER = textwrap.dedent("""
    import sys, tempfile
    from pathlib import Path
    sys.path.insert(0, sys.argv[1])
    import test_hostile_inputs as t
    with tempfile.TemporaryDirectory() as tmp:
        context = t.Context(Path(tmp), {})
        for name, row in t.CASES.items():
            try:
                print(f"{name}: ok {row.case(context)}", flush=True)
            except Exception as e:
                print(f"{name}: FAILED {type(e).__name__}: {e}", flush=True)
    print("done", flush=True)
""")


def test_every_hostile_call_in_one_process_ends_normally() -> None:
    proc = subprocess.run([sys.executable, "-c", _RUNNER, str(ROOT / "tests")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    lines = proc.stdout.splitlines()
    assert lines[-1] == "done" and len(lines) == len(CASES) + 1, proc.stdout
    failed = [line for line in lines[:-1] if ": ok " not in line]
    assert not failed, "\n".join(failed)
