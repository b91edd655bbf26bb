"""KernelTwins: one LLVM function for kernels of the same code.

Unrolled steps and a layer's two directions emit kernels whose code is identical but for
their names; LLVM would optimise each copy again, so compile time would grow with the copies.
A kernel that matches an earlier one is dropped from the module and the earlier one is
called instead, kept out of line (`noinline`) so that it stays one function.
"""
from __future__ import annotations

from typing import Any

from llvmlite import ir


class KernelTwins:
    """The kernel functions of one module, grouped by type and block sizes."""

    def __init__(self, module: ir.Module):
        self.module = module
        self.groups: dict[Any, list[tuple[ir.Function, str | None]]] = {}

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


__all__ = ["KernelTwins"]
