"""The process-wide JIT engine and kernel cache, and object code made through them."""
from __future__ import annotations

import sys
import threading
from typing import Any, Callable, TypeVar

from .isa import current_isa
from .runtime.cache import KernelCache
from .runtime.forksafe import after_fork
from .runtime.jit import Engine, Library
from .version import __version__, source_digest

T = TypeVar("T")

_SHARED: dict[str, Any] = {}
_SHARED_LOCK = threading.Lock()


@after_fork
def _fresh_in_child() -> None:
    """A forked child starts with its own lock, engine and process-wide cache."""
    global _SHARED_LOCK
    _SHARED_LOCK = threading.Lock()
    _SHARED.clear()


def shared_engine() -> Engine:
    """The process-wide engine of the current ISA (graphrnn.isa), one per ISA."""
    isa = current_isa()
    with _SHARED_LOCK:
        key = ("engine", isa)
        if key not in _SHARED:
            _SHARED[key] = Engine(isa)
        return _SHARED[key]


def shared_cache() -> KernelCache:
    """The process-wide kernel cache (disk directory: GRAPHRNN_CACHE_DIR or ~/.cache/graphrnn)."""
    with _SHARED_LOCK:
        if "cache" not in _SHARED:
            _SHARED["cache"] = KernelCache()
        return _SHARED["cache"]


def cache_version(lowering: str) -> str:
    """What the kernel cache's entries are keyed by besides their text: the versions of
    graphrnn, of the lowering (`lowering`) and of the code-generating sources."""
    return f"graphrnn-{__version__}/{lowering}/{source_digest()}"


def load_object_code(llvm_ir: str, entry: str, cache: KernelCache, lowering: str, level: int,
                     load: Callable[[bytes], T]) -> tuple[bytes, T]:
    """(object code of `llvm_ir`, `load(object code)`): from `cache` (keyed by the text and
    `cache_version`) or made by the shared engine; a cached entry that does not load is made
    afresh once. From GRAPHRNN_DEBUG level 3 it is always made, and the IR before and after
    optimisation (and from level 4 the assembly) is printed."""
    engine = shared_engine()
    if level < 3:
        return cache.get_or_load(llvm_ir, cache_version(lowering),
                                 lambda text: engine.compile_to_object(text).obj, load)
    compiled = engine.compile_to_object(llvm_ir, assembly=level >= 4, text=True)
    print(f"[graphrnn] LLVM IR ({entry}):\n{llvm_ir}", file=sys.stderr)
    print(f"[graphrnn] optimised LLVM IR:\n{compiled.optimized_ir}", file=sys.stderr)
    if compiled.asm:
        print(f"[graphrnn] assembly:\n{compiled.asm}", file=sys.stderr)
    return compiled.obj, load(compiled.obj)


def jit_function(llvm_ir: str, symbol: str, lowering: str, restype: Any, *argtypes: Any
                 ) -> Any:
    """A ctypes function for `symbol` of `llvm_ir` (a small helper kernel, e.g. an optimiser's
    update): made once per process and ISA, its object code from the shared kernel cache when
    there (keyed as `load_object_code` keys it). Raises RuntimeError (JitError) when it cannot
    be made."""
    key = ("function", current_isa(), symbol, llvm_ir)
    with _SHARED_LOCK:
        fn = _SHARED.get(key)
    if fn is None:          # made outside the lock: shared_cache and shared_engine take it
        _, fn = load_object_code(llvm_ir, symbol, shared_cache(), lowering, 0,
                                 lambda obj: Library(obj).function(symbol, restype, *argtypes))
        with _SHARED_LOCK:
            fn = _SHARED.setdefault(key, fn)
    return fn
