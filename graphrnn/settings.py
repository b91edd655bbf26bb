"""The compiler's switches, read from the environment here and nowhere else.

| variable          | values | meaning                                                       |
|-------------------|--------|---------------------------------------------------------------|
| `GRAPHRNN_DEBUG`  | 0-4    | 1 pass names and times, 2 the graph after each pass,          |
|                   |        | 3 LLVM IR before and after optimisation, 4 assembly           |
| `GRAPHRNN_VERIFY` | 0 / 1  | run `verify()` on the graph after every pass; on by default   |
|                   |        | while pytest runs a test, off otherwise                       |
| `GRAPHRNN_TARGET_FEATURES` | spec | the ISA kernels are built and tiled for: host (default), |
|                   |        | avx512, avx2, generic, x86-64-v3, or LLVM features (-avx512f) |

All are read at each call, so a test may change them with `monkeypatch.setenv`.
"""
from __future__ import annotations

import os


def _int_var(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"{name}={raw!r}: expected an integer") from None


def debug_level() -> int:
    """GRAPHRNN_DEBUG, 0 when unset."""
    return max(0, _int_var("GRAPHRNN_DEBUG", 0))


def verify_enabled() -> bool:
    """GRAPHRNN_VERIFY; when unset, on exactly while a pytest test is running."""
    return _int_var("GRAPHRNN_VERIFY", 1 if "PYTEST_CURRENT_TEST" in os.environ else 0) > 0


def target_features() -> str | None:
    """GRAPHRNN_TARGET_FEATURES, None when unset or empty (graphrnn.isa reads the spec)."""
    raw = os.environ.get("GRAPHRNN_TARGET_FEATURES", "").strip()
    return raw or None


__all__ = ["debug_level", "verify_enabled", "target_features"]
