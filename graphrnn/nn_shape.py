"""Shape, product and temporal-convolution modules (Torch nn names, 0-based axes, batch first).

    nn.Transpose(1, 2)(x)                       # [B, T, F] -> [B, F, T]
    nn.View(-1)(x), nn.Squeeze(1), nn.Unsqueeze(1), nn.Replicate(3, 1), nn.Padding(1, -2)
    nn.Select(1, -1)(x)                         # the last step of [B, T, F] (T fixed)
    nn.Index(0)([x, ids])                       # x rows picked by int64 ids (Torch nn.Index)
    nn.MM(transB=True)([q, keys])               # [B, n, H] x [B, T, H] -> [B, n, T]
    nn.Bilinear(4, 5, 3)([x1, x2])              # PyTorch nn.Bilinear
    nn.TemporalConvolution(8, 16, 3, padding="causal")(x)    # [B, T, 8] -> [B, T, 16]

Each is a macro over the primitives (TRANSPOSE, RESHAPE, CONCAT, PAD, INDEX, PICK, BMM,
MATMUL, SHIFT), so every one of them is interpreted, differentiated and compiled like the rest.
"""
from __future__ import annotations

import math
from typing import Any

from . import ops
from .ir import Dim, GraphError, Node
from .module import Module, as_nodes
from .ops import creation_site


def _typed(module: Module, x: Any) -> Node:
    if not isinstance(x, Node):
        raise TypeError(f"{type(module).__name__} takes one node, got {type(x).__name__}")
    if x.type is None:
        raise GraphError(f"{type(module).__name__} at {creation_site()}: the input's shape must "
                         "be known; declare it with gr.Input(...)")
    return x


def _pair(module: Module, x: Any) -> tuple[Node, Node]:
    xs = as_nodes(x)
    if len(xs) != 2:
        raise TypeError(f"{type(module).__name__} takes a table of two nodes, got {len(xs)}")
    for v in xs:
        _typed(module, v)
    return xs[0], xs[1]


def _fail(module: Module, msg: str) -> GraphError:
    return GraphError(f"{type(module).__name__} at {creation_site()}: {msg}")


def _axis(module: Module, axis: int, rank: int) -> int:
    if not -rank <= axis < rank:
        raise _fail(module, f"dim {axis} is out of range for rank {rank}")
    return axis % rank


class Transpose(Module):
    """Swap two axes: `Transpose(1, 2)` is `x.transpose(1, 2)`; Torch's list of pairs
    `Transpose((0, 1), (2, 3))` swaps each pair in turn."""

    def __init__(self, *dims: Any, name: str | None = None):
        super().__init__(name)
        pairs = [tuple(dims)] if dims and isinstance(dims[0], int) else [tuple(p) for p in dims]
        if not pairs or any(len(p) != 2 for p in pairs):
            raise ValueError(f"Transpose takes two dims or pairs of dims, got {dims}")
        self.pairs = pairs

    def build(self, x: Any) -> Node:
        y = _typed(self, x)
        for d0, d1 in self.pairs:
            y = ops.transpose(y, d0, d1)
        return y


