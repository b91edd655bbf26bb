"""The worker process fuzz cases run in: a case that kills it, or hangs, becomes a "crash"
finding instead of ending the run."""
from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
from typing import Any, Callable

from ..runtime.cache import KernelCache
from .crosscheck import Discrepancy


class Worker:
    """Runs jobs, `fn(job, cache)`, one at a time in one child process that it starts on the
    first job and again after a job killed it. A job during which the child dies (a signal,
    an exit, or no answer within `timeout` seconds) gives a "crash" finding instead.

        with Worker(run_checks, cache_dir) as worker:
            found = worker(case)                # what run_checks(case, cache) returns

    `fn` is sent to the child by reference, so it must be a module-level function; this is
    the hook a test uses to make the child die on a case it chooses. `cache_dir` is the kernel
    cache of the child (None: the default cache); `started` counts the children started.
    The child is a fresh interpreter (multiprocessing "spawn"): a script that runs a Worker
    needs the `if __name__ == "__main__":` guard.
    """

    def __init__(self, fn: Callable[[Any, Any], list[Discrepancy]],
                 cache_dir: str | os.PathLike | None = None, *, timeout: float | None = None):
        self.fn, self.cache_dir, self.timeout = fn, cache_dir, timeout
        self.started = 0
        self._process: Any = None
        self._conn: Any = None

    def __call__(self, job: Any) -> list[Discrepancy]:
        if self._process is None or not self._process.is_alive():
            self._start()
        try:
            self._conn.send(job)
            if self.timeout is None or self._conn.poll(self.timeout):
                return self._conn.recv()
            self._process.kill()
            detail = f"no answer after {self.timeout:g} s: the worker was killed"
        except (EOFError, OSError):              # the child died during the job
            detail = ""
        self._process.join()
        detail = detail or _death(self._process.exitcode)
        self.close()
        return [Discrepancy("crash", detail)]

    def _start(self) -> None:
        self.close()
        # spawn: a fresh interpreter, not a fork of this one's threads and JIT state
        context = multiprocessing.get_context("spawn")
        conn, child = context.Pipe()
        cache_dir = None if self.cache_dir is None else str(self.cache_dir)
        process = context.Process(target=_serve, args=(child, self.fn, cache_dir),
                                  name="graphrnn-fuzz-worker", daemon=True)
        try:
            process.start()
        finally:
            child.close()           # the child's end lives in the child only: EOF when it dies
        self._process, self._conn = process, conn
        self.started += 1

    def close(self) -> None:
        """Stop the child (it is started again by the next job)."""
        if self._process is not None:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            self._process.join(5)
            if self._process.is_alive():
                self._process.kill()
                self._process.join()
            self._conn.close()
        self._process = self._conn = None

    def __enter__(self) -> "Worker":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _death(exitcode: int | None) -> str:
    """How a worker ended, in words: "killed by SIGSEGV", "exited with status 1"."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exited with status {exitcode}"


def _serve(conn: Any, fn: Callable[[Any, Any], list[Discrepancy]], cache_dir: str | None
           ) -> None:
    """The worker's loop: a job in, its findings out, until None or the parent is gone."""
    import faulthandler
    faulthandler.enable()           # a native crash leaves the Python stack on stderr
    cache = KernelCache(cache_dir) if cache_dir is not None else None
    while True:
        try:
            job = conn.recv()
        except EOFError:
            return
        if job is None:
            return
        conn.send(fn(job, cache))
