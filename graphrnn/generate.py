"""Autoregressive generation as one graph: the sampled output feeds the next step in the loop.

`sampler(embed, layer, head)` builds `(prime[B, P], uniforms[B, N], temperature[]) -> ids[B, N]`
from a language model's parts (LookupTable -> Recurrent -> Linear). The priming text runs
through the stack first (one loop); a second loop then draws N classes, each from
softmax(logits / temperature) with the given uniform numbers (argmax at temperature 0), and
feeds each back as the next input. Compiled, one sample of N characters is one native call;
the same uniforms give the same text.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import ops
from .gmodule import gModule
from .ir import GraphError, Node
from .loop import Loop
from .nn import Input


def _stack(layer: Any, states: list[Node], x: Node) -> list[Node]:
    """One step of every layer of `layer`; returns the new states in the same order."""
    out: list[Node] = []
    k = layer.n_states
    for i, cell in enumerate(layer.cells):
        new = cell(states[i * k:(i + 1) * k] + [x])
        new = [new] if isinstance(new, Node) else list(new)
        out += new
        x = new[0]
    return out


def sampler(embed: Any, layer: Any, head: Any) -> gModule:
    """The generation graph of a LookupTable -> Recurrent -> Linear language model."""
    if layer.dirs != 1:
        raise GraphError("generation needs a unidirectional recurrent layer")
    n_vocab = embed.n
    sizes = list(layer.state_sizes) * len(layer.cells)     # h (proj_size wide) before c
    n_states = len(sizes)

    def state_inputs() -> list[Node]:
        return [ops.input_(("B", size), name=f"s{i}") for i, size in enumerate(sizes)]

    # phase 1: read the priming ids, carrying the states and the last logits
    states, logits, x_id = state_inputs(), ops.input_(("B", n_vocab)), ops.input_(
        ("B",), "int64", name="id")
    new = _stack(layer, states, embed(x_id))
    prime_body = ops.internal_graph(states + [logits, x_id], new + [head(new[-layer.n_states])])
    # phase 2: sample from the logits, feed the sample back
    states, logits = state_inputs(), ops.input_(("B", n_vocab))
    u_t, temp = ops.input_(("B",), name="u"), ops.input_((), name="temperature")
    drawn = ops.sample(logits, u_t, temp)
    new = _stack(layer, states, embed(drawn))
    gen_body = ops.internal_graph([temp] + states + [logits, u_t],
                       new + [head(new[-layer.n_states]), drawn])

    prime = Input("B", "P", dtype="int64", name="prime")
    uniforms = Input("B", "N", name="uniforms")
    temperature = Input(name="temperature")
    init = [ops.fill((size,), 0.0, batch_like=uniforms) for size in sizes]
    init.append(ops.fill((n_vocab,), 0.0, batch_like=uniforms))
    primed = Loop(prime_body, n_carry=n_states + 1)(init=init, xs=[prime])
    generated = Loop(gen_body, n_carry=n_states + 1, n_consts=1)(
        consts=[temperature], init=list(primed[:n_states + 1]), xs=[uniforms])
    return gModule([prime, uniforms, temperature], [generated[n_states + 1]], name="sampler")


def sample_ids(model: Any, prime: np.ndarray, length: int, temperature: float,
               seed: int = 0) -> np.ndarray:
    """Run a sampler (interpreted or compiled) with seeded uniforms: ids [B, length]."""
    prime = np.atleast_2d(np.asarray(prime, np.int64))
    u = np.random.default_rng(seed).random((prime.shape[0], length), dtype=np.float32)
    return np.asarray(model(prime, u, np.float32(temperature)))


__all__ = ["sampler", "sample_ids"]
