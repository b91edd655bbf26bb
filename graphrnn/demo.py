"""`graphrnn demo`: train an LSTM on the adding problem and compare it with the baseline."""
from __future__ import annotations

import argparse
import time

import numpy as np

from . import cells, nn
from .datasets import adding_problem
from .gmodule import gModule
from .init import manual_seed
from .losses import MSECriterion
from .nn import Input
from .optim import Adam
from .train import evaluate, fit, train_step

BASELINE = 1.0 / 6.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="graphrnn demo", description=__doc__)
    parser.add_argument("--steps", type=int, default=30, help="sequence length (default 30)")
    parser.add_argument("--epochs", type=int, default=10, help="epochs (default 10)")
    parser.add_argument("--hidden", type=int, default=64, help="LSTM hidden size (default 64)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(args.seed)
    x, y = adding_problem(10000, args.steps, rng)
    x_test, y_test = adding_problem(1000, args.steps, rng)
    manual_seed(args.seed)
    inp = Input("B", "T", 2, name="x")
    last = nn.Recurrent(cells.LSTM(2, args.hidden), return_sequences=False)(inp)
    model = gModule([inp], [nn.Linear(args.hidden, 1)(last)], name="adding_lstm")
    model.reset_parameters(args.seed, scheme="xavier_uniform")
    print(f"The adding problem, T={args.steps}: an LSTM({args.hidden}) reads (value, mask) pairs "
          f"and predicts the sum of the two marked values.")
    print(f"{model.param_count()} parameters in one flat float32 vector; "
          f"10000 training / 1000 test sequences, batch 100, Adam.\n")
    crit = MSECriterion()
    t0 = time.perf_counter()
    fit(model, crit, x, y, epochs=args.epochs, batch_size=100, seed=args.seed,
        optimizer=Adam(model.parameters(), lr=3e-3, clip_norm=1.0),
        validation=(x_test, y_test))
    mse = evaluate(train_step(model, crit), x_test, y_test)
    print(f"\ntrained in {time.perf_counter() - t0:.1f} s")
    print(f"test MSE {mse:.4f}   baseline (always answer 1) {BASELINE:.4f}   "
          f"{'learned' if mse < BASELINE else 'not learned yet'}")
    return 0
