"""Bounded in-memory caches: least recently used entries go first.

    programs = LRU(bound=programs_limit)                     # counts entries
    kernels = LRU(size=len, bound=kernel_bytes_limit)        # counts bytes

Two limits apply to every process, set by environment variables (read at first use) or by
`set_cache_limits` (`gr.set_cache_limits`):

| limit          | variable                 | default | what it bounds                          |
|----------------|--------------------------|---------|-----------------------------------------|
| `kernel_bytes` | `GRAPHRNN_CACHE_MEMORY`  | 64 MiB  | object code and program entries that    |
|                | (MiB)                    |         | each kernel cache keeps in memory       |
| `programs`     | `GRAPHRNN_MAX_PROGRAMS`  | 64      | loaded programs (one per signature:     |
|                |                          |         | batch size, dtypes) per compiled model  |

An evicted kernel is read back from the disk cache (or compiled) when it is needed again; an
evicted program is loaded again from the kernel cache. A limit applies from the next entry
added. Every method is thread-safe: a short lock guards the order and the sizes.
"""
from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Callable, Generic, Hashable, Iterator, TypeVar

from .forksafe import renew_after_fork

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")

DEFAULT_KERNEL_MIB = 64
DEFAULT_PROGRAMS = 64


@dataclass(frozen=True)
class CacheLimits:
    """The size limits of the in-memory caches (see the module docstring)."""

    kernel_bytes: int
    programs: int


_LIMITS: CacheLimits | None = None      # read from the environment at first use


def _positive_env(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected a positive integer") from None
    if value < 1:
        raise ValueError(f"{name}={raw!r}: expected a positive integer")
    return value


def cache_limits() -> CacheLimits:
    """The limits in force: those set by `set_cache_limits`, else the environment's."""
    global _LIMITS
    if _LIMITS is None:
        _LIMITS = CacheLimits(_positive_env("GRAPHRNN_CACHE_MEMORY", DEFAULT_KERNEL_MIB) << 20,
                              _positive_env("GRAPHRNN_MAX_PROGRAMS", DEFAULT_PROGRAMS))
    return _LIMITS


def kernel_bytes_limit() -> int:
    """The bytes each kernel cache keeps in memory."""
    return cache_limits().kernel_bytes


def programs_limit() -> int:
    """The programs each compiled model keeps."""
    return cache_limits().programs


def set_cache_limits(*, kernel_bytes: int | None = None,
                     programs: int | None = None) -> CacheLimits:
    """Change the in-memory cache limits for this process; returns the new limits.

    kernel_bytes: bytes of object code and program entries each kernel cache keeps in memory.
    programs: loaded programs each compiled model keeps (one per input signature).
    """
    for name, value in (("kernel_bytes", kernel_bytes), ("programs", programs)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)
                                  or value < 1):
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    global _LIMITS
    changes = {k: v for k, v in (("kernel_bytes", kernel_bytes), ("programs", programs))
               if v is not None}
    _LIMITS = replace(cache_limits(), **changes)
    return _LIMITS


class LRU(Generic[K, V]):
    """A mapping that drops its least recently used entries while their total `size` is above
    `bound()` (the newest entry always stays)."""

    def __init__(self, *, bound: Callable[[], int],
                 size: Callable[[V], int] = lambda value: 1) -> None:
        self._data: OrderedDict[K, V] = OrderedDict()
        self._size = size
        self._bound = bound
        self._total = 0
        self._lock = threading.Lock()
        renew_after_fork(self, _lock=threading.Lock)

    def get(self, key: K, default: V | None = None) -> V | None:
        """The value under `key` (now the most recently used), or `default`."""
        with self._lock:
            value = self._data.get(key)
            if value is None:
                return default
            self._data.move_to_end(key)
            return value

    def __getitem__(self, key: K) -> V:
        value = self.get(key)
        if value is None:
            raise KeyError(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        with self._lock:
            old = self._data.pop(key, None)
            if old is not None:
                self._total -= self._size(old)
            self._data[key] = value
            self._total += self._size(value)
            limit = self._bound()
            while self._total > limit and len(self._data) > 1:
                _, dropped = self._data.popitem(last=False)
                self._total -= self._size(dropped)

    def pop(self, key: K, default: V | None = None) -> V | None:
        with self._lock:
            value = self._data.pop(key, None)
            if value is None:
                return default
            self._total -= self._size(value)
            return value

    def clear(self) -> None:
        with self._lock:
            self._data.clear()
            self._total = 0

    @property
    def total(self) -> int:
        """The summed size of the entries (bytes for a kernel cache, a count otherwise)."""
        return self._total

    def __contains__(self, key: object) -> bool:
        return key in self._data

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self) -> Iterator[K]:
        with self._lock:
            return iter(list(self._data))

    def keys(self) -> list[K]:
        with self._lock:
            return list(self._data)

    def values(self) -> list[V]:
        with self._lock:
            return list(self._data.values())

    def items(self) -> list[tuple[K, V]]:
        with self._lock:
            return list(self._data.items())


__all__ = ["LRU", "CacheLimits", "cache_limits", "set_cache_limits", "kernel_bytes_limit",
           "programs_limit"]
