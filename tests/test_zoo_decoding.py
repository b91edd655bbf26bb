"""`zoo.greedy_decoder`: a trained attention model's decoder step as a compiled while loop.
Its tokens equal a step-by-step greedy decode through the teacher-forced model in the
interpreter and the same decode in PyTorch with the same weights; it reads the model's own
parameters (tied); `examples/seq2seq.py --quick` trains and decodes end to end."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import zoo
from graphrnn.optim import Adam
from graphrnn.train import fit
from graphrnn.zoo import reference

torch = pytest.importorskip("torch")
BOS, STEPS, PAD = 1, 6, -1
BUILD = {"bahdanau": lambda: zoo.bahdanau(vocab=7, embedding=4, hidden=6, attention=5),
         "luong": lambda: zoo.luong(vocab=7, embedding=4, hidden=6)}
# (model, eos): tokens at which the untrained rows stop at several different steps
CASES = [("bahdanau", 0), ("bahdanau", 5), ("luong", 1), ("luong", 5)]


def model_for(name: str) -> gr.gModule:
    model = BUILD[name]()
    model.reset_parameters(seed=3)
    return model


def teacher_forced_greedy(model: gr.gModule, src: np.ndarray, eos: int):
    """Greedy decoding by hand: run the teacher-forced model (interpreter) on the tokens
    chosen so far, take the argmax of its last logits, append; cut each row after its EOS."""
    tgt = np.full((len(src), 1), BOS, np.int64)
    for _ in range(STEPS):
        logits = gr.interpret(model, src, tgt)[:, -1]
        tgt = np.concatenate([tgt, logits.argmax(-1)[:, None]], axis=1)
    tokens = tgt[:, 1:].copy()
    stops = [np.flatnonzero(row == eos) for row in tokens]
    lengths = np.array([s[0] + 1 if len(s) else STEPS for s in stops], np.int64)
    tokens[np.arange(STEPS) >= lengths[:, None]] = PAD
    return tokens, lengths


def torch_state(model: gr.gModule) -> dict:
    return {k: torch.tensor(v, dtype=torch.float64) for k, v in model.state_dict().items()}


@pytest.mark.parametrize("name, eos", CASES)
def test_compiled_greedy_decoder_equals_step_by_step_and_pytorch(name, eos):
    model = model_for(name)
    decoder = zoo.greedy_decoder(model, bos=BOS, eos=eos, max_steps=STEPS, pad=PAD)
    fast = gr.compile(decoder)
    rng = np.random.default_rng(0)
    seen = set()
    for b, s in [(12, 5), (3, 2), (20, 9)]:
        src = rng.integers(0, 7, (b, s))
        want_tokens, want_lengths = teacher_forced_greedy(model, src, eos)
        torch_tokens, torch_lengths = reference.greedy_torch(name, torch_state(model), src,
                                                             BOS, eos, STEPS, PAD)
        np.testing.assert_array_equal(torch_tokens, want_tokens)
        np.testing.assert_array_equal(torch_lengths, want_lengths)
        for run in (decoder, fast):
            tokens, lengths = run(src)
            assert tokens.dtype == np.int64 and lengths.dtype == np.int64
            np.testing.assert_array_equal(tokens, want_tokens)
            np.testing.assert_array_equal(lengths, want_lengths)
        seen.update(want_lengths.tolist())
    assert len(seen) > 2 and min(seen) < STEPS
    assert len(fast.programs) == 1


def test_the_decoder_reads_the_trained_models_parameters():
    model = model_for("bahdanau")
    fast = gr.compile(zoo.greedy_decoder(model, bos=BOS, eos=0, max_steps=STEPS, pad=PAD))
    assert fast.model.param_count() == model.param_count()
    src = np.random.default_rng(1).integers(0, 7, (16, 5))
    before = fast(src)[0].copy()
    model.reset_parameters(seed=8)              # new weights: the decoder follows them
    want, _ = reference.greedy_torch("bahdanau", torch_state(model), src, BOS, 0, STEPS, PAD)
    got = fast(src)[0]
    np.testing.assert_array_equal(got, want)
    assert not np.array_equal(got, before)
    # training moves the weights the decoder reads (an optimiser over the model's vector)
    rng = np.random.default_rng(2)
    data = [rng.integers(0, 7, (64, 5)), rng.integers(0, 7, (64, 4))]
    fit(model, gr.CrossEntropyCriterion(), data, rng.integers(0, 7, (64, 4)), epochs=2,
        batch_size=16, optimizer=Adam(model.parameters(), lr=0.05), progress=False)
    want, _ = reference.greedy_torch("bahdanau", torch_state(model), src, BOS, 0, STEPS, PAD)
    np.testing.assert_array_equal(fast(src)[0], want)
    assert not np.array_equal(want, got)


def test_a_model_without_a_decoder_loop_is_refused():
    with pytest.raises(gr.GraphError, match="one loop named 'decoder'"):
        zoo.greedy_decoder(zoo.sru(3, 4), bos=1, eos=0, max_steps=4)
    with pytest.raises(ValueError, match=r"token ids in \[0, 7\)"):
        zoo.greedy_decoder(BUILD["luong"](), bos=7, eos=0, max_steps=4)
    for bad in (0, 2.5, None):
        with pytest.raises(ValueError, match="max_steps must be a positive number"):
            zoo.greedy_decoder(BUILD["luong"](), bos=1, eos=0, max_steps=bad)


def test_seq2seq_example_quick_run_reverses_held_out_strings():
    script = Path(__file__).resolve().parents[1] / "examples" / "seq2seq.py"
    out = subprocess.run([sys.executable, str(script), "--quick"], capture_output=True,
                         text=True, check=True).stdout
    accuracy = float(re.search(r"held-out exact match: ([\d.]+)%", out).group(1))
    assert accuracy >= 95.0, out
