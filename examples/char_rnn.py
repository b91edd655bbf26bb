"""Char-RNN: a two-layer GRU language model on text that needs no download.

Trains on the topics of Python's own help system (`pydoc_data`, ~465k characters), reports
bits per character on held-out text, and samples at temperatures 1.0, 0.75, 0.5 and 0.1
(lower is more repetitive and more certain). Sampling is one compiled loop per sample: each
drawn character is fed back inside the loop.

    python examples/char_rnn.py             # about 10 minutes on 2 cores
    python examples/char_rnn.py --quick     # a short run
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.datasets import pydoc_text
from graphrnn.generate import sample_ids, sampler
from graphrnn.optim import Adam
from graphrnn.train import evaluate, fit, train_step


def encode(text: str) -> tuple[np.ndarray, list[str]]:
    vocab = sorted(set(text))
    index = {c: i for i, c in enumerate(vocab)}
    return np.array([index[c] for c in text], np.int64), vocab


def windows(ids: np.ndarray, steps: int, stride: int) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, next-character targets), each [n, steps]."""
    starts = np.arange(0, len(ids) - steps - 1, stride)
    x = np.stack([ids[s:s + steps] for s in starts])
    y = np.stack([ids[s + 1:s + steps + 1] for s in starts])
    return x, y


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run on less text")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--steps", type=int, default=64, help="training sequence length")
    args = parser.parse_args()

    text = pydoc_text()
    ids, vocab = encode(text)
    split = int(0.95 * len(ids))
    train_ids, held_out = ids[:split], ids[split:]
    if args.quick:
        train_ids, held_out = train_ids[:60000], held_out[:8000]
    epochs = args.epochs or (1 if args.quick else 4)
    x, y = windows(train_ids, args.steps, args.steps)
    xv, yv = windows(held_out, args.steps, args.steps)

    gr.manual_seed(0)
    embed = nn.LookupTable(len(vocab), 32)
    layer = nn.Recurrent(gr.cells.GRU(32, args.hidden), num_layers=2)
    head = nn.Linear(args.hidden, len(vocab))
    tokens = gr.Input("B", "T", dtype="int64", name="chars")
    model = gr.gModule([tokens], [head(layer(embed(tokens)))], name="char_rnn")
    print(f"{len(text)} characters, vocabulary {len(vocab)}, {model.param_count()} parameters")

    crit = gr.CrossEntropyCriterion()
    t0 = time.perf_counter()
    fit(model, crit, x, y, epochs=epochs, batch_size=32,
        optimizer=Adam(model.parameters(), lr=3e-3, clip_norm=5.0))
    nats = evaluate(train_step(model, crit), xv, yv)
    print(f"trained in {time.perf_counter() - t0:.0f} s; held-out {nats / math.log(2):.3f} "
          "bits per character")

    generator = gr.compile(sampler(embed, layer, head))   # one native call per sample
    prime = np.array([[vocab.index(c) for c in "The "]])
    sample_ids(generator, prime, 200, 1.0)                 # compiles once for every temperature
    for temperature in (1.0, 0.75, 0.5, 0.1):
        t0 = time.perf_counter()
        out = sample_ids(generator, prime, 200, temperature, seed=1)
        rate = 200 / (time.perf_counter() - t0)
        sample = "The " + "".join(vocab[i] for i in out[0])
        print(f"\n--- temperature {temperature} ({rate:.0f} characters/s)\n{sample}")


if __name__ == "__main__":
    main()
