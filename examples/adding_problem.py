"""The adding problem (Le, Jaitly & Hinton 2015) with vanilla RNN, LSTM and GRU.

Each example is two rows of length T: uniform numbers in [0, 1] and a mask that is 1 at two
random positions; the target is the sum of the two marked numbers. Always answering 1 gives
MSE = 1/6 ~ 0.167, so a lower test MSE means the net learned something.

Setting (as in the MinPy tutorial): 10,000 training and 1,000 test examples, batch 100, Adam,
Xavier init, MSE; RNN hidden 64, LSTM and GRU hidden 100.

    python examples/adding_problem.py            # T = 6, 10 epochs, then LSTM/GRU at T = 50
    python examples/adding_problem.py --quick    # a smaller run
    mpiexec -n 2 python examples/adding_problem.py --quick --distributed   # over MPI ranks
Writes adding_problem.png (loss curves) next to this file when matplotlib is installed.
"""
from __future__ import annotations

import argparse
import os
import time
from contextlib import nullcontext
from typing import Any

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.datasets import adding_problem as adding_data
from graphrnn.optim import Adam
from graphrnn.train import evaluate, fit, train_step

BASELINE = 1.0 / 6.0
HIDDEN = {"rnn": 64, "lstm": 100, "gru": 100}


def build(kind: str, hidden: int, seed: int = 0) -> gr.gModule:
    """A recurrent layer reading [B, T, 2] and a Linear on its last state."""
    gr.manual_seed(seed)
    cell = {"rnn": gr.cells.RNN, "lstm": gr.cells.LSTM, "gru": gr.cells.GRU}[kind](2, hidden)
    x = gr.Input("B", "T", 2, name="x")
    last = nn.Recurrent(cell, return_sequences=False)(x)
    model = gr.gModule([x], [nn.Linear(hidden, 1)(last)], name=kind)
    model.reset_parameters(seed, scheme="xavier_uniform")
    return model


def train(kind: str, steps: int, epochs: int, n_train: int, n_test: int, seed: int = 0,
          target_mse: float | None = None, lr: float = 1e-3, comm: Any = None) -> dict:
    """Train one model; stop early once the test MSE is below `target_mse` (if given).

    With an MPI `comm`, every rank trains on its shard of each batch; rank 0 tests and prints.
    """
    rng = np.random.default_rng(seed)
    x, y = adding_data(n_train, steps, rng)
    xt, yt = adding_data(n_test, steps, rng)
    model = build(kind, HIDDEN[kind], seed)
    crit = gr.MSECriterion()
    step = train_step(model, crit)
    test_mse: list[float] = []

    def after_epoch(epoch: int, history) -> bool:
        test_mse.append(evaluate(step, xt, yt))
        print(f"  {kind} T={steps} epoch {epoch + 1}: train {history.loss[-1]:.4f} "
              f"test {test_mse[-1]:.4f}", flush=True)
        return target_mse is None or test_mse[-1] >= target_mse

    t0 = time.perf_counter()
    history = fit(model, crit, x, y, epochs=epochs, batch_size=100, seed=seed,
                  optimizer=Adam(model.parameters(), lr=lr, clip_norm=1.0),
                  on_epoch=after_epoch, progress=False, comm=comm)
    return {"kind": kind, "steps": steps, "epochs": history.epochs,
            "seconds": time.perf_counter() - t0, "train_loss": history.loss,
            "test_mse": test_mse}


def plot(results: list[dict], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(6, 4))
    for r in results:
        ax.plot(range(1, len(r["test_mse"]) + 1), r["test_mse"], marker="o",
                label=f"{r['kind'].upper()} (T={r['steps']})")
    ax.axhline(BASELINE, color="grey", linestyle="--", label="always 1 (1/6)")
    ax.set_xlabel("epoch")
    ax.set_ylabel("test MSE")
    ax.set_yscale("log")
    ax.set_title("The adding problem")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer examples and epochs")
    parser.add_argument("--long-epochs", type=int, default=60,
                        help="epoch limit for the T=50 runs (they stop at MSE < 0.01)")
    parser.add_argument("--distributed", action="store_true",
                        help="data-parallel over the ranks of mpiexec (needs mpi4py)")
    args = parser.parse_args()
    comm = None
    if args.distributed:
        from mpi4py import MPI
        from graphrnn.distributed import abort_on_error
        comm = MPI.COMM_WORLD
    with abort_on_error(comm) if comm is not None else nullcontext():
        run(args, comm)


def run(args: argparse.Namespace, comm: Any) -> None:
    n_train, n_test, epochs = (2000, 500, 5) if args.quick else (10000, 1000, 10)
    short = [train(k, 6, epochs, n_train, n_test, comm=comm) for k in ("rnn", "lstm", "gru")]
    long = [] if args.quick else [train(k, 50, args.long_epochs, n_train, n_test,
                                        target_mse=0.01, lr=3e-3, comm=comm)
                                  for k in ("lstm", "gru")]
    if comm is not None and comm.Get_rank() != 0:
        return
    print(f"\nbaseline (always 1): {BASELINE:.4f}")
    for r in short + long:
        print(f"{r['kind'].upper():<5} T={r['steps']:<3} test MSE {r['test_mse'][-1]:.4f}  "
              f"({r['epochs']} epochs, {r['seconds']:.1f} s)")
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "adding_problem.png")
    if plot(short, path):
        print(f"wrote {path}")
    else:
        print("matplotlib is not installed: pip install -e '.[examples]' to draw the plot")


if __name__ == "__main__":
    main()
