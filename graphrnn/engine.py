"""The process-wide JIT engine and kernel cache, and the version their entries are keyed by."""
from __future__ import annotations

import threading
from typing import Any

from .compiler.codegen.lower import VERSION as LOWERING_VERSION
from .runtime.cache import KernelCache
from .runtime.forksafe import after_fork
from .runtime.jit import Engine
from .version import __version__, source_digest

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


def cache_version() -> str:
    return f"graphrnn-{__version__}/{LOWERING_VERSION}/{source_digest()}"
