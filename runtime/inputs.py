"""The checks on one input array a Program makes before a native call, and its address."""
from __future__ import annotations

import ctypes
from typing import Any, Sequence

import numpy as np

from graphrnn.ir import InputError, TensorType

_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)
_CHAR = ctypes.c_char


def address(a: np.ndarray) -> int:
    """The data pointer of `a` (faster than `a.ctypes.data` for writable arrays)."""
    try:
        return ctypes.addressof(_CHAR.from_buffer(a))
    except (TypeError, ValueError, BufferError):
        return a.ctypes.data


def shapes_key(values: Sequence[Any]) -> tuple | None:
    """(shape, dtype) of every input, to look up what a call on such inputs needs; None when
    one is not an array (the full checks then run)."""
    try:
        return tuple((v.shape, v.dtype) for v in values)
    except AttributeError:
        return None


def describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {list(value.shape)}"
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} (pass a numpy array)"
    return f"a {type(value).__name__}"


def as_input(name: str, t: TensorType, value: Any) -> np.ndarray:
    """`value` as an array of `t`'s rank and dtype kind, or an InputError (no copy if fine)."""
    arr = value if isinstance(value, np.ndarray) else None
    if arr is None:
        try:
            arr = np.asarray(value)
        except Exception:       # noqa: BLE001  (anything numpy cannot read is a bad input)
            raise InputError(f"input {name}: expected {t}, got {describe(value)}") from None
    if t.dtype == "float32":
        if arr.dtype != _F32:
            hint = ("; convert it with .astype(np.float32)" if arr.dtype.kind in "fiub"
                    else "")
            raise InputError(f"input {name}: expected {t} (float32), got "
                             f"{describe(value)}{hint}")
    elif arr.dtype != _I64:
        if arr.dtype.kind not in "iu":
            raise InputError(f"input {name}: expected {t} (integers), got {describe(value)}")
        if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
            raise InputError(f"input {name}: values do not fit int64")
        arr = arr.astype(np.int64)
    if arr.ndim != t.rank:
        raise InputError(f"input {name}: expected {t} (rank {t.rank}), got {describe(arr)}")
    return arr


def bind_dims(names: Sequence[str], types: Sequence[TensorType], arrays: Sequence[np.ndarray],
              symbol: str | None) -> int:
    """Check every fixed dim and that each symbol has one size; return the size of `symbol`
    (0 when there is none)."""
    sizes: dict[str, tuple[int, str]] = {}
    for name, t, a in zip(names, types, arrays):
        for axis, (d, s) in enumerate(zip(t.shape, a.shape)):
            if isinstance(d, str):
                size, first = sizes.setdefault(d, (s, name))
                if s != size:
                    raise InputError(f"input {name}: expected {t} with {d}={size} (as in input "
                                     f"{first}), got {describe(a)}")
            elif s != d:
                raise InputError(f"input {name}: expected {t}, got {describe(a)} (dim {axis} "
                                 f"should be {d})")
    return sizes[symbol][0] if symbol in sizes else 0


__all__ = ["address", "shapes_key", "describe", "as_input", "bind_dims"]
