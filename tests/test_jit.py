"""The JIT engine, loaded libraries, thread behaviour, and aligned buffers."""

from __future__ import annotations

import ctypes
import gc
import threading
import time

import numpy as np
import pytest

from graphrnn.runtime.buffers import aligned_empty, aligned_zeros
from graphrnn.runtime.jit import Engine, JitError, Library, host_signature

AXPB_IR = """
define void @axpb(ptr noalias %x, ptr noalias %y, i64 %n, float %a, float %b) {
entry:
  %empty = icmp sle i64 %n, 0
  br i1 %empty, label %done, label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %px = getelementptr inbounds float, ptr %x, i64 %i
  %py = getelementptr inbounds float, ptr %y, i64 %i
  %v = load float, ptr %px, align 4
  %m = fmul float %v, %a
  %r = fadd float %m, %b
  store float %r, ptr %py, align 4
  %next = add nsw i64 %i, 1
  %more = icmp slt i64 %next, %n
  br i1 %more, label %loop, label %done
done:
  ret void
}
"""

# Sets flags[1] = 1, then spins until flags[0] != 0 or `limit` iterations pass; returns the
# iterations used.
SPIN_IR = """
define i64 @spin(ptr %flags, i64 %limit) {
entry:
  %started = getelementptr inbounds i32, ptr %flags, i64 1
  store atomic i32 1, ptr %started release, align 4
  br label %loop
loop:
  %i = phi i64 [ 0, %entry ], [ %next, %loop ]
  %v = load atomic i32, ptr %flags acquire, align 4
  %next = add nsw i64 %i, 1
  %unset = icmp eq i32 %v, 0
  %left = icmp slt i64 %next, %limit
  %go = and i1 %unset, %left
  br i1 %go, label %loop, label %done
done:
  ret i64 %next
}
"""

AXPB_ARGS = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_float, ctypes.c_float)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine()


@pytest.fixture(scope="module")
def axpb(engine: Engine):
    return engine.load(engine.compile_to_object(AXPB_IR).obj).function("axpb", None, *AXPB_ARGS)


def test_host_signature_describes_this_machine():
    sig = host_signature()
    assert set(sig) == {"triple", "cpu", "features", "llvmlite", "llvm"}
    assert sig["cpu"] and "+" in sig["features"] and sig["llvmlite"].startswith("0.")
    sig["cpu"] = "mutated"
    assert host_signature()["cpu"] != "mutated"


def test_compile_and_call(axpb):
    x = np.arange(37, dtype=np.float32)
    y = np.zeros_like(x)
    axpb(x.ctypes.data, y.ctypes.data, x.size, 2.0, 1.0)
    np.testing.assert_array_equal(y, 2 * x + 1)


def test_compile_to_object_outputs(engine: Engine):
    plain = engine.compile_to_object(AXPB_IR, text=True)
    assert plain.asm is None and isinstance(plain.obj, bytes) and plain.obj
    assert "define void @axpb" in plain.optimized_ir
    assert host_signature()["triple"] in plain.optimized_ir
    with_asm = engine.compile_to_object(AXPB_IR, assembly=True, loop_unrolling=True)
    assert "axpb:" in with_asm.asm and "vmulps" in with_asm.asm


def test_optimize_vectorizes(engine: Engine):
    module = engine.optimize(AXPB_IR)
    assert "<8 x float>" in str(module) or "<16 x float>" in str(module)
    assert "axpb" in engine.emit_assembly(module)
    assert engine.emit_object(module)


@pytest.mark.parametrize(
    "bad, words",
    [
        ("define i32 @f() {\n  ret float 1.0\n}", "parsing"),
        ("define i32 @f(i32 %x) {\nentry:\n  br label %b\nb:\n  %y = add i32 %z, 1\n"
         "  %z = add i32 %x, 1\n  ret i32 %y\n}", "dominate"),
    ],
)
def test_bad_ir_raises_jit_error(engine: Engine, bad: str, words: str):
    with pytest.raises(JitError, match=words) as info:
        engine.optimize(bad)
    assert isinstance(info.value, RuntimeError)


