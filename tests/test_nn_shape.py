"""Shape modules (graphrnn/nn_shape.py) interpreted and compiled, forward and gradients against
PyTorch, the interpreter and finite differences; several batch sizes and lengths, one program."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.ir import GraphError, ShapeError

from shape_check import check, close, randn


def torch_grad(torch, fn, *arrays, cot):
    """fn's output and the gradients of sum(output * cot) for each float array."""
    ts = [torch.tensor(a, requires_grad=a.dtype == np.float32) for a in arrays]
    y = fn(*ts)
    (y * torch.tensor(cot)).sum().backward()
    return y.detach().numpy(), [t.grad.numpy() for t in ts if t.requires_grad]


def against_torch(model, fn, *arrays):
    torch = pytest.importorskip("torch")
    got = check(model, *arrays)
    want, grads = torch_grad(torch, fn, *arrays, cot=got.cot)
    close(got.y, want)
    for g, w in zip([d for d in got.dx if d is not None], grads):
        close(g, w)


def test_transpose_swaps_axes_with_symbolic_batch_and_time_in_one_program():
    x = gr.Input("B", "T", 3)
    model = gr.gModule([x], [nn.Transpose(1, 2)(x)])
    fast = gr.compile(model)
    for b, t in [(2, 5), (1, 1), (3, 7)]:
        against_torch(model, lambda v: v.transpose(1, 2), randn(b, t, 3))
        close(fast(randn(b, t, 3)).shape, (b, 3, t))
    assert len(fast.programs) == 1


def test_transpose_pairs_and_negative_dims():
    x = gr.Input("B", 2, 3, 4)
    model = gr.gModule([x], [nn.Transpose((0, 1), (-1, -3))(x)])
    against_torch(model, lambda v: v.transpose(0, 1).transpose(-1, -3), randn(3, 2, 3, 4))


def test_transpose_out_of_range_names_the_user_line():
    x = gr.Input("B", 3)
    with pytest.raises(ShapeError, match=r"test_nn_shape.py:\d+.*axis 2 is out of range"):
        nn.Transpose(0, 2)(x)


def test_view_infers_minus_one_and_keeps_symbols():
    x = gr.Input("B", "T", 4, 5)
    model = gr.gModule([x], [nn.View("T", -1)(x)])
    against_torch(model, lambda v: v.reshape(v.shape[0], v.shape[1], -1), randn(2, 3, 4, 5))
    y = gr.Input("B", 4, 6)
    model = gr.gModule([y], [nn.Reshape(-1, 3)(y)])
    against_torch(model, lambda v: v.reshape(v.shape[0], -1, 3), randn(2, 4, 6))


def test_view_refuses_what_does_not_divide():
    x = gr.Input("B", 4, 5)
    with pytest.raises(GraphError, match=r"View at test_nn_shape.py:\d+: cannot view"):
        nn.View(-1, 3)(x)
    with pytest.raises(ValueError, match="at most one -1"):
        nn.View(-1, -1)


def test_squeeze_and_unsqueeze():
    x = gr.Input("B", "T", 1, 3)
    model = gr.gModule([x], [nn.Unsqueeze(-1)(nn.Squeeze(2)(x))])
    against_torch(model, lambda v: v.squeeze(2).unsqueeze(-1), randn(2, 4, 1, 3))
    model = gr.gModule([x], [nn.Squeeze()(nn.Unsqueeze(1)(x))])
    against_torch(model, lambda v: v.squeeze(2), randn(3, 2, 1, 3))
    with pytest.raises(GraphError, match=r"Squeeze at test_nn_shape.py:\d+: dim 3 .* size 3"):
        nn.Squeeze(3)(x)


def test_replicate_stacks_copies_on_a_new_axis():
    x = gr.Input("B", "T", 3)
    model = gr.gModule([x], [nn.Replicate(4, 2)(x)])
    against_torch(model, lambda v: v.unsqueeze(2).expand(-1, -1, 4, -1), randn(2, 5, 3))


