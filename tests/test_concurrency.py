"""Concurrency: threads sharing one compiled model, processes sharing one disk cache.

Threads calling a model whose programs are already compiled are covered by
tests/test_compile.py::test_threads_get_their_own_results and
tests/test_program.py::test_concurrent_calls_use_separate_workspaces; here the threads also
race to compile the programs. Processes racing on the disk entries of the kernel cache (fake
object code) are covered by tests/test_cache.py::test_concurrent_processes; here two real
processes compile one model at the same time into an empty GRAPHRNN_CACHE_DIR.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache


def lstm_model() -> gr.gModule:
    gr.manual_seed(4)
    x = gr.Input("B", "T", 5, name="x")
    n = gr.Input("B", dtype="int64", name="lengths")
    h = nn.Recurrent(gr.cells.LSTM(5, 7))([x, n])
    return gr.gModule([x, n], [nn.Linear(7, 2)(h)])


def test_eight_threads_racing_to_compile_get_the_sequential_results(tmp_path) -> None:
    """Eight threads call one fresh compiled model at once: four batch sizes (four programs
    compiled concurrently), each thread its own sequence length and data."""
    model = lstm_model()
    rng = np.random.default_rng(9)
    inputs = [(rng.standard_normal((1 + i % 4, 3 + 5 * i, 5)).astype(np.float32),
               rng.integers(0, 4 + 5 * i, 1 + i % 4)) for i in range(8)]
    fast = gr.compile(model, cache=KernelCache(tmp_path), specialize=True)   # per batch size
    got: list = [None] * 8
    errors: list = []
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        try:
            barrier.wait()
            for _ in range(10):
                got[i] = fast(*inputs[i])
        except BaseException as e:          # noqa: BLE001  (reported by the main thread)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert len(fast.programs) == 4
    for g, args in zip(got, inputs):
        np.testing.assert_array_equal(g, fast(*args))        # the same call, alone
        np.testing.assert_allclose(g, model.forward(*args), rtol=1e-4, atol=1e-5)


_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import graphrnn as gr
    sys.path.insert(0, sys.argv[1])
    from test_concurrency import lstm_model, data
    from graphrnn.engine import shared_cache
    model = lstm_model()
    fast = gr.compile(model)                 # the process-wide cache: GRAPHRNN_CACHE_DIR
    print("ready", flush=True)
    sys.stdin.readline()                     # both processes start compiling together
    y = fast(*data())
    np.save(sys.argv[2], y)
    s = shared_cache().stats
    print("done", s.misses, s.disk_hits, flush=True)
""")


def data() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(21)
    return rng.standard_normal((3, 40, 5)).astype(np.float32), np.array([40, 17, 0])


def test_two_processes_compiling_into_one_empty_disk_cache(tmp_path) -> None:
    directory = tmp_path / "cache"
    env = {**os.environ, "GRAPHRNN_CACHE_DIR": str(directory),
           "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    here = os.path.dirname(os.path.abspath(__file__))
    procs = [subprocess.Popen([sys.executable, "-c", _WORKER, here, str(tmp_path / f"y{i}.npy")],
                              env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    try:
        for p in procs:
            assert p.stdout.readline().strip() == "ready", p.stderr.read()
        for p in procs:
            p.stdin.write("go\n")
            p.stdin.flush()
        outs = [p.communicate(timeout=120) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
        assert out.strip().startswith("done"), out
    a, b = (np.load(tmp_path / f"y{i}.npy") for i in range(2))
    np.testing.assert_array_equal(a, b)
    model = lstm_model()
    np.testing.assert_allclose(a, model.forward(*data()), rtol=1e-4, atol=1e-5)
    entries = sorted(f.name for f in directory.iterdir())
    assert entries and not [f for f in entries if f.endswith(".tmp")], entries
    # a third process finds everything on disk and compiles nothing
    again = subprocess.run([sys.executable, "-c", _WORKER, here, str(tmp_path / "y2.npy")],
                           env=env, input="go\n", capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert again.stdout.split()[-2] == "0", again.stdout    # no misses
    np.testing.assert_array_equal(np.load(tmp_path / "y2.npy"), a)


@pytest.mark.parametrize("stateful", [False, True])
def test_threads_on_one_model_never_mix_their_results(stateful: bool, tmp_path) -> None:
    """Eight threads, one chunk each. Plain: each gets its own chunk's result. Stateful: the
    calls run one at a time, so the results are those of the stream in some order of the
    chunks; that order is rebuilt (the first chunk is the one whose result matches a fresh
    stream, and so on) and every result must match it exactly."""
    gr.manual_seed(6)
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.GRU(3, 4))(x)])
    fast = gr.compile(model, stateful=stateful, cache=KernelCache(tmp_path))
    rng = np.random.default_rng(1)
    chunks = [rng.standard_normal((2, 6, 3)).astype(np.float32) for _ in range(8)]
    got: list = [None] * 8
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        got[i] = fast(chunks[i])

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if not stateful:
        for y, c in zip(got, chunks):
            np.testing.assert_allclose(y, model.forward(c), rtol=1e-4, atol=1e-5)
        return
    replay = gr.compile(model, stateful=True, cache=KernelCache(tmp_path))
    order: list[int] = []
    while len(order) < 8:
        for i in sorted(set(range(8)) - set(order)):
            replay.reset_state()
            for j in order:
                replay(chunks[j])
            if np.array_equal(replay(chunks[i]), got[i]):
                order.append(i)
                break
        else:
            raise AssertionError(f"no sequential order explains the results after {order}")
