"""Export to PyTorch: the twin modules compute what graphrnn computes, and sample the same text
at temperature 0 (skipped when torch is missing)."""
from __future__ import annotations

import sys

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.generate import sample_ids, sampler
from graphrnn.torch_interop import (recurrent_weights, to_torch, to_torch_embedding,
                                    to_torch_linear, to_torch_recurrent, torch_sample_ids)

torch = pytest.importorskip("torch")

V, E, H = 13, 6, 16
RNG = np.random.default_rng(3)


def char_model(seed: int = 0):
    """The example's model, small and untrained; weights scaled up so argmax text varies."""
    gr.manual_seed(seed)
    embed = nn.LookupTable(V, E)
    layer = nn.Recurrent(gr.cells.GRU(E, H), num_layers=2)
    head = nn.Linear(H, V)
    tokens = gr.Input("B", "T", dtype="int64", name="chars")
    model = gr.gModule([tokens], [head(layer(embed(tokens)))], name="char_rnn")
    model.load_state_dict({k: 3.0 * v for k, v in model.state_dict().items()})
    return model, embed, layer, head


@pytest.fixture(scope="module")
def lm():
    model, embed, layer, head = char_model()
    return model, embed, layer, head, gr.compile(sampler(embed, layer, head))


RECURRENT = {
    "gru_2": (gr.cells.GRU, {}, dict(num_layers=2)),
    "lstm_2_bidirectional": (gr.cells.LSTM, {}, dict(num_layers=2, bidirectional=True)),
    "rnn_relu_no_bias": (gr.cells.RNN, {"nonlinearity": "relu", "bias": False}, {}),
}


def recurrent(kind: str):
    cls, cell_kw, layer_kw = RECURRENT[kind]
    layer = nn.Recurrent(cls(4, 5, **cell_kw), **layer_kw)
    x = gr.Input("B", "T", 4, name="x")
    return layer, gr.gModule([x], [layer(x)])


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_recurrent_weights_have_torch_names_and_values(kind):
    layer, model = recurrent(kind)
    module = to_torch_recurrent(layer)
    ours = recurrent_weights(layer)
    theirs = {k: v.detach().numpy() for k, v in module.named_parameters()}
    assert list(ours) == list(theirs)
    keys = {k.split(".", 1)[1]: v for k, v in model.state_dict().items()}
    for name, value in theirs.items():
        np.testing.assert_array_equal(value, keys[name])
        np.testing.assert_array_equal(value, ours[name])


@pytest.mark.parametrize("kind", list(RECURRENT))
def test_exported_recurrent_matches_interpreter(kind):
    layer, model = recurrent(kind)
    module = to_torch_recurrent(layer)
    assert module.batch_first
    x = RNG.standard_normal((3, 7, 4)).astype(np.float32)
    with torch.no_grad():
        want = module(torch.from_numpy(x))[0].numpy()
    np.testing.assert_allclose(gr.interpret(model, x), want, atol=1e-5)


def test_exported_weights_are_copies():
    layer, _ = recurrent("gru_2")
    module = to_torch_recurrent(layer)
    with torch.no_grad():
        module.weight_hh_l1.zero_()
    assert np.abs(gr.value(layer.cells[1].weight_hh)).sum() > 0


def test_embedding_and_linear_match_numpy():
    embed, head = nn.LookupTable(V, E), nn.Linear(E, V)
    ids = RNG.integers(0, V, (2, 5))
    x = RNG.standard_normal((4, E)).astype(np.float32)
    with torch.no_grad():
        rows = to_torch_embedding(embed)(torch.from_numpy(ids)).numpy()
        y = to_torch_linear(head)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(rows, gr.value(embed.weight)[ids])
    np.testing.assert_allclose(y, x @ gr.value(head.weight).T + gr.value(head.bias), atol=1e-5)
    no_bias = nn.Linear(E, 3, bias=False)
    assert to_torch_linear(no_bias).bias is None


def test_wrong_modules_are_refused():
    with pytest.raises(TypeError, match="nn.Recurrent"):
        to_torch_recurrent(nn.Linear(2, 3))
    with pytest.raises(TypeError, match="nn.LookupTable"):
        to_torch_embedding(nn.Linear(2, 3))
    with pytest.raises(TypeError, match="nn.Linear"):
        to_torch_linear(nn.LookupTable(2, 3))
    layer = nn.Recurrent(gr.cells.GRU(E, H), bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        to_torch(nn.LookupTable(V, E), layer, nn.Linear(2 * H, V))


def test_missing_torch_says_which_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)
    with pytest.raises(ImportError, match=r"bench"):
        to_torch_linear(nn.Linear(2, 3))


def test_argmax_text_is_the_same_both_ways(lm):
    _, embed, layer, head, generator = lm
    prime = np.array([[1, 4, 2], [7, 0, 11]])
    ours = sample_ids(generator, prime, 80, 0.0)
    theirs = torch_sample_ids(to_torch(embed, layer, head), prime, 80, 0.0)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.dtype == theirs.dtype == np.int64
    assert len(set(ours[0].tolist())) > 3          # the text is not one repeated character


def test_per_step_logits_match(lm):
    """graphrnn's logits over prime + argmax text, against PyTorch stepped one id at a time."""
    model, embed, layer, head, generator = lm
    prime = np.array([[3, 5, 8]])
    text = np.concatenate([prime, sample_ids(generator, prime, 40, 0.0)], axis=1)
    ours = gr.compile(model)(text)
    twin = to_torch(embed, layer, head)
    steps, state = [], None
    with torch.no_grad():
        for t in range(text.shape[1]):
            logits, state = twin.step(torch.from_numpy(text[:, t:t + 1]), state)
            steps.append(logits.numpy())
    np.testing.assert_allclose(ours, np.stack(steps, axis=1), atol=1e-4, rtol=1e-4)
    np.testing.assert_allclose(ours, gr.interpret(model, text), atol=1e-4, rtol=1e-4)


def test_torch_sampling_is_seeded_and_follows_temperature(lm):
    _, embed, layer, head, generator = lm
    twin, prime = to_torch(embed, layer, head), np.array([[2, 9]])
    a = torch_sample_ids(twin, prime, 50, 1.0, seed=5)
    assert a.shape == (1, 50) and a.min() >= 0 and a.max() < V
    np.testing.assert_array_equal(a, torch_sample_ids(twin, prime, 50, 1.0, seed=5))
    assert not np.array_equal(a, torch_sample_ids(twin, prime, 50, 1.0, seed=6))
    # a temperature near 0 puts all the mass on the largest logit
    np.testing.assert_array_equal(torch_sample_ids(twin, prime, 50, 1e-4, seed=5),
                                  torch_sample_ids(twin, prime, 50, 0.0))
    assert torch_sample_ids(twin, prime, 0, 1.0).shape == (1, 0)
