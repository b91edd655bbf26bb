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
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_zeros(
    shape: int | tuple[int, ...], dtype: DTypeLike = np.float32, align: int = ALIGN
) -> np.ndarray:
    """Like `aligned_empty`, filled with zeros."""
    out = aligned_empty(shape, dtype, align)
    out.fill(0)
    return out


class Arena:
    """One zeroed, 64-byte-aligned float32 buffer of `size` floats; kernels get offsets into it."""

    def __init__(self, size: int) -> None:
        self.data = aligned_zeros(size)
        self.address = self.data.ctypes.data

    @property
    def size(self) -> int:
        """Number of float32 elements."""
        return self.data.size

    def view(self, offset: int, shape: int | tuple[int, ...]) -> np.ndarray:
        """The floats at `offset` reshaped to `shape` (a view, not a copy)."""
        count = int(np.prod(shape, dtype=np.int64))
        if offset < 0 or offset + count > self.data.size:
            raise ValueError(
                f"view [{offset}, {offset + count}) is outside the arena of {self.data.size} floats"
            )
        return self.data[offset:offset + count].reshape(shape)
