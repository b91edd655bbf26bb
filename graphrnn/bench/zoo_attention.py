"""The zoo's attention encoder-decoders in `graphrnn bench --zoo`: graphrnn compiled, PyTorch
eager and JAX on the same integer inputs and weights. A row's (B, T, D, H) is batch, source and
target length, embedding and hidden size, over a vocabulary of `VOCAB` tokens; the training
step is the cross-entropy of the logits against the target and the gradient of every weight.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import zoo
from ..zoo import reference
from .zoo_calls import graphrnn_call, with_peers

VOCAB = 64
ATTENTION = {"bahdanau": (lambda d, h: zoo.bahdanau(VOCAB, embedding=d, hidden=h),
                          reference.bahdanau_forward),
             "luong": (lambda d, h: zoo.luong(VOCAB, embedding=d, hidden=h),
                       reference.luong_forward)}


def attention_impls(name: str, config: tuple, mode: str) -> dict[str, Callable[[], Any]]:
    """name -> a call without arguments, for graphrnn, PyTorch and JAX (those installed)."""
    b, t, d, h = config
    build, forward = ATTENTION[name]
    model = build(d, h)
    model.reset_parameters(seed=0)
    rng = np.random.default_rng(0)
    src, tgt_in, tgt = (rng.integers(0, VOCAB, (b, t)) for _ in range(3))
    fns = {"graphrnn": graphrnn_call(model, mode, (src, tgt_in), tgt,
                                     gr.CrossEntropyCriterion())}
    weights = model.state_dict()
    return with_peers(fns, (
        ("pytorch", lambda: _torch(forward, weights, mode, src, tgt_in, tgt)),
        ("jax", lambda: _jax(forward, weights, mode, src, tgt_in, tgt))))


def _torch(forward: Callable, weights: dict, mode: str, src: np.ndarray, tgt_in: np.ndarray,
           tgt: np.ndarray) -> Callable[[], Any]:
    import torch
    torch.set_num_threads(1)
    p = {k: torch.tensor(v, requires_grad=(mode == "train")) for k, v in weights.items()}
    s, ti, tt = (torch.tensor(a) for a in (src, tgt_in, tgt))
    xp = reference.torch_namespace()
    if mode == "forward":
        def call() -> np.ndarray:
            with torch.no_grad():
                return forward(xp, reference.scan_torch, p, s, ti).numpy()
        return call
    params = list(p.values())

    def train() -> float:
        logits = forward(xp, reference.scan_torch, p, s, ti)
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, VOCAB), tt.reshape(-1))
        torch.autograd.grad(loss, params)
        return float(loss.detach())
    return train


def _jax(forward: Callable, weights: dict, mode: str, src: np.ndarray, tgt_in: np.ndarray,
         tgt: np.ndarray) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    p = {k: jnp.asarray(v) for k, v in weights.items()}
    s, ti, tt = (jnp.asarray(a) for a in (src, tgt_in, tgt))
    xp = reference.jax_namespace()

    def logits(p: dict, s: Any, ti: Any) -> Any:
        return forward(xp, reference.scan_jax, p, s, ti)
    if mode == "forward":
        fwd = jax.jit(logits)
        return lambda: np.asarray(fwd(p, s, ti).block_until_ready())

    def loss(p: dict, s: Any, ti: Any, tt: Any) -> Any:
        logp = jax.nn.log_softmax(logits(p, s, ti), axis=-1)
        return -jnp.mean(jnp.take_along_axis(logp, tt[..., None], axis=-1))
    step = jax.jit(jax.value_and_grad(loss))

    def train() -> float:
        value, grads = step(p, s, ti, tt)
        jax.block_until_ready(grads)
        return float(value)
    return train
