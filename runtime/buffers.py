"""Aligned numpy allocation for buffers handed to compiled kernels.

Kernels declare their pointer arguments ``align 64`` so that vector loads never split a
cache line; these helpers keep that promise.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import DTypeLike

ALIGN = 64


def aligned_empty(
    shape: int | tuple[int, ...], dtype: DTypeLike = np.float32, align: int = ALIGN
) -> np.ndarray:
    """An uninitialised C-contiguous array whose data pointer is a multiple of `align`."""
    if align <= 0 or align & (align - 1):
        raise ValueError(f"align must be a positive power of two, got {align}")
    dtype = np.dtype(dtype)
    shape = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(nbytes + align, dtype=np.uint8)
    start = -raw.ctypes.data % align
    # frombuffer: views of a 1-D result have the result itself as their `.base` (views stay
    # one level deep), not the larger allocation behind it
    flat = np.frombuffer(raw.data, dtype, count=nbytes // dtype.itemsize, offset=start)
    return flat if len(shape) == 1 else flat.reshape(shape)


def aligned_zeros(
    shape: int | tuple[int, ...], dtype: DTypeLike = np.float32, align: int = ALIGN
) -> np.ndarray:
    """Like `aligned_empty`, filled with zeros."""
    out = aligned_empty(shape, dtype, align)
    out.fill(0)
    return out

