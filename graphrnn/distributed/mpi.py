"""Synchronous data-parallel training over MPI: the Horovod pattern on the flat vectors.

Every parameter of a model lives in one float32 vector and every gradient in another, so a
data-parallel step needs exactly one collective: after each rank has run the training step
on its share of the global batch, one in-place `Allreduce` of the flat gradient vector, each
rank's gradient weighted by its share of the rows, leaves on every rank the gradient of the
whole global batch. Every rank then makes the same optimiser update from the same state.

    from mpi4py import MPI
    gr.train.fit(model, crit, x, y, batch_size=256, comm=MPI.COMM_WORLD)   # mpiexec -n 4 ...

    allreduce = AllreduceGradients(MPI.COMM_WORLD)        # with any optimiser, by hand
    broadcast_parameters(MPI.COMM_WORLD, model)
    loss = step(x_mine, target=y_mine); allreduce(grads, weight=rows_mine / rows_all)
    opt.step()

Collectives never wait forever: each one is started non-blocking and polled against a
deadline (`Collectives(comm, timeout=...)`, DEFAULT_TIMEOUT seconds by default). A rank that
died or hung makes the others print which collective timed out and abort the whole job with
`comm.Abort(1)`, because a rank that merely raised would hang in MPI_Finalize instead.
mpi4py is imported only when a collective runs; this module imports no third-party package.
"""
from __future__ import annotations

import os
import sys
import time
import traceback
from contextlib import contextmanager
from typing import Any, Callable, Iterator

import numpy as np


# Long enough for a compile on the first step, a validation pass and an `on_epoch` callback
# on rank 0 while the others wait; short enough that a dead job gives its nodes back.
DEFAULT_TIMEOUT = 300.0
# Poll this long first, yielding the core between polls instead of sleeping: ranks that end
# a step close together meet without a sleep's late wake-up (up to MAX_SLEEP, plus timer
# slack, each time), while a rank or another process waiting for this core gets it at once
# (a bare spin held it for its whole time slice). Steps of a balanced job on a loaded machine
# drift apart by several milliseconds, so the window is wide; waits longer than that (a
# compile on the first step, `on_epoch` on rank 0) sleep, so an idle rank costs no CPU.
YIELD_SECONDS = 0.05
MAX_SLEEP = 0.001
# lets a thread that is ready to run on this core run (a no-op without one)
_yield = getattr(os, "sched_yield", lambda: None)
ABORT_GRACE_SECONDS = 1.0      # between printing why a rank aborts and aborting


class CollectiveTimeout(RuntimeError):
    """A collective did not complete within the timeout (another rank died or hung)."""


class Collectives:
    """The collectives data-parallel training needs, each with a deadline.

    comm: an mpi4py communicator. timeout: seconds any one collective may take before this
    rank gives up. abort: on a timeout, print the reason and `comm.Abort(1)` the job (the
    default: the only way an MPI job reliably ends); False raises CollectiveTimeout instead.
    """

    def __init__(self, comm: Any, timeout: float = DEFAULT_TIMEOUT, abort: bool = True):
        if timeout <= 0:
            raise ValueError(f"timeout must be positive seconds, got {timeout!r}")
        self.comm, self.timeout, self.abort = comm, float(timeout), abort

    @property
    def rank(self) -> int:
        """This process's rank."""
        return self.comm.Get_rank()

    @property
    def size(self) -> int:
        """The number of ranks."""
        return self.comm.Get_size()

    def allreduce_sum(self, buf: np.ndarray, what: str) -> np.ndarray:
        """Sum `buf` over the ranks, in place; returns `buf`."""
        return self.allreduce_sums([buf], what)[0]

    def allreduce_sums(self, bufs: list[np.ndarray], what: str) -> list[np.ndarray]:
        """Sum each of `bufs` over the ranks, in place, with one wait for all of them."""
        from mpi4py import MPI
        self.wait([self.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM) for b in bufs], what)
        return bufs

    def allreduce_max(self, buf: np.ndarray, what: str) -> np.ndarray:
        """The element-wise maximum of `buf` over the ranks, in place; returns `buf`."""
        from mpi4py import MPI
        self.wait(self.comm.Iallreduce(MPI.IN_PLACE, buf, op=MPI.MAX), what)
        return buf

    def broadcast(self, buf: np.ndarray, what: str, root: int = 0) -> np.ndarray:
        """Rank `root`'s `buf` copied into every rank's `buf`, in place; returns `buf`."""
        self.wait(self.comm.Ibcast(buf, root=root), what)
        return buf

    def wait(self, request: Any, what: str) -> None:
        """Poll `request` (or a list of requests) until it completes or the deadline passes."""
        start = time.monotonic()
        deadline, nap = start + self.timeout, 0.0
        if isinstance(request, list):
            from mpi4py import MPI
            requests = request
            done: Callable[[], bool] = lambda: MPI.Request.Testall(requests)
        else:
            done = request.Test
        try:
            while not done():
                now = time.monotonic()
                if now > deadline:
                    self.fail(f"{what} did not complete within {self.timeout:g} s: another "
                              f"rank has died or hung")
                if now - start < YIELD_SECONDS:
                    _yield()
                else:
                    nap = min(MAX_SLEEP, max(2 * nap, 5e-5))
                    time.sleep(nap)
        except CollectiveTimeout:
            raise
        except Exception as e:          # an MPI error from a failed peer: end the job too
            self.fail(f"{what} failed: {e}")

    def fail(self, message: str) -> None:
        """Raise CollectiveTimeout, or (abort=True) print `message` and abort the job."""
        text = f"graphrnn.distributed: rank {self.rank} of {self.size}: {message}"
        if not self.abort:
            raise CollectiveTimeout(text)
        sys.stderr.write(text + "; aborting the MPI job\n")
        sys.stderr.flush()
        # the launcher forwards output asynchronously and drops what is still in flight when
        # Abort tears the job down: give it a moment, or the reason is lost under load
        time.sleep(ABORT_GRACE_SECONDS)
        self.comm.Abort(1)


