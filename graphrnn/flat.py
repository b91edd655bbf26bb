"""The flat parameter vector's layout (Torch `getParameters`, done explicitly) and the
Executable, the plain data the compiler hands to the runtime."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from .ir import InputError, Param, TensorType


# ----------------------------------------------------------------------------- flat parameters

# The vector holds exactly the parameters, one after another (Torch `getParameters`): the
# toy nngraph RNN's vector is its 755 numbers. The vector itself starts on 64 bytes; kernels
# read weights through packed panels, so a parameter's own offset needs no alignment.
ALIGN_FLOATS = 1


@dataclass(frozen=True)
class Slot:
    offset: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape, dtype=np.int64))


@dataclass(frozen=True)
class ParamTable:
    """Where each parameter lives in the one flat float32 vector (Torch `getParameters`)."""
    slots: dict[str, Slot]
    size: int

    def views(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Named views into `flat`: never copies."""
        if flat.shape != (self.size,):
            raise InputError(f"flat vector has shape {flat.shape}, expected ({self.size},)")
        return {k: flat[s.offset:s.offset + s.size].reshape(s.shape)
                for k, s in self.slots.items()}

    @property
    def count(self) -> int:
        """Number of parameter scalars (without alignment padding)."""
        return sum(s.size for s in self.slots.values())

    def __hash__(self) -> int:
        return hash((tuple(self.slots.items()), self.size))


def param_keys(params: Sequence[Param]) -> dict[Param, str]:
    """Unique, stable keys: `owner.name`, owners with one prefix numbered in order of use."""
    owner_names: dict[int, str] = {}
    used: dict[str, int] = {}
    keys: dict[Param, str] = {}
    taken: set[str] = set()
    for p in params:
        tok = id(p.token)
        if tok not in owner_names:
            k = used.get(p.owner, 0)
            used[p.owner] = k + 1
            owner_names[tok] = p.owner if k == 0 else f"{p.owner}_{k}"
        key = f"{owner_names[tok]}.{p.name}"
        while key in taken:
            key += "_"
        taken.add(key)
        keys[p] = key
    return keys


def layout_params(params: Sequence[Param]) -> tuple[ParamTable, dict[Param, str]]:
    """Lay the parameters out in order, each at a 64-byte aligned offset."""
    keys = param_keys(params)
    slots: dict[str, Slot] = {}
    offset = 0
    for p in params:
        slots[keys[p]] = Slot(offset, p.shape)
        offset += -(-p.size // ALIGN_FLOATS) * ALIGN_FLOATS
    return ParamTable(slots, offset), keys


# ----------------------------------------------------------------------------- versions

# data address of a flat vector -> how many times its values were changed through the library
_VERSIONS: dict[int, int] = {}


def params_changed(flat: np.ndarray) -> None:
    """Note that the values in `flat` changed: compiled programs repack weights read from it.

    Optimizer.step, gModule.load_state_dict / reset_parameters and handing the vector out
    (`parameters()`, `named_parameters()`) call this; after writing into a vector kept from
    earlier, call it (or the compiled model's `invalidate()`) yourself.
    """
    key = flat.__array_interface__["data"][0]
    _VERSIONS[key] = _VERSIONS.get(key, 0) + 1


def params_version(address: int) -> int:
    """The change count of the flat vector whose data starts at `address` (keyed by memory,
    so every view object of one vector shares it)."""
    return _VERSIONS.get(address, 0)


# ----------------------------------------------------------------------------- executable

@dataclass(frozen=True)
class Executable:
    """What the compiler hands the runtime: plain data, printable, hashable, cacheable."""
    llvm_ir: str
    entry_points: tuple[str, ...]
    table: ParamTable
    arena_floats: int
    io: tuple[TensorType, ...]
    meta: dict[str, Any] = field(default_factory=dict)

    def __hash__(self) -> int:      # `meta` is free-form notes, left out of the identity
        return hash((self.llvm_ir, self.entry_points, self.table, self.arena_floats, self.io))
