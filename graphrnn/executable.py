"""The Executable: the plain data the compiler hands the runtime, and its typed contract."""
from __future__ import annotations

from dataclasses import dataclass, fields
import math
from typing import Any, Sequence

from .flat import ParamTable
from .ir import TensorType

# ("ids", input, n): values in [0, n); ("lengths", input, (c, s)): values in [0, c + s*steps]
# (c, s, name): c + s * the size of the further time symbol `name`; ("steps", -1, n): at least
# n steps; ("steps", -1, (n, name)): the further time symbol `name` at least n
Check = tuple[str, int, Any]
# (kernel, kind, IR node names, parent record or -1): one profile counter pair each
ProfileRecord = tuple[str, str, tuple[str, ...], int]


@dataclass(frozen=True)
class Contract:
    """How the runtime calls the code: everything besides the LLVM module it must know.

    inputs, outputs: the io names in pointer order; symbol: the dim passed as `steps` (None
    when every dim is fixed); arena: (fixed floats, floats per step) of scratch memory;
    batch: the symbolic batch dim, whose size the run block's third i64 carries (None: the
    batch is fixed); arena_rows: (floats per row, floats per row and step) more arena;
    more: the further time symbols (T2, T3, ...), whose sizes the run block carries after the
    batch; arena_more: (product of symbols, floats per unit of it) for the arena's terms that
    hold a further time symbol ("T" there is `symbol`, "B" the batch);
    checks: the int64 input range checks; pack: (pack entry, persistent floats) or None;
    profile: the counter records (None unless profiling); clock: the cycle-counter function
    of a profiling build; kernels: how many kernels; extras: io pointers after the outputs;
    version: the lowering's version.
    """
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    symbol: str | None
    arena: tuple[int, int]
    checks: tuple[Check, ...] = ()
    pack: tuple[str, int] | None = None
    profile: tuple[ProfileRecord, ...] | None = None
    clock: str | None = None
    kernels: int = 0
    extras: int = 0
    version: str = ""
    batch: str | None = None
    arena_rows: tuple[int, int] = (0, 0)
    more: tuple[str, ...] = ()
    arena_more: tuple[tuple[tuple[str, ...], int], ...] = ()

    def arena_floats(self, steps: int, batch: int = 0, more: Sequence[int] = ()) -> int:
        """Floats of scratch memory a call of `steps` steps, `batch` rows and `more` sizes of
        the further time symbols needs (Python ints: never overflows)."""
        (fixed, per_step), (per_row, per_row_step) = self.arena, self.arena_rows
        total = fixed + per_step * steps + batch * (per_row + per_row_step * steps)
        if self.arena_more:
            sizes = {"T": steps, "B": batch, **dict(zip(self.more, more))}
            total += sum(k * math.prod(sizes.get(d, 0) for d in m) for m, k in self.arena_more)
        return total

    def as_literal(self) -> dict[str, Any]:
        """The fields as a dict of plain Python literals (for the cache's metadata text)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @staticmethod
    def field_names() -> frozenset[str]:
        return frozenset(f.name for f in fields(Contract))


@dataclass(frozen=True)
class Executable:
    """What the compiler hands the runtime: plain data, printable, hashable, cacheable."""
    llvm_ir: str
    entry_points: tuple[str, ...]
    table: ParamTable
    arena_floats: int
    io: tuple[TensorType, ...]
    contract: Contract
