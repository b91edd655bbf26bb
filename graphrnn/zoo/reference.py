"""The zoo's models written again as plain step functions over an array namespace, for the
peers the zoo is measured and checked against: PyTorch eager (a Python loop over time) and JAX
(`lax.scan` under `jit`). Parameters come from the graphrnn model's `state_dict()`, so both
sides compute with the same weights.

A step is `step(xp, p, carry, x_t) -> (carry, y_t)`; `xp` supplies the few functions whose
names differ between torch and jax.numpy.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import Any, Callable

Step = Callable[[Any, dict, tuple, Any], tuple[tuple, Any]]


def torch_namespace() -> SimpleNamespace:
    import torch
    return SimpleNamespace(sigmoid=torch.sigmoid, tanh=torch.tanh, relu=torch.relu,
                           cat=lambda xs, axis: torch.cat(xs, dim=axis),
                           softmax=lambda x, axis: torch.softmax(x, dim=axis),
                           sum=lambda x, axis: x.sum(dim=axis), zeros=torch.zeros,
                           mean=lambda x, axis: x.mean(dim=axis, keepdim=True),
                           stack=lambda xs, axis: torch.stack(xs, dim=axis),
                           where=torch.where, as_array=torch.as_tensor)


def jax_namespace() -> SimpleNamespace:
    import jax
    import jax.numpy as jnp
    return SimpleNamespace(sigmoid=jax.nn.sigmoid, tanh=jnp.tanh, relu=jax.nn.relu,
                           cat=lambda xs, axis: jnp.concatenate(xs, axis=axis),
                           softmax=lambda x, axis: jax.nn.softmax(x, axis=axis),
                           sum=lambda x, axis: x.sum(axis=axis), zeros=jnp.zeros,
                           mean=lambda x, axis: x.mean(axis=axis, keepdims=True),
                           stack=lambda xs, axis: jnp.stack(xs, axis=axis),
                           where=jnp.where, as_array=jnp.asarray)


def linear(p: dict, name: str, x: Any) -> Any:
    y = x @ p[f"{name}.weight"].T
    return y + p[f"{name}.bias"] if f"{name}.bias" in p else y


def chunks(z: Any, n: int) -> list:
    h = z.shape[-1] // n
    return [z[..., k * h:(k + 1) * h] for k in range(n)]


def peephole_lstm(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    h, c = carry
    zi, zf, zg, zo = chunks(linear(p, "ih", x) + linear(p, "hh", h), 4)
    i = xp.sigmoid(zi + p["p_i.weight"] * c)
    f = xp.sigmoid(zf + p["p_f.weight"] * c)
    c2 = f * c + i * xp.tanh(zg)
    h2 = xp.sigmoid(zo + p["p_o.weight"] * c2) * xp.tanh(c2)
    return (h2, c2), h2


def indrnn(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    h2 = xp.relu(linear(p, "ih", x) + p["u.weight"] * carry[0])
    return (h2,), h2


def sru(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    (c,) = carry
    xt, zf, zr = chunks(linear(p, "w", x), 3)
    f = xp.sigmoid(zf + p["v_f.weight"] * c)
    r = xp.sigmoid(zr + p["v_r.weight"] * c)
    c2 = f * c + (1.0 - f) * xt
    return (c2,), r * c2 + (1.0 - r) * linear(p, "highway", x)


def mlstm(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    h, c = carry
    m = linear(p, "mx", x) * linear(p, "mh", h)
    zi, zf, zg, zo = chunks(linear(p, "ih", x) + linear(p, "mh4", m), 4)
    c2 = xp.sigmoid(zf) * c + xp.sigmoid(zi) * xp.tanh(zg)
    h2 = xp.sigmoid(zo) * xp.tanh(c2)
    return (h2, c2), h2


def rhn(xp: Any, p: dict, carry: tuple, x: Any, depth: int = 2) -> tuple[tuple, Any]:
    (s,) = carry
    for layer in range(depth):
        z = linear(p, f"r{layer}", s) + (linear(p, "ih", x) if layer == 0 else 0.0)
        zh, zt = chunks(z, 2)
        t = xp.sigmoid(zt)
        s = xp.tanh(zh) * t + s * (1.0 - t)
    return (s,), s


def layer_norm(xp: Any, x: Any, weight: Any, bias: Any, eps: float = 1e-5) -> Any:
    mu = xp.mean(x, -1)
    var = xp.mean((x - mu) ** 2, -1)
    return (x - mu) / (var + eps) ** 0.5 * weight + bias


def layernorm_lstm(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    """`zoo.layernorm_lstm` (one layer): LN on each gate product and on the cell."""
    h, c = carry
    w = {k: p[f"lnlstm.{k}_l0"] for k in ("weight_ih", "weight_hh", "ln_ih_weight",
                                           "ln_ih_bias", "ln_hh_weight", "ln_hh_bias",
                                           "ln_c_weight", "ln_c_bias")}
    z = (layer_norm(xp, x @ w["weight_ih"].T, w["ln_ih_weight"], w["ln_ih_bias"])
         + layer_norm(xp, h @ w["weight_hh"].T, w["ln_hh_weight"], w["ln_hh_bias"]))
    zi, zf, zg, zo = chunks(z, 4)
    c2 = xp.sigmoid(zf) * c + xp.sigmoid(zi) * xp.tanh(zg)
    h2 = xp.sigmoid(zo) * xp.tanh(layer_norm(xp, c2, w["ln_c_weight"], w["ln_c_bias"]))
    return (h2, c2), h2


def qrnn(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
    """`zoo.qrnn` with window 2: the carry holds the previous input frame (zeros before the
    first, the causal padding) besides c; conv weight [3H, 2D], frame t-1 first."""
    c, x_prev = carry
    zz, zf, zo = chunks(linear(p, "conv", xp.cat([x_prev, x], 1)), 3)
    f = xp.sigmoid(zf)
    c2 = f * c + (1.0 - f) * xp.tanh(zz)
    return (c2, x), xp.sigmoid(zo) * c2


def gru(xp: Any, p: dict, name: str, h: Any, x: Any, suffix: str = "") -> Any:
    """PyTorch's GRU cell (gates r, z, n; r multiplies the recurrent product with its bias)."""
    w = {k: p[f"{name}.{k}{suffix}"] for k in ("weight_ih", "weight_hh", "bias_ih", "bias_hh")}
    xr, xz, xn = chunks(x @ w["weight_ih"].T + w["bias_ih"], 3)
    hr, hz, hn = chunks(h @ w["weight_hh"].T + w["bias_hh"], 3)
    r, z = xp.sigmoid(xr + hr), xp.sigmoid(xz + hz)
    n = xp.tanh(xn + r * hn)
    return (1.0 - z) * n + z * h


