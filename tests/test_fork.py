"""Fork safety: children forked while another thread compiles never hang on its locks.

A child of `os.fork` has one thread; a lock another thread held at the fork would stay held
for ever. The LLVM lock is taken across the fork (a fork waits for the LLVM call in flight),
and the locks of compiled models, kernel caches, programs and thread pools are fresh in the
child (runtime/forksafe.py). Every wait below has a timeout, so a hang fails the test.
"""
from __future__ import annotations

import multiprocessing
import os
import signal
import threading
import time

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.runtime.cache import KernelCache

CHILDREN = 20


def rnn(hidden: int = 4) -> gr.gModule:
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.RNN(3, hidden))(x)])
    model.reset_parameters(seed=hidden)
    return model


def inputs(batch: int) -> np.ndarray:
    return np.random.default_rng(batch).standard_normal((batch, 4, 3)).astype(np.float32)


def wait_all(pids: list[int], seconds: float) -> dict[int, int]:
    """Exit codes by pid; children still running after `seconds` are killed and get -1."""
    codes: dict[int, int] = {}
    deadline = time.monotonic() + seconds
    while len(codes) < len(pids) and time.monotonic() < deadline:
        for pid in pids:
            if pid not in codes:
                done, status = os.waitpid(pid, os.WNOHANG)
                if done:
                    codes[pid] = os.waitstatus_to_exitcode(status)
        time.sleep(0.01)
    for pid in pids:
        if pid not in codes:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            codes[pid] = -1
    return codes


def child(model: gr.gModule, fast, batch: int) -> None:
    """In a forked child: call the model the parent's thread is compiling, then exit."""
    code = 1
    try:
        x = inputs(batch)
        ok = np.allclose(fast(x), gr.interpret(model, x), rtol=1e-4, atol=1e-5)
        other = gr.compile(rnn(5), cache=fast.cache)       # a compile of its own
        ok = ok and np.allclose(other(x), gr.interpret(other.model, x), rtol=1e-4, atol=1e-5)
        code = 0 if ok else 2
    finally:
        os._exit(code)


def test_children_forked_while_another_thread_compiles_all_finish(tmp_path) -> None:
    model = rnn()
    fast = gr.compile(model, cache=KernelCache(tmp_path / "kernels"), specialize=True)
    fast(inputs(1))
    stop = threading.Event()
    started = threading.Event()

    def compile_batch_sizes() -> None:       # a program per new batch size: lock held, LLVM
        batch = 2
        while not stop.is_set() and batch < 200:
            started.set()
            fast(inputs(batch))
            batch += 1

    thread = threading.Thread(target=compile_batch_sizes, daemon=True)
    thread.start()
    started.wait(30)
    pids = []
    try:
        for k in range(CHILDREN):
            pid = os.fork()
            if pid == 0:
                child(model, fast, 2 + k % 3)
            pids.append(pid)
            time.sleep(0.02)
    finally:
        stop.set()
        codes = wait_all(pids, 120)
        thread.join(60)
    assert sorted(codes.values()) == [0] * CHILDREN, codes


def work(batch: int) -> float:
    """Compile a model in this process and return its largest error against the interpreter."""
    model = rnn()
    x = inputs(batch)
    return float(np.abs(gr.compile(model)(x) - gr.interpret(model, x)).max())


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_multiprocessing_pools_compile(method, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("GRAPHRNN_CACHE_DIR", str(tmp_path / "kernels"))
    assert work(1) < 1e-4                   # the parent has compiled and cached already
    with multiprocessing.get_context(method).Pool(2) as pool:
        errors = pool.map_async(work, [1, 2, 3, 4]).get(timeout=120)
    assert max(errors) < 1e-4
