"""The elementwise table modules against PyTorch (values and gradients, interpreted and
compiled, ties and zeros included); the elementwise modules inside a compiled loop (BPTT)
and inside one fused kernel."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compiler.passes.fuse_elementwise import FUSABLE, fuse_elementwise
from graphrnn.compiler.passes.validate import verify
from graphrnn.gradcheck import gradcheck, gradients
from graphrnn.ir import Op
from test_elementwise_modules import check_against_torch, close

torch = pytest.importorskip("torch")
F = torch.nn.functional

RNG = np.random.default_rng(1408)
B, D = 3, 5


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def table_model(module: nn.Module, *shapes: tuple) -> gr.gModule:
    xs = [gr.Input("B", *s, name=f"x{i}") for i, s in enumerate(shapes)]
    return gr.gModule(xs, [module(xs)])


def with_ties(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """b with a's values copied into every other entry (ties for max and min)."""
    b = b.copy()
    b.flat[::2] = a.flat[::2]
    return b


TABLES = [
    ("cdiv", nn.CDivTable, lambda a, b: a / b, 2),
    ("cmax", nn.CMaxTable, torch.maximum, 2),
    ("cmin", nn.CMinTable, torch.minimum, 2),
    ("cmax3", nn.CMaxTable, lambda a, b, c: torch.maximum(torch.maximum(a, b), c), 3),
    ("cmin3", nn.CMinTable, lambda a, b, c: torch.minimum(torch.minimum(a, b), c), 3),
    ("dot", nn.DotProduct, lambda a, b: (a * b).sum(-1), 2),
    ("cosine", nn.CosineDistance, lambda a, b: F.cosine_similarity(a, b, dim=-1), 2),
    ("pairwise", nn.PairwiseDistance, F.pairwise_distance, 2),
    ("pairwise1", lambda: nn.PairwiseDistance(p=1),
     lambda a, b: F.pairwise_distance(a, b, p=1), 2),
    ("pairwise3", lambda: nn.PairwiseDistance(p=3, keepdim=True),
     lambda a, b: F.pairwise_distance(a, b, p=3, keepdim=True), 2),
]


@pytest.mark.parametrize("name,make,torch_fn,n", TABLES, ids=[t[0] for t in TABLES])
def test_table_module_matches_torch(name, make, torch_fn, n):
    xs = [randn(B, D) for _ in range(n)]
    if name.startswith("cm"):
        xs[1] = with_ties(xs[0], xs[1])
    if name == "cosine":
        xs[0][0] = 0.0                  # a zero row: the norm is clamped to eps
    if name.startswith("pairwise"):
        xs[1][1] = xs[0][1]             # a zero distance
    check_against_torch(table_model(make(), *[(D,)] * n), torch_fn, xs)


@pytest.mark.parametrize("make,fn", [(nn.CMaxTable, torch.maximum),
                                     (nn.CMinTable, torch.minimum),
                                     (nn.CDivTable, torch.div)])
def test_tables_broadcast_like_torch(make, fn):
    a, b = randn(B, D), randn(B, 1)
    a[1, 2] = b[1, 0]                   # a tie across the broadcast
    check_against_torch(table_model(make(), (D,), (1,)), fn, [a, b])


def test_cmax_propagates_nan_like_torch():
    a, b = randn(2, 4), randn(2, 4)
    a[0, 1], b[1, 2] = np.nan, np.nan
    for make, fn in [(nn.CMaxTable, torch.maximum), (nn.CMinTable, torch.minimum)]:
        check_against_torch(table_model(make(), (4,), (4,)), fn, [a, b])


def test_masked_fill_matches_torch():
    x = randn(B, D)
    mask = (RNG.random((B, D)) < 0.5).astype(np.float32)
    row_mask = np.array([[1.0], [0.0], [1.0]], np.float32)
    m = table_model(nn.MaskedFill(-2.5), (D,), (D,))
    check_against_torch(m, lambda a, k: a.masked_fill(k.bool(), -2.5), [x, mask])
    m = table_model(nn.MaskedFill(-np.inf), (D,), (1,))       # broadcast, as in attention
    check_against_torch(m, lambda a, k: a.masked_fill(k.bool(), -np.inf), [x, row_mask])


