"""nngraph modules: calling a module on nodes returns a node.

`nn.Linear(9, 8)(nn.JoinTable(1)([h, x]))` builds graph nodes; `nn.Identity()()` makes a graph
input. Modules are macros that emit primitive nodes. Axes are 0-based and tensors are
batch-first (`[B, T, ...]`). Calling one module instance at several places ties its
parameters by construction; `share` ties parameters across instances.
"""
from __future__ import annotations

import math
from typing import Any

from . import ops
from .ops import creation_site
from .gmodule import gModule
from .init import next_dropout_seed
from .ir import GraphError, Node, Table
from .losses import (ClassNLLCriterion, Criterion, CrossEntropyCriterion, MSECriterion)
from .module import Fold, Map, Module, as_nodes, one_node
from .nn_elementwise import (ELU, GELU, Abs, CDivTable, Clamp, CMaxTable, CMinTable,
                             CosineDistance, DotProduct, Exp, HardTanh, Hardtanh, LeakyReLU, Log,
                             MaskedFill, MixtureTable, PairwiseDistance, Power, SoftPlus,
                             Softplus, SoftSign, Softsign, Sqrt, Square, Threshold)
from .nn_reduce import LayerNorm, LogSumExp, Max, Mean, Min, RMSNorm, Sum
from .nn_shape import (MM, Bilinear, Index, Padding, Replicate, Reshape, Select, Squeeze,
                       TemporalConvolution, Transpose, Unsqueeze, View)
from .recurrent import Recurrent


class Identity(Module):
    """`Identity()()` is a graph input; `Identity()(x)` is `x`."""

    def __call__(self, x: Any = None) -> Any:
        if x is None:
            return ops.input_(name=self.name or "")
        return x


def Input(*shape: Any, dtype: str = "float32", name: str = "") -> Node:
    """A typed graph input, e.g. `Input("B", "T", 2)`; symbols are bound by the data."""
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return ops.input_(shape, dtype, name)