def collectives(comm: Any) -> Collectives:
    """`comm` itself when it is a Collectives, else `Collectives(comm)` with the defaults."""
    return comm if isinstance(comm, Collectives) else Collectives(comm)


@contextmanager
def abort_on_error(comm: Any) -> Iterator[None]:
    """Any exception on this rank prints its traceback and aborts the whole job at once.

    Without it a rank that raised waits in MPI_Finalize while the others wait for it in the
    next collective until their timeout. (`python -m mpi4py script.py` does the same.)
    """
    try:
        yield
    except BaseException as e:
        if isinstance(e, SystemExit) and not e.code:
            raise
        comm = comm.comm if isinstance(comm, Collectives) else comm
        sys.stderr.write(f"graphrnn.distributed: rank {comm.Get_rank()} failed:\n")
        traceback.print_exc()
        sys.stderr.flush()
        comm.Abort(1)


def broadcast_parameters(comm: Any, model: Any, root: int = 0) -> None:
    """Copy rank `root`'s flat parameter vector into every rank's, in place (compiled models
    see the new values at their next call)."""
    params, _ = model.parameters()
    collectives(comm).broadcast(params, "the parameter broadcast", root)


def shard(rows: np.ndarray, rank: int, size: int) -> np.ndarray:
    """This rank's contiguous part of a global batch's row indices (sizes differ by <= 1)."""
    base, extra = divmod(len(rows), size)
    start = rank * base + min(rank, extra)
    return rows[start:start + base + (rank < extra)]


class AllreduceGradients:
    """`allreduce(grads, weight)`: grads <- sum over ranks of weight_r * grads_r, in place.

    With a mean-reduced loss and `weight = rows on this rank / rows in the global batch`, the
    result is the gradient of the whole global batch, as one process would compute it (up to
    float32 summation order). `weight=None` averages (weight 1 / number of ranks).
    """

    def __init__(self, comm: Any):
        self.coll = collectives(comm)

    def __call__(self, grads: np.ndarray, weight: float | None = None,
                 loss: float | None = None) -> Any:
        """With `loss` (this rank's): also returns the weighted sum of the ranks' losses, summed
        in the same collective as the gradient (one wait per step)."""
        if grads.dtype != np.float32 or not grads.flags.c_contiguous:
            raise ValueError("expected the model's flat float32 gradient vector")
        w = 1.0 / self.coll.size if weight is None else weight
        if w != 1.0:
            grads *= np.float32(w)
        if loss is None:
            return self.coll.allreduce_sum(grads, "the gradient all-reduce")
        total = np.array([float(loss) * w], np.float64)
        self.coll.allreduce_sums([grads, total], "the gradient all-reduce")
        return float(total[0])


