"""What an emitter of a kernel call is handed: the lowering that drives it (`Lowerer`, the
part of lower.Lowering the emitters use), the refs of the values computed so far (`Env`),
and the innermost loop being emitted (`Frame`).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

from llvmlite import ir

from graphrnn.ir import Node

from .arena import Buffer
from .irbuilder import I64, Emitter, Ref
from .kernel import Home, Kernel
from .strides import Layout

# an emitter of one op: (emitter, node, out, inputs) -> None
Rule = Callable[[Emitter, Node, Ref, list[Ref]], None]


class Env:
    """Values by node (or copy kernel), falling back to the enclosing level's."""

    def __init__(self, parent: "Env | None" = None):
        self.values: dict[Any, Any] = {}
        self.parent = parent

    def __getitem__(self, key: Any) -> Any:
        env: Env | None = self
        while env is not None:
            if key in env.values:
                return env.values[key]
            env = env.parent
        raise KeyError(key)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.values[key] = value


class Frame:
    """The innermost loop being emitted: its node, step index t, the refs of its parts, and
    the step salt of dropout masks (`outer * 1_000_003 + t + 1`, as the interpreter counts)."""

    def __init__(self, node: Node, t: ir.Value, parts: list[Ref], salt: ir.Value | None = None):
        self.node, self.t, self.parts = node, t, parts
        self.salt = salt if salt is not None else ir.Constant(I64, 0)


class Lowerer(Protocol):
    """The lowering as the kernel-call emitters (emit_loop.py, emit_gemm.py) see it."""
    em: Emitter
    sched: Any                  # schedule.Schedule

    def home_ref(self, home: Home, frame: Frame | None) -> Ref: ...

    def buffer_ref(self, buffer: Buffer, layout: Layout) -> Ref: ...

    def run(self, kernels: tuple[Kernel, ...], env: Env, frame: Frame | None) -> None: ...

    def call(self, name: str, node: Node, rule: Rule, out: Ref, ins: list[Ref],
             scalars: tuple[ir.Value, ...] = (), *, kind: str = "map",
             nodes: tuple[str, ...] = ()) -> None: ...

    def helper(self, base: str) -> str: ...


__all__ = ["Env", "Frame", "Lowerer", "Rule"]
