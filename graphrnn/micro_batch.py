"""Row blocks (micro-batches): a training step's large batch run as cache-sized blocks of rows.

    step = gr.compile(model, loss=gr.MSECriterion(), train=True)    # micro_batch=None: auto
    step.blocks.parts(x, target=y)      # e.g. ((0, 43), (43, 86), ...): how such a call runs
    loss = step(x, target=y)            # the blocks' loss and gradient: the batch's

A training step keeps every step's activations and gate gradients in its scratch arena, which
grows with the batch; once it outgrows the last-level cache each row costs more. A call whose
arena exceeds the cache's share of one core runs as blocks of rows of equal size, one after
another on the calling thread, by the same program; the blocks' losses and gradients combine
as the row-weighted mean (`BatchSplitter.run(serial=True)`, threads.py): the split is exact
where splitting the batch across threads is (`row_plan`, rows.py), and a step whose rows mix
(a batch-wide op, dropout while training) is never blocked. The rule (`block_rows`):

    share  = bytes of the last-level cache / CPUs sharing it (cpu0's, from sysfs)
    blocks = none when arena(B) <= TARGET * share, else the fewest k whose blocks of
             ceil(B / k) rows need <= TARGET * share, with B // k >= MIN_ROWS rows each;
             none when such blocks still need more than LIMIT * share (they would not fit
             the cache either: a model whose rows are that large only loses matmul efficiency)

`micro_batch=0` never blocks, an int n runs blocks of at most n rows (of equal size) whenever
B > n. With threads > 1 a call split across threads is not blocked (its parts run whole);
stateful training steps (chunks of a stream) are never blocked.
"""
from __future__ import annotations

import os
from functools import lru_cache
from typing import Any, Callable, Sequence

import numpy as np

from .threads import Parts, by_shapes, split_rows

# Measured on the benchmark host (AMD EPYC znver5, 2 vCPUs sharing a 32 MiB L3 with other
# tenants of the host): the adding-problem LSTM training step (+ Adam) per block size at
# B = 128, two processes at once: 43 rows (10 MiB) 9.9 ms, 32 rows 9.3, 16 rows (3.8 MiB)
# 8.0-8.9, 8 rows 8.6; one process, B = 256: 17.4 / 16.9 / 16.2 / 17.7 ms. Blocks of half
# a share are not: the (100, 100, 2, 100) LSTM step in blocks of 17 rows (8.5 MiB) was 4-12%
# faster with AVX-512 kernels but up to 25% slower with AVX2 ones in `graphrnn bench`; the
# (32, 50, 256, 256) LSTM and GRU in blocks of 16 (12-14.5 MiB): 3% slower.
TARGET = 1 / 4                  # a block's arena, as a fraction of one core's share of the cache
LIMIT = 0.4                     # blocks needing more than this many shares are not worth it
MIN_ROWS = 16
FALLBACK_SHARE = 4 << 20        # bytes: when sysfs says nothing (a typical L3 per core)
CACHE_DIR = "/sys/devices/system/cpu/cpu0/cache"


def check_micro_batch(micro_batch: Any) -> int | None:
    """`micro_batch` as None (auto), 0 (never) or rows per block; else a ValueError."""
    if micro_batch is None:
        return None
    if isinstance(micro_batch, bool) or not isinstance(micro_batch, (int, np.integer)) \
            or micro_batch < 0:
        raise ValueError(f"micro_batch must be None (automatic), 0 (never split the batch) or "
                         f"a positive number of rows per block, got {micro_batch!r}")
    return int(micro_batch)


def _size_bytes(text: str) -> int:
    """'32768K' / '1M' / '512' (sysfs cache sizes) in bytes."""
    text = text.strip().upper()
    scale = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
    return int(text.rstrip("KMG")) * scale


def _cpu_count(cpu_list: str) -> int:
    """How many CPUs a sysfs list such as '0-3,8-11' names."""
    total = 0
    for part in cpu_list.strip().split(","):
        lo, _, hi = part.partition("-")
        total += int(hi or lo) - int(lo) + 1
    return total