def test_mixture_table_of_a_list_and_of_a_tensor():
    n = 3
    gate = gr.Input("B", n, name="gate")
    experts = [gr.Input("B", D, name=f"e{i}") for i in range(n)]
    stacked = gr.Input("B", n, D, name="stacked")
    listed = gr.gModule([gate, *experts], [nn.MixtureTable()([gate, experts])])
    tensor = gr.gModule([gate, stacked], [nn.MixtureTable()([gate, stacked])])
    g, es = randn(B, n), [randn(B, D) for _ in range(n)]

    def mixture(gt, *e):
        return (gt[:, :, None] * torch.stack(e, 1)).sum(1)
    check_against_torch(listed, mixture, [g, *es])
    check_against_torch(tensor, lambda gt, e: (gt[:, :, None] * e).sum(1),
                        [g, np.stack(es, 1)])
    last = gr.Input("B", D, n, name="last")      # the experts along the last axis
    m = gr.gModule([gate, last], [nn.MixtureTable(axis=-1)([gate, last])])
    check_against_torch(m, lambda gt, e: (gt[:, None, :] * e).sum(2), [g, randn(B, D, n)])
    with pytest.raises(gr.GraphError, match="2 columns for 3 experts"):
        nn.MixtureTable()([gr.Input("B", 2), experts])


@pytest.mark.parametrize("name,make,torch_fn,n", TABLES, ids=[t[0] for t in TABLES])
def test_table_module_gradcheck(name, make, torch_fn, n):
    xs = [RNG.uniform(0.5, 2.0, (B, D)) * RNG.choice([-1, 1], (B, D)) for _ in range(n)]
    res = gradcheck(table_model(make(), *[(D,)] * n), *[x.astype(np.float32) for x in xs],
                    rtol=1e-5)
    assert res.ok, str(res)


# ----------------------------------------------------------------------------- in a loop

H = 4


def cell_modules() -> dict:
    return {"wx": nn.Linear(D, H), "wh": nn.Linear(H, H), "gate": nn.Linear(H, 2)}


def elementwise_cell(mods: dict) -> gr.gModule:
    """A recurrent cell made of the new modules: z = Wx x + Wh h, and
    h' = hardtanh(max(mixture(gate, [gelu z, elu z]) + softsign(h) softplus(z),
    leaky_relu z) + |z|)."""
    h, x = gr.Input("B", H, name="h"), gr.Input("B", D, name="x")
    z = nn.CAddTable()([mods["wx"](x), mods["wh"](h)])
    gate = nn.Sigmoid()(mods["gate"](h))
    mix = nn.MixtureTable()([gate, [nn.GELU()(z), nn.ELU(0.7)(z)]])
    extra = nn.CMulTable()([nn.SoftSign()(h), nn.SoftPlus(beta=2)(z)])
    both = nn.CMaxTable()([nn.CAddTable()([mix, extra]), nn.LeakyReLU(0.2)(z)])
    h2 = nn.HardTanh(-3, 3)(nn.CAddTable()([both, nn.Abs()(z)]))
    return gr.gModule([h, x], [h2, h2])


def looped(mods: dict) -> gr.gModule:
    xs = gr.Input("B", "T", D, name="xs")
    init = gr.ops.fill((H,), batch_like=xs)
    _, hs = gr.Loop(elementwise_cell(mods), n_carry=1)(init=[init], xs=[xs])
    return gr.gModule([xs], [hs])


def torch_looped(p: dict, xs):
    """The same loop in torch, on parameter tensors p[module] = [weight, bias]."""
    h = torch.zeros(xs.shape[0], H)
    outs = []
    for t in range(xs.shape[1]):
        z = F.linear(xs[:, t], *p["wx"]) + F.linear(h, *p["wh"])
        gate = torch.sigmoid(F.linear(h, *p["gate"]))
        mix = gate[:, :1] * F.gelu(z) + gate[:, 1:] * F.elu(z, 0.7)
        extra = F.softsign(h) * F.softplus(z, beta=2)
        h = F.hardtanh(torch.maximum(mix + extra, F.leaky_relu(z, 0.2)) + z.abs(), -3, 3)
        outs.append(h)
    return torch.stack(outs, 1)


def test_cell_of_new_modules_compiles_as_a_loop_with_bptt():
    mods = cell_modules()
    model = looped(mods)
    xs, target = randn(B, 6, D), randn(B, 6, H)
    tp = {k: [torch.tensor(gr.value(q), requires_grad=True) for q in m.params().values()]
          for k, m in mods.items()}
    # outputs and input gradients through the loop: interpreter, compiled, torch
    check_against_torch(model, lambda x: torch_looped(tp, x), [xs], rtol=2e-4)
    for ps in tp.values():
        for q in ps:
            q.grad = None
    # parameter gradients of a compiled training step (BPTT) against torch's
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    step(xs, target)
    F.mse_loss(torch_looped(tp, torch.tensor(xs)), torch.tensor(target)).backward()
    for k, m in mods.items():
        for q, tq in zip(m.params().values(), tp[k]):
            close(model.store.grad_of(q), tq.grad.numpy(), rtol=2e-4)
    res = gradcheck(model, randn(2, 3, D) * 0.5, rtol=1e-4)
    assert res.ok, str(res)
    assert any(n.op == Op.LOOP for n in model.graph.nodes)