def bahdanau_decoder(enc: Any, keys: Any) -> Step:
    """One decoder step of `zoo.bahdanau`: additive attention over `enc`, then a GRU on
    [y_t, context] and logits from [h', context]."""
    def step(xp: Any, p: dict, carry: tuple, y: Any) -> tuple[tuple, Any]:
        (h,) = carry
        q = linear(p, "query", h)[:, None, :]
        e = linear(p, "score", xp.tanh(keys + q))[..., 0]
        alpha = xp.softmax(e, 1)
        ctx = xp.sum(enc * alpha[:, :, None], 1)
        h2 = gru(xp, p, "dec", h, xp.cat([y, ctx], 1))
        return (h2,), linear(p, "out", xp.cat([h2, ctx], 1))
    return step


def scan_torch(step: Step, p: dict, carry: tuple, xs: Any) -> Any:
    """PyTorch eager: the step in a Python loop over axis 1 of `xs`; ys stacked on axis 1."""
    import torch
    xp, ys = torch_namespace(), []
    for t in range(xs.shape[1]):
        carry, y = step(xp, p, carry, xs[:, t])
        ys.append(y)
    return torch.stack(ys, dim=1)


def scan_jax(step: Step, p: dict, carry: tuple, xs: Any) -> Any:
    """JAX: the step under `lax.scan` over axis 1 of `xs`; ys stacked on axis 1."""
    import jax.numpy as jnp
    from jax import lax
    xp = jax_namespace()
    _, ys = lax.scan(lambda c, x: step(xp, p, c, x), carry, jnp.swapaxes(xs, 0, 1))
    return jnp.swapaxes(ys, 0, 1)


