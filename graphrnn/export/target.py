"""The CPU an exported library is compiled for, and how C checks at load time that the CPU
running it has every feature the code may use (cpuid), so a missing one is an error, not
SIGILL.

A target is the host's CPU (its name and every feature it has), one of the portable x86-64
levels (`x86-64-v2`, `-v3`, `-v4`), or any LLVM CPU name with explicit features.
"""
from __future__ import annotations

from dataclasses import dataclass

# x86-64 micro-architecture levels (psABI): each adds to the one before.
_V1 = ("cmov", "cx8", "fxsr", "mmx", "sse", "sse2")
_V2 = _V1 + ("cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
LEVELS = {"x86-64": _V1, "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}

# OS support for the register state (XCR0 bits): SSE+AVX, and AVX-512's opmask/ZMM state.
_YMM, _ZMM = 0x6, 0xE6

# LLVM feature -> (cpuid leaf, subleaf, register 0..3 = eax ebx ecx edx, bit, XCR0 mask).
# Features not listed are not checked (they are never the only thing code generation needs).
CPUID: dict[str, tuple[int, int, int, int, int]] = {
    "cx8": (1, 0, 3, 8, 0), "cmov": (1, 0, 3, 15, 0), "mmx": (1, 0, 3, 23, 0),
    "fxsr": (1, 0, 3, 24, 0), "sse": (1, 0, 3, 25, 0), "sse2": (1, 0, 3, 26, 0),
    "sse3": (1, 0, 2, 0, 0), "pclmul": (1, 0, 2, 1, 0), "ssse3": (1, 0, 2, 9, 0),
    "fma": (1, 0, 2, 12, _YMM), "cx16": (1, 0, 2, 13, 0), "sse4.1": (1, 0, 2, 19, 0),
    "sse4.2": (1, 0, 2, 20, 0), "movbe": (1, 0, 2, 22, 0), "popcnt": (1, 0, 2, 23, 0),
    "aes": (1, 0, 2, 25, 0), "xsave": (1, 0, 2, 26, 0), "avx": (1, 0, 2, 28, _YMM),
    "f16c": (1, 0, 2, 29, _YMM), "bmi": (7, 0, 1, 3, 0), "avx2": (7, 0, 1, 5, _YMM),
    "bmi2": (7, 0, 1, 8, 0), "avx512f": (7, 0, 1, 16, _ZMM), "avx512dq": (7, 0, 1, 17, _ZMM),
    "adx": (7, 0, 1, 19, 0), "avx512ifma": (7, 0, 1, 21, _ZMM), "avx512cd": (7, 0, 1, 28, _ZMM),
    "sha": (7, 0, 1, 29, 0), "avx512bw": (7, 0, 1, 30, _ZMM), "avx512vl": (7, 0, 1, 31, _ZMM),
    "avx512vbmi": (7, 0, 2, 1, _ZMM), "avx512vbmi2": (7, 0, 2, 6, _ZMM),
    "gfni": (7, 0, 2, 8, 0), "vaes": (7, 0, 2, 9, _YMM), "vpclmulqdq": (7, 0, 2, 10, _YMM),
    "avx512vnni": (7, 0, 2, 11, _ZMM), "avx512bitalg": (7, 0, 2, 12, _ZMM),
    "avx512vpopcntdq": (7, 0, 2, 14, _ZMM), "avx512fp16": (7, 0, 3, 23, _ZMM),
    "avxvnni": (7, 1, 0, 4, _YMM), "avx512bf16": (7, 1, 0, 5, _ZMM),
    "sahf": (0x80000001, 0, 2, 0, 0), "lzcnt": (0x80000001, 0, 2, 5, 0),
    "sse4a": (0x80000001, 0, 2, 6, 0), "prfchw": (0x80000001, 0, 2, 8, 0),
    "fma4": (0x80000001, 0, 2, 16, _YMM),
}


@dataclass(frozen=True)
class Target:
    """What the code is compiled for: LLVM's CPU name and feature string, and the features
    the library checks for at load time."""
    cpu: str
    features: str
    required: tuple[str, ...]

    @property
    def checks(self) -> tuple[tuple[str, int, int, int, int, int], ...]:
        """(feature, leaf, subleaf, register, bit, XCR0 mask) of every checkable feature."""
        return tuple((f, *CPUID[f]) for f in self.required if f in CPUID)


def _enabled(features: str) -> tuple[str, ...]:
    return tuple(sorted(f[1:] for f in features.split(",") if f.startswith("+")))


def resolve_target(target: str | None, host_cpu: str, host_features: str,
                   features: str | None = None) -> Target:
    """The Target for `target`: None or "host" (the host CPU and all its features), an
    x86-64 level, or an LLVM CPU name (with `features`, "+avx2,+fma", else only what the
    name implies: then nothing is checked at load time)."""
    if target in (None, "host", "native"):
        feats = features if features is not None else host_features
        return Target(host_cpu, feats, _enabled(feats))
    if target in LEVELS:
        extra = features or ""
        return Target(target, extra, tuple(sorted(set(LEVELS[target]) | set(_enabled(extra)))))
    return Target(target, features or "", _enabled(features or ""))


__all__ = ["Target", "resolve_target", "LEVELS", "CPUID"]