@lru_cache(maxsize=None)
def cache_share(cache_dir: str = CACHE_DIR) -> int:
    """Bytes of the largest data cache of cpu0 per CPU sharing it (FALLBACK_SHARE when the
    system does not say)."""
    found = []                  # (level, bytes per CPU sharing it)
    try:
        names = os.listdir(cache_dir)
    except OSError:
        return FALLBACK_SHARE
    for name in names:
        path = os.path.join(cache_dir, name)
        try:
            if not name.startswith("index") or _read(path, "type") == "Instruction":
                continue
            size, sharing = _size_bytes(_read(path, "size")), \
                _cpu_count(_read(path, "shared_cpu_list"))
            if size > 0 and sharing > 0:
                found.append((int(_read(path, "level")), size // sharing))
        except (OSError, ValueError):
            continue
    return max(found)[1] if found else FALLBACK_SHARE


def _read(path: str, field: str) -> str:
    with open(os.path.join(path, field)) as f:
        return f.read().strip()


def block_rows(batch: int, arena_bytes: Callable[[int], int], micro_batch: int | None,
               share: int) -> Parts:
    """The blocks of rows a call of `batch` rows runs as (one range: unblocked);
    `arena_bytes(rows)` is the scratch memory of a call of so many rows."""
    whole = ((0, batch),)
    if micro_batch is not None:
        return split_rows(batch, -(-batch // micro_batch)) if 0 < micro_batch < batch \
            else whole
    if batch < 2 * MIN_ROWS or arena_bytes(batch) <= TARGET * share:
        return whole
    most = batch // MIN_ROWS
    k = next((k for k in range(2, most + 1)
              if arena_bytes(-(-batch // k)) <= TARGET * share), most)
    if arena_bytes(-(-batch // k)) > LIMIT * share:
        return whole
    return split_rows(batch, k)


class RowBlocks:
    """How the calls of one training step (a CompiledTrainStep) run: on threads, as blocks of
    rows one after another, or whole. `step.blocks.parts(x, target=y)` shows the blocks."""

    def __init__(self, step: Any, micro_batch: int | None, share: int | None = None):
        self.step = step
        self.micro_batch = check_micro_batch(micro_batch)
        self.share = share      # bytes of cache per core (None: the host's); set before calls
        self._seen: dict[Any, Parts] = {}       # (shape, dtype) per input -> blocks

    def parts(self, *inputs: Any, target: Any) -> Parts:
        """The (start, stop) blocks of rows a call on these inputs runs as, one after another
        (one range: whole, or split across threads instead)."""
        values = (*inputs, target)
        parts, serial = self._plan(values)
        return parts if serial else ((0, np.shape(target)[0]),)

    def run(self, values: Sequence[Any], *, seed: int, training: bool) -> float:
        """One call of the step on `values` (its inputs, then the target): the loss; the
        gradient fills the model's flat gradient."""
        step = self.step
        _, flat_grad = step.model.parameters()
        parts, serial = self._plan(values)
        if len(parts) > 1:
            loss, grad = step.split.run(parts, values, step.program_for, into={1: flat_grad},
                                        seed=seed, training=training, serial=serial)
        else:           # whole: the gradient straight into the model's vector when it fits
            program = step.program_for(values)
            arrays, steps = program.validate(values)
            outs = program.outputs(arrays, steps, {1: flat_grad})
            program.run(arrays, steps, outs, seed=seed, training=training)
            loss, grad = outs
        if grad is not flat_grad:
            flat_grad[...] = grad
        return float(loss)

    def _plan(self, values: Sequence[Any]) -> tuple[Parts, bool]:
        """(parts, True): blocks one after another; (parts, False): parts on threads, or one
        part, the whole batch."""
        split = self.step.split
        parts = self.step._parts(values) if not split.serial else ()
        if len(parts) < 2 and self.micro_batch != 0 and not split.separable:
            return self._blocks(values), True
        return parts, False

    def _blocks(self, values: Sequence[Any]) -> Parts:
        def make() -> Parts:
            program = self.step.program_for(values)
            arrays, steps = program.validate(values)
            batch, more = program.rows_of(arrays), program.more_of(arrays)
            # a program for one batch size (specialize=) has no arena per row to go by
            if program.batch_symbol is None and not self.micro_batch:
                return ((0, batch),)
            contract = program.contract
            share = self.share if self.share is not None else cache_share()
            return block_rows(batch, lambda rows: 4 * contract.arena_floats(steps, rows, more),
                              self.micro_batch, share)
        return by_shapes(self._seen, values, make)


__all__ = ["RowBlocks", "block_rows", "cache_share", "check_micro_batch", "TARGET", "LIMIT",
           "MIN_ROWS", "FALLBACK_SHARE"]
