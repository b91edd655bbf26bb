"""KernelTwins: one LLVM function for kernels of the same code.

Unrolled steps and a layer's two directions emit kernels whose code is identical but for
their names; LLVM would optimise each copy again, so compile time would grow with the copies.
A kernel whose key (kernel_key.py) an earlier one had is not emitted: the earlier function is
called instead. A kernel without a key, or of a new key, is emitted; if its text matches an
earlier kernel's, it is dropped from the module for that one. A shared function is kept out
of line (`noinline`) so that it stays one function.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Hashable, Sequence

from llvmlite import ir

from graphrnn.ir import LoweringError, Node

from .kernel_key import KeyMemo, kernel_key

# emit every kernel even when its key is known, and fail if its code differs from the known
# function's (the test suite runs with this on)
CHECK_KEYS = os.environ.get("GRAPHRNN_CHECK_KERNEL_KEYS", "") == "1"


class KernelTwins:
    """The kernel functions of one module, by key, and grouped by type and block sizes."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.groups: dict[Any, list[tuple[ir.Function, str | None]]] = {}
        self.by_key: dict[Hashable, ir.Function] = {}
        self.memo = KeyMemo()

    def function(self, emit: Callable[[], ir.Function], rule: Any, node: Node,
                 layouts: Sequence[Any], n_scalars: int, more: Sequence[str]) -> ir.Function:
        """The function of the kernel `emit()` makes: an earlier one of the same key or code,
        else the one `emit()` adds to the module."""
        key = kernel_key(rule, node, layouts, n_scalars, more, self.memo)
        known = self.by_key.get(key) if key is not None else None
        if known is not None and not CHECK_KEYS:
            known.attributes.add("noinline")
            return known
        fn = emit()
        if known is not None:
            for f in (known, fn):           # compared as shared functions
                f.attributes.add("noinline")
            if _code(fn) != _code(known):
                raise LoweringError(f"{fn.name} and {known.name} have one kernel key but "
                                    "different code")
            del self.module.globals[fn.name]
            return known
        fn = self.shared(fn)
        if key is not None:
            self.by_key[key] = fn
        return fn

    def shared(self, fn: ir.Function) -> ir.Function:
        """`fn`, or an earlier function of the same code (`fn` then leaves the module)."""
        twins = self.groups.setdefault((str(fn.function_type), tuple(
            len(b.instructions) for b in fn.blocks)), [])   # texts compared only within a key
        text = _code(fn) if twins else None
        for i, (other, other_text) in enumerate(twins):
            twins[i] = (other, other_text if other_text is not None else _code(other))
            if twins[i][1] == text:
                del self.module.globals[fn.name]
                other.attributes.add("noinline")
                return other
        twins.append((fn, text))
        return fn


def _code(fn: ir.Function) -> str:
    """A function's text without its name."""
    return str(fn).replace(f'@"{fn.name}"', "@", 1)


__all__ = ["KernelTwins", "CHECK_KEYS"]
