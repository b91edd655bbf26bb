"""What an ONNX value is while a graph is imported: a node seen through a lazy transpose.

ONNX models are time-major and transpose freely; graphrnn's loop wants batch-first sequences
and has no transpose primitive. So an imported value is `Lazy(node, perm)`: the ONNX tensor
whose axis i is axis `perm[i]` of `node`. A Transpose only changes `perm`, and ops that act
axis by axis (elementwise, slices, concat, softmax, the recurrent ops' inputs) read through it.
`materialize` gives a node in ONNX order: free when `perm` is the identity, else built from
INDEX and CONCAT along the static axes that move (a transpose of symbolic axes is refused).
Values known at import time (constants, shapes, `Shape` of a tensor) are numpy arrays; a shape
with symbolic dims is an object array holding ints and symbols.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .. import ops
from ..ir import Dim, Node
from .errors import OnnxImportError

# A physical transpose is INDEX/CONCAT of the moved static axes: at most this many pieces.
MAX_TRANSPOSE_PIECES = 4096


@dataclass(frozen=True)
class Lazy:
    """The ONNX tensor whose axis i is axis perm[i] of `node`."""
    node: Node
    perm: tuple[int, ...]

    @property
    def shape(self) -> tuple[Dim, ...]:
        return tuple(self.node.type.shape[p] for p in self.perm)

    @property
    def dtype(self) -> str:
        return self.node.type.dtype

    @property
    def rank(self) -> int:
        return len(self.perm)

    def transposed(self, perm: Sequence[int]) -> "Lazy":
        return Lazy(self.node, tuple(self.perm[p] for p in perm))

    def under_axis(self, axis: int) -> int:
        """The axis of `node` that ONNX axis `axis` (negative allowed) is."""
        return self.perm[axis % self.rank]


def lazy(node: Node) -> Lazy:
    return Lazy(node, tuple(range(node.type.rank)))


def identity(perm: Sequence[int]) -> bool:
    return tuple(perm) == tuple(range(len(perm)))


def materialize(v: Lazy, what: str) -> Node:
    """`v` as a node in ONNX axis order."""
    if identity(v.perm):
        return v.node
    shape = v.node.type.shape
    moved = [a for i, a in enumerate(v.perm) if a != i]
    pieces = int(np.prod([shape[a] if isinstance(shape[a], int) else 1 for a in moved]))
    if pieces > MAX_TRANSPOSE_PIECES:
        raise OnnxImportError(f"{what}: a transpose {list(v.perm)} of {list(shape)} moves "
                              f"{pieces} pieces, more than {MAX_TRANSPOSE_PIECES}")
    return _permute(v.node, list(v.perm), what)


def _permute(x: Node, perm: list[int], what: str) -> Node:
    """x transposed so that output axis i is input axis perm[i]."""
    if identity(perm):
        return x
    shape = x.type.shape
    # the static axis whose place changes, moved last: taken out piece by piece
    candidates = [a for i, a in enumerate(perm) if a != i and isinstance(shape[a], int)]
    if not candidates:
        raise OnnxImportError(
            f"{what}: transposing {x.type} by {perm} moves symbolic axes, which graphrnn "
            "cannot express yet (no transpose primitive); keep batch and time axes in place")
    a = candidates[0]
    j = perm.index(a)
    rest = [p - (p > a) for p in perm if p != a]           # the order of the other axes
    parts = []
    for k in range(shape[a]):
        piece = _permute(ops.index(x, a, k), rest, what)
        parts.append(ops.reshape(piece, piece.type.shape[:j] + (1,) + piece.type.shape[j:]))
    return parts[0] if len(parts) == 1 else ops.concat(parts, j)


def same_layout(values: Sequence[Lazy], what: str) -> tuple[list[Node], tuple[int, ...]]:
    """Nodes of one shared layout for ops that act axis by axis: the underlying nodes when all
    share a permutation, else every value materialized."""
    perms = {v.perm for v in values}
    if len(perms) == 1:
        return [v.node for v in values], values[0].perm
    nodes = [materialize(v, what) for v in values]
    return nodes, tuple(range(values[0].rank))


__all__ = ["Lazy", "lazy", "identity", "materialize", "same_layout", "MAX_TRANSPOSE_PIECES"]
