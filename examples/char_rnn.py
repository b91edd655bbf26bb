"""Char-RNN: a two-layer GRU language model on text that needs no download.

Trains on the topics of Python's own help system (`pydoc_data`, ~465k characters), reports
bits per character on held-out text, and samples at temperatures 1.0, 0.75, 0.5 and 0.1
(lower is more repetitive and more certain). Sampling is one compiled loop per sample: each
drawn character is fed back inside the loop.

Then it times sampling at batch 1 against the same model in PyTorch (nn.Embedding, nn.GRU,
nn.Linear holding the same weights) stepped from Python one character at a time, the way a
PyTorch user writes it: characters per second both ways and their ratio, each the median of
interleaved repeats, both on one thread (graphrnn's compiled code runs on the calling thread;
torch gets `torch.set_num_threads(1)`). The comparison needs torch (`pip install -e '.[bench]'`).

    python examples/char_rnn.py             # about 10 minutes on 2 cores
    python examples/char_rnn.py --quick     # a short run
"""
from __future__ import annotations

import argparse
import importlib.util
import math
import time
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from graphrnn import nn
from graphrnn.datasets import pydoc_text
from graphrnn.generate import sample_ids, sampler
from graphrnn.optim import Adam
from graphrnn.train import evaluate, fit, train_step

SPEED_CHARS = 2000          # characters per timed sample in the speed comparison


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


def chars_per_second(run: Callable[[], Any], chars: int) -> float:
    """The rate of one call of `run` that produces `chars` characters."""
    t0 = time.perf_counter()
    run()
    return chars / (time.perf_counter() - t0)


def compare_with_torch(embed: Any, layer: Any, head: Any, generator: Any, prime: np.ndarray,
                       repeats: int) -> None:
    """Characters per second of the compiled sampler and of the PyTorch twin stepped from
    Python, at batch 1 and one thread, after checking both give the same argmax text."""
    if importlib.util.find_spec("torch") is None:
        print("\n--- speed against PyTorch: the comparison needs torch, the bench extra "
              "(pip install -e '.[bench]')")
        return
    import torch
    from graphrnn.torch_interop import to_torch, torch_sample_ids
    torch.set_num_threads(1)
    twin = to_torch(embed, layer, head)
    same = np.array_equal(sample_ids(generator, prime, 200, 0.0),
                          torch_sample_ids(twin, prime, 200, 0.0))
    ours, theirs = [], []
    for r in range(repeats):                    # interleaved, so both see the same machine
        ours.append(chars_per_second(
            lambda: sample_ids(generator, prime, SPEED_CHARS, 1.0, seed=r), SPEED_CHARS))
        theirs.append(chars_per_second(
            lambda: torch_sample_ids(twin, prime, SPEED_CHARS, 1.0, seed=r), SPEED_CHARS))
    fast, slow = float(np.median(ours)), float(np.median(theirs))
    print(f"\n--- sampling speed: batch 1, {SPEED_CHARS} characters at temperature 1.0, "
          f"one thread, median of {repeats}")
    print(f"same text as PyTorch at temperature 0 (200 characters): {'yes' if same else 'NO'}")
    rows = [("graphrnn, one native call per sample", fast),
            (f"PyTorch {torch.__version__}, one step per character", slow)]
    for label, rate in rows:
        print(f"{label + ':':<48}{rate:>9,.0f} characters/s")
    print(f"{'ratio:':<48}{fast / slow:>9.1f}x")


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
    compare_with_torch(embed, layer, head, generator, prime, repeats=3 if args.quick else 5)


if __name__ == "__main__":
    main()
