"""Batch inference on a real Dask LocalCluster (two worker processes) against one process."""
from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.distributed import dask_predict, predict

distributed = pytest.importorskip("distributed")
da = pytest.importorskip("dask.array")
db = pytest.importorskip("dask.bag")
cloudpickle = pytest.importorskip("cloudpickle")
# the workers cannot import this file: its functions travel by value
cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def client():
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0") as cluster, \
            distributed.Client(cluster) as c:
        yield c


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> tuple[Path, gr.gModule]:
    gr.manual_seed(0)
    x = gr.Input("B", "T", 2, name="x")
    last = nn.Recurrent(gr.cells.LSTM(2, 8), return_sequences=False)(x)
    model = gr.gModule([x], [nn.Linear(8, 1)(last)])
    path = tmp_path_factory.mktemp("model") / "m.grnn"
    gr.save(model, path)
    return path, model


def _sequences(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((int(t), 2)).astype(np.float32)
            for t in rng.integers(1, 12, n)]


def _one_process(model: gr.gModule, seqs: list[np.ndarray]) -> list[np.ndarray]:
    """The compiled model on one process: all sequences of one length in one call."""
    fast, out = gr.compile(model), [None] * len(seqs)
    for t in sorted({len(s) for s in seqs}):
        idx = [i for i, s in enumerate(seqs) if len(s) == t]
        for i, y in zip(idx, fast(np.stack([seqs[i] for i in idx]))):
            out[i] = y
    return out


def test_bag_of_variable_length_sequences_equals_one_process(client, saved):
    path, model = saved
    seqs = _sequences(10_000)
    got = predict(path, db.from_sequence(seqs, npartitions=8), client=client)
    want = _one_process(model, seqs)
    assert len(got) == len(want)
    np.testing.assert_allclose(np.stack(got), np.stack(want), rtol=1e-5, atol=1e-6)
    # each worker process loaded (and compiled) the file once
    counts = client.run(dask_predict.loads)
    assert len(counts) == 2 and all(list(c.values()) == [1] for c in counts.values())


def test_dask_array_chunked_along_the_batch(client, saved):
    path, model = saved
    x = np.random.default_rng(1).standard_normal((1000, 7, 2)).astype(np.float32)
    got = predict(path, da.from_array(x, chunks=(300, 7, 2)), client=client, batch_size=128)
    np.testing.assert_allclose(got, gr.compile(model)(x), rtol=1e-5, atol=1e-6)


def _part(i: int, marker: str, seqs: list[np.ndarray]) -> list[np.ndarray]:
    """Partition i of the input; partition 3 kills its worker process the first time."""
    if i == 3 and not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return seqs


def test_a_killed_worker_still_gives_complete_ordered_results(client, saved, tmp_path):
    import dask
    path, model = saved
    seqs = _sequences(2000, seed=2)
    marker = str(tmp_path / "killed")
    parts = [dask.delayed(_part, pure=False)(i, marker, seqs[i * 250:(i + 1) * 250])
             for i in range(8)]
    got = predict(path, db.from_delayed(parts), client=client)
    assert os.path.exists(marker)           # a worker did die during the run
    np.testing.assert_allclose(np.stack(got), np.stack(_one_process(model, seqs)),
                               rtol=1e-5, atol=1e-6)


def test_default_local_cluster_and_bad_inputs(saved):
    path, model = saved
    x = np.random.default_rng(3).standard_normal((40, 5, 2)).astype(np.float32)
    got = predict(path, x, n_workers=1)
    np.testing.assert_allclose(got, gr.compile(model)(x), rtol=1e-5, atol=1e-6)
    with pytest.raises(TypeError, match="dask array, a dask bag"):
        predict(path, {"x": x})
    with pytest.raises(gr.ModelFileError):
        predict(b"not a model file", x)


def _housekeeping(dask_worker) -> tuple[list[str], float]:
    cb = dask_worker.periodic_callbacks
    return sorted(cb), cb["tick"].callback_time


def test_the_local_cluster_keeps_its_housekeeping_low(saved):
    path, model = saved
    with dask_predict.local_cluster(1) as c:
        (names, tick_ms), = c.run(_housekeeping).values()
        # no statistical profiler sampling the worker every 10 ms; the event loop ticks slow
        assert "profile" not in names and "tick" in names and tick_ms >= 1000
        x = np.random.default_rng(4).standard_normal((20, 3, 2)).astype(np.float32)
        np.testing.assert_allclose(predict(path, x, client=c), gr.compile(model)(x),
                                   rtol=1e-5, atol=1e-6)
