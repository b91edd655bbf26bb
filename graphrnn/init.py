"""Deterministic parameter initialisation from a seed.

An init is a small spec string stored on the `Param` (never a closure), so saved models know how
they were made: `zeros`, `ones`, `uniform(a,b)`, `normal(mean,std)`, `xavier_uniform`,
`xavier_normal`.
"""
from __future__ import annotations

import itertools
import re
import zlib

import numpy as np

_generator = np.random.default_rng(0)
_dropout_seeds = itertools.count(1)


def manual_seed(seed: int) -> None:
    """Seed the generator that initialises newly created parameters (like torch.manual_seed),
    and restart the numbering of dropout masks, so model construction is reproducible."""
    global _generator, _dropout_seeds
    _generator = np.random.default_rng(seed)
    _dropout_seeds = itertools.count(1)


def generator() -> np.random.Generator:
    return _generator


def next_dropout_seed() -> int:
    """A fresh per-node salt for a dropout mask (distinct nodes draw distinct masks)."""
    return next(_dropout_seeds)


def key_generator(seed: int, key: str) -> np.random.Generator:
    """A generator for one named parameter: the same (seed, key) gives the same values."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(key.encode())])


def _fans(shape: tuple[int, ...]) -> tuple[int, int]:
    if len(shape) < 2:
        return max(shape[0] if shape else 1, 1), max(shape[0] if shape else 1, 1)
    return shape[1], shape[0]          # weights are [out, in], as in PyTorch


def initial_value(shape: tuple[int, ...], spec: str, rng: np.random.Generator) -> np.ndarray:
    """An array of `shape` drawn as `spec` says."""
    m = re.fullmatch(r"(\w+)(?:\(([^)]*)\))?", spec.replace(" ", ""))
    if not m:
        raise ValueError(f"unknown init {spec!r}")
    kind = m.group(1)
    args = [float(a) for a in m.group(2).split(",")] if m.group(2) else []
    if kind == "zeros":
        v = np.zeros(shape)
    elif kind == "ones":
        v = np.ones(shape)
    elif kind == "uniform":
        lo, hi = args if args else (-0.1, 0.1)
        v = rng.uniform(lo, hi, shape)
    elif kind == "normal":
        mu, sd = args if args else (0.0, 1.0)
        v = rng.normal(mu, sd, shape)
    elif kind in ("xavier_uniform", "xavier"):
        fan_in, fan_out = _fans(shape)
        a = np.sqrt(6.0 / (fan_in + fan_out))
        v = rng.uniform(-a, a, shape)
    elif kind == "xavier_normal":
        fan_in, fan_out = _fans(shape)
        v = rng.normal(0.0, np.sqrt(2.0 / (fan_in + fan_out)), shape)
    else:
        raise ValueError(f"unknown init {spec!r}: use zeros, ones, uniform(a,b), normal(m,s), "
                         "xavier_uniform or xavier_normal")
    return np.asarray(v, np.float32)
