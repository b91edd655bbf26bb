"""What the C wrapper needs to call one lowered program's native entry point, read from its
Executable's NativeCall: the names, dtypes and dims of inputs and outputs (TIME for the step
count), the arena size, the pack entry and the value checks, in C-friendly form.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from graphrnn.executable import Executable
from graphrnn.ir import LoweringError, TensorType

TIME = -1                       # a dim of size `T`, the call's step count


@dataclass(frozen=True)
class Port:
    """One input or output: its name, dtype ("float32" / "int64") and dims (TIME for T)."""
    name: str
    dtype: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class NativeCall:
    """How to call one program: `entry(params, arena, io, steps)` and `pack(params, persistent)`."""
    entry: str
    pack: str | None
    persistent_floats: int
    arena_fixed: int
    arena_step: int
    inputs: tuple[Port, ...]
    outputs: tuple[Port, ...]
    has_time: bool
    extras: int
    checks: tuple[tuple[str, int, int, int], ...]     # (kind, input, c, s): see `checks`


def _port(name: str, t: TensorType, symbol: str | None) -> Port:
    dims = []
    for d in t.shape:
        if isinstance(d, str):
            if d != symbol:
                raise LoweringError(f"{name}: dim {d!r} is symbolic; only the time dim may be")
            dims.append(TIME)
        else:
            dims.append(int(d))
    return Port(name, t.dtype, tuple(dims))


def _checks(raw: Any) -> tuple[tuple[str, int, int, int], ...]:
    """("ids", k, n, 0): values in [0, n); ("lengths", k, c, s): values in [0, c + s*T]."""
    out = []
    for kind, k, limit in raw:
        if kind == "ids":
            out.append(("ids", int(k), int(limit), 0))
        else:
            out.append(("lengths", int(k), int(limit[0]), int(limit[1])))
    return tuple(out)


def native_call(exe: Executable) -> NativeCall:
    """The contract of `exe` (its entry point's arguments and what must be checked first)."""
    c = exe.contract
    symbol = c.symbol
    names_in, names_out = tuple(c.inputs), tuple(c.outputs)
    n_in = len(names_in)
    ins = tuple(_port(n, t, symbol) for n, t in zip(names_in, exe.io[:n_in]))
    outs = tuple(_port(n, t, symbol) for n, t in zip(names_out, exe.io[n_in:]))
    pack = c.pack
    fixed, step = c.arena
    if c.profile:
        raise LoweringError("a profiling build cannot be exported")
    return NativeCall(entry=exe.entry_points[0], pack=pack[0] if pack else None,
                    persistent_floats=int(pack[1]) if pack else 0, arena_fixed=int(fixed),
                    arena_step=int(step), inputs=ins, outputs=outs, has_time=symbol is not None,
                    extras=int(c.extras), checks=_checks(c.checks))


__all__ = ["NativeCall", "Port", "native_call", "TIME"]
