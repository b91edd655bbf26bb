"""`zoo.hierarchical` in `graphrnn bench --zoo`: graphrnn compiled (a native loop inside a
native loop), PyTorch eager (two Python loops) and JAX (`lax.scan` inside `lax.scan`, jitted)
on the same characters and weights. A row's (B, T, D, H) is batch, words, character embedding
and hidden size, with `WORD_LENGTH` characters per word out of `N_CHARS`; the training step is
`mean((hs - target)^2)` and the gradient of every weight.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import zoo
from ..zoo import reference
from .zoo_calls import graphrnn_call, with_peers

N_CHARS, WORD_LENGTH = 64, 8


def hierarchical_impls(config: tuple, mode: str) -> dict[str, Callable[[], Any]]:
    """name -> a call without arguments, for graphrnn, PyTorch and JAX (those installed)."""
    b, t, d, h = config
    model = zoo.hierarchical(N_CHARS, h, char_embedding=d, word_length=WORD_LENGTH)
    model.reset_parameters(seed=0)
    rng = np.random.default_rng(0)
    chars = rng.integers(0, N_CHARS, (b, t, WORD_LENGTH))
    lengths = rng.integers(1, WORD_LENGTH + 1, (b, t))
    y = rng.standard_normal((b, t, h)).astype(np.float32)
    fns = {"graphrnn": graphrnn_call(model, mode, (chars, lengths), y, gr.MSECriterion())}
    weights = model.state_dict()
    return with_peers(fns, (
        ("pytorch", lambda: _torch(weights, mode, chars, lengths, y)),
        ("jax", lambda: _jax(weights, mode, chars, lengths, y))))


def _torch(weights: dict, mode: str, chars: np.ndarray, lengths: np.ndarray,
           y: np.ndarray) -> Callable[[], Any]:
    import torch
    torch.set_num_threads(1)
    p = {k: torch.tensor(v, requires_grad=(mode == "train")) for k, v in weights.items()}
    c, n, yt = torch.tensor(chars), torch.tensor(lengths), torch.tensor(y)
    xp = reference.torch_namespace()
    if mode == "forward":
        def call() -> np.ndarray:
            with torch.no_grad():
                return reference.hierarchical_forward(xp, p, c, n).numpy()
        return call
    params = list(p.values())

    def train() -> float:
        loss = ((reference.hierarchical_forward(xp, p, c, n) - yt) ** 2).mean()
        torch.autograd.grad(loss, params)
        return float(loss.detach())
    return train


def _jax(weights: dict, mode: str, chars: np.ndarray, lengths: np.ndarray,
         y: np.ndarray) -> Callable[[], Any]:
    import jax
    import jax.numpy as jnp
    from jax import lax
    xp = reference.jax_namespace()
    p = {k: jnp.asarray(v) for k, v in weights.items()}
    c, n, yt = jnp.asarray(chars), jnp.asarray(lengths), jnp.asarray(y)

    def forward(p: dict, c: Any, n: Any) -> Any:
        emb = p["char_emb.weight"][c]                                  # [B, T, L, E]
        char_h, h = p["char_rnn.weight_hh"].shape[1], p["word_rnn.weight_hh"].shape[1]

        def word(hw: Any, inp: tuple) -> tuple:
            e_t, n_t = inp                                             # [B, L, E], [B]

            def char(hc: Any, inp: tuple) -> tuple:
                e_k, k = inp
                new = reference.gru(xp, p, "char_rnn", hc, e_k)
                return jnp.where((n_t > k)[:, None], new, hc), None
            hc, _ = lax.scan(char, jnp.zeros((e_t.shape[0], char_h), e_t.dtype),
                             (jnp.swapaxes(e_t, 0, 1), jnp.arange(e_t.shape[1])))
            hw = reference.gru(xp, p, "word_rnn", hw, hc)
            return hw, hw
        _, hs = lax.scan(word, jnp.zeros((c.shape[0], h), emb.dtype),
                         (jnp.swapaxes(emb, 0, 1), jnp.swapaxes(n, 0, 1)))
        return jnp.swapaxes(hs, 0, 1)
    if mode == "forward":
        fwd = jax.jit(forward)
        return lambda: np.asarray(fwd(p, c, n).block_until_ready())
    step = jax.jit(jax.value_and_grad(lambda p, c, n, y: jnp.mean((forward(p, c, n) - y) ** 2)))

    def train() -> float:
        value, grads = step(p, c, n, yt)
        jax.block_until_ready(grads)
        return float(value)
    return train
