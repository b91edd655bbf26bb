"""Scaling out on one machine: training over 1 and 2 MPI ranks, inference on 1 and 2 Dask workers.

    python examples/distributed_bench.py             # both, then the two scaling ratios
    python examples/distributed_bench.py --quick     # fewer sequences

Training: the adding problem (T = 50, LSTM hidden 100, Adam) at global batch 256, `fit` run
under `mpiexec -n 1` and `mpiexec -n 2` (each rank one thread); sequences per second from the
fastest epoch after a warm-up epoch that compiles. Inference: the same model's forward pass
over N random sequences as a dask array made on the workers, `graphrnn.distributed.predict`
on a LocalCluster of 1 and 2
single-threaded worker processes, the best of three runs after a warm-up. Needs the
`distributed` extra (mpi4py, mpich, dask[distributed]).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.datasets import adding_problem
from graphrnn.distributed import predict
from graphrnn.optim import Adam
from graphrnn.train import fit

STEPS, HIDDEN, BATCH = 50, 100, 256


def build(seed: int = 0) -> gr.gModule:
    gr.manual_seed(seed)
    x = gr.Input("B", "T", 2, name="x")
    last = nn.Recurrent(gr.cells.LSTM(2, HIDDEN), return_sequences=False)(x)
    model = gr.gModule([x], [nn.Linear(HIDDEN, 1)(last)], name="lstm")
    model.reset_parameters(seed, scheme="xavier_uniform")
    return model


def train_rank(n: int, epochs: int) -> None:
    """Run inside mpiexec: fit on the adding problem; rank 0 prints sequences/s as JSON."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    x, y = adding_problem(n, STEPS, np.random.default_rng(0))
    model = build()
    crit, opt = gr.MSECriterion(), Adam(model.parameters(), lr=1e-3)
    fit(model, crit, x[:2 * BATCH], y[:2 * BATCH], epochs=1, batch_size=BATCH,
        optimizer=opt, progress=False, comm=comm)                   # compiles
    comm.Barrier()
    history = fit(model, crit, x, y, epochs=epochs, batch_size=BATCH, optimizer=opt,
                  progress=False, comm=comm)
    if comm.Get_rank() == 0:
        print(json.dumps({"ranks": comm.Get_size(), "seq_per_s": n / min(history.seconds),
                          "loss": history.loss[-1]}), flush=True)


def train_throughput(ranks: int, n: int, epochs: int, copies: int = 1) -> float:
    """Sequences/s of `copies` independent `mpiexec -n ranks` trainings run at once, summed."""
    mpiexec = Path(sys.executable).parent / "mpiexec"
    cmd = [str(mpiexec), "-n", str(ranks), sys.executable, os.path.abspath(__file__),
           "--train-rank", str(n), str(epochs)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"{' '.join(cmd)} failed")
    return sum(json.loads(o.strip().splitlines()[-1])["seq_per_s"] for o in outs)


def infer_throughput(workers: int, path: str, n: int, chunk: int) -> float:
    """Sequences/s of predict over n random [T, 2] sequences held by the workers."""
    import dask.array as da
    from distributed import Client, LocalCluster
    # made by tasks on the workers (0.3 ms a chunk), so the timing is of the model, not of
    # moving data; unlike data persisted up front, no worker can end up holding most chunks
    data = da.random.default_rng(1).random((n, STEPS, 2), chunks=(chunk, STEPS, 2),
                                           dtype=np.float32)
    with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                      dashboard_address=":0") as cluster, Client(cluster) as client:
        predict(path, data, client=client)                          # loads and compiles
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            predict(path, data, client=client)
            best = min(best, time.perf_counter() - t0)
    return n / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sequences")
    parser.add_argument("--train-rank", nargs=2, type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.train_rank:
        train_rank(*args.train_rank)
        return
    n_train, epochs, n_infer = (2048, 2, 8192) if args.quick else (8192, 3, 65536)
    print(f"adding problem, LSTM {HIDDEN}, T={STEPS}, global batch {BATCH}; "
          f"{os.cpu_count()} cores", flush=True)
    train = {r: train_throughput(r, n_train, epochs) for r in (1, 2)}
    # what two cores give right now: two unrelated one-rank trainings side by side (on a
    # shared machine the other tenants' load shows here, not in graphrnn's scaling)
    control = train_throughput(1, n_train, epochs, copies=2)
    for r, v in train.items():
        print(f"  training,  {r} MPI rank(s):   {v:9.0f} sequences/s", flush=True)
    print(f"  control: two 1-rank trainings at once: {control:9.0f} sequences/s in all "
          f"({control / train[1]:.2f}x one)", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm.grnn")
        gr.save(build(), path)
        infer = {w: infer_throughput(w, path, n_infer, 512) for w in (1, 2)}
    for w, v in infer.items():
        print(f"  inference, {w} Dask worker(s): {v:9.0f} sequences/s", flush=True)
    print(f"scaling 1 -> 2: training {train[2] / train[1]:.2f}x, "
          f"inference {infer[2] / infer[1]:.2f}x (the machine's two-process capacity: "
          f"{control / train[1]:.2f}x)")


if __name__ == "__main__":
    main()
