"""split_persistent: the kernels whose results depend on the parameters alone.

A matmul against weights packs them into panels first. When the weights are the parameters
(a view of the flat vector, or something made from parameters only: a concat of views, an
elementwise function of them), the panels stay valid until the parameters change, so the
pack does not belong in every call. Such packs, and the kernels that make their weights,
form the *persistent* part of a schedule:

    pack entry (once per parameter update):  concat W_i, W_f, ... -> w;  pack w -> panels
    forward entry (every call):              ... gemm(x, panels) ...

Their buffers live in a region of their own that the Program keeps between calls, laid out
one after the other (nothing there is ever dead).
"""
from __future__ import annotations

from typing import Iterable

from graphrnn.ir import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Node, Op

from .arena import ALIGN, Buffer
from .kernel import Kernel
from .strides import Lin

# ops that make a parameter-only value from parameter-only inputs
STATIC_OPS = frozenset({Op.VIEW, Op.SLICE, Op.INDEX, Op.RESHAPE, Op.EXPAND, Op.CONCAT,
                        Op.PAD, Op.FUSED}) | ELEMENTWISE_UNARY | ELEMENTWISE_BINARY
STATIC_LEAVES = frozenset({Op.CONST, Op.FILL})


def split_persistent(kernels: Iterable[Kernel], params: Node | None,
                     aliases: dict[Node, Node]
                     ) -> tuple[frozenset[Kernel], frozenset[Buffer], int]:
    """(persistent kernels, their buffers, floats of the persistent region).

    `aliases` maps a loop body's const inputs to the outer values they stand for. The
    buffers' offsets are set to their place in the persistent region.
    """
    if params is None:
        return frozenset(), frozenset(), 0
    producer: dict[Node, Kernel] = {}
    packs: list[Kernel] = []
    shared: set[Node] = set()           # computed by a kernel of several nodes: per call
    for top in kernels:
        for k in top.walk():
            if k.kind == "pack":
                packs.append(k)
            elif k.stages:
                shared.update(m for m, _ in k.stages)
                shared.add(k.node)
            elif k.kind not in ("view", "loop", "copy") and k.matmul is None:
                producer.setdefault(k.node, k)
    memo: dict[Node, tuple[Kernel, ...] | None] = {}

    def made_by(n: Node) -> tuple[Kernel, ...] | None:
        """The kernels computing `n` from the parameters alone; None if it is not static."""
        if n in memo:
            return memo[n]
        memo[n] = None                      # a cycle through aliases is not static
        found: tuple[Kernel, ...] | None
        if n in shared:
            found = None
        elif n is params or n.op in STATIC_LEAVES:
            found = ()
        elif n in aliases:
            found = made_by(aliases[n])
        elif n.op not in STATIC_OPS:
            found = None
        else:
            parts = [made_by(x) for x in n.inputs]
            found = None if any(p is None for p in parts) else \
                tuple(k for p in parts for k in p)
            k = producer.get(n)
            if found is not None and k is not None:
                home = k.dest
                plain = home is not None and home.slot < 0 and home.buffer is not None \
                    and home.buffer.io < 0 and home.buffer.size.const
                found = found + (k,) if plain else None
        memo[n] = found
        return found

    chosen: dict[Kernel, None] = {}
    for k in packs:
        deps = made_by(k.node.inputs[1])
        if deps is not None and k.packed is not None and k.packed.size.const:
            chosen.update(dict.fromkeys(deps))
            chosen[k] = None
    offset = 0
    buffers: dict[Buffer, None] = {}
    for k in chosen:
        b = k.packed if k.kind == "pack" else k.dest.buffer
        if b in buffers:
            continue
        buffers[b] = None
        b.offset = Lin(offset)
        offset += -(-b.size.c // ALIGN) * ALIGN
    return frozenset(chosen), frozenset(buffers), offset


__all__ = ["split_persistent", "STATIC_OPS"]
