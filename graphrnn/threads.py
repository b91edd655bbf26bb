"""Threads: one call's batch run as contiguous parts of rows, concurrently.

    fast = gr.compile(model, threads=2)
    fast.parts_for(64, steps=100)        # e.g. ((0, 32), (32, 64)): how such a call splits
    y = fast(x)                          # the same array as with threads=1, bit for bit

A call splits into up to `threads` parts, each run by the program compiled for its number of
rows (the native call releases the GIL; each call in flight has its own arena). The calling
thread runs the first part, a small pool owned by the compiled object the others. Inputs are
cut on axis 0 without copying; each part writes its rows straight into one output array.
Values that reduce over the batch combine as the graph defines them (`rows.py`): a mean by
the weights rows_i / B, a sum by adding, so a training step's loss and gradients are the
batch mean of a mean-reduced criterion (the first part writes its gradient into the model's
flat gradient, the others into buffers of their own, added in with their weights). The same
run, `serial=True`, takes the parts one after another on the calling thread: a training step's
blocks of rows (micro_batch.py).

The rule, so that each part has enough work to pay for the hand-off:

    parts = the largest k <= threads with  B // k >= MIN_ROWS_PER_PART  and
            (B // k) * flops_per_row >= MIN_FLOPS_PER_PART

where flops_per_row counts the matrix products of one row over the whole sequence (three
times that for a training step). A graph whose rows are not independent (see `rows.py`), or
a training step with dropout, always runs on one thread.
"""
from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from .ir import Graph
from .fused_update import scale_add
from .rows import MEAN, ROWS, SAME, SUM, RowPlan, matmul_flops, row_plan
from .runtime.forksafe import renew_after_fork
from .runtime.program import output_buffer, shapes_key

# Measured on the 2-core benchmark host (LSTM layers, 16 rows as two parts of 8, best of
# interleaved runs): two parts start to beat one call at about 10 MFLOP a part forward and
# 25 MFLOP (counted as 3x the forward) for a training step, and gain 1.3-1.5x from 30 MFLOP;
# below, the hand-off to the pool thread costs more than the second core brings. 8 rows also
# keep every part on the GEMM kernels (one row takes the GEMV kernels, which sum otherwise).
MIN_ROWS_PER_PART = 8
MIN_FLOPS_PER_PART = 30e6

Parts = tuple[tuple[int, int], ...]


def check_threads(threads: Any) -> int:
    """`threads` as a positive int, or a ValueError that says what is expected."""
    if isinstance(threads, bool) or not isinstance(threads, (int, np.integer)) or threads < 1:
        raise ValueError(f"threads must be a positive integer (1: no splitting), got "
                         f"{threads!r}")
    return int(threads)


def split_rows(batch: int, parts: int) -> Parts:
    """`parts` contiguous (start, stop) ranges covering [0, batch), sizes differing by <= 1."""
    size, extra = divmod(batch, parts)
    out, start = [], 0
    for i in range(parts):
        stop = start + size + (1 if i < extra else 0)
        out.append((start, stop))
        start = stop
    return tuple(out)


