"""What the C wrapper needs to call one lowered program's native entry point, read from its
Executable's Contract: the names, dtypes and dims of inputs and outputs (TIME for the step
count, BATCH for the batch size), the arena regions, the pack entry and the value checks, in
C-friendly form.
"""
from __future__ import annotations

from dataclasses import dataclass

from graphrnn.executable import Contract, Executable
from graphrnn.ir import LoweringError, TensorType

TIME = -1                       # a dim of size `T`, the call's step count
BATCH = -2                      # a dim of size `B`, the call's batch size


@dataclass(frozen=True)
class Port:
    """One input or output: its name, dtype ("float32" / "int64") and dims (TIME for T,
    BATCH for B)."""
    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class NativeCall:
    """How to call one program: `entry(params, arena, io, steps)` with the batch size in the
    run block, and `pack(params, persistent)`; `contract` is the Executable's own."""
    entry: str
    contract: Contract
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]

    @property
    def pack(self) -> str | None:
        return self.contract.pack[0] if self.contract.pack else None

    @property
    def persistent_floats(self) -> int:
        return int(self.contract.pack[1]) if self.contract.pack else 0

    @property
    def extras(self) -> int:
        return int(self.contract.extras)

    @property
    def has_time(self) -> bool:
        return self.contract.symbol is not None

    @property
    def has_batch(self) -> bool:
        return self.contract.batch is not None

    @property
    def checks(self) -> tuple[tuple[str, int, int, int], ...]:
        """("ids", k, n, 0): values in [0, n); ("lengths", k, c, s): values in [0, c + s*T];
        ("steps", -1, n, 0): T >= n."""
        out = []
        for kind, k, limit in self.contract.checks:
            c, s = (limit, 0) if kind in ("ids", "steps") else limit
            out.append((kind, int(k), int(c), int(s)))
        return tuple(out)


def _port(name: str, t: TensorType, c: Contract) -> Port:
    dims = []
    for d in t.shape:
        if isinstance(d, str):
            if d not in (c.symbol, c.batch):
                raise LoweringError(f"{name}: dim {d!r} is symbolic; only the batch and time "
                                    "dims may be")
            dims.append(TIME if d == c.symbol else BATCH)
        else:
            dims.append(int(d))
    return Port(name, t.dtype, tuple(dims))


def native_call(exe: Executable) -> NativeCall:
    """The contract of `exe` (its entry point's arguments and what must be checked first)."""
    c = exe.contract
    if c.profile:
        raise LoweringError("a profiling build cannot be exported")
    if c.symbol is not None and c.symbol == c.batch:
        raise LoweringError("the batch and time dims are one symbol: cannot be exported")
    n_in = len(c.inputs)
    ins = tuple(_port(n, t, c) for n, t in zip(c.inputs, exe.io[:n_in]))
    outs = tuple(_port(n, t, c) for n, t in zip(c.outputs, exe.io[n_in:]))
    return NativeCall(exe.entry_points[0], c, ins, outs)


__all__ = ["NativeCall", "Port", "native_call", "TIME", "BATCH"]