class View(Module):
    """Reshape every example, the batch axis kept: `[B, ...] -> [B, *shape]`. One entry may be
    -1 (inferred); symbols (e.g. "T") stand for themselves: `View("T", -1)` on [B, T, 4, 5]."""

    def __init__(self, *shape: Dim, name: str | None = None):
        super().__init__(name)
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        if sum(1 for d in shape if d == -1) > 1:
            raise ValueError(f"{type(self).__name__}{shape}: at most one -1")
        if any(not isinstance(d, str) and (not isinstance(d, int) or d < -1) for d in shape):
            raise ValueError(f"{type(self).__name__}{shape}: sizes are ints, -1 or symbols")
        self.shape = tuple(shape)

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        example = x.type.shape[1:]
        shape = self.shape
        if -1 in shape:
            syms_in = sorted(d for d in example if isinstance(d, str))
            syms_out = sorted(d for d in shape if isinstance(d, str))
            size = math.prod(d for d in example if isinstance(d, int))
            known = math.prod(d for d in shape if isinstance(d, int) and d != -1)
            if syms_in != syms_out or known == 0 or size % known:
                raise _fail(self, f"cannot view the examples {list(example)} of {x.type} as "
                                  f"{list(shape)}")
            shape = tuple(size // known if d == -1 else d for d in shape)
        return ops.reshape(x, x.type.shape[:1] + shape)


class Reshape(View):
    """`View` under its other Torch name: `[B, ...] -> [B, *shape]`, one -1 allowed."""


class Squeeze(Module):
    """Drop axis `dim`, which must have size 1 (a clear error otherwise, where PyTorch would
    do nothing); `Squeeze()` drops every size-1 axis but the batch axis 0."""

    def __init__(self, dim: int | None = None, name: str | None = None):
        super().__init__(name)
        self.dim = dim

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        shape = x.type.shape
        if self.dim is None:
            keep = [d for i, d in enumerate(shape) if i == 0 or d != 1]
        else:
            axis = _axis(self, self.dim, len(shape))
            if shape[axis] != 1:
                raise _fail(self, f"dim {self.dim} of {x.type} has size {shape[axis]}, not 1")
            keep = list(shape[:axis] + shape[axis + 1:])
        return ops.reshape(x, tuple(keep)) if len(keep) != len(shape) else x


class Unsqueeze(Module):
    """Insert an axis of size 1 at `dim` (in [-rank-1, rank], as torch.unsqueeze)."""

    def __init__(self, dim: int, name: str | None = None):
        super().__init__(name)
        self.dim = dim

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        axis = _axis(self, self.dim, x.type.rank + 1)
        return ops.reshape(x, x.type.shape[:axis] + (1,) + x.type.shape[axis:])


class Replicate(Module):
    """`nFeature` copies of x stacked along a new axis `dim` (default 1, after the batch)."""

    def __init__(self, nFeature: int, dim: int = 1, name: str | None = None):
        super().__init__(name)
        if nFeature < 1:
            raise ValueError(f"Replicate needs nFeature >= 1, got {nFeature}")
        self.n, self.dim = int(nFeature), dim

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        axis = _axis(self, self.dim, x.type.rank + 1)
        one = ops.reshape(x, x.type.shape[:axis] + (1,) + x.type.shape[axis:])
        return ops.concat([one] * self.n, axis) if self.n > 1 else one


class Padding(Module):
    """`abs(pad)` entries of `value` along `dim`: after the data when pad > 0, before it when
    pad < 0 (Torch nn.Padding). The axis must have a fixed size."""

    def __init__(self, dim: int, pad: int, value: float = 0.0, name: str | None = None):
        super().__init__(name)
        self.dim, self.pad, self.value = dim, int(pad), float(value)

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        axis = _axis(self, self.dim, x.type.rank)
        if not isinstance(x.type.shape[axis], int):
            raise _fail(self, f"cannot pad the symbolic dim {x.type.shape[axis]!r} of {x.type}")
        before, after = (-self.pad, 0) if self.pad < 0 else (0, self.pad)
        y = ops.pad(x, axis, before, after)
        if self.value == 0.0 or self.pad == 0:
            return y
        # x + value * (1 - mask): the data stays exact (no x - value + value round trip)
        outside = ops.sub(1.0, ops.pad(ops.expand(1.0, x), axis, before, after))
        return ops.add(y, ops.mul(outside, self.value))


class Select(Module):
    """Entry `index` of axis `dim`, the axis removed; a negative index counts from the end.
    The axis must have a fixed size."""

    def __init__(self, dim: int, index: int, name: str | None = None):
        super().__init__(name)
        self.dim, self.index = dim, int(index)

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        axis = _axis(self, self.dim, x.type.rank)
        d, i = x.type.shape[axis], self.index
        if not isinstance(d, int):
            # a compiled call with fewer entries would read past the end
            raise _fail(self, f"dim {self.dim} of {x.type} is the symbolic {d!r}: its size is "
                              "known only at the call; give it a size, or take the entry "
                              "inside a gr.Loop over it")
        i = i + d if i < 0 else i
        if not 0 <= i < d:
            raise _fail(self, f"index {self.index} is out of range for dim {self.dim} of "
                              f"{x.type}")
        return ops.index(x, axis, i)


class Index(Module):
    """Torch nn.Index: `Index(dim)([x, ids])` takes the entries `ids` (int64, 1-D, each in
    [0, size), checked at every call) of axis `dim`: out.shape[dim] = len(ids)."""

    def __init__(self, dim: int, name: str | None = None):
        super().__init__(name)
        self.dim = dim

    def build(self, x: Any) -> Node:
        xs = as_nodes(x)
        if len(xs) != 2:
            raise TypeError(f"Index takes a table [x, ids], got {len(xs)} nodes")
        x, ids = (_typed(self, v) for v in xs)
        if ids.type.dtype != "int64" or ids.type.rank != 1:
            raise _fail(self, f"ids must be int64 [k], got {ids.type}")
        axis = _axis(self, self.dim, x.type.rank)
        if not isinstance(x.type.shape[axis], int):
            raise _fail(self, f"dim {self.dim} of {x.type} must have a fixed size to check the "
                              "ids against")
        last = x.type.rank - 1
        xt = ops.transpose(x, axis, last) if axis != last else x          # [..., n]
        n = xt.type.shape[-1]
        rows = ops.reshape(xt, xt.type.shape[:-1] + (1, n))               # [..., 1, n]
        wide = ops.add(rows, ops.fill((n,), 0.0, batch_like=ids))         # [..., k, n]
        picked = ops.pick(wide, ops.expand(ids, ops.index(wide, last + 1, 0)))
        return ops.transpose(picked, axis, last) if axis != last else picked


class MM(Module):
    """Torch nn.MM: `MM(transA, transB)([A, B])` is A @ B for [n, k] @ [k, m], or per batch
    entry for [B, n, k] @ [B, k, m] (any equal leading dims, symbolic too); the flags
    transpose an operand's last two axes first. Attention scores: `MM(transB=True)([q, keys])`."""

    def __init__(self, transA: bool = False, transB: bool = False, name: str | None = None):
        super().__init__(name)
        self.trans_a, self.trans_b = bool(transA), bool(transB)

    def build(self, x: Any) -> Node:
        a, b = _pair(self, x)
        return ops.bmm(a, b, self.trans_a, self.trans_b)


class Bilinear(Module):
    """PyTorch nn.Bilinear: y[..., o] = x1 @ weight[o] @ x2 + bias[o], weight
    [out_features, in1_features, in2_features], bias [out_features], both initialised
    U(-1/sqrt(in1), 1/sqrt(in1))."""

    def __init__(self, in1_features: int, in2_features: int, out_features: int,
                 bias: bool = True, name: str | None = None):
        super().__init__(name)
        self.in1, self.in2, self.out, self.has_bias = in1_features, in2_features, \
            out_features, bias
        k = 1.0 / math.sqrt(max(in1_features, 1))
        self.weight = self._param("weight", (out_features, in1_features, in2_features),
                                  f"uniform({-k},{k})")
        self.bias = self._param("bias", (out_features,), f"uniform({-k},{k})") if bias else None

    def build(self, x: Any) -> Node:
        x1, x2 = _pair(self, x)
        if x1.type.shape[-1] != self.in1 or x2.type.shape[-1] != self.in2 or \
                x1.type.shape[:-1] != x2.type.shape[:-1]:
            raise _fail(self, f"expected [..., {self.in1}] and [..., {self.in2}] with the same "
                              f"leading dims, got {x1.type} and {x2.type}")
        lead = x2.type.shape[:-1]
        w = ops.reshape(ops.param(self.weight), (self.out * self.in1, self.in2))
        u = ops.reshape(ops.matmul(x2, w, transpose_b=True), lead + (self.out, self.in1))
        y = ops.sum_(ops.mul(u, ops.reshape(x1, lead + (1, self.in1))), [-1])
        return ops.add(y, ops.param(self.bias)) if self.bias is not None else y

    def _twin(self) -> "Bilinear":
        return Bilinear(self.in1, self.in2, self.out, self.has_bias, self.name)


class TemporalConvolution(Module):
    """Torch nn.TemporalConvolution: a 1-D convolution over time, [B, T, C] (or [T, C]) ->
    [B, T', O], with Torch's weight layout [outputFrameSize, kW * inputFrameSize] (entry
    [o, k * C + c] weighs frame t + k, feature c; PyTorch Conv1d's weight [O, C, kW] is
    `weight.reshape(O, kW, C).transpose(0, 2, 1)`) and bias [outputFrameSize], both
    U(-1/sqrt(kW * C), 1/sqrt(kW * C)).

    padding="valid": T' = (T - kW) // dW + 1, frames t*dW .. t*dW + kW - 1 (T must be fixed).
    padding="causal": kW - 1 zero frames before the sequence, so output t sees frames up to t
    only; T' = T for dW = 1 (T may be symbolic), (T - 1) // dW + 1 otherwise (T fixed).
    It runs as one matrix product of the kW time-shifted copies of x joined on the features.
    """

    def __init__(self, inputFrameSize: int, outputFrameSize: int, kW: int, dW: int = 1,
                 padding: str = "valid", bias: bool = True, name: str | None = None):
        super().__init__(name)
        if padding not in ("valid", "causal"):
            raise ValueError(f"padding is 'valid' or 'causal', got {padding!r}")
        if kW < 1 or dW < 1:
            raise ValueError(f"kW and dW must be >= 1, got kW={kW}, dW={dW}")
        self.c, self.o, self.kw, self.dw = inputFrameSize, outputFrameSize, kW, dW
        self.padding, self.has_bias = padding, bias
        k = 1.0 / math.sqrt(max(kW * inputFrameSize, 1))
        self.weight = self._param("weight", (outputFrameSize, kW * inputFrameSize),
                                  f"uniform({-k},{k})")
        self.bias = self._param("bias", (outputFrameSize,), f"uniform({-k},{k})") if bias \
            else None

    def build(self, x: Any) -> Node:
        x = _typed(self, x)
        t = x.type
        if t.rank not in (2, 3) or t.shape[-1] != self.c:
            raise _fail(self, f"expected [B, T, {self.c}] or [T, {self.c}], got {t}")
        axis, steps = t.rank - 2, t.shape[t.rank - 2]
        fixed = isinstance(steps, int)
        if not fixed and (self.padding == "valid" or self.dw > 1):
            why = "padding='valid'" if self.padding == "valid" else f"dW={self.dw}"
            raise _fail(self, f"{why} changes the length of the symbolic time dim {steps!r}; "
                              "use padding='causal' with dW=1, or give T a size")
        if self.padding == "valid":
            if not fixed or steps < self.kw:
                raise _fail(self, f"kW={self.kw} is longer than the sequence of {t}")
            length = steps - self.kw + 1
            frames = [ops.slice_(x, axis, k, length) for k in range(self.kw)]
        else:
            frames = [ops.shift(x, axis, self.kw - 1 - k) if k < self.kw - 1 else x
                      for k in range(self.kw)]
        joined = ops.concat(frames, -1) if self.kw > 1 else frames[0]
        y = ops.matmul(joined, ops.param(self.weight), transpose_b=True)
        if self.bias is not None:
            y = ops.add(y, ops.param(self.bias))
        return _every(y, axis, self.dw) if self.dw > 1 else y

    def _twin(self) -> "TemporalConvolution":
        return TemporalConvolution(self.c, self.o, self.kw, self.dw, self.padding,
                                   self.has_bias, self.name)


def _every(y: Node, axis: int, step: int) -> Node:
    """Entries 0, step, 2 * step, ... of the fixed-size `axis`."""
    d = y.type.shape[axis]
    padded = -(-d // step) * step
    if padded != d:
        y = ops.pad(y, axis, 0, padded - d)
    shape = y.type.shape
    blocks = ops.reshape(y, shape[:axis] + (padded // step, step) + shape[axis + 1:])
    return ops.index(blocks, axis + 1, 0)


__all__ = ["Transpose", "View", "Reshape", "Squeeze", "Unsqueeze", "Replicate", "Padding",
           "Select", "Index", "MM", "Bilinear", "TemporalConvolution"]
