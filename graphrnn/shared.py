"""The process-wide JIT engine and kernel cache, and the version their entries are keyed by."""
from __future__ import annotations

import functools
import hashlib
import os
import sys
import threading
from typing import Any

from . import __version__
from .compiler.lower import VERSION as LOWERING_VERSION
from .runtime.cache import KernelCache
from .runtime.forksafe import after_fork
from .runtime.jit import Engine

_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


@after_fork
def _fresh_in_child() -> None:
    """A forked child starts with its own lock, engine and process-wide cache."""
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED.clear()


def shared_engine() -> Engine:
    with _SHARED_LOCK:
        if "engine" not in _SHARED:
            _SHARED["engine"] = Engine()
        return _SHARED["engine"]


def shared_cache() -> KernelCache:
    """The process-wide kernel cache (disk directory: GRAPHRNN_CACHE_DIR or ~/.cache/graphrnn)."""
    with _SHARED_LOCK:
        if "cache" not in _SHARED:
            _SHARED["cache"] = KernelCache()
        return _SHARED["cache"]


@functools.cache
def source_digest() -> str:
    """A hash of the package's own source files (graphrnn, its compiler and runtime): a cached
    program or kernel is reused only by the code that made it, even within one version."""
    from . import compiler, runtime
    digest = hashlib.sha256()
    for package in (sys.modules[__package__], compiler, runtime):
        for folder in package.__path__:
            for name in sorted(f for f in os.listdir(folder) if f.endswith(".py")):
                digest.update(f"{package.__name__}/{name}".encode())
                with open(os.path.join(folder, name), "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:16]


def cache_version() -> str:
    return f"graphrnn-{__version__}/{LOWERING_VERSION}/{source_digest()}"
