"""The flat parameter vector's layout (Torch `getParameters`, done explicitly): where each
parameter lives in one float32 vector, and the stable keys that name them."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from .ir import InputError, Param

# The vector holds exactly the parameters, one after another (Torch `getParameters`): the
# toy nngraph RNN's vector is its 755 numbers. The vector itself starts on 64 bytes; kernels
# read weights through packed panels, so a parameter's own offset needs no alignment.
ALIGN_FLOATS = 1


@dataclass(frozen=True)
class Slot:
    """One parameter's place in the flat vector."""
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
    """Lay the parameters out in order, each at an offset rounded up to ALIGN_FLOATS."""
    keys = param_keys(params)
    slots: dict[str, Slot] = {}
    offset = 0
    for p in params:
        slots[keys[p]] = Slot(offset, p.shape)
        offset += -(-p.size // ALIGN_FLOATS) * ALIGN_FLOATS
    return ParamTable(slots, offset), keys
