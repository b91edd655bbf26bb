"""Batch inference on a Dask cluster: many sequences through one saved model, in input order.

    from graphrnn.distributed import predict
    y = predict("reader.grnn", x)              # x: dask array [N, T, D] chunked along N
    ys = predict("reader.grnn", bag)           # bag: dask bag of [T_i, D] arrays -> a list
    y = predict("reader.grnn", x, client=Client("tcp://scheduler:8786"))

What travels is the model file: its bytes are scattered to every worker once, and each worker
process loads and compiles it once (kept per process by the file's sha256), so object code
never crosses the network and each worker's kernels come from its own disk cache. Each task
runs one chunk (array) or partition (bag): rows in batches of at most `batch_size`, padded to
a power of two so a worker compiles only a few programs; a bag's sequences grouped by length.
Rows must be independent (a forward pass of a recurrent model is). Dask retries the tasks of
a worker that dies, so the result is still complete; it comes back in input order.
Without `client`, a LocalCluster with one single-threaded worker process per core runs the
job and is shut down after it (`local_cluster`: its housekeeping slowed, since on a machine
with a worker per core it competes with them). Each chunk is one task, costing the client
and scheduler a few ms of CPU: chunks of a few thousand rows keep that small. dask and
distributed are imported only inside the functions that use them.
"""
from __future__ import annotations

import hashlib
import io
import os
import threading
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import numpy as np

from ..compile import CompiledModel, compile
from ..serialize import load

_MODELS: dict[str, CompiledModel] = {}      # per worker process: sha256 of the file -> model
_LOADS: dict[str, int] = {}
_LOCK = threading.Lock()
_CHECKED: set[str] = set()                  # on the client: files already found loadable


def predict(model: str | os.PathLike | bytes, data: Any, *, client: Any = None,
            batch_size: int = 256, n_workers: int | None = None) -> Any:
    """The model's outputs for every row of `data`, computed on a Dask cluster, in order.

    model: a model file (`gr.save`) or its bytes. data: a dask array [N, ...] (chunked along
    N; other axes are merged into one chunk) or numpy array -> an array [N, ...]; a dask bag
    or list of arrays (e.g. [T_i, D] sequences) -> a list, one output per element. A model
    with several outputs gives a tuple of those. client: a `distributed.Client`; default a
    LocalCluster of `n_workers` (default: one per core) single-threaded worker processes.
    """
    import dask
    blob = model if isinstance(model, bytes) else _read(model)
    key = hashlib.sha256(blob).hexdigest()
    if key not in _CHECKED:             # a bad file fails here, before the cluster starts
        load(io.BytesIO(blob))
        _CHECKED.add(key)
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size!r}")
    parts, rows = _partitions(data)
    with _client(client, n_workers) as c:
        # fresh keys every call: a call right after an identical one must not meet the
        # previous call's data and tasks while the scheduler is still releasing them
        blob_ref = c.scatter(blob, broadcast=True, hash=False)
        run = dask.delayed(_run_part, pure=False)
        tasks = [run(key, blob_ref, p, rows, batch_size) for p in parts]
        results = c.gather(c.compute(tasks))
    return _join(results, rows)


def _read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _partitions(data: Any) -> tuple[list[Any], bool]:
    """Dask delayed objects, one per chunk or partition, and whether they hold rows."""
    import dask.array as da
    import dask.bag as db
    if isinstance(data, np.ndarray):
        data = da.from_array(data, chunks=(max(1, min(len(data), 4096)),) + data.shape[1:])
    if isinstance(data, (list, tuple)):
        data = db.from_sequence(data, partition_size=1000)
    if isinstance(data, da.Array):
        if data.ndim < 1:
            raise ValueError("a dask array of inputs needs a batch axis")
        if any(n != 1 for n in data.numblocks[1:]):
            data = data.rechunk({i: -1 for i in range(1, data.ndim)})
        return list(data.to_delayed().ravel()), True
    if isinstance(data, db.Bag):
        return list(data.to_delayed()), False
    raise TypeError(f"predict takes a dask array, a dask bag, a numpy array or a list of "
                    f"arrays, got {type(data).__name__}")


@contextmanager
def _client(client: Any, n_workers: int | None) -> Iterator[Any]:
    if client is not None:
        yield client
        return
    with local_cluster(n_workers) as c:
        yield c


