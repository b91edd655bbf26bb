"""Cells and Recurrent against PyTorch with the same weights (skipped when torch is missing;
tests/test_cells.py checks the same equations in numpy)."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn

torch = pytest.importorskip("torch")

D, H = 3, 5
RNG = np.random.default_rng(2)

KINDS = {
    "lstm": (gr.cells.LSTM, {}, torch.nn.LSTM, torch.nn.LSTMCell),
    "gru": (gr.cells.GRU, {}, torch.nn.GRU, torch.nn.GRUCell),
    "rnn_tanh": (gr.cells.RNN, {"nonlinearity": "tanh"}, torch.nn.RNN, torch.nn.RNNCell),
    "rnn_relu": (gr.cells.RNN, {"nonlinearity": "relu"}, torch.nn.RNN, torch.nn.RNNCell),
}


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def from_torch(module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("kind", list(KINDS))
def test_cell_matches_torch_cell(kind):
    ours_cls, kw, _, torch_cell_cls = KINDS[kind]
    torch.manual_seed(0)
    ref = torch_cell_cls(D, H, **kw)
    cell = ours_cls(D, H, **kw)
    prefix = cell.prefix
    cell.load_state_dict({f"{prefix}.{k}": v for k, v in from_torch(ref).items()})
    x, h = randn(4, D), randn(4, H)
    with torch.no_grad():
        if kind == "lstm":
            c = randn(4, H)
            want_h, want_c = ref(torch.tensor(x), (torch.tensor(h), torch.tensor(c)))
            got_h, got_c = cell(h, c, x)
            np.testing.assert_allclose(got_c, want_c.numpy(), atol=1e-5)
        else:
            want_h = ref(torch.tensor(x), torch.tensor(h))
            got_h = cell(h, x)
    np.testing.assert_allclose(got_h, want_h.numpy(), atol=1e-5)


def build(kind: str, layers: int, bidirectional: bool, with_lengths: bool):
    ours_cls, kw, torch_cls, _ = KINDS[kind]
    rec = nn.Recurrent(ours_cls(D, H, **kw), num_layers=layers, bidirectional=bidirectional,
                       return_state=True)
    x = gr.Input("B", "T", D)
    ins = [x, gr.Input("B", dtype="int64")] if with_lengths else [x]
    model = gr.gModule(ins, list(rec(ins if with_lengths else x)))
    torch.manual_seed(1)
    ref = torch_cls(D, H, num_layers=layers, bidirectional=bidirectional, batch_first=True,
                    **kw)
    state = from_torch(ref)
    model.load_state_dict({f"{rec.prefix}.{k}": v for k, v in state.items()})
    return model, ref


def split_finals(kind: str, finals: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray | None]:
    """Ours are (h, c) per layer and direction; torch's are h_n, c_n stacked that way."""
    if kind == "lstm":
        return np.stack(finals[0::2]), np.stack(finals[1::2])
    return np.stack(finals), None


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("layers, bidirectional", [(1, False), (2, True)])
def test_recurrent_matches_torch(kind, layers, bidirectional):
    model, ref = build(kind, layers, bidirectional, with_lengths=False)
    x = randn(3, 6, D)
    out, *finals = model(x)
    with torch.no_grad():
        want, hidden = ref(torch.tensor(x))
    np.testing.assert_allclose(out, want.numpy(), atol=1e-5)
    h_n, c_n = split_finals(kind, finals)
    if kind == "lstm":
        np.testing.assert_allclose(h_n, hidden[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(c_n, hidden[1].numpy(), atol=1e-5)
    else:
        np.testing.assert_allclose(h_n, hidden.numpy(), atol=1e-5)


@pytest.mark.parametrize("kind", ["lstm", "gru", "rnn_tanh"])
def test_recurrent_with_lengths_matches_packed_sequences(kind):
    model, ref = build(kind, 2, True, with_lengths=True)
    x, lengths = randn(4, 6, D), np.array([6, 2, 4, 1])
    out, *finals = model(x, lengths)
    packed = torch.nn.utils.rnn.pack_padded_sequence(
        torch.tensor(x), torch.tensor(lengths), batch_first=True, enforce_sorted=False)
    with torch.no_grad():
        want_packed, hidden = ref(packed)
    want, _ = torch.nn.utils.rnn.pad_packed_sequence(want_packed, batch_first=True,
                                                     total_length=6)
    np.testing.assert_allclose(out, want.numpy(), atol=1e-5)
    h_n, c_n = split_finals(kind, finals)
    np.testing.assert_allclose(h_n, (hidden[0] if kind == "lstm" else hidden).numpy(),
                               atol=1e-5)
    if kind == "lstm":
        np.testing.assert_allclose(c_n, hidden[1].numpy(), atol=1e-5)


def test_parameter_keys_equal_torch_named_parameters():
    for kind, (ours_cls, kw, torch_cls, _) in KINDS.items():
        rec = nn.Recurrent(ours_cls(D, H, **kw), num_layers=2, bidirectional=True)
        x = gr.Input("B", "T", D)
        model = gr.gModule([x], [rec(x)])
        ref = torch_cls(D, H, num_layers=2, bidirectional=True, **kw)
        want = [(k, tuple(v.shape)) for k, v in ref.named_parameters()]
        got = [(k.split(".", 1)[1], v.shape) for k, v in model.named_parameters().items()]
        assert got == want