class Linear(Module):
    """y = x @ weight.T + bias, weight [out, in] as in PyTorch, init U(-1/sqrt(in), 1/sqrt(in))."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 name: str | None = None):
        super().__init__(name)
        self.in_features, self.out_features, self.has_bias = in_features, out_features, bias
        k = 1.0 / math.sqrt(max(in_features, 1))
        self.weight = self._param("weight", (out_features, in_features), f"uniform({-k},{k})")
        self.bias = self._param("bias", (out_features,), f"uniform({-k},{k})") if bias else None

    def build(self, x: Any) -> Node:
        y = ops.matmul(one_node(self, x), ops.param(self.weight), transpose_b=True)
        return ops.add(y, ops.param(self.bias)) if self.bias is not None else y

    def _twin(self) -> "Linear":
        return Linear(self.in_features, self.out_features, self.has_bias, self.name)

    def __repr__(self) -> str:
        return f"nn.Linear({self.in_features} -> {self.out_features})"


class Tanh(Map):
    fn = staticmethod(ops.tanh)


class Sigmoid(Map):
    fn = staticmethod(ops.sigmoid)


class ReLU(Map):
    fn = staticmethod(ops.relu)


class SoftMax(Module):
    def __init__(self, axis: int = -1, name: str | None = None):
        super().__init__(name)
        self.axis = axis

    def build(self, x: Any) -> Node:
        return ops.softmax(one_node(self, x), self.axis)


class LogSoftMax(SoftMax):
    def build(self, x: Any) -> Node:
        return ops.log_softmax(one_node(self, x), self.axis)


class MulConstant(Module):
    def __init__(self, c: float, name: str | None = None):
        super().__init__(name)
        self.c = float(c)

    def build(self, x: Any) -> Node:
        return ops.mul(one_node(self, x), self.c)


class AddConstant(MulConstant):
    def build(self, x: Any) -> Node:
        return ops.add(one_node(self, x), self.c)


class JoinTable(Module):
    """Concatenate a list of nodes along `axis` (0-based, batch first: `JoinTable(1)` joins
    the features of `[B, F]` inputs).

    `JoinTable(dim, nInputDims)` is Torch's form: `dim` counts from 1 within one example of
    `nInputDims` dims, so on batched inputs (rank nInputDims + 1) it is the 0-based axis
    `dim`, the same axis as `JoinTable(dim)`; on inputs of rank nInputDims it is `dim - 1`.
    """

    def __init__(self, axis: int, nInputDims: int | None = None, name: str | None = None):
        if isinstance(nInputDims, str):
            raise TypeError(f"JoinTable({axis}, {nInputDims!r}): the second argument is Torch's "
                            f"nInputDims, an int; give a name as JoinTable({axis}, name=...)")
        super().__init__(name)
        self.axis, self.n_input_dims = axis, nInputDims

    def build(self, x: Any) -> Node:
        xs = as_nodes(x)
        axis, n = self.axis, self.n_input_dims
        if n is not None and axis >= 0 and xs[0].type is not None:
            rank = xs[0].type.rank
            if rank not in (n, n + 1):
                raise GraphError(f"JoinTable({self.axis}, {n}) at {creation_site()}: inputs of "
                                 f"rank {rank}, expected {n} (one example) or {n + 1} (a batch)")
            axis = axis - 1 if rank == n else axis
        return ops.concat(xs, axis)


class SplitTable(Module):
    """Split a node along `axis` into a table of slices with that axis removed."""

    def __init__(self, axis: int, name: str | None = None):
        super().__init__(name)
        self.axis = axis

    def build(self, x: Any) -> Table:
        x = one_node(self, x)
        if x.type is None:
            raise GraphError(f"SplitTable at {creation_site()}: the input's shape must be known; "
                             "declare it with gr.Input(...)")
        d = x.type.shape[self.axis]
        if not isinstance(d, int):
            raise GraphError(f"SplitTable at {creation_site()}: cannot split along symbolic "
                             f"dim {d!r} of {x.type}; use a gr.Loop over the sequence instead")
        return Table(ops.index(x, self.axis, i) for i in range(d))


class SelectTable(Module):
    """Entry `i` of a table (negative counts from the end)."""

    def __init__(self, index: int, name: str | None = None):
        super().__init__(name)
        self.index = index

    def __call__(self, x: Any = None) -> Node:
        xs = as_nodes(x)
        if not -len(xs) <= self.index < len(xs):
            raise GraphError(f"SelectTable({self.index}) at {creation_site()}: the table has "
                             f"{len(xs)} entries")
        return xs[self.index]


class Narrow(Module):
    """`length` entries of `axis` starting at `start`."""

    def __init__(self, axis: int, start: int, length: int, name: str | None = None):
        super().__init__(name)
        self.axis, self.start, self.length = axis, start, length

    def build(self, x: Any) -> Node:
        return ops.slice_(one_node(self, x), self.axis, self.start, self.length)


class CAddTable(Fold):
    op = staticmethod(ops.add)


class CSubTable(Fold):
    op = staticmethod(ops.sub)


class CMulTable(Fold):
    op = staticmethod(ops.mul)


class CMul(Module):
    """A learnable elementwise scale (Torch `nn.CMul(size)`): y = x * weight, weight of shape
    `size` broadcast over the leading dims; init U(-1/sqrt(n), 1/sqrt(n)), n its elements."""

    def __init__(self, *size: int, name: str | None = None):
        super().__init__(name)
        self.size = _size(size, "CMul")
        k = 1.0 / math.sqrt(max(math.prod(self.size), 1))
        self.weight = self._param("weight", self.size, f"uniform({-k},{k})")

    def build(self, x: Any) -> Node:
        return ops.mul(one_node(self, x), ops.param(self.weight))

    def _twin(self) -> "CMul":
        return CMul(*self.size, name=self.name)


class Add(Module):
    """A learnable bias (Torch `nn.Add(inputSize, scalar)`): y = x + bias, bias [inputSize]
    broadcast over the leading dims ([1] with `scalar=True`); init U(-1/sqrt(n), 1/sqrt(n))."""

    def __init__(self, inputSize: int, scalar: bool = False, name: str | None = None):
        super().__init__(name)
        self.input_size, self.scalar = int(inputSize), bool(scalar)
        k = 1.0 / math.sqrt(max(self.input_size, 1))
        self.bias = self._param("bias", (1,) if scalar else (self.input_size,),
                                f"uniform({-k},{k})")

    def build(self, x: Any) -> Node:
        return ops.add(one_node(self, x), ops.param(self.bias))

    def _twin(self) -> "Add":
        return Add(self.input_size, self.scalar, name=self.name)


def _size(size: tuple, what: str) -> tuple[int, ...]:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not size or any(not isinstance(d, int) or d < 1 for d in size):
        raise ValueError(f"{what} takes positive int sizes, got {size}")
    return tuple(size)


class LookupTable(Module):
    """Embedding: integer ids [...] -> rows of weight [n, dim], init N(0, 1)."""

    def __init__(self, n: int, dim: int, name: str | None = None):
        super().__init__(name)
        self.n, self.dim = n, dim
        self.weight = self._param("weight", (n, dim), "normal(0,1)")

    def build(self, x: Any) -> Node:
        return ops.lookup(ops.param(self.weight), one_node(self, x))

    def _twin(self) -> "LookupTable":
        return LookupTable(self.n, self.dim, self.name)


class Dropout(Module):
    """Zero each element with probability p while training (scaled by 1/(1-p)); identity else."""

    def __init__(self, p: float = 0.5, seed: int | None = None, name: str | None = None):
        super().__init__(name)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = p
        self.seed = next_dropout_seed() if seed is None else seed

    def build(self, x: Any) -> Node:
        return ops.dropout(one_node(self, x), self.p, self.seed)


__all__ = ["Module", "Identity", "Input", "Linear", "Tanh", "Sigmoid", "ReLU", "SoftMax",
           "LogSoftMax", "MulConstant", "AddConstant", "JoinTable", "SplitTable", "SelectTable",
           "Narrow", "Reshape", "CAddTable", "CSubTable", "CMulTable", "CMul", "Add",
           "LookupTable", "Dropout", "gModule", "Recurrent", "Criterion", "MSECriterion",
           "ClassNLLCriterion", "CrossEntropyCriterion",
           # shapes, products and convolutions over time (nn_shape.py)
           "Transpose", "View", "Squeeze", "Unsqueeze", "Replicate", "Padding", "Select",
           "Index", "MM", "Bilinear", "TemporalConvolution",
           # elementwise math and table modules (nn_elementwise.py)
           "Abs", "Sqrt", "Square", "Power", "Exp", "Log", "Clamp", "HardTanh", "Hardtanh",
           "LeakyReLU", "ELU", "SoftPlus", "Softplus", "SoftSign", "Softsign", "GELU",
           "Threshold", "CDivTable", "CMaxTable", "CMinTable", "MixtureTable", "DotProduct",
           "CosineDistance", "PairwiseDistance", "MaskedFill",
           # reductions and normalisation (nn_reduce.py)
           "Sum", "Mean", "Max", "Min", "LogSumExp", "LayerNorm", "RMSNorm"]
