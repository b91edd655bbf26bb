"""Encoder-decoder models with attention, trained with teacher forcing.

`bahdanau(...)` and `luong(...)` are gModules `(src i64[B, S], tgt_in i64[B, T]) ->
logits[B, T, vocab]`: a GRU encoder over the embedded source, then a decoder loop whose body
attends over every encoder step. The encoder outputs and their key projection enter the loop as loop-invariant inputs
(computed once, their gradients accumulated over the steps).
"""
from __future__ import annotations

from .. import cells, ops
from ..gmodule import gModule
from ..ir import Node
from ..loop import Loop
from ..nn import Input, JoinTable, Linear, LookupTable
from ..nn_shape import MM, Squeeze, Unsqueeze
from ..recurrent import Recurrent


def unsqueeze(x: Node, axis: int) -> Node:
    shape = list(x.type.shape)
    shape.insert(axis, 1)
    return ops.reshape(x, tuple(shape))


def _encoded(vocab: int, embedding: int, hidden: int, keys: int) -> tuple[Node, ...]:
    """The inputs src i64[B, S] and tgt_in i64[B, T], the GRU encoder's outputs [B, S, H] and
    final state, their key projection [B, S, keys] and the embedded target [B, T, E]."""
    src = Input("B", "S", name="src", dtype="int64")
    tgt_in = Input("B", "T", name="tgt_in", dtype="int64")
    enc, h0 = Recurrent(cells.GRU(embedding, hidden), name="encoder", return_state=True)(
        LookupTable(vocab, embedding, name="src_emb")(src))
    projected = Linear(hidden, keys, bias=False, name="keys")(enc)
    return src, tgt_in, enc, h0, projected, LookupTable(vocab, embedding, name="tgt_emb")(tgt_in)


def bahdanau_step(hidden: int, attention: int, embedding: int, vocab: int) -> gModule:
    """(enc[B, S, H], keys[B, S, A], h[B, H], y_t[B, E]) -> (h', logits_t[B, vocab]):
    e = v^T tanh(keys + W_q h), alpha = softmax over S, context = sum alpha * enc,
    h' = GRU([y_t, context], h), logits = W_o [h', context] (Bahdanau et al. 2015)."""
    enc, keys = Input("B", "S", hidden, name="enc"), Input("B", "S", attention, name="keys")
    h, y = Input("B", hidden, name="h"), Input("B", embedding, name="y")
    q = unsqueeze(Linear(hidden, attention, name="query")(h), 1)
    e = Linear(attention, 1, bias=False, name="score")(ops.tanh(ops.add(keys, q)))
    alpha = ops.softmax(ops.index(e, 2, 0), axis=1)
    context = ops.sum_(ops.mul(enc, unsqueeze(alpha, 2)), axes=[1])
    h2 = cells.GRU(embedding + hidden, hidden, name="dec")([h, JoinTable(1)([y, context])])
    logits = Linear(2 * hidden, vocab, name="out")(JoinTable(1)([h2, context]))
    return gModule([enc, keys, h, y], [h2, logits], name="bahdanau_step")


def bahdanau(vocab: int, embedding: int = 32, hidden: int = 64,
             attention: int | None = None) -> gModule:
    """A GRU encoder-decoder with additive attention; the decoder reads the target shifted
    right (teacher forcing): logits[:, t] predicts tgt[:, t] from tgt_in[:, :t + 1]."""
    attention = attention or hidden
    src, tgt_in, enc, h0, keys, ys = _encoded(vocab, embedding, hidden, attention)
    step = bahdanau_step(hidden, attention, embedding, vocab)
    _, logits = Loop(step, n_carry=1, n_consts=2, name="decoder")(
        consts=[enc, keys], init=[h0], xs=[ys])
    return gModule([src, tgt_in], [logits], name="bahdanau")


def luong_step(hidden: int, embedding: int, vocab: int) -> gModule:
    """(enc[B, S, H], keys[B, S, H], h[B, H], feed[B, H], y_t[B, E]) -> (h', feed', logits_t):
    h' = GRU([y_t, feed], h); scores = h' . keys (the "general" score, keys = enc W_a^T);
    alpha = softmax over S; context = alpha @ enc; feed' = tanh(W_c [context, h']) (the
    attentional state, fed to the next step: input feeding); logits = W_s feed'
    (Luong, Pham and Manning 2015)."""
    enc, keys = Input("B", "S", hidden, name="enc"), Input("B", "S", hidden, name="keys")
    h, feed = Input("B", hidden, name="h"), Input("B", hidden, name="feed")
    y = Input("B", embedding, name="y")
    h2 = cells.GRU(embedding + hidden, hidden, name="dec")([h, JoinTable(1)([y, feed])])
    scores = MM(transB=True)([Unsqueeze(1)(h2), keys])                     # [B, 1, S]
    context = Squeeze(1)(MM()([ops.softmax(scores, axis=-1), enc]))       # [B, H]
    feed2 = ops.tanh(Linear(2 * hidden, hidden, bias=False, name="combine")(
        JoinTable(1)([context, h2])))
    logits = Linear(hidden, vocab, name="out")(feed2)
    return gModule([enc, keys, h, feed, y], [h2, feed2, logits], name="luong_step")


def luong(vocab: int, embedding: int = 32, hidden: int = 64) -> gModule:
    """A GRU encoder-decoder with multiplicative ("general") attention and input feeding,
    teacher-forced like `bahdanau`."""
    src, tgt_in, enc, h0, keys, ys = _encoded(vocab, embedding, hidden, hidden)
    feed0 = ops.fill((hidden,), batch_like=src)
    _, _, logits = Loop(luong_step(hidden, embedding, vocab), n_carry=2, n_consts=2,
                        name="decoder")(consts=[enc, keys], init=[h0, feed0], xs=[ys])
    return gModule([src, tgt_in], [logits], name="luong")