class DataParallel:
    """What `gr.train.fit(..., comm=...)` does across ranks (see `fit`).

    On construction: checks that every rank runs the same fit (`agree`: the numbers that must
    match, e.g. examples, batch size, epochs, seed) and the same parameter count, then
    broadcasts rank 0's parameters. `batches(run_batch)` runs this rank's shard of every
    global batch and returns the global batch's loss; `step(step)` all-reduces the gradient
    after every training step (also each chunk of a stateful one) and evaluates losses
    sharded; `on_epoch(cb)` runs the callback on rank 0 only and every rank stops when it
    says so. Progress, history output and checkpoints belong on rank 0 (`self.root`).
    """

    def __init__(self, comm: Any, model: Any, agree: tuple[int, ...] = ()):
        self.coll = collectives(comm)
        self.rank, self.size = self.coll.rank, self.coll.size
        self.root = self.rank == 0
        self.allreduce = AllreduceGradients(self.coll)
        self.grads = model.parameters()[1]
        self.weight = 1.0
        self._check_agree((len(self.grads),) + tuple(int(a) for a in agree))
        broadcast_parameters(self.coll, model)

    def _check_agree(self, facts: tuple[int, ...]) -> None:
        mine = np.array(facts, np.int64)
        both = np.concatenate([mine, -mine])
        self.coll.allreduce_max(both, "the start-up check")
        hi, lo = both[:len(mine)].tolist(), (-both[len(mine):]).tolist()
        if hi != lo:
            raise ValueError(f"rank {self.rank}: the ranks disagree on (parameters, examples, "
                             f"batch size, epochs, seed, shuffle): from {tuple(lo)} to "
                             f"{tuple(hi)}; every rank must call fit with the same data "
                             f"size and arguments")

    def batches(self, run_batch: Callable[[np.ndarray, int], float]
                ) -> Callable[[np.ndarray, int], float]:
        """`run_batch(global rows, salt)` as run on this rank's shard; returns the global loss
        (the sharded steps sum it with their gradients)."""
        def run(rows: np.ndarray, salt: int) -> float:
            mine = shard(rows, self.rank, self.size)
            self.weight = len(mine) / max(len(rows), 1)
            # each rank's own salt, so dropout masks differ between shards (one rank: unchanged);
            # an empty shard runs too: its steps still join every gradient all-reduce
            return run_batch(mine, salt * self.size + self.rank if len(mine) else 0)
        return run

    def step(self, step: Any) -> "ShardedStep":
        """`step` with its gradient all-reduced after every call."""
        return ShardedStep(step, self)

    def on_epoch(self, callback: Callable[[int, Any], Any] | None
                 ) -> Callable[[int, Any], Any] | None:
        """`callback` run on rank 0 only; its verdict (False: stop) broadcast to every rank."""
        if callback is None:
            return None

        def run(epoch: int, history: Any) -> Any:
            stop = np.zeros(1, np.int8)
            if self.root:
                stop[0] = callback(epoch, history) is False
            self.coll.broadcast(stop, "the on_epoch verdict")
            return False if stop[0] else None
        return run


class ShardedStep:
    """A training step whose gradients are all-reduced after every call, returning the global
    batch's loss (summed in the same collective); `loss` is sharded."""

    def __init__(self, inner: Any, dp: DataParallel):
        self.inner, self.dp = inner, dp

    def __call__(self, *inputs: Any, target: Any, **kw: Any) -> Any:
        if len(target):
            out = self.inner(*inputs, target=target, **kw)
        else:           # a global batch smaller than the number of ranks: nothing to add
            self.dp.grads[...] = 0.0
            out = (0.0, kw["state"]) if "state" in kw else 0.0
        stateful = isinstance(out, tuple)
        loss = self.dp.allreduce(self.dp.grads, self.dp.weight, out[0] if stateful else out)
        return (loss, out[1]) if stateful else loss

    def loss(self, *inputs: Any, target: Any) -> float:
        """The loss over all the rows given, each rank evaluating its own share of them."""
        rows = np.arange(len(target))
        mine = shard(rows, self.dp.rank, self.dp.size)
        sl = slice(mine[0], mine[-1] + 1) if len(mine) else slice(0, 0)
        part = self.inner.loss(*[a[sl] for a in inputs], target=target[sl]) if len(mine) else 0.0
        total = np.array([part * len(mine)], np.float64)
        total = self.dp.coll.allreduce_sum(total, "the validation loss all-reduce")
        return float(total[0]) / max(len(target), 1)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


__all__ = ["DEFAULT_TIMEOUT", "CollectiveTimeout", "Collectives", "AllreduceGradients",
           "DataParallel", "ShardedStep", "abort_on_error", "broadcast_parameters", "shard"]