@pytest.mark.parametrize("pad,value", [(2, 0.0), (-3, 0.0), (2, 1.5), (-1, -2.0)])
def test_padding_before_and_after_with_a_value(pad, value):
    torch = pytest.importorskip("torch")
    x = gr.Input("B", "T", 3)
    model = gr.gModule([x], [nn.Padding(2, pad, value)(x)])
    spec = (0, pad) if pad > 0 else (-pad, 0)
    against_torch(model, lambda v: torch.nn.functional.pad(v, spec, value=value),
                  randn(2, 4, 3))


def test_padding_the_symbolic_time_axis_is_refused():
    x = gr.Input("B", "T", 3)
    with pytest.raises(GraphError, match=r"Padding at test_nn_shape.py:\d+: .*symbolic dim 'T'"):
        nn.Padding(1, 2)(x)


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2, -3])
def test_join_table_on_every_axis(axis):
    torch = pytest.importorskip("torch")
    a, b = gr.Input(2, 3, 4), gr.Input(2, 3, 4)
    model = gr.gModule([a, b], [nn.JoinTable(axis)([a, b])])
    against_torch(model, lambda u, v: torch.cat([u, v], axis), randn(2, 3, 4), randn(2, 3, 4))


def test_join_table_on_the_time_axis_of_fixed_sequences_and_refused_on_symbolic_time():
    torch = pytest.importorskip("torch")
    a, b = gr.Input("B", 3, 4), gr.Input("B", 2, 4)
    model = gr.gModule([a, b], [nn.JoinTable(1)([a, b])])
    against_torch(model, lambda u, v: torch.cat([u, v], 1), randn(2, 3, 4), randn(2, 2, 4))
    s, t = gr.Input("B", "T", 4), gr.Input("B", "T", 4)
    with pytest.raises(ShapeError, match=r"test_nn_shape.py:\d+.*symbolic dim 'T'"):
        nn.JoinTable(1)([s, t])
    model = gr.gModule([s, t], [nn.JoinTable(-1)([s, t])])     # features of sequences: fine
    against_torch(model, lambda u, v: torch.cat([u, v], -1), randn(2, 5, 4), randn(2, 5, 4))


@pytest.mark.parametrize("dim,index", [(1, 0), (1, -1), (2, -2), (-1, 1)])
def test_select_with_negative_indices(dim, index):
    x = gr.Input("B", 4, 3)
    model = gr.gModule([x], [nn.Select(dim, index)(x)])
    against_torch(model, lambda v: v.select(dim, index), randn(3, 4, 3))


def test_select_errors():
    x = gr.Input("B", 5, 3)
    with pytest.raises(GraphError, match=r"Select at test_nn_shape.py:\d+: index 3 is out"):
        nn.Select(2, 3)(x)
    with pytest.raises(GraphError, match="index -6 is out of range"):
        nn.Select(1, -6)(x)
    s = gr.Input("B", "T", 3)      # a call with fewer steps would read past the sequence
    with pytest.raises(GraphError, match=r"Select at test_nn_shape.py:\d+: dim 1 .* symbolic"):
        nn.Select(1, 0)(s)


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_index_picks_entries_like_index_select(dim):
    torch = pytest.importorskip("torch")
    x, ids = gr.Input(3, 4, 5), gr.Input(3, dtype="int64")
    model = gr.gModule([x, ids], [nn.Index(dim)([x, ids])])
    idx = np.array([2, 0, 2], np.int64)
    against_torch(model, lambda v, i: torch.index_select(v, dim, i), randn(3, 4, 5), idx)


def test_index_with_a_symbolic_batch_checks_ids_at_each_call():
    x, ids = gr.Input("B", "T", 5), gr.Input(2, dtype="int64")
    model = gr.gModule([x, ids], [nn.Index(2)([x, ids])])
    fast = gr.compile(model)
    xs = randn(2, 3, 5)
    close(fast(xs, np.array([4, 1])), xs[:, :, [4, 1]])
    short = randn(1, 6, 5)
    close(fast(short, np.array([0, 0])), short[:, :, [0, 0]])
    assert len(fast.programs) == 1
    with pytest.raises(gr.InputError, match="5"):
        fast(xs, np.array([5, 0]))
    with pytest.raises(GraphError, match=r"Index at test_nn_shape.py:\d+: ids must be int64"):
        nn.Index(0)([x, x])
    with pytest.raises(GraphError, match=r"Index at test_nn_shape.py:\d+: dim 1 .* fixed size"):
        nn.Index(1)([x, ids])