def luong_decoder(enc: Any, keys: Any) -> Step:
    """One decoder step of `zoo.luong`: carry (h, attentional state)."""
    def step(xp: Any, p: dict, carry: tuple, y: Any) -> tuple[tuple, Any]:
        h, feed = carry
        h2 = gru(xp, p, "dec", h, xp.cat([y, feed], 1))
        alpha = xp.softmax(xp.sum(keys * h2[:, None, :], 2), 1)
        ctx = xp.sum(enc * alpha[:, :, None], 1)
        feed2 = xp.tanh(linear(p, "combine", xp.cat([ctx, h2], 1)))
        return (h2, feed2), linear(p, "out", feed2)
    return step


def encode(xp: Any, scan: Callable, p: dict, src: Any) -> Any:
    """The GRU encoder of the attention models: every step's state, [B, S, H]."""
    emb = p["src_emb.weight"][src]
    h0 = xp.zeros((src.shape[0], p["encoder.weight_hh_l0"].shape[1]), dtype=emb.dtype)

    def step(xp: Any, p: dict, carry: tuple, x: Any) -> tuple[tuple, Any]:
        h = gru(xp, p, "encoder", carry[0], x, suffix="_l0")
        return (h,), h
    return scan(step, p, (h0,), emb)


def luong_forward(xp: Any, scan: Callable, p: dict, src: Any, tgt_in: Any) -> Any:
    """`zoo.luong` on integer arrays with the given scan (`scan_torch` or `scan_jax`)."""
    enc = encode(xp, scan, p, src)
    carry = (enc[:, -1], xp.zeros(enc[:, -1].shape, dtype=enc.dtype))
    return scan(luong_decoder(enc, linear(p, "keys", enc)), p, carry, p["tgt_emb.weight"][tgt_in])


def bahdanau_forward(xp: Any, scan: Callable, p: dict, src: Any, tgt_in: Any) -> Any:
    """`zoo.bahdanau` on integer arrays with the given scan (`scan_torch` or `scan_jax`)."""
    enc = encode(xp, scan, p, src)
    keys = linear(p, "keys", enc)
    return scan(bahdanau_decoder(enc, keys), p, (enc[:, -1],), p["tgt_emb.weight"][tgt_in])


def hierarchical_forward(xp: Any, p: dict, chars: Any, lengths: Any) -> Any:
    """`zoo.hierarchical` on integer arrays chars[B, T, L], lengths[B, T]: a GRU over each
    word's first lengths[:, t] characters (from zeros), a GRU over the word encodings."""
    emb = p["char_emb.weight"][chars]                                   # [B, T, L, E]
    b, t_len, n_chars = chars.shape
    char_h = p["char_rnn.weight_hh"].shape[1]
    h = xp.zeros((b, p["word_rnn.weight_hh"].shape[1]), dtype=emb.dtype)
    hs = []
    for t in range(t_len):
        hc = xp.zeros((b, char_h), dtype=emb.dtype)
        for k in range(n_chars):
            live = xp.as_array(lengths[:, t] > k)[:, None]
            hc = xp.where(live, gru(xp, p, "char_rnn", hc, emb[:, t, k]), hc)
        h = gru(xp, p, "word_rnn", h, hc)
        hs.append(h)
    return xp.stack(hs, 1)


def greedy_torch(name: str, p: dict, src: Any, bos: int, eos: int, max_steps: int,
                 pad: int = -1) -> tuple:
    """`zoo.greedy_decoder` of a `zoo.bahdanau` / `zoo.luong` model ("bahdanau" / "luong")
    in PyTorch, a Python loop over steps: (tokens [B, max_steps], lengths [B]) as numpy."""
    import numpy as np
    import torch
    xp = torch_namespace()
    src = torch.as_tensor(src)
    enc = encode(xp, scan_torch, p, src)
    keys = linear(p, "keys", enc)
    if name == "bahdanau":
        step, carry = bahdanau_decoder(enc, keys), (enc[:, -1],)
    else:
        step, carry = luong_decoder(enc, keys), (enc[:, -1], torch.zeros_like(enc[:, -1]))
    tok = torch.full((src.shape[0],), bos, dtype=torch.int64)
    tokens = np.full((src.shape[0], max_steps), pad, np.int64)
    lengths = np.zeros(src.shape[0], np.int64)
    live = np.ones(src.shape[0], bool)
    for t in range(max_steps):
        if not live.any():
            break
        carry, logits = step(xp, p, carry, p["tgt_emb.weight"][tok])
        tok = logits.argmax(-1)
        tokens[live, t] = tok.numpy()[live]
        lengths[live] += 1
        live &= tok.numpy() != eos
    return tokens, lengths
