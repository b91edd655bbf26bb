"""Sequence to sequence with attention: reverse strings of 3..8 digits.

`zoo.bahdanau` is trained with teacher forcing (`gr.train.fit`, CrossEntropyCriterion with
`ignore_index` for the padding after each target's EOS), then the held-out strings are decoded
greedily by `zoo.greedy_decoder`: the trained decoder step as the body of a compiled while
loop, one native call for the whole held-out set, each row stopping at its EOS.

    python examples/seq2seq.py            # prints the held-out exact-match accuracy
    python examples/seq2seq.py --quick    # a smaller run
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import graphrnn as gr
from graphrnn import zoo
from graphrnn.optim import Adam
from graphrnn.train import fit

PAD, BOS, EOS, DIGIT0 = 0, 1, 2, 3          # tokens; digit d is DIGIT0 + d
VOCAB = DIGIT0 + 10
IGNORE = -100                               # target entries past EOS


def reversal_task(n: int, seed: int, min_len: int = 3, max_len: int = 8):
    """(src i64[n, max_len], tgt_in i64[n, max_len + 1], tgt i64[n, max_len + 1], digits):
    the source left-padded with PAD, the target its reverse then EOS, tgt_in the target
    shifted right after BOS; `digits` the list of each reversed string (without EOS)."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, n)
    src = np.full((n, max_len), PAD, np.int64)
    tgt_in = np.full((n, max_len + 1), PAD, np.int64)
    tgt = np.full((n, max_len + 1), IGNORE, np.int64)
    answers = []
    for i, k in enumerate(lengths):
        digits = DIGIT0 + rng.integers(0, 10, k)
        src[i, max_len - k:] = digits
        out = list(digits[::-1]) + [EOS]
        tgt[i, :k + 1] = out
        tgt_in[i, :k + 1] = [BOS] + out[:-1]
        answers.append(out)
    return src, tgt_in, tgt, answers


def exact_match(tokens: np.ndarray, lengths: np.ndarray, answers: list) -> float:
    """The share of rows whose decoded tokens (through EOS) equal the answer."""
    hits = sum(list(tokens[i, :lengths[i]]) == a for i, a in enumerate(answers))
    return hits / len(answers)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller run")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    n = args.examples or (6000 if args.quick else 20000)
    epochs = args.epochs or (4 if args.quick else 6)

    model = zoo.bahdanau(vocab=VOCAB, embedding=16, hidden=64)
    model.reset_parameters(seed=0)
    src, tgt_in, tgt, _ = reversal_task(n, seed=1)
    t0 = time.perf_counter()
    history = fit(model, gr.CrossEntropyCriterion(ignore_index=IGNORE), [src, tgt_in], tgt,
                  epochs=epochs, batch_size=64, optimizer=Adam(model.parameters(), lr=3e-3),
                  progress=False)
    print(f"trained {epochs} epochs of {n} strings in {time.perf_counter() - t0:.1f} s, "
          f"loss {history.loss[-1]:.4f} per token")

    held_src, _, _, answers = reversal_task(2000, seed=2)
    decoder = gr.compile(zoo.greedy_decoder(model, bos=BOS, eos=EOS, max_steps=10))
    decoder(held_src[:1])                        # compiles: one program for every batch size
    t0 = time.perf_counter()
    tokens, lengths = decoder(held_src)          # one native call, a while loop over steps
    seconds = time.perf_counter() - t0
    print(f"greedy decoding of {len(answers)} held-out strings: {seconds * 1e3:.1f} ms")
    for i in range(3):
        shown = "".join(str(t - DIGIT0) for t in held_src[i] if t >= DIGIT0)
        got = "".join(str(t - DIGIT0) if t >= DIGIT0 else "$" for t in tokens[i, :lengths[i]])
        print(f"  {shown:>8} -> {got}")
    print(f"held-out exact match: {100 * exact_match(tokens, lengths, answers):.2f}%")


if __name__ == "__main__":
    main()
