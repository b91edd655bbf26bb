"""Greedy decoding of a trained encoder-decoder as one compiled while loop.

`greedy_decoder(model, bos, eos, max_steps)` turns a teacher-forced `zoo.bahdanau` or
`zoo.luong` gModule into `src i64[B, S] -> (tokens i64[B, max_steps], lengths i64[B])`: the
same encoder, then the model's decoder step as the body of a `gr.Loop(stop=True)` that feeds
its argmax back, each row stopping after it emits `eos`. The decoder reads the trained
model's own Param objects (tied, not copied), so it always decodes with the current weights.
"""
from __future__ import annotations

import numpy as np

from .. import ops
from ..gmodule import gModule
from ..ir import GraphError, Node, Op
from ..loop import Loop
from ..nn import Input
from ..while_loop import is_token


def decoder_loop(model: gModule, name: str = "decoder") -> Node:
    """The teacher-forced decoder loop node of an encoder-decoder gModule (named `name`)."""
    found = [n for n in model.graph.nodes if n.op == Op.LOOP and n.name == name]
    if len(found) != 1 or found[0].attrs["n_xs"] != 1:
        raise GraphError(f"{model.name or 'model'}: expected one loop named {name!r} reading "
                         "the embedded target (as zoo.bahdanau and zoo.luong build)")
    return found[0]


def greedy_decoder(model: gModule, bos: int, eos: int, max_steps: int, pad: int = -1,
                   name: str = "greedy") -> gModule:
    """`src i64[B, S] -> (tokens i64[B, max_steps], lengths i64[B])`: greedy decoding from
    `bos` with the weights of `model` (a `zoo.bahdanau` / `zoo.luong` gModule, inputs
    `(src, tgt_in)`); a row's tokens end with its `eos` (counted in `lengths`), then `pad`."""
    if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
        raise ValueError(f"max_steps must be a positive number of steps, got {max_steps!r}")
    loop = decoder_loop(model)
    n_consts, n_carry = loop.attrs["n_consts"], loop.attrs["n_carry"]
    src_in, tgt_in = model.graph.inputs[:2]
    encoder = gModule([src_in], list(loop.inputs[:n_consts + n_carry]), name="encoder")
    body = loop.attrs["body"]
    step = gModule(list(body.inputs), list(body.outputs), name="step")
    embedded = loop.inputs[-1]
    if embedded.op != Op.LOOKUP or embedded.inputs[1] is not tgt_in:
        raise GraphError(f"{model.name or 'model'}: the decoder loop must read "
                         "an embedding of the model's second input (tgt_in)")
    table = embedded.inputs[0]
    vocab = int(table.type.shape[0])
    if not (0 <= bos < vocab and 0 <= eos < vocab):
        raise ValueError(f"bos={bos} and eos={eos} must be token ids in [0, {vocab})")

    consts = [Input(*x.type.shape, dtype=x.type.dtype, name=x.name)
              for x in body.inputs[:n_consts]]
    carries = [Input(*x.type.shape, dtype=x.type.dtype, name=x.name)
               for x in body.inputs[n_consts:n_consts + n_carry]]
    token = Input("B", dtype="int64", name="token")
    y = ops.lookup(ops.param(table.param), token)
    outs = step(consts + carries + [y])
    logits = outs[-1]
    nxt = ops.sample(logits, ops.fill((), 0.0, batch_like=token), ops.const(np.float32(0)))
    done = is_token(nxt, eos, vocab)
    greedy_step = gModule(consts + carries + [token],
                          list(outs[:n_carry]) + [nxt, nxt, done], name=f"{name}_step")

    src = Input("B", "S", name="src", dtype="int64")
    enc = encoder(src)
    enc = list(enc) if n_consts + n_carry > 1 else [enc]
    start = ops.astype(ops.fill((), float(bos), batch_like=src), "int64")
    results = Loop(greedy_step, n_carry=n_carry + 1, n_consts=n_consts, stop=True,
                   max_steps=max_steps, pad=pad, name="decoder")(
        consts=enc[:n_consts], init=enc[n_consts:] + [start])
    tokens, lengths = results[-2], results[-1]
    return gModule([src], [tokens, lengths], name=name)
