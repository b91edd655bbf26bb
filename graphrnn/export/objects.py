"""Object code of a library's programs, emitted for its target by the runtime's engine.

Each program's entry points are renamed after the library (`<name>__forward`, and
`<name>__forward_pack`), so two libraries, or several programs, link side by side; the
kernels inside are internal symbols.
"""
from __future__ import annotations

from typing import NamedTuple

from graphrnn.runtime.jit import Engine, host_signature

from .programs import Lowered
from .target import Target, resolve_target


class ProgramObject(NamedTuple):
    """One program's object code and the names of its entry points in it."""
    program: Lowered
    entry: str
    pack: str | None
    obj: bytes


def symbol(prefix: str, p: Lowered) -> str:
    """The entry point's name of program `p` in library `prefix`."""
    return f"{prefix}__{p.kind}"


def target_for(target: str | None, features: str | None = None) -> Target:
    """The Target for a name (None: the host CPU with all its features)."""
    host = host_signature()
    return resolve_target(target, host["cpu"], host["features"], features)


def emit_objects(programs: tuple[Lowered, ...], prefix: str, target: Target
                 ) -> list[ProgramObject]:
    """Position-independent object code of every program, optimised for `target`."""
    engine = Engine.for_library(target.cpu, target.features)
    out = []
    for p in programs:
        entry = symbol(prefix, p)
        text = p.exe.llvm_ir.replace(f'@"{p.contract.entry}"', f'@"{entry}"')
        pack = None
        if p.contract.pack is not None:
            pack = entry + "_pack"
            text = text.replace(f'@"{p.contract.pack}"', f'@"{pack}"')
        obj = engine.emit_object(engine.optimize(text))
        out.append(ProgramObject(p, entry, pack, obj))
    return out


__all__ = ["ProgramObject", "emit_objects", "target_for", "symbol"]
