"""graphrnn's version, and a digest of the source files that generate code.

Cached programs and kernels are keyed by both, so a cached entry is reused only by the code
that made it, even between releases. The digest covers the core modules of `graphrnn/` (not
its `viz/`, `bench/` or `testing/` wings) and every module of the compiler and the runtime:
editing a picture or a benchmark does not invalidate the cache.
"""
from __future__ import annotations

import functools
import hashlib
import importlib.util
from pathlib import Path

__version__ = "0.1.0"


def _code_generating_sources() -> list[tuple[str, Path]]:
    core = Path(__file__).resolve().parent
    files = [("graphrnn", p) for p in sorted(core.glob("*.py"))]
    for package in ("graphrnn.compiler", "graphrnn.runtime"):
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            root = Path(folder)
            files += [(package, p) for p in sorted(root.rglob("*.py"))]
    return files


@functools.cache
def source_digest() -> str:
    """sha256 (16 hex digits) over the names and contents of the code-generating sources."""
    digest = hashlib.sha256()
    for package, path in _code_generating_sources():
        digest.update(f"{package}/{path.name}:".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


__all__ = ["__version__", "source_digest"]
