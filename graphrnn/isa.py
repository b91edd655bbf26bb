"""The instruction set kernels are built and tiled for: the host's, or another one LLVM can
build for (GRAPHRNN_TARGET_FEATURES, `gr.compile(..., isa=...)`, `graphrnn bench --target`).

A spec is one of
    None, "host", "native"      the host CPU with every feature it has
    "avx512"                    the host, which must have AVX-512F
    "avx2"                      the host CPU with every AVX-512 feature off (AVX2 + FMA code,
                                16 vector registers, runs on any AVX-512 host)
    "generic", "x86-64"         the baseline x86-64 (SSE2): correct everywhere, not tuned
    "x86-64-v2" / "-v3" / "-v4" an x86-64 micro-architecture level
    "+feat,-feat,..."           LLVM feature switches applied on top of the host's

    fast = gr.compile(model, isa="avx2")    # its kernels are AVX2 kernels
    with using_isa("avx2"):                 # so are those of the programs built here
        y = gr.compile(model)(x)
"""
from __future__ import annotations

import contextlib
import contextvars
import functools
from dataclasses import dataclass
from typing import Iterator

import llvmlite.binding as llvm

from . import settings

_V1 = ("cmov", "cx8", "fxsr", "mmx", "sse", "sse2")
_V2 = _V1 + ("cx16", "sahf", "popcnt", "sse3", "sse4.1", "sse4.2", "ssse3")
_V3 = _V2 + ("avx", "avx2", "bmi", "bmi2", "f16c", "fma", "lzcnt", "movbe", "xsave")
_V4 = _V3 + ("avx512f", "avx512bw", "avx512cd", "avx512dq", "avx512vl")
LEVELS = {"x86-64": _V1, "x86-64-v2": _V2, "x86-64-v3": _V3, "x86-64-v4": _V4}


@dataclass(frozen=True)
class Isa:
    """An LLVM CPU name and feature string, and what the tiling needs to know of them."""
    cpu: str
    features: str
    enabled: frozenset[str]

    @property
    def name(self) -> str:
        """"avx512", "avx2", "avx" or "sse" (the widest float vector unit)."""
        if "avx512f" in self.enabled:
            return "avx512"
        if "avx2" in self.enabled and "fma" in self.enabled:
            return "avx2"
        return "avx" if "avx" in self.enabled else "sse"

    @property
    def vector_width(self) -> int:
        """Floats per vector the kernels use: 16 with AVX-512, else 8 (two xmm without AVX)."""
        return 16 if self.name == "avx512" else 8

    @property
    def registers(self) -> int:
        """Vector registers of `vector_width` floats: 32 zmm, 16 ymm, or 8 xmm pairs."""
        return {"avx512": 32, "avx2": 16, "avx": 16}.get(self.name, 8)

    def describe(self) -> str:
        """One line for reports: "avx2 (znver5, AVX-512 off)"."""
        host = _host()
        off = self.cpu == host.cpu and "avx512f" in host.enabled - self.enabled
        return f"{self.name} ({self.cpu}{', AVX-512 off' if off else ''})"


def _enabled(features: str) -> frozenset[str]:
    on: set[str] = set()
    for f in filter(None, (x.strip() for x in features.split(","))):
        if f[0] == "+":
            on.add(f[1:])
        elif f[0] == "-":
            on.discard(f[1:])
            if f[1:] == "avx512f":          # LLVM turns off what depends on it too
                on = {x for x in on if not x.startswith("avx512")}
    return frozenset(on)


@functools.lru_cache(maxsize=1)
def _host() -> Isa:
    feats = llvm.get_host_cpu_features().flatten()
    return Isa(llvm.get_host_cpu_name(), feats, _enabled(feats))


@functools.lru_cache(maxsize=32)
def resolve_isa(spec: str | None, what: str = "target") -> Isa:
    """The Isa of a spec (see the module docstring); ValueError for one this host cannot run
    or LLVM does not know, naming `what` asked for it."""
    host = _host()
    key = (spec or "host").strip().lower()
    if key in ("host", "native"):
        return host
    if key == "avx512":
        if "avx512f" not in host.enabled:
            raise ValueError(f"{what} avx512: this CPU has no AVX-512F")
        return host
    if key == "avx2":
        if not {"avx2", "fma"} <= host.enabled:
            raise ValueError(f"{what} avx2: this CPU has no AVX2 + FMA")
        off = sorted(f for f in host.enabled if f.startswith("avx512") or f == "avx10.1-256")
        feats = ",".join([host.features] + [f"-{f}" for f in off])
        return Isa(host.cpu, feats, _enabled(feats))
    if key == "generic":
        key = "x86-64"
    if key in LEVELS:
        return Isa(key, "", frozenset(LEVELS[key]))
    if key[0] in "+-":
        feats = f"{host.features},{key}"
        return Isa(host.cpu, feats, _enabled(feats))
    raise ValueError(f"{what} {spec!r}: expected host, avx512, avx2, generic, an x86-64 level "
                     f"({', '.join(LEVELS)}) or LLVM features such as -avx512f")


_CURRENT: contextvars.ContextVar[Isa | None] = contextvars.ContextVar("graphrnn_isa",
                                                                      default=None)


def current_isa() -> Isa:
    """The ISA kernels are built for now: `using_isa`'s, else GRAPHRNN_TARGET_FEATURES's,
    else the host's."""
    isa = _CURRENT.get()
    return isa if isa is not None else resolve_isa(settings.target_features())


@contextlib.contextmanager
def using_isa(spec: "str | Isa | None") -> Iterator[Isa]:
    """Build kernels for `spec` inside the block (None: leave the current ISA as it is)."""
    if spec is None:
        yield current_isa()
        return
    isa = spec if isinstance(spec, Isa) else resolve_isa(spec)
    token = _CURRENT.set(isa)
    try:
        yield isa
    finally:
        _CURRENT.reset(token)


def host_isa() -> Isa:
    return _host()


__all__ = ["Isa", "resolve_isa", "current_isa", "using_isa", "host_isa", "LEVELS"]