class BatchSplitter:
    """How the calls of one compiled object split: the plan, the rule, the pool."""

    def __init__(self, graph: Graph, threads: int, *, training: bool = False,
                 work: float = 1.0, gradient: bool = False, blocks: bool = False):
        self.threads = check_threads(threads)
        # `blocks`: the plan is wanted on one thread too, for serial blocks of rows
        self.plan = row_plan(graph, training=training) if self.threads > 1 or blocks else \
            RowPlan(reason="threads=1")
        outs = self.plan.outputs
        # a gradient output follows the loss: d(sum_i w_i loss_i) = sum_i w_i d loss_i
        self.out_kinds = outs + ((outs[0],) if gradient and outs else ())
        self.work = work
        self._first_rows = next((i for i, k in enumerate(self.plan.inputs) if k == ROWS), None)
        self.serial = bool(self.reason)         # calls never split
        self._flops: dict[int, float] = {}
        self._parts: dict[tuple[int, int], Parts] = {}
        self._seen: dict[Any, Parts] = {}       # (shape, dtype) per input -> parts
        # the serial parts' shared output buffers, by (shape, dtype), kept between calls
        self._spares: dict[tuple, list[np.ndarray]] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        # a forked child has none of the pool's threads: it starts a pool of its own
        renew_after_fork(self, _lock=threading.Lock, _pool=lambda: None)

    @property
    def reason(self) -> str:
        """Why calls never split ('' when they may)."""
        if self.threads == 1:
            return "threads=1"
        return self.separable

    @property
    def separable(self) -> str:
        """Why a call's rows cannot run as parts at all, on threads or one after another
        ('' when they can)."""
        if self.plan.reason:
            return self.plan.reason
        return "" if self._first_rows is not None else "no input has batch rows"

    def flops_per_row(self, steps: int) -> float:
        """The work of one row over `steps` steps, as the threshold counts it."""
        got = self._flops.get(steps)
        if got is None:
            got = self.work * matmul_flops(self.plan.typed, self.plan.batch, steps)
            if len(self._flops) < 1024:
                self._flops[steps] = got
        return got

    def parts(self, batch: int, steps: int = 1) -> Parts:
        """How a call of `batch` rows and `steps` steps splits (one part: no split)."""
        key = (batch, steps)
        got = self._parts.get(key)
        if got is None:
            k = 1
            if not self.serial:
                per_row = self.flops_per_row(steps)
                k = self.threads
                while k > 1 and (batch // k < MIN_ROWS_PER_PART
                                 or (batch // k) * per_row < MIN_FLOPS_PER_PART):
                    k -= 1
            got = split_rows(batch, k)
            if len(self._parts) < 4096:
                self._parts[key] = got
        return got

    def parts_of(self, values: Sequence[Any], check: Callable[[], Any]) -> Parts:
        """How a call on these inputs splits (only when not `serial`); `check()` validates
        them (raising InputError) the first time their shapes and dtypes are seen."""
        def make() -> Parts:
            check()
            batch = np.shape(values[self._first_rows])[0]
            time = self.plan.time
            steps = np.shape(values[time[0]])[time[1]] if time is not None else 1
            return self.parts(batch, steps)
        return by_shapes(self._seen, values, make)

    # -- running
    def run(self, parts: Parts, values: Sequence[Any], program_of: Callable[[list], Any], *,
            into: dict[int, np.ndarray] | None = None, seed: int = 0,
            training: bool = True, serial: bool = False) -> list[np.ndarray]:
        """Every part's program on its rows, concurrently (`serial`: one after another on the
        calling thread, the reduced outputs of the parts after the first sharing one buffer);
        the outputs combined. `into` maps output indexes to arrays to fill (e.g. the model's
        flat gradient)."""
        arrays = [v if k == SAME or isinstance(v, np.ndarray) else np.asarray(v)
                  for v, k in zip(values, self.plan.inputs)]
        jobs = []
        for lo, hi in parts:
            part = [a[lo:hi] if k == ROWS else a for a, k in zip(arrays, self.plan.inputs)]
            program = program_of(part)
            checked, steps = program.validate(part)
            jobs.append((program, checked, steps))
        batch = parts[-1][1]
        shapes = jobs[0][0].output_shapes(jobs[0][2], 0, jobs[0][0].more_of(jobs[0][1]))
        outs: list[np.ndarray] = []
        spares: list[np.ndarray] = []       # taken from self._spares, given back at the end
        per_part: list[list[np.ndarray]] = [[] for _ in parts]
        for j, (kind, (shape, dtype)) in enumerate(zip(self.out_kinds, shapes)):
            if kind == ROWS:
                full = np.empty((batch,) + shape[1:], dtype)
                for i, (lo, hi) in enumerate(parts):
                    per_part[i].append(full[lo:hi])
            else:
                full = output_buffer(into, j, shape, dtype)
                per_part[0].append(full)
                shared = self._spare(shape, dtype, spares) if serial and len(parts) > 1 \
                    else None
                for i in range(1, len(parts)):
                    per_part[i].append(shared if shared is not None else np.empty(shape, dtype))
            outs.append(full)
        if serial:
            try:
                for i, (program, checked, steps) in enumerate(jobs):
                    # the parameters cannot change between the parts of one call: the first
                    # part's check holds for the rest
                    program.run(checked, steps, per_part[i], seed=seed, training=training,
                                fresh=i > 0)
                    self._combine(parts, i, outs, per_part[i])
            finally:
                for a in spares:
                    self._spares[a.shape, a.dtype].append(a)
            return outs
        pool = self._executor()
        futures: list[Future] = [
            pool.submit(program.run, checked, steps, per_part[i], seed=seed, training=training)
            for i, (program, checked, steps) in enumerate(jobs) if i > 0]
        try:
            program, checked, steps = jobs[0]
            program.run(checked, steps, per_part[0], seed=seed, training=training)
        finally:
            for f in futures:
                f.exception()           # wait for every part before raising
        for f in futures:
            f.result()
        for i in range(len(parts)):
            self._combine(parts, i, outs, per_part[i])
        return outs

    def _combine(self, parts: Parts, i: int, outs: list[np.ndarray],
                 mine: list[np.ndarray]) -> None:
        """Part i's reduced outputs into `outs`: with part 1, part 0's (there already) are
        weighed too; one pass over each output per part after the first."""
        if i == 0:
            return
        batch = parts[-1][1]
        for j, kind in enumerate(self.out_kinds):
            if kind == MEAN:
                first = (parts[0][1] - parts[0][0]) / batch if i == 1 else 1.0
                scale_add(outs[j], first, mine[j], (parts[i][1] - parts[i][0]) / batch)
            elif kind == SUM:
                scale_add(outs[j], 1.0, mine[j], 1.0)

    def _spare(self, shape: tuple[int, ...], dtype: np.dtype,
               taken: list[np.ndarray]) -> np.ndarray:
        """A scratch array of this shape and dtype kept between calls, one per call in flight
        (list.pop and append are atomic); `taken` records it, to be given back."""
        free = self._spares.setdefault((shape, np.dtype(dtype)), [])
        try:
            a = free.pop()
        except IndexError:
            a = np.empty(shape, dtype)
        taken.append(a)
        return a

    def _executor(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(self.threads - 1,
                                                thread_name_prefix="graphrnn-part")
            return self._pool


def by_shapes(seen: dict[Any, Any], values: Sequence[Any], make: Callable[[], Any]) -> Any:
    """make(), once per (shape, dtype) of `values`: kept in `seen` (up to 4096 of them;
    values without a shape key are planned afresh each time)."""
    key = shapes_key(values)
    got = seen.get(key) if key is not None else None
    if got is None:
        got = make()
        if key is not None and len(seen) < 4096:
            seen[key] = got
    return got


__all__ = ["BatchSplitter", "by_shapes", "MIN_ROWS_PER_PART", "MIN_FLOPS_PER_PART",
           "check_threads", "split_rows"]
