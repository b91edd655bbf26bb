"""Bad inputs to a compiled model raise InputError (naming the input) before native code runs.

Layouts numpy can fix (non-contiguous, negative strides, other integer dtypes for int
inputs) are copied or converted and give the right answer. A subprocess runs every bad call
and checks that the process reports a Python exception instead of dying on a signal.
"""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(3)
B, D, H, V = 3, 4, 5, 9


@pytest.fixture(scope="module")
def model() -> gr.gModule:
    """x[B, T, D], lengths[B], ids[B, T] -> GRU over x + embedding(ids)."""
    x = gr.Input("B", "T", D, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    ids = gr.Input("B", "T", dtype="int64", name="ids")
    seq = nn.CAddTable()([x, nn.LookupTable(V, D)(ids)])
    return gr.gModule([x, n, ids], [nn.Recurrent(gr.cells.GRU(D, H))([seq, n])])


@pytest.fixture(scope="module")
def fast(model: gr.gModule, cache: KernelCache) -> gr.compile:
    return gr.compile(model, cache=cache)


def good(t: int = 6) -> list:
    return [RNG.standard_normal((B, t, D)).astype(np.float32), np.array([t, 2, 0]),
            RNG.integers(0, V, (B, t))]


def test_good_inputs_run(fast, model) -> None:
    args = good()
    np.testing.assert_allclose(fast(*args), model.forward(*args), rtol=1e-4, atol=1e-5)


def bad_calls() -> dict[str, tuple[list, str]]:
    """name -> (inputs, a fragment the message must contain)."""
    x, n, ids = good()
    return {
        "too few inputs": ([x, n], "takes 3 inputs"),
        "wrong rank": ([x[0], n, ids], "input x"),
        "wrong feature size": ([np.zeros((B, 6, D + 1), np.float32), n, ids], "input x"),
        "float64": ([x.astype(np.float64), n, ids], "float32"),
        "int array for a float input": ([x.astype(np.int64), n, ids], "input x"),
        "object array": ([x.astype(object), n, ids], "input x"),
        "strings": (["hello", n, ids], "input x"),
        "float lengths": ([x, n.astype(np.float32), ids], "input lengths"),
        "lengths above T": ([x, np.array([7, 2, 0]), ids], "input lengths"),
        "negative lengths": ([x, np.array([-1, 2, 0]), ids], "input lengths"),
        "ids out of range": ([x, n, np.full((B, 6), V)], "input ids"),
        "negative ids": ([x, n, np.full((B, 6), -1)], "input ids"),
        "mismatched T": ([x, n, ids[:, :5]], "input ids"),
        "mismatched batch": ([x, n[:2], ids], "input lengths"),
        "huge T": ([np.broadcast_to(np.float32(0), (B, 1 << 40, D)), n,
                    np.broadcast_to(np.int64(0), (B, 1 << 40))], "too large"),
    }


@pytest.mark.parametrize("case", sorted(bad_calls()))
def test_bad_inputs_raise_input_error(case: str, fast) -> None:
    inputs, fragment = bad_calls()[case]
    with pytest.raises(gr.InputError, match=fragment):
        fast(*inputs)


def test_layouts_numpy_can_fix_are_accepted(fast, model) -> None:
    x, n, ids = good()
    wide = np.zeros((B, 6, 2 * D), np.float32)
    wide[:, :, ::2] = x                                     # non-contiguous view of x
    flipped = np.ascontiguousarray(x[:, ::-1])[:, ::-1]     # negative strides
    want = model.forward(x, n, ids)
    for variant in (wide[:, :, ::2], flipped):
        assert not variant.flags.c_contiguous
        np.testing.assert_allclose(fast(variant, n, ids), want, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(fast(x, n.astype(np.int32), ids.astype(np.uint8)), want,
                               rtol=1e-4, atol=1e-5)


def test_zero_steps_need_zero_lengths(fast) -> None:
    x, _, ids = good(0)
    assert fast(x, np.zeros(B, np.int64), ids).shape == (B, 0, H)
    with pytest.raises(gr.InputError, match="lengths"):
        fast(x, np.array([1, 0, 0]), ids)


def test_bad_calls_fail_with_exceptions_not_signals(tmp_path) -> None:
    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import graphrnn as gr
        from graphrnn.runtime.cache import KernelCache
        sys.path.insert(0, {str(__file__.rsplit('/', 1)[0])!r})
        import test_compile_errors as t
        x = gr.Input("B", "T", t.D, name="x")
        n = gr.Input("B", dtype="int64", name="lengths")
        ids = gr.Input("B", "T", dtype="int64", name="ids")
        seq = gr.nn.CAddTable()([x, gr.nn.LookupTable(t.V, t.D)(ids)])
        model = gr.gModule([x, n, ids], [gr.nn.Recurrent(gr.cells.GRU(t.D, t.H))([seq, n])])
        fast = gr.compile(model, cache=KernelCache({str(tmp_path)!r}))
        for name, (inputs, _) in sorted(t.bad_calls().items()):
            try:
                fast(*inputs)
            except gr.InputError:
                print("raised", name, flush=True)
        print("done", flush=True)
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[-1] == "done"
    assert len([x for x in lines if x.startswith("raised")]) == len(bad_calls())