# A LocalCluster's housekeeping at Dask's defaults takes about 12% of a core while idle (each
# worker's statistical profiler samples every 10 ms; event-loop ticks every 20 ms; system and
# memory monitors every 0.1-0.5 s; measured 0.61 CPU s in 5 idle s for 3 workers, 0.11 with
# these). With one worker per core, that time comes out of the workers.
QUIET_CLUSTER = {"distributed.worker.profile.enabled": False,
                 "distributed.admin.tick.interval": "1s",
                 "distributed.admin.system-monitor.interval": "5s",
                 "distributed.worker.memory.monitor-interval": "1s"}


@contextmanager
def local_cluster(n_workers: int | None = None) -> Iterator[Any]:
    """A Client of a LocalCluster of `n_workers` (default: one per core) single-threaded
    worker processes with little housekeeping (QUIET_CLUSTER); both closed on exit."""
    import dask
    from distributed import Client, LocalCluster
    with dask.config.set(QUIET_CLUSTER), \
            LocalCluster(n_workers=n_workers or os.cpu_count() or 1, threads_per_worker=1,
                         processes=True, dashboard_address=":0") as cluster, \
            Client(cluster) as c:
        yield c


def _join(results: list[Any], rows: bool) -> Any:
    if not rows:
        return [y for part in results for y in part]
    if isinstance(results[0], tuple):
        return tuple(np.concatenate([r[k] for r in results]) for k in range(len(results[0])))
    return np.concatenate(results)


# ----------------------------------------------------------------------------- on a worker

def compiled_model(key: str, blob: bytes) -> CompiledModel:
    """This process's compiled model for the file with sha256 `key`: loaded and compiled once."""
    with _LOCK:
        if key not in _MODELS:
            _MODELS[key] = compile(load(io.BytesIO(blob)))
            _LOADS[key] = _LOADS.get(key, 0) + 1
        return _MODELS[key]


def loads() -> dict[str, int]:
    """How many times this process loaded each model file (1 each: `client.run(loads)`)."""
    return dict(_LOADS)


def _run_part(key: str, blob: bytes, part: Any, rows: bool, batch_size: int) -> Any:
    fast = compiled_model(key, blob)
    if rows:
        outs = _run_rows(fast, np.asarray(part), batch_size)
        return outs[0] if len(outs) == 1 else outs
    return _run_sequences(fast, list(part), batch_size)


def _run_rows(fast: CompiledModel, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """The outputs for the rows of x, run in batches of at most batch_size rows."""
    pieces = [_call_padded(fast, x[s:s + batch_size], batch_size)
              for s in range(0, len(x), batch_size)]
    if not pieces:
        return (np.zeros((0,), np.float32),)
    return tuple(np.concatenate([p[k] for p in pieces]) for k in range(len(pieces[0])))


def _call_padded(fast: CompiledModel, x: np.ndarray, batch_size: int) -> tuple[np.ndarray, ...]:
    """fast(x) run on x padded with zero rows to a power of two (at most batch_size) rows."""
    b = len(x)
    padded = min(batch_size, 1 << (b - 1).bit_length())
    if padded > b:
        x = np.concatenate([x, np.zeros((padded - b,) + x.shape[1:], x.dtype)])
    out = fast(x)
    return tuple(o[:b] for o in (out if isinstance(out, tuple) else (out,)))


def _run_sequences(fast: CompiledModel, seqs: Sequence[Any], batch_size: int) -> list[Any]:
    """One output per sequence: sequences of one shape stacked and run together."""
    arrays = [np.asarray(s) for s in seqs]
    groups: dict[tuple, list[int]] = {}
    for i, a in enumerate(arrays):
        groups.setdefault((a.shape, a.dtype.str), []).append(i)
    results: list[Any] = [None] * len(arrays)
    for idx in groups.values():
        outs = _run_rows(fast, np.stack([arrays[i] for i in idx]), batch_size)
        for j, i in enumerate(idx):
            results[i] = outs[0][j] if len(outs) == 1 else tuple(o[j] for o in outs)
    return results


__all__ = ["predict", "compiled_model", "loads", "local_cluster", "QUIET_CLUSTER"]
