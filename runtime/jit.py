"""The JIT: parse, verify and optimise LLVM IR, emit object code, load it for calling.

All LLVM work happens under one process-wide lock, because llvmlite shares one LLVM
context between threads and LLVM objects are not thread-safe. Calling the loaded code
needs no lock: a ctypes ``CFUNCTYPE`` call releases the GIL and runs in parallel.

    engine = Engine()
    compiled = engine.compile_to_object(llvm_ir)  # .obj bytes; .optimized_ir, .asm None
    library = engine.load(compiled.obj)
    # restype first, then argtypes: void graphrnn_0123abcd_forward(void*, int64)
    fn = library.function("graphrnn_0123abcd_forward", None, ctypes.c_void_p, ctypes.c_int64)
"""

from __future__ import annotations

import ctypes
import struct
import functools
import threading
from typing import Any, NamedTuple

import llvmlite
import llvmlite.binding as llvm

from graphrnn.isa import Isa, current_isa

from .forksafe import hold_across_fork

# One lock for every llvmlite call that touches the global LLVM context.
_LOCK = threading.RLock()
_INITIALIZED = False


class _FfiLock:
    """llvmlite's own lock around every call into LLVM (taken also outside _LOCK, e.g. when
    an object is freed); a no-op where llvmlite has none."""

    def acquire(self) -> None:
        lock = getattr(llvm.ffi.lib, "_lock", None)
        if lock is not None:
            lock.__enter__()

    def release(self) -> None:
        lock = getattr(llvm.ffi.lib, "_lock", None)
        if lock is not None:
            lock.__exit__(None, None, None)


# A fork waits until no thread is inside LLVM: the child must not inherit a lock (or LLVM's
# own mutexes) held by a thread that does not exist there.
_FFI_LOCK = _FfiLock()
hold_across_fork(lambda: _LOCK, lambda: _FFI_LOCK)


class JitError(RuntimeError):
    """LLVM rejected the IR, or a symbol is missing from loaded object code."""


class Compiled(NamedTuple):
    """Result of `Engine.compile_to_object`."""

    obj: bytes
    optimized_ir: str | None        # only when asked: printing a big module takes a while
    asm: str | None


def _ensure_initialized() -> None:
    # llvm.initialize() raises in llvmlite 0.50; only the native target is needed.
    global _INITIALIZED
    with _LOCK:
        if not _INITIALIZED:
            llvm.initialize_native_target()
            llvm.initialize_native_asmprinter()
            _INITIALIZED = True


def host_signature(isa: Isa | None = None) -> dict[str, str]:
    """What the object code depends on besides the IR: triple, the CPU and features it is
    built for (`isa`, else the current one: see graphrnn.isa), versions."""
    isa = isa or current_isa()
    return {**_versions(), "cpu": isa.cpu, "features": isa.features}


@functools.lru_cache(maxsize=1)
def _versions() -> dict[str, str]:
    return {
        "triple": llvm.get_process_triple(),
        "llvmlite": llvmlite.__version__,
        "llvm": ".".join(str(v) for v in llvm.llvm_version_info),
    }


def _target_machine(cpu: str | None = None, features: str | None = None,
                    pic: bool = False) -> llvm.TargetMachine:
    """A target machine for the JIT, for `cpu` with `features` (default: the host's); with
    `pic`, one for object code linked into a shared library (position-independent, not for
    MCJIT)."""
    target = llvm.Target.from_triple(llvm.get_process_triple())
    if pic:
        return target.create_target_machine(cpu=cpu or llvm.get_host_cpu_name(),
                                            features=features or "", opt=3, reloc="pic",
                                            codemodel="default")
    return target.create_target_machine(
        cpu=cpu or llvm.get_host_cpu_name(),
        features=llvm.get_host_cpu_features().flatten() if features is None else features,
        opt=3,
        jit=True,
    )


def check_object(obj: bytes) -> None:
    """Refuse bytes that are not a well-formed 64-bit little-endian x86-64 ELF relocatable.

    LLVM's object loader trusts its input; this keeps garbage (a foreign or forged cache
    entry) from reaching it: header fields and every section must lie inside the bytes.
    """
    def fail(why: str) -> None:
        raise JitError(f"not loadable object code: {why}")
    if len(obj) < 64 or obj[:4] != b"\x7fELF":
        fail("no ELF header")
    if obj[4] != 2 or obj[5] != 1:
        fail("not a 64-bit little-endian object")
    e_type, e_machine = struct.unpack_from("<HH", obj, 16)
    if e_type != 1 or e_machine != 62:
        fail(f"type {e_type} machine {e_machine}, expected a relocatable x86-64 object")
    e_shoff, = struct.unpack_from("<Q", obj, 40)
    e_shentsize, e_shnum, e_shstrndx = struct.unpack_from("<HHH", obj, 58)
    if e_shentsize != 64 or e_shnum == 0 or e_shstrndx >= e_shnum \
            or e_shoff + e_shnum * 64 > len(obj):
        fail("section header table out of bounds")
    for i in range(e_shnum):
        sh_type, = struct.unpack_from("<I", obj, e_shoff + i * 64 + 4)
        sh_offset, sh_size = struct.unpack_from("<QQ", obj, e_shoff + i * 64 + 24)
        if sh_type != 8 and sh_offset + sh_size > len(obj):       # 8: NOBITS has no bytes
            fail(f"section {i} out of bounds")


