"""The input types one compiled program serves, read from the arrays of a call.

A program is made per signature: the batch and every other fixed dim bound to the arrays'
sizes, the dtypes, and the time dim left symbolic (axes.py says which dim is which), so a new
sequence length never recompiles. Inputs without a declared type are fixed entirely by their
arrays.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .axes import batch_symbols, time_symbol
from .ir import InputError, Node, TensorType
from .runtime.program import as_input, describe

MAX_DIM = 1 << 31              # every dim of an input must be smaller


def signature(xs: Sequence[Node], inputs: Sequence[Any], *, n_user: int, fixed_time: bool,
              check_state: bool = False) -> tuple[tuple[TensorType, ...], dict[str, int]]:
    """(the types of `inputs` for the graph inputs `xs`, the sizes bound to the fixed
    symbols). `n_user`: the inputs a caller gives (the rest are a stateful model's state);
    `fixed_time`: the time dim is bound too (unrolled or checkpointed loops)."""
    if len(inputs) != len(xs):
        names = ", ".join(x.name for x in xs[:n_user])
        raise InputError(f"the model takes {n_user} inputs ({names}), got "
                         f"{len(inputs) - (len(xs) - n_user)}")
    declared = [x.type for x in xs]
    batch = batch_symbols(declared)
    time = None if fixed_time else time_symbol(declared, batch)
    sizes: dict[str, int] = {}
    out = []
    for x, t, v in zip(xs, declared, inputs):
        if t is None:
            arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
            kind = "int64" if arr.dtype.kind in "iu" else "float32"
            t = TensorType(arr.shape, kind)
        arr = as_input(x.name, t, v)
        check_dims(x.name, arr)
        dims: list[Any] = []
        for axis, (d, s) in enumerate(zip(t.shape, arr.shape)):
            if isinstance(d, str) and d == time:
                dims.append(d)
                continue
            want = sizes.setdefault(d, s) if isinstance(d, str) else d
            if s != want:
                what = ("the state kept from the previous call; call reset_state() to "
                        "start a new stream" if check_state and x in xs[n_user:]
                        else f"dim {axis} should be {want}")
                raise InputError(f"input {x.name}: expected {t}, got {describe(arr)} "
                                 f"({what})")
            dims.append(s)
        out.append(TensorType(tuple(dims), t.dtype))
    return tuple(out), sizes


def batch_types(xs: Sequence[Node], batch: int) -> tuple[TensorType, ...]:
    """The declared types of `xs` with the symbol on axis 0 bound to `batch`."""
    out = []
    for x in xs:
        if x.type is None:
            raise InputError(f"input {x.name} has no declared type: give example inputs")
        t = x.type
        out.append(TensorType(tuple(batch if i == 0 and isinstance(d, str) else d
                                    for i, d in enumerate(t.shape)), t.dtype))
    return tuple(out)


def check_dims(name: str, value: Any) -> None:
    """Refuse a dim of 2**31 or more before anything is compiled, copied or allocated: no real
    input has that many rows or steps, and a claimed one (a zero-strided view) must not make
    the runtime reserve memory for it."""
    shape = getattr(value, "shape", ())
    if any(s >= MAX_DIM for s in shape):
        raise InputError(f"input {name}: {describe(value)} is too large: every dim must be "
                         "below 2**31")


__all__ = ["signature", "batch_types", "check_dims", "MAX_DIM"]
