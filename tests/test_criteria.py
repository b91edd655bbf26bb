"""Criteria with masks, per-row lengths, class weights, ignore_index and reduction: values
against PyTorch's functional losses, and loss, parameter and input gradients of compiled and
interpreted training steps against PyTorch (same weights) and finite differences."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.gradcheck import gradcheck
from graphrnn.losses import loss_graph
from graphrnn.trainstep import InterpretedStep

B, T, D, C = 4, 5, 3, 6
RNG = np.random.default_rng(141)
LENGTHS = np.array([5, 2, 0, 3])


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def classes() -> np.ndarray:
    y = RNG.integers(0, C, (B, T))
    y[0, 1] = y[3, 0] = -100                          # PyTorch's usual padding value
    return y


WEIGHT = (RNG.random(C) + 0.5).astype(np.float32)
CASES = {   # name: (criterion, uses class targets)
    "mse": (lambda r, **kw: nn.MSECriterion(r, **kw), False),
    "nll": (lambda r, **kw: nn.ClassNLLCriterion(reduction=r, ignore_index=-100, **kw), True),
    "ce": (lambda r, **kw: nn.CrossEntropyCriterion(reduction=r, ignore_index=-100, **kw), True),
    "ce_weighted": (lambda r, **kw: nn.CrossEntropyCriterion(WEIGHT, ignore_index=-100,
                                                             reduction=r, **kw), True),
    "nll_weight_ignore_in_range": (lambda r, **kw: nn.ClassNLLCriterion(
        WEIGHT, ignore_index=2, reduction=r, **kw), True),
}


def torch_loss(torch, name: str, crit, pred, target, mask, reduction: str):
    """The same loss with PyTorch: masked steps become ignored targets (class criteria) or
    are multiplied out (MSE, whose mean divides by the counted elements)."""
    F = torch.nn.functional
    if name == "mse":
        m = torch.ones(pred.shape[:2]) if mask is None else torch.tensor(mask)
        sq = (pred - torch.tensor(target)) ** 2 * m[..., None]
        if reduction == "none":
            return sq
        return sq.sum() if reduction == "sum" else sq.sum() / (m.sum() * pred.shape[-1])
    ignore = crit.ignore_index
    t = torch.tensor(target)
    if mask is not None:
        t = torch.where(torch.tensor(mask) > 0, t, torch.tensor(ignore))
    logp = F.log_softmax(pred, -1) if name.startswith("ce") else pred
    w = None if crit.weight is None else torch.tensor(crit.weight)
    out = F.nll_loss(logp.reshape(-1, C), t.reshape(-1), weight=w, ignore_index=ignore,
                     reduction=reduction)
    return out.reshape(t.shape) if reduction == "none" else out


def target_for(name: str) -> np.ndarray:
    if not CASES[name][1]:
        return randn(B, T, C)
    y = classes()
    return np.where(y == -100, 2, y) if name == "nll_weight_ignore_in_range" else y


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("masked", ["none", "mask", "lengths"])
def test_values_match_torch(name: str, reduction: str, masked: str) -> None:
    torch = pytest.importorskip("torch")
    crit = CASES[name][0](reduction)
    pred = randn(B, T, C)
    if name.startswith("nll"):
        pred = np.log(np.exp(pred) / np.exp(pred).sum(-1, keepdims=True)).astype(np.float32)
    target = target_for(name)
    mask = (np.arange(T)[None] < LENGTHS[:, None]).astype(np.float32)
    extra = {"none": None, "mask": mask, "lengths": LENGTHS}[masked]
    got = crit.forward(pred, target, extra)
    want = torch_loss(torch, name, crit, torch.tensor(pred), target,
                      None if masked == "none" else mask, reduction)
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_training_gradients_match_torch(name: str, reduction: str) -> None:
    torch = pytest.importorskip("torch")
    x, n = gr.Input("B", "T", D, name="x"), gr.Input("B", dtype="int64", name="lengths")
    h = nn.Recurrent(gr.cells.GRU(D, 4))([x, n])
    lin = nn.Linear(4, C)
    pred = lin(h)
    pred = nn.LogSoftMax()(pred) if name.startswith("nll") else pred
    model = gr.gModule([x, n], [pred])
    xs, target = randn(B, T, D), target_for(name)
    crit = CASES[name][0](reduction, lengths="lengths")
    results = []
    for step in (gr.compile(model, loss=crit, train=True, input_grads=True),
                 InterpretedStep(model, crit)):
        out = step(xs, LENGTHS, target)               # the target positionally
        loss, dx = out if isinstance(out, tuple) else (out, None)
        results.append((loss, model.parameters()[1].copy(), dx))
    (l1, g1, dx1), (l2, g2, _) = results
    np.testing.assert_allclose(l1, l2, rtol=1e-4)
    np.testing.assert_allclose(g1, g2, rtol=1e-4, atol=1e-6)
    # torch: the model's output as a leaf, then the chain through our own VJP for the rest
    pred_np = model(xs, LENGTHS)
    tp = torch.tensor(pred_np, requires_grad=True)
    mask = (np.arange(T)[None] < LENGTHS[:, None]).astype(np.float32)
    want = torch_loss(torch, name, crit, tp, target, mask, reduction)
    want.backward()
    np.testing.assert_allclose(l1, float(want.detach()), rtol=1e-4)
    (_,), (dx_chain, _) = gr.compile_vjp(model)(xs, LENGTHS, tp.grad.numpy())
    np.testing.assert_allclose(dx1[0], dx_chain, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(model.parameters()[1], g1, rtol=1e-4, atol=1e-6)
    assert dx1[1] is None                             # integer input: no gradient


@pytest.mark.parametrize("name", ["mse", "ce_weighted", "nll_weight_ignore_in_range"])
def test_gradcheck_masked_losses(name: str) -> None:
    x = gr.Input("B", "T", D, name="x")
    out = nn.Linear(D, C)(x)
    out = nn.LogSoftMax()(out) if name.startswith("nll") else out
    model = gr.gModule([x], [out])
    crit = CASES[name][0]("mean", lengths=True)
    target = target_for(name)
    graph = loss_graph(model, crit)
    assert gradcheck(graph, randn(B, T, D), crit.target_array(target), LENGTHS).ok


@pytest.mark.parametrize("name", ["mse", "ce_weighted"])
def test_mask_as_a_step_argument(name: str) -> None:
    """`mask=True`: the step takes the mask after the target, positionally or with target=;
    compiled, interpreted and `forward` agree."""
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(D, C)(x)])
    crit = CASES[name][0]("mean", mask=True)
    xs, target = randn(B, T, D), target_for(name)
    mask = (RNG.random((B, T)) > 0.4).astype(np.float32)
    want = crit.forward(model(xs), target, mask)
    fast, slow = gr.compile(model, loss=crit, train=True), InterpretedStep(model, crit)
    got = [fast(xs, target, mask), fast(xs, mask, target=target), slow(xs, target, mask)]
    np.testing.assert_allclose(got, [want] * 3, rtol=1e-5)
    np.testing.assert_allclose(fast.loss(xs, target, mask), want, rtol=1e-5)
    with pytest.raises(TypeError, match="3 arguments, got 2"):
        fast(xs, target)


def test_criteria_errors_and_torch_spellings() -> None:
    assert nn.MSECriterion is gr.MSECriterion
    assert nn.CrossEntropyCriterion is gr.CrossEntropyCriterion
    assert nn.ClassNLLCriterion(None).reduction == "mean"
    assert nn.MSECriterion(False).reduction == "sum"             # Torch's sizeAverage
    with pytest.raises(ValueError, match="reduction"):
        nn.MSECriterion("avg")
    x = gr.Input("B", D, name="x")
    model = gr.gModule([x], [nn.Linear(D, C)(x)])
    with pytest.raises(gr.GraphError, match="reduction='none'"):
        gr.compile(model, loss=nn.MSECriterion("none"), train=True)
    with pytest.raises(gr.GraphError, match="3 class weights for 6 classes"):
        loss_graph(model, nn.CrossEntropyCriterion([1.0, 2.0, 3.0]))
    with pytest.raises(gr.GraphError, match="no model input is named 'n'"):
        loss_graph(model, nn.MSECriterion(lengths="n"))
    with pytest.raises(gr.InputError, match="ids must lie"):     # -100 without ignore_index
        gr.compile(model, loss=nn.CrossEntropyCriterion(), train=True)(
            randn(B, D), np.array([0, 1, -100, 2]))


@pytest.mark.parametrize("chunk", [None, 2])
def test_fit_ignores_padding_targets(chunk: int | None) -> None:
    """fit (whole sequences or stateful chunks) remaps ignore_index=-100 targets: the same
    losses as the padding given a class of weight 0 that no real target has."""
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(4, C)(nn.Recurrent(gr.cells.GRU(D, 4))(x))])
    xs, ys = randn(8, T, D), RNG.integers(0, C - 1, (8, T))
    ys[:, -2:] = -100
    zero_last = np.append(np.ones(C - 1, np.float32), np.float32(0.0))
    start = model.state_dict()
    runs = []
    for crit, y in ((nn.CrossEntropyCriterion(ignore_index=-100), ys),
                    (nn.CrossEntropyCriterion(zero_last), np.where(ys < 0, C - 1, ys))):
        model.load_state_dict(start)
        hist = gr.train.fit(model, crit, xs, y, epochs=2, batch_size=4, progress=False,
                            stateful_chunk=chunk)
        runs.append(hist.loss)
    np.testing.assert_allclose(runs[0], runs[1], rtol=1e-5)
    with pytest.raises(gr.InputError, match="lengths='name'"):
        gr.train.fit(model, nn.MSECriterion(mask=True), xs, randn(8, T, C), epochs=1,
                     progress=False, stateful_chunk=2)
