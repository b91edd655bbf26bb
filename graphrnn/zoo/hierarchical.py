"""A hierarchical RNN: a character-level GRU encodes each word, a word-level GRU reads the
word encodings; the character loop runs inside the word loop's body (a nested native loop)."""
from __future__ import annotations

from .. import cells, ops
from ..gmodule import gModule
from ..loop import Loop
from ..nn import Input, LookupTable


def hierarchical(n_chars: int, hidden_size: int, char_embedding: int = 16,
                 char_hidden: int | None = None, word_length: int = 8) -> gModule:
    """`(chars i64[B, T, word_length], char_lengths i64[B, T]) -> hs[B, T, hidden_size]`
    (Ling et al. 2015, Chung et al. 2017): word t is `chars[:, t, :char_lengths[:, t]]`; a
    GRU over its embedded characters (from zeros, stopping at its length) gives its encoding
    [B, char_hidden], and a GRU over the encodings gives every word's state. Parameters:
    `char_emb`, `char_rnn`, `word_rnn`."""
    char_hidden = char_hidden or hidden_size
    emb = LookupTable(n_chars, char_embedding, name="char_emb")
    char_cell = cells.GRU(char_embedding, char_hidden, name="char_rnn")
    word_cell = cells.GRU(char_hidden, hidden_size, name="word_rnn")

    hc, c_t = Input("B", char_hidden, name="hc"), Input("B", dtype="int64", name="char")
    char_step = gModule([hc, c_t], [char_cell([hc, emb(c_t)])], name="char_step")

    h = Input("B", hidden_size, name="h")
    word = Input("B", word_length, dtype="int64", name="word")
    n = Input("B", dtype="int64", name="n_chars")
    start = ops.fill((char_hidden,), 0.0, batch_like=h)
    (encoding,) = Loop(char_step, n_carry=1, name="chars")(init=[start], xs=[word], lengths=n)
    h2 = word_cell([h, encoding])
    word_step = gModule([h, word, n], [h2, h2], name="word_step")

    chars = Input("B", "T", word_length, dtype="int64", name="chars")
    lengths = Input("B", "T", dtype="int64", name="char_lengths")
    h0 = ops.fill((hidden_size,), 0.0, batch_like=chars)
    _, hs = Loop(word_step, n_carry=1, name="words")(init=[h0], xs=[chars, lengths])
    return gModule([chars, lengths], [hs], name="hierarchical")