def test_missing_symbol(engine: Engine):
    library = engine.load(engine.compile_to_object(AXPB_IR).obj)
    assert library.address("axpb") > 0
    with pytest.raises(JitError, match="'nope' is not defined"):
        library.address("nope")


def test_function_keeps_its_library_alive(engine: Engine):
    fn = Library(engine.compile_to_object(AXPB_IR).obj).function("axpb", None, *AXPB_ARGS)
    gc.collect()
    x = np.ones(5, dtype=np.float32)
    y = np.zeros_like(x)
    fn(x.ctypes.data, y.ctypes.data, 5, 3.0, 0.5)
    np.testing.assert_array_equal(y, 3.5)


def test_same_object_loads_twice(engine: Engine):
    obj = engine.compile_to_object(AXPB_IR).obj
    a, b = engine.load(obj), engine.load(obj)
    assert a.address("axpb") != b.address("axpb")


def test_eight_threads_call_at_once(axpb):
    n = 1 << 20
    xs = [np.full(n, i, dtype=np.float32) for i in range(8)]
    ys = [np.empty(n, dtype=np.float32) for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(i: int) -> None:
        barrier.wait()
        for _ in range(5):
            axpb(xs[i].ctypes.data, ys[i].ctypes.data, n, 2.0, float(i))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i in range(8):
        np.testing.assert_array_equal(ys[i], 3.0 * i)


def test_calls_release_the_gil(engine: Engine):
    spin = engine.load(engine.compile_to_object(SPIN_IR).obj).function(
        "spin", ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64
    )
    flags = aligned_zeros(2, np.int32)
    limit = 1 << 32  # seconds of spinning: the flag stops it long before, unless the GIL is held
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(spin(flags.ctypes.data, limit)))
    worker.start()
    # This loop only runs while the kernel spins if the call released the GIL.
    deadline = time.monotonic() + 30
    while flags[1] == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    flags[0] = 1
    worker.join(timeout=60)
    assert result and result[0] < limit


def test_concurrent_compiles(engine: Engine):
    errors: list[BaseException] = []

    def work(i: int) -> None:
        try:
            ir = AXPB_IR.replace("@axpb", f"@axpb{i}")
            library = engine.load(engine.compile_to_object(ir).obj)
            library.address(f"axpb{i}")
        except BaseException as exc:  # reported below, a thread cannot raise into pytest
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


@pytest.mark.parametrize("shape", [0, 1, 7, (3, 5), (2, 3, 129)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.uint8])
def test_aligned_arrays(shape, dtype):
    a = aligned_empty(shape, dtype)
    z = aligned_zeros(shape, dtype)
    expected = (shape,) if isinstance(shape, int) else shape
    for arr in (a, z):
        assert arr.shape == expected and arr.dtype == dtype and arr.flags.c_contiguous
        # numpy may move the data pointer of an empty array; nothing is read through it
        assert arr.size == 0 or arr.ctypes.data % 64 == 0
    assert not z.any()
    wide = aligned_empty(shape, dtype, align=256)
    assert wide.size == 0 or wide.ctypes.data % 256 == 0


def test_aligned_rejects_bad_alignment():
    with pytest.raises(ValueError):
        aligned_empty(4, align=48)


def test_garbage_object_code_is_refused_before_llvm_sees_it():
    import pytest
    from graphrnn.runtime.jit import JitError, Library
    good = Engine().compile_to_object(
        "define void @f() {\n  ret void\n}\n").obj
    Library(good).address("f")
    for bad in (b"", b"\x00" * 100, good[:40], good[:-200] if len(good) > 300 else good[:60],
                b"\x7fELF\x02\x01" + bytes(range(200))):
        with pytest.raises(JitError):
            Library(bad)
