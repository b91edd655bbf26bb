"""Which dims of a model's declared input types are the batch and which the time.

A symbol on axis 0 of an input is a batch symbol; the first other symbol, inputs in order and
axes in order, is the time; the other symbols after it are further time dims (a decoder's
target length beside an encoder's source length). Compiled programs keep the batch and every
time symbolic (compile.py), calls split by batch rows (rows.py), and `graphrnn ir` binds them
(cli.py).
"""
from __future__ import annotations

from typing import Collection, Sequence

from .ir import TensorType


def batch_symbols(types: Sequence[TensorType | None]) -> set[str]:
    """The symbols on axis 0 of the typed inputs."""
    return {t.shape[0] for t in types if t is not None and t.rank and isinstance(t.shape[0], str)}


def time_axis(types: Sequence[TensorType | None], batch: Collection[str]
              ) -> tuple[int, int] | None:
    """(input index, axis) of the first symbol that is not a batch symbol, or None."""
    return next(((i, a) for i, t in enumerate(types) if t is not None
                 for a, d in enumerate(t.shape) if isinstance(d, str) and d not in batch), None)


def time_symbols(types: Sequence[TensorType | None], batch: Collection[str]) -> list[str]:
    """Every symbol that is not a batch symbol, in order of first appearance: the time (see
    `time_axis`) first."""
    return list(dict.fromkeys(d for t in types if t is not None for d in t.shape
                              if isinstance(d, str) and d not in batch))


__all__ = ["batch_symbols", "time_axis", "time_symbols"]
