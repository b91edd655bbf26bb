"""Strided layouts whose sizes may grow with the runtime step count and batch size, and the
view ops.

The lowering specialises on every dim but time and batch: the time symbol is the entry
point's `steps` argument and the batch symbol ("B", see BATCH) its `batch` argument, so one
kernel runs any sequence length and any number of rows. Every size, stride and offset is
therefore a `Lin`, `c + s * steps + b * batch + bs * batch * steps` (linear in each), and
every value the lowering touches is a pointer plus a `Layout` (shape and element strides).
Views (slice, index, reshape, broadcast) are new layouts over the same memory and need no
code: VIEW_RULES gives, per op, the element offset and layout of the view from its input's
layout (None when the view needs a copy).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence, Union

from graphrnn.ir import LoweringError, Node, Op, TensorType

BATCH = "B"                     # the batch symbol; any other symbol is the step count


@dataclass(frozen=True)
class Lin:
    """c + s * steps + b * batch + bs * batch * steps."""
    c: int
    s: int = 0
    b: int = 0
    bs: int = 0

    def __add__(self, other: "LinLike") -> "Lin":
        o = lin(other)
        return Lin(self.c + o.c, self.s + o.s, self.b + o.b, self.bs + o.bs)

    __radd__ = __add__

    def __sub__(self, other: "LinLike") -> "Lin":
        o = lin(other)
        return Lin(self.c - o.c, self.s - o.s, self.b - o.b, self.bs - o.bs)

    def __mul__(self, other: "LinLike") -> "Lin":
        o = lin(other)
        if (self.s or self.bs) and (o.s or o.bs):
            raise LoweringError(f"size ({self}) * ({o}) grows with steps squared; only sizes "
                                "linear in the sequence length are supported")
        if (self.b or self.bs) and (o.b or o.bs):
            raise LoweringError(f"size ({self}) * ({o}) grows with the batch squared; only "
                                "sizes linear in the batch size are supported")
        return Lin(self.c * o.c, self.c * o.s + self.s * o.c, self.c * o.b + self.b * o.c,
                   self.c * o.bs + self.bs * o.c + self.s * o.b + self.b * o.s)

    __rmul__ = __mul__

    @property
    def const(self) -> bool:
        return self.s == 0 and self.b == 0 and self.bs == 0

    @property
    def batched(self) -> bool:
        """Whether the value depends on the batch size."""
        return self.b != 0 or self.bs != 0

    def at(self, steps: int, batch: int = 0) -> int:
        return self.c + self.s * steps + self.b * batch + self.bs * batch * steps

    def __str__(self) -> str:
        terms = [(self.bs, "B*T"), (self.b, "B"), (self.s, "T")]
        text = [name if k == 1 else f"{k}*{name}" for k, name in terms if k]
        if self.c or not text:
            text.append(str(self.c))
        return "+".join(text)


LinLike = Union[Lin, int, str]
ZERO = Lin(0)
ONE = Lin(1)


def lin(x: LinLike) -> Lin:
    """An int, a symbolic dim (BATCH is the batch size, any other symbol the step count) or
    a Lin, as a Lin."""
    if isinstance(x, Lin):
        return x
    if isinstance(x, str):
        return Lin(0, 0, 1) if x == BATCH else Lin(0, 1)
    return Lin(int(x))


def product(dims: Sequence[LinLike]) -> Lin:
    out = ONE
    for d in dims:
        out = out * lin(d)
    return out


@dataclass(frozen=True)
class Layout:
    """Shape and element strides of a value in memory; strides may be 0 (broadcast)."""
    shape: tuple[Lin, ...]
    strides: tuple[Lin, ...]
    dtype: str = "float32"

    @staticmethod
    def contiguous(shape: Sequence[LinLike], dtype: str = "float32") -> "Layout":
        dims = tuple(lin(d) for d in shape)
        strides: list[Lin] = []
        acc = ONE
        for d in reversed(dims):
            strides.append(acc)
            acc = acc * d
        return Layout(dims, tuple(reversed(strides)), dtype)

    @staticmethod
    def of(t: TensorType) -> "Layout":
        return Layout.contiguous(t.shape, t.dtype)

    @staticmethod
    def broadcast(shape: Sequence[LinLike], dtype: str = "float32") -> "Layout":
        """One element seen as `shape` (a fill)."""
        dims = tuple(lin(d) for d in shape)
        return Layout(dims, tuple(ZERO for _ in dims), dtype)

    @property
    def rank(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> Lin:
        return product(self.shape)

    def is_contiguous(self) -> bool:
        """Row-major with no gaps (size-1 dims may have any stride)."""
        want = Layout.contiguous(self.shape, self.dtype)
        return all(d == ONE or s == w for d, s, w in zip(self.shape, self.strides, want.strides))

    def slice(self, axis: int, start: int, length: int) -> tuple[Lin, "Layout"]:
        shape = list(self.shape)
        shape[axis] = lin(length)
        return self.strides[axis] * start, Layout(tuple(shape), self.strides, self.dtype)

    def index(self, axis: int, i: int) -> tuple[Lin, "Layout"]:
        return self.strides[axis] * i, self.drop(axis)

    def drop(self, axis: int) -> "Layout":
        return Layout(self.shape[:axis] + self.shape[axis + 1:],
                      self.strides[:axis] + self.strides[axis + 1:], self.dtype)

    def reshape(self, shape: Sequence[LinLike]) -> "Layout | None":
        """The same memory as `shape`, or None when that needs a copy."""
        if not self.is_contiguous():
            return None
        return Layout.contiguous(shape, self.dtype)

    def broadcast_to(self, shape: Sequence[Lin]) -> "Layout":
        """numpy broadcasting: dims aligned on the right, size-1 and missing dims stride 0."""
        extra = len(shape) - self.rank
        if extra < 0:
            raise LoweringError(f"cannot broadcast {self} to {list(map(str, shape))}")
        strides = [ZERO] * extra
        for d, s, want in zip(self.shape, self.strides, shape[extra:]):
            if d == want:
                strides.append(s if d != ONE else ZERO)
            elif d == ONE:
                strides.append(ZERO)
            else:
                raise LoweringError(f"cannot broadcast {self} to {list(map(str, shape))}")
        return Layout(tuple(shape), tuple(strides), self.dtype)

    def permute(self, order: Sequence[int]) -> "Layout":
        return Layout(tuple(self.shape[i] for i in order), tuple(self.strides[i] for i in order),
                      self.dtype)

    def __str__(self) -> str:
        dims = ",".join(map(str, self.shape))
        strides = ",".join(map(str, self.strides))
        return f"{self.dtype}[{dims}]/({strides})"


def collapse(layouts: Sequence[Layout]) -> list[Layout]:
    """The same iteration with adjacent dims merged wherever every layout allows it.

    All layouts must have one shape. Dims i and i+1 merge when, for each layout,
    stride[i] == stride[i+1] * shape[i+1] (broadcast dims, stride 0, merge with each other).
    Size-1 dims are dropped. The result has at least one dim.
    """
    shape = layouts[0].shape
    keep = [i for i, d in enumerate(shape) if d != ONE]
    dims = [[shape[i]] for i in keep]
    strides = [[[lay.strides[i]] for i in keep] for lay in layouts]
    merged_dims: list[Lin] = []
    merged: list[list[Lin]] = [[] for _ in layouts]
    for j in range(len(keep)):
        d = dims[j][0]
        can = bool(merged_dims) and _product(merged_dims[-1], d) is not None and all(
            merged[k][-1] == _product(strides[k][j][0], d) for k in range(len(layouts)))
        if can:
            merged_dims[-1] = merged_dims[-1] * d
            for k in range(len(layouts)):
                merged[k][-1] = strides[k][j][0]
        else:
            merged_dims.append(d)
            for k in range(len(layouts)):
                merged[k].append(strides[k][j][0])
    if not merged_dims:
        merged_dims = [ONE]
        merged = [[ZERO] for _ in layouts]
    return [Layout(tuple(merged_dims), tuple(m), lay.dtype) for m, lay in zip(merged, layouts)]


def _product(a: Lin, b: Lin) -> Lin | None:
    """a * b, or None when it is not a Lin (steps squared, batch squared)."""
    try:
        return a * b
    except LoweringError:
        return None


# ----------------------------------------------------------------------------- view ops

def _slice(n: Node, x: Layout) -> tuple[Lin, Layout]:
    return x.slice(n.attrs["axis"], n.attrs["start"], n.attrs["length"])


def _index(n: Node, x: Layout) -> tuple[Lin, Layout]:
    return x.index(n.attrs["axis"], n.attrs["index"])


def _reshape(n: Node, x: Layout) -> tuple[Lin, Layout] | None:
    layout = x.reshape(n.type.shape)
    return None if layout is None else (ZERO, layout)


def _expand(n: Node, x: Layout) -> tuple[Lin, Layout]:
    return ZERO, x.broadcast_to(tuple(lin(d) for d in n.type.shape))


def _view(n: Node, x: Layout) -> tuple[Lin, Layout]:
    return Lin(n.attrs["offset"]), Layout.of(n.type)


VIEW_RULES: dict[Op, Callable[[Node, Layout], tuple[Lin, Layout] | None]] = {
    Op.SLICE: _slice, Op.INDEX: _index, Op.RESHAPE: _reshape, Op.EXPAND: _expand,
    Op.VIEW: _view, Op.DROPOUT: lambda n, x: (ZERO, x),   # dropout is the identity at inference
}


__all__ = ["BATCH", "Lin", "Layout", "lin", "product", "collapse", "ZERO", "ONE", "VIEW_RULES"]
