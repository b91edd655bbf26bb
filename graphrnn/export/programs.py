"""The lowered programs an exported library holds, obtained through `gr.compile`.

The general programs `gr.compile(model)` runs, one for every batch size and length: the
forward pass, and when asked the stateful step (with the program computing its initial
state) and the training step of (model, loss). Each comes as an Executable (LLVM IR) with
its call contract; nothing is JIT-compiled here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from graphrnn.axes import batch_symbols, time_symbols
from graphrnn.compile import CompiledModel, compile as compile_model
from graphrnn.executable import Executable
from graphrnn.flat import ParamTable
from graphrnn.ir import Graph, GraphError, InputError, LoweringError
from graphrnn.signature import general_types

from .contract import NativeCall, native_call

KINDS = ("forward", "init", "step", "train")    # the C wrapper's program kinds, in order


@dataclass(frozen=True)
class Lowered:
    """One program of the library: its kind, its code and contract."""
    kind: str
    exe: Executable
    contract: NativeCall
    remap: tuple[tuple[int, int, int], ...] | None    # (model offset, own offset, size)


@dataclass(frozen=True)
class ProgramSet:
    """Every program of a library, the parameter layout they share and its values."""
    programs: tuple[Lowered, ...]
    table: ParamTable
    params: np.ndarray
    n_state: int


def _remap(kind: str, own: ParamTable, table: ParamTable | None
           ) -> tuple[tuple[int, int, int], ...] | None:
    """Where each parameter of the model's vector goes in a program's own layout (None: the
    same layout). A stateful graph, rebuilt around its state, may order them differently."""
    if table is None or own == table:
        return None
    if own.slots.keys() != table.slots.keys() or any(
            own.slots[k].shape != s.shape for k, s in table.slots.items()):
        raise InputError(f"the {kind} program's parameters are not the model's")
    return tuple((s.offset, own.slots[k].offset, s.size) for k, s in table.slots.items())


def _lowered(kind: str, cm: CompiledModel, table: ParamTable | None) -> Lowered:
    """The general program of `cm` (batch and time symbolic), as the default `gr.compile`
    builds it for typed inputs."""
    if cm.fixed_time:
        raise LoweringError(f"the {kind} program has unrolled loops, which need a fixed "
                            "length (one program per T): an exported library serves every "
                            "length; unroll no loop of the model")
    declared = [x.type for x in cm.graph.inputs]
    times = time_symbols(declared, batch_symbols(declared))
    if len(times) > 1:
        raise LoweringError(f"the {kind} program's inputs have a second time dim "
                            f"{times[1]!r} (besides {times[0]!r}): an exported C library "
                            "takes one step count T; give the other time dims sizes, or use "
                            "the model through gr.compile, which keeps them all symbolic")
    types = general_types(cm.graph.inputs)
    try:
        exe = cm.executable(types)
    except (GraphError, LoweringError) as e:
        raise LoweringError(f"the {kind} program cannot serve every batch size, as an "
                            f"exported library must: {e}") from e
    return Lowered(kind, exe, native_call(exe), _remap(kind, exe.table, table))


def _model_params(model: Any) -> tuple[ParamTable, np.ndarray]:
    table = getattr(model, "table", None)
    flat = getattr(model, "flat", None)
    if not isinstance(table, ParamTable) or not isinstance(flat, np.ndarray):
        raise TypeError(f"export takes a gModule (it owns the flat parameter vector), got "
                        f"{type(model).__name__}")
    return table, np.ascontiguousarray(flat, dtype=np.float32).copy()


def _stateful(model: Any, table: ParamTable, required: bool) -> tuple[list[Lowered], int]:
    """The stateful step and its initial-state program ([] when the model carries no state,
    or cannot be stateful and was not required to be)."""
    try:
        sm = compile_model(model, stateful=True)
    except (InputError, ValueError, TypeError):
        if required:
            raise
        return [], 0
    if sm.n_state == 0 or sm.initial_state_graph is None:
        if required:
            raise InputError("the model has no top-level loop: there is no state to stream")
        return [], 0
    init = _lowered("init", compile_model(sm.initial_state_graph), None)
    if init.exe.table.size:
        raise InputError("the model's initial state depends on parameters: a stateful "
                         "library cannot be exported (pass stateful=False)")
    return [init, _lowered("step", sm, table)], sm.n_state


def lowered_programs(model: Any, *, stateful: bool | None = None, loss: Any = None,
                     bptt_max: int | None = None) -> ProgramSet:
    """The programs of `model`, each for every batch size and length.

    stateful: None adds the streaming step when the model has top-level loops that can carry
    their state, True requires it, False leaves it out. loss: a criterion; adds the training
    step (forward, loss and the flat gradient in one call), truncated at `bptt_max` steps.
    """
    if isinstance(model, Graph):
        raise TypeError("export takes a gModule (it owns the flat parameter vector)")
    table, params = _model_params(model)
    programs = [_lowered("forward", compile_model(model), table)]
    n_state = 0
    if stateful is not False:
        more, n_state = _stateful(model, table, stateful is True)
        programs += more
    if loss is not None:
        step = compile_model(model, loss=loss, train=True, bptt_max=bptt_max)
        programs.append(_lowered("train", step, table))
    return ProgramSet(tuple(programs), table, params, n_state)


__all__ = ["Lowered", "ProgramSet", "lowered_programs", "KINDS"]
