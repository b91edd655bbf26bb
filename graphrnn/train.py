"""Training: a small `fit` loop over mini-batches, and `evaluate`.

Each batch runs one training step (trainstep.py: compiled where the compiler takes the graph,
else interpreted; stateful.py for streams cut into chunks), which fills the model's flat
gradient vector (`model.parameters()[1]`); an optimiser then updates the flat parameter
vector in place.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from .distributed.mpi import DataParallel
from .ir import InputError
from .losses import loss_graph
from .micro_batch import check_micro_batch
from .optim import Adam
from .stateful import StatefulTrainStep, stream_chunks
from .trainstep import InterpretedStep, train_step


# ----------------------------------------------------------------------------- fit

@dataclass
class History:
    """Per-epoch records of a `fit` run."""
    loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)

    @property
    def epochs(self) -> int:
        return len(self.loss)


class Progress:
    """A dependency-free progress bar on stderr (one line per epoch when not a terminal)."""

    def __init__(self, total: int, label: str, enabled: bool = True):
        self.total, self.label, self.enabled = total, label, enabled
        self.tty = enabled and sys.stderr.isatty()
        self.start = time.perf_counter()

    def update(self, done: int, info: str) -> None:
        if self.tty:
            filled = int(30 * done / max(self.total, 1))
            bar = "#" * filled + "." * (30 - filled)
            sys.stderr.write(f"\r{self.label} [{bar}] {done}/{self.total} {info}  ")
            sys.stderr.flush()

    def close(self, info: str) -> None:
        if self.enabled:
            secs = time.perf_counter() - self.start
            line = f"{self.label} {self.total}/{self.total} {info} ({secs:.1f}s)"
            sys.stderr.write(("\r" if self.tty else "") + line + "\n")
            sys.stderr.flush()


def _as_list(x: Any) -> list[np.ndarray]:
    return [np.asarray(a) for a in x] if isinstance(x, (list, tuple)) else [np.asarray(x)]


def fit(model: Any, criterion: Any, x: Any, y: Any, *, epochs: int = 10,
        batch_size: int = 32, optimizer: Any = None, validation: tuple | None = None,
        shuffle: bool = True, seed: int = 0, bptt_max: int | None = None,
        progress: bool = True, compiled: bool = True, stateful_chunk: int | None = None,
        checkpoint: int | None = None, micro_batch: int | None = None,
        on_epoch: Callable[[int, History], Any] | None = None, comm: Any = None) -> History:
    """Train `model` on (x, y) with mini-batches; returns the loss history.

    x is an array (or a list of arrays, one per model input) batched along axis 0.
    The default optimiser is Adam(lr=1e-3). Runs are reproducible for a given `seed`.
    `stateful_chunk=k`: stateful truncated BPTT over long streams x[N, T, ...] / y[N, T, ...]:
    each batch of streams is cut into chunks of k steps, one optimiser step per chunk, the
    state carried from chunk to chunk and gradients cut at chunk borders.
    `checkpoint=k`: gradient checkpointing, the carries saved every k steps only and the
    steps between recomputed in the backward pass (same gradients, less memory).
    `micro_batch`: the compiled step runs a large batch as blocks of rows that fit the cache
    (None: automatic; 0: never; n: at most n rows a block; same loss and gradients).
    `comm=MPI.COMM_WORLD` (or a `graphrnn.distributed.Collectives`): data-parallel over MPI
    ranks, each calling fit alike: rank 0's parameters first, each rank its shard of every
    global batch, gradients all-reduced after every step, so the run equals one process on
    the same global batches; progress and `on_epoch` (checkpoints) on rank 0 only.
    """
    xs, target = _as_list(x), np.asarray(y)
    n = len(target)
    if any(len(a) != n for a in xs):
        raise InputError(f"x and y must have the same number of examples ({n})")
    optimizer = optimizer or Adam(model.parameters())
    if stateful_chunk and checkpoint:
        raise ValueError("checkpoint=k is for whole-sequence steps; with stateful_chunk the "
                         "chunks already bound what BPTT saves")
    if stateful_chunk and check_micro_batch(micro_batch):
        raise ValueError("micro_batch=n is for whole-sequence steps; stateful chunks run their "
                         "batch whole (pass a smaller batch_size)")
    if stateful_chunk:
        step = StatefulTrainStep(model, criterion, bptt_max=bptt_max)
        chunks = stream_chunks(target.shape[1], stateful_chunk)

        def run_batch(idx: np.ndarray, salt: int) -> float:
            state, total = None, 0.0
            for c in chunks:
                loss, state = step(*[a[idx][:, c] for a in xs], target=target[idx][:, c],
                                   state=state)
                optimizer.step()
                total += loss
            return total / len(chunks)
    else:
        step = train_step(model, criterion, bptt_max=bptt_max, compiled=compiled,
                          checkpoint=checkpoint, micro_batch=micro_batch)

        def run_batch(idx: np.ndarray, salt: int) -> float:
            loss = step(*[a[idx] for a in xs], target=target[idx], seed=salt)
            optimizer.step()
            return loss
    if comm is not None:
        dp = DataParallel(comm, model, (n, batch_size, epochs, seed, shuffle))
        # run_batch looks `step` up when it runs, so it calls the sharded step
        step, run_batch = dp.step(step), dp.batches(run_batch)
        progress, on_epoch = progress and dp.root, dp.on_epoch(on_epoch)
    rng = np.random.default_rng(seed)
    history = History()
    for epoch in range(epochs):
        order = rng.permutation(n) if shuffle else np.arange(n)
        bar = Progress(-(-n // batch_size), f"epoch {epoch + 1}/{epochs}", progress)
        t0, total, seen = time.perf_counter(), 0.0, 0
        for b, start in enumerate(range(0, n, batch_size)):
            idx = order[start:start + batch_size]
            loss = run_batch(idx, seed + epoch * n + b)
            total += loss * len(idx)
            seen += len(idx)
            bar.update(b + 1, f"loss {total / seen:.4f}")
        history.loss.append(total / seen)
        history.seconds.append(time.perf_counter() - t0)
        info = f"loss {history.loss[-1]:.4f}"
        if validation is not None and not stateful_chunk:
            history.val_loss.append(evaluate(step, validation[0], validation[1], batch_size))
            info += f" val_loss {history.val_loss[-1]:.4f}"
        bar.close(info)
        if on_epoch is not None and on_epoch(epoch, history) is False:
            break
    return history


def evaluate(step: Any, x: Any, y: Any, batch_size: int = 256) -> float:
    """Mean loss over (x, y) in inference mode, batch by batch."""
    xs, target = _as_list(x), np.asarray(y)
    total = 0.0
    for start in range(0, len(target), batch_size):
        sl = slice(start, start + batch_size)
        total += step.loss(*[a[sl] for a in xs], target=target[sl]) * len(target[sl])
    return total / max(len(target), 1)


__all__ = ["loss_graph", "InterpretedStep", "train_step", "fit", "evaluate", "History"]