def test_sqrt_after_a_product_in_a_loop_differentiates_from_its_saved_output():
    # sqrt reads only its output in its gradient, so BPTT may save sqrt(exp(W [h, x]))
    h, x = gr.Input("B", H, name="h"), gr.Input("B", D, name="x")
    lin = nn.Linear(H + D, H)
    h2 = nn.Tanh()(nn.Sqrt()(nn.Exp()(lin(nn.JoinTable(1)([h, x])))))
    xs = gr.Input("B", "T", D, name="xs")
    _, hs = gr.Loop(gr.gModule([h, x], [h2, h2]), n_carry=1)(
        init=[gr.ops.fill((H,), batch_like=xs)], xs=[xs])
    model = gr.gModule([xs], [hs])
    a, dy = randn(B, 5, D), randn(B, 5, H)
    _, (got,) = gr.compile_vjp(model)(a, grad_outputs=[dy])
    compiled = model.store.grad_of(lin.weight).copy()
    _, params, (want,) = gradients(model, a, cotangents=[dy], dtype=np.float32)
    close(got, want, rtol=1e-4)
    close(compiled, params[next(k for k in params if k.endswith("weight"))], rtol=1e-4)
    assert gradcheck(model, randn(2, 3, D)).ok


# ----------------------------------------------------------------------------- fusion

def fuse_and_check(m: gr.gModule, *arrays: np.ndarray) -> list:
    """The FUSED nodes of m's graph once fused; every elementwise op is inside one, and the
    fused graph computes what m does, interpreted and compiled."""
    g = fuse_elementwise(m.graph)
    verify(g)
    assert [n for n, _ in g.walk() if n.op in FUSABLE] == []
    close(gr.interpret(g, *arrays), m(*arrays), rtol=1e-6)
    close(gr.compile(m)(*arrays), m(*arrays), rtol=2e-5)
    return [n for n in g.nodes if n.op == Op.FUSED]


def test_new_primitives_fuse_into_one_kernel():
    x, y = gr.Input("B", D, name="x"), gr.Input("B", D, name="y")
    chain = gr.ops.pow_(gr.ops.sqrt(gr.ops.abs_(x)), 3)
    chain = gr.ops.maximum(gr.ops.erf(gr.ops.softplus(chain)), y)
    chain = gr.ops.sign(gr.ops.minimum(gr.ops.pow_(chain, 2.5), 0.8))
    fused = fuse_and_check(gr.gModule([x, y], [chain]), randn(B, D), randn(B, D))
    assert len(fused) == 1
    assert {n.op for n in fused[0].attrs["body"].nodes} == {
        Op.INPUT, Op.CONST, Op.ABS, Op.SQRT, Op.POW, Op.SOFTPLUS, Op.ERF, Op.MAXIMUM,
        Op.MINIMUM, Op.SIGN}


MODULES = [nn.GELU, lambda: nn.GELU(approximate="tanh"), nn.ELU, nn.HardTanh, nn.SoftSign,
           lambda: nn.SoftPlus(beta=2), nn.LeakyReLU, lambda: nn.Clamp(-1, 1),
           lambda: nn.Threshold(0.1, 2.0), nn.Square]


@pytest.mark.parametrize("make", MODULES)
def test_each_module_is_one_kernel_after_its_input(make):
    # the fuser groups trees: a module reading x at several places materializes x (here a
    # graph input) and computes the rest in one pass
    x = gr.Input("B", D, name="x")
    m = gr.gModule([x], [make()(x)])
    assert len(fuse_and_check(m, randn(B, D) * 3)) == 1


def test_gradient_of_the_modules_fuses():
    x = gr.Input("B", D, name="x")
    y = nn.HardTanh()(nn.ELU()(nn.GELU()(x)))
    m = gr.gModule([x], [y])
    vjp = gr.compile_vjp(m)
    a, dy = randn(B, D), randn(B, D)
    _, (got,) = vjp(a, grad_outputs=[dy])
    _, _, (want,) = gradients(m, a, cotangents=[dy], dtype=np.float32)
    close(got, want, rtol=1e-4)
