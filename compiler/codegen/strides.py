"""Strided layouts whose sizes may grow with the runtime step count and batch size, and the
view ops.

The lowering specialises on every dim but the time dims and batch: the time symbol is the
entry point's `steps` argument, the batch symbol ("B", see BATCH) its `batch` argument, and
further time symbols (T2, T3, ...: EXTRA, a decoder's length beside an encoder's) sizes the
run block carries, so one kernel runs any sequence lengths and any number of rows. Every
size, stride and offset is therefore a `Lin`: a constant plus coefficients of products of
distinct symbols (`c + s * steps + b * batch + bs * batch * steps` with one time symbol; a
[B, U, S] attention matrix adds B*T*T2), linear in each symbol, and every value the lowering
touches is a pointer plus a `Layout` (shape and element strides).
Views (slice, index, reshape, broadcast) are new layouts over the same memory and need no
code: VIEW_RULES gives, per op, the element offset and layout of the view from its input's
layout (None when the view needs a copy).
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Callable, Sequence, Union

from graphrnn.ir import LoweringError, Node, Op, TensorType

BATCH = "B"                     # the batch symbol
STEPS = "T"                     # the step count, the entry point's `steps` argument
EXTRA = re.compile(r"T[0-9]+")  # a further time symbol (T2, T3, ...): its size is run-time too

Monomial = tuple[str, ...]      # symbols in sorted order, each at most once


def _sym(d: str) -> str:
    """The name a symbolic dim has inside a Lin: BATCH, an EXTRA time symbol, else STEPS."""
    return d if d == BATCH or EXTRA.fullmatch(d) else STEPS


class Lin:
    """c + sum of k * (a product of distinct symbols): linear in each symbol. The legacy
    fields read the coefficients of steps (s), batch (b) and batch * steps (bs)."""
    __slots__ = ("c", "terms")
    c: int
    terms: tuple[tuple[Monomial, int], ...]

    def __init__(self, c: int = 0, s: int = 0, b: int = 0, bs: int = 0,
                 terms: dict[Monomial, int] | None = None):
        found = dict(terms) if terms else {}
        for mono, k in (((STEPS,), s), ((BATCH,), b), ((BATCH, STEPS), bs)):
            if k:
                found[mono] = found.get(mono, 0) + k
        object.__setattr__(self, "c", int(c))
        object.__setattr__(self, "terms", tuple(sorted((m, k) for m, k in found.items() if k)))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("Lin is immutable")

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Lin):
            return self.c == other.c and self.terms == other.terms
        return NotImplemented

    def __hash__(self) -> int:
        return hash((self.c, self.terms))

    def __reduce__(self) -> tuple:
        return Lin, (self.c, 0, 0, 0, dict(self.terms))

    def __repr__(self) -> str:
        return f"Lin({self})"

    def coef(self, *symbols: str) -> int:
        """The coefficient of the product of `symbols`."""
        return dict(self.terms).get(tuple(sorted(symbols)), 0)

    @property
    def s(self) -> int:
        return self.coef(STEPS)

    @property
    def b(self) -> int:
        return self.coef(BATCH)

    @property
    def bs(self) -> int:
        return self.coef(BATCH, STEPS)

    def __add__(self, other: "LinLike") -> "Lin":
        o = lin(other)
        if not o.terms:
            return Lin(self.c + o.c, terms=dict(self.terms)) if o.c else self
        found = dict(self.terms)
        for m, k in o.terms:
            found[m] = found.get(m, 0) + k
        return Lin(self.c + o.c, terms=found)

    __radd__ = __add__

    def __neg__(self) -> "Lin":
        return Lin(-self.c, terms={m: -k for m, k in self.terms})

    def __sub__(self, other: "LinLike") -> "Lin":
        return self + -lin(other)

    def __mul__(self, other: "LinLike") -> "Lin":
        o = lin(other)
        found: dict[Monomial, int] = {}
        mine = (((), self.c),) + self.terms
        for ma, ka in mine:
            for mb, kb in (((), o.c),) + o.terms:
                if not (ka and kb):
                    continue
                shared = set(ma) & set(mb)
                if shared:
                    what = "the batch" if BATCH in shared else "steps"
                    raise LoweringError(f"size ({self}) * ({o}) grows with {what} squared; "
                                        "only sizes linear in each of the batch size and the "
                                        "sequence lengths are supported")
                m = tuple(sorted(ma + mb))
                found[m] = found.get(m, 0) + ka * kb
        return Lin(found.pop((), 0), terms=found)

    __rmul__ = __mul__

    @property
    def const(self) -> bool:
        return not self.terms

    @property
    def batched(self) -> bool:
        """Whether the value depends on the batch size."""
        return any(BATCH in m for m, _ in self.terms)

    def at(self, steps: int, batch: int = 0, more: dict[str, int] | None = None) -> int:
        """The value for these sizes (`more`: the EXTRA time symbols' sizes)."""
        sizes = {STEPS: steps, BATCH: batch, **(more or {})}
        return self.c + sum(k * math.prod(sizes.get(d, 0) for d in m) for m, k in self.terms)

    def __str__(self) -> str:
        order = sorted(self.terms, key=lambda t: (-len(t[0]), t[0]))
        text = ["*".join(m) if k == 1 else f"{k}*{'*'.join(m)}" for m, k in order]
        if self.c or not text:
            text.append(str(self.c))
        return "+".join(text)


LinLike = Union[Lin, int, str]
ZERO = Lin(0)
ONE = Lin(1)


def lin(x: LinLike) -> Lin:
    """An int, a symbolic dim (BATCH is the batch size, an EXTRA symbol its own size, any
    other symbol the step count) or a Lin, as a Lin."""
    if isinstance(x, Lin):
        return x
    if isinstance(x, str):
        return Lin(terms={(_sym(x),): 1})
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


__all__ = ["BATCH", "STEPS", "EXTRA", "Monomial", "Lin", "Layout", "lin", "product", "collapse", "ZERO", "ONE", "VIEW_RULES"]
