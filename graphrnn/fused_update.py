"""Optimiser updates as one compiled loop over the flat vectors (the numpy update's twin).

    update = FusedUpdate("adam", decay=False, vectors=(params, grads, m, v))
    update(np.array([b1, 1 - b1, b2, 1 - b2, eps, step], np.float32))

The numpy update of graphrnn/optim.py makes about ten passes over vectors the size of the
parameters, with temporaries; the kernel (compiler/codegen/emit_optim.py) makes one, in
place, and gives the same numbers bit for bit. Kernels are compiled once per (kind, weight
decay) and process, through the shared engine and kernel cache. The vectors are checked
when bound: float32, 1-D, C-contiguous, aligned, writable where written, one size, no two
overlapping; `__call__` checks that they are still the arrays bound.
"""
from __future__ import annotations

import ctypes
from typing import Sequence

import numpy as np

from .compiler.codegen.emit_optim import UPDATE_RULES, update_ir
from .compiler.codegen.lower import VERSION as LOWERING_VERSION
from .engine import jit_function

_VOIDP = ctypes.c_void_p
SMALL = 4096        # elements: numpy's two passes cost less than the kernel's call below it


# (kind, decay) -> the kernel: dict get and setdefault are atomic, so no lock (at worst two
# threads both make it once)
_FUNCTIONS: dict[tuple[str, bool], object] = {}


def update_kernel(kind: str, decay: bool) -> object:
    """The ctypes function of the update kernel of `kind`, compiled on first use in this
    process (RuntimeError when it cannot be). Made for the ISA current then; any ISA the
    host runs will do for these loops."""
    fn = _FUNCTIONS.get((kind, decay))
    if fn is None:
        text, symbol = update_ir(kind, decay)
        fn = _FUNCTIONS.setdefault((kind, decay), jit_function(
            text, symbol, LOWERING_VERSION, None, *[_VOIDP] * 5, ctypes.c_int64))
    return fn


def _check(vectors: Sequence[np.ndarray]) -> str:
    """Why the kernel cannot take these vectors ('' when it can)."""
    n = vectors[0].shape
    for k, a in enumerate(vectors):
        if not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != n \
                or a.ndim != 1 or not (a.flags.c_contiguous and a.flags.aligned):
            return f"vector {k} is not a flat aligned float32 vector of size {n}"
        if k != 1 and not a.flags.writeable:
            return f"vector {k} is read-only"
    for i, a in enumerate(vectors):
        for b in vectors[i + 1:]:
            if np.may_share_memory(a, b):
                return "two of the vectors overlap"
    return ""


def scale_add(out: np.ndarray, a: float, x: np.ndarray, b: float) -> None:
    """out = a * out + b * x in place, each product and the sum rounded to float32 (as numpy's
    `out *= a; x *= b; out += x`, which it runs, leaving `x` scaled, for small arrays and
    where the kernel cannot take the arrays)."""
    # contiguous first, so that the flat views below are views, not copies
    if out.size >= SMALL and out.flags.c_contiguous and x.flags.c_contiguous \
            and not _check((out.reshape(-1), x.reshape(-1))):
        try:
            fn = update_kernel("scale_add", False)
        except (OSError, RuntimeError):
            fn = None
        if fn is not None:
            scalars = np.array([a, b], np.float32)
            fn(out.ctypes.data, x.ctypes.data, None, None, scalars.ctypes.data, out.size)
            return
    if a != 1:
        out *= np.float32(a)
    if b != 1:
        x *= np.float32(b)
    out += x


class FusedUpdate:
    """One optimiser's compiled update, bound to its vectors (params, grads, *state)."""

    def __init__(self, kind: str, decay: bool, vectors: Sequence[np.ndarray]):
        rule = UPDATE_RULES[kind]
        if len(vectors) != 2 + len(rule.state):
            raise ValueError(f"{kind}: expected params, grads and {rule.state}, got "
                             f"{len(vectors)} vectors")
        self.kind, self.decay = kind, decay
        self.n_scalars = len(rule.scalars) + decay
        self.vectors = tuple(vectors)
        self.reason = _check(self.vectors)      # '' when the kernel may run on them
        self._fn = None
        if not self.reason:
            try:
                self._fn = update_kernel(kind, decay)
            except (OSError, RuntimeError) as e:
                self.reason = f"the kernel did not compile: {e}"
        self._addresses = [a.ctypes.data for a in self.vectors] + [None] * (4 - len(vectors))
        self._n = self.vectors[0].size

    @property
    def usable(self) -> bool:
        return self._fn is not None

    def bound_to(self, vectors: Sequence[np.ndarray]) -> bool:
        """Whether `vectors` are the very arrays this update was made for."""
        mine = self.vectors
        return len(vectors) == len(mine) and all(a is b for a, b in zip(vectors, mine))

    def __call__(self, scalars: np.ndarray) -> None:
        """One update with `scalars` (float32, UPDATE_RULES order, weight decay first)."""
        if scalars.dtype != np.float32 or scalars.shape != (self.n_scalars,) \
                or not scalars.flags.c_contiguous:
            raise ValueError(f"{self.kind}: expected {self.n_scalars} float32 scalars")
        p, g, s0, s1 = self._addresses
        self._fn(p, g, s0, s1, scalars.ctypes.data, self._n)


__all__ = ["FusedUpdate", "scale_add", "update_kernel"]
