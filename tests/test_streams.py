"""Long streams through `gr.compile(model, stateful=True)`: constant memory, exact results.

What was found (and what these tests hold the runtime to):
- a stream fed in chunks gives, bit for bit, what the same stateful model gives for the whole
  stream in one call, whatever the chunk sizes: the same kernels run on the same rows, and
  the carried state is handed over exactly (tested for RNN, LSTM and GRU, odd chunk sizes,
  empty chunks);
- compared with the ordinary (not stateful) compiled model, the stateful one is another
  program (its initial state is an input instead of a constant), so the two agree to float32
  rounding: bit for bit in most cases, a unit in the last place in some (LSTM, B=1);
- memory does not grow with the stream: each call allocates its outputs and reuses its
  workspace, and the state is one copy of the carries.

Chunking rules (see also tests/test_compile.py::test_stateful_chunks_equal_one_long_call):
chunks may have any number of steps, zero included (an empty chunk returns an empty output
and leaves the state alone); every chunk has the batch size of the first (another one raises
InputError until `reset_state()`); the state starts from the model's own initial values for
the first chunk's inputs; reverse loops cannot be stateful.
"""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(5)
D, H = 4, 8
STEPS, CHUNK = 1_000_000, 10_000


def rss() -> int:
    """Resident memory of this process, in bytes."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def recurrent(cell: str) -> gr.gModule:
    gr.manual_seed(2)
    x = gr.Input("B", "T", D, name="x")
    return gr.gModule([x], [nn.Recurrent(getattr(gr.cells, cell)(D, H))(x)])


def test_a_million_steps_in_chunks_use_constant_memory_and_give_the_one_call_result(
        cache: KernelCache) -> None:
    model = recurrent("RNN")
    xs = RNG.standard_normal((1, STEPS, D)).astype(np.float32)
    plain = gr.compile(model, cache=cache)(xs)
    stream = gr.compile(model, stateful=True, cache=cache)
    whole = stream(xs)                              # the stateful program, in one call
    stream.reset_state()
    np.testing.assert_allclose(whole, plain, rtol=1e-5, atol=1e-6)
    marks = {}
    for k, start in enumerate(range(0, STEPS, CHUNK)):
        y = stream(xs[:, start:start + CHUNK])
        if not np.array_equal(y, whole[:, start:start + CHUNK]):
            raise AssertionError(f"chunk {k} differs from the one-call result")
        if k in (1, 10, STEPS // CHUNK - 1):
            marks[k] = rss()
    assert marks[STEPS // CHUNK - 1] - marks[1] < 4 << 20, marks
    assert marks[STEPS // CHUNK - 1] - marks[10] < 2 << 20, marks
    np.testing.assert_array_equal(stream.state[0], whole[:, -1])


@pytest.mark.parametrize("cell", ["LSTM", "GRU"])
def test_any_chunk_sizes_give_the_same_bits(cell: str, cache: KernelCache) -> None:
    model = recurrent(cell)
    xs = RNG.standard_normal((3, 500, D)).astype(np.float32)
    stream = gr.compile(model, stateful=True, cache=cache)
    whole = stream(xs)
    for sizes in ((1, 2, 3, 0, 494), (7,) * 71 + (3,), (250, 0, 0, 250)):
        stream.reset_state()
        bounds = np.cumsum((0,) + sizes)
        parts = [stream(xs[:, a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
        assert all(p.shape == (3, b - a, H) for p, a, b in zip(parts, bounds, bounds[1:]))
        np.testing.assert_array_equal(np.concatenate(parts, axis=1), whole)
    np.testing.assert_allclose(whole, model.forward(xs), rtol=1e-4, atol=1e-5)


def test_an_empty_chunk_keeps_the_state(cache: KernelCache) -> None:
    stream = gr.compile(recurrent("GRU"), stateful=True, cache=cache)
    xs = RNG.standard_normal((2, 9, D)).astype(np.float32)
    stream(xs[:, :4])
    before = [s.copy() for s in stream.state]
    assert stream(xs[:, 4:4]).shape == (2, 0, H)
    for a, b in zip(stream.state, before):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(gr.InputError, match="reset_state"):
        stream(xs[:1, 4:])