class Library:
    """Object code loaded into its own MCJIT engine; kept alive while functions are used."""

    def __init__(self, obj: bytes) -> None:
        check_object(obj)
        _ensure_initialized()
        with _LOCK:
            # MCJIT takes ownership of its target machine, so each engine gets a fresh one.
            self._engine = llvm.create_mcjit_compiler(llvm.parse_assembly(""), _target_machine())
            self._object = llvm.ObjectFileRef.from_data(obj)
            self._engine.add_object_file(self._object)
            self._engine.finalize_object()

    def address(self, symbol: str) -> int:
        """Address of `symbol` in the loaded code; `JitError` if it is not defined there."""
        with _LOCK:
            addr = self._engine.get_function_address(symbol)
        if not addr:
            raise JitError(
                f"symbol {symbol!r} is not defined in the loaded object code; "
                "check the function name emitted by the lowering"
            )
        return addr

    def function(self, symbol: str, restype: Any, *argtypes: Any) -> Any:
        """A ctypes function for `symbol` that keeps this library alive while referenced."""
        fn = ctypes.CFUNCTYPE(restype, *argtypes)(self.address(symbol))
        fn._library = self  # the code is freed with the engine
        return fn


class Engine:
    """Optimises IR for one ISA (`isa`, default the current one: the host's unless
    GRAPHRNN_TARGET_FEATURES or `using_isa` say otherwise) and turns it into loadable object
    code."""

    def __init__(self, isa: Isa | None = None) -> None:
        _ensure_initialized()
        self.isa = isa or current_isa()
        with _LOCK:
            self._tm = _target_machine(self.isa.cpu, self.isa.features)

    @classmethod
    def for_library(cls, cpu: str, features: str) -> "Engine":
        """An engine whose object code goes into a shared or static library for `cpu` with
        `features` (LLVM names, "+avx2,-avx512f"): position-independent code."""
        engine = cls.__new__(cls)
        _ensure_initialized()
        engine.isa = None
        with _LOCK:
            engine._tm = _target_machine(cpu, features, pic=True)
        return engine

    def optimize(self, llvm_ir: str, *, loop_unrolling: bool = False) -> llvm.ModuleRef:
        """Parse and verify `llvm_ir`, then run the O3 pipeline; `JitError` on bad IR.

        LLVM's unroller is off by default: the generator unrolls where it pays, and LLVM's
        unrolling of register-blocked loops was measured to add spills.
        """
        with _LOCK:
            try:
                module = llvm.parse_assembly(llvm_ir)
                module.verify()
            except RuntimeError as exc:
                raise JitError(f"invalid LLVM IR: {exc}") from None
            # The code runs on this host only; llvmlite.ir leaves both as placeholders, and
            # the optimiser's cost models need the real ones.
            module.triple = self._tm.triple
            module.data_layout = str(self._tm.target_data)
            options = llvm.create_pipeline_tuning_options(speed_level=3)
            options.loop_vectorization = True
            options.slp_vectorization = True
            options.loop_unrolling = loop_unrolling
            builder = llvm.create_pass_builder(self._tm, options)
            builder.getModulePassManager().run(module, builder)
            return module

    def emit_object(self, module: llvm.ModuleRef) -> bytes:
        """Native object code for `module`."""
        with _LOCK:
            return self._tm.emit_object(module)

    def emit_assembly(self, module: llvm.ModuleRef) -> str:
        """Native assembly text for `module`."""
        with _LOCK:
            return self._tm.emit_assembly(module)

    def compile_to_object(
        self, llvm_ir: str, *, loop_unrolling: bool = False, assembly: bool = False,
        text: bool = False) -> Compiled:
        """Optimise and emit `llvm_ir`; the optimised IR's text and the assembly text only when
        asked (they cost time)."""
        module = self.optimize(llvm_ir, loop_unrolling=loop_unrolling)
        with _LOCK:
            return Compiled(
                obj=self.emit_object(module),
                optimized_ir=str(module) if text else None,
                asm=self.emit_assembly(module) if assembly else None,
            )

    def load(self, obj: bytes) -> Library:
        """Load object code produced by `compile_to_object` (or read from the cache)."""
        return Library(obj)
