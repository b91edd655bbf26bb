"""per_step: which nodes must run at every step of a loop, even on invariant inputs.

Shared by the passes that move work out of loops (passes/loop_kinds.py) and by the schedule,
which keeps such work out of a loop's prologue in training (codegen/schedule.py).
"""
from __future__ import annotations

from graphrnn.ir import Node, Op


def per_step(n: Node) -> bool:
    """Whether `n` must run at every step even on invariant inputs (dropout masks use it)."""
    if n.op == Op.DROPOUT:
        return True
    return n.op == Op.LOOP and any(m.op == Op.DROPOUT for m, _ in n.attrs["body"].walk())


__all__ = ["per_step"]
