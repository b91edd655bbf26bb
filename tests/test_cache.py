"""The kernel cache: keys, memory and disk hits, bad entries, concurrency, unusable dirs."""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
from pathlib import Path

import pytest

from graphrnn.runtime.cache import KernelCache, _HEADER, cache_key, default_cache_dir
from graphrnn.runtime.jit import Engine
from graphrnn.runtime.secure_files import SECRET_NAME

HOST = {"cpu": "testcpu", "features": "+x"}
IR = "define void @f() {\n  ret void\n}\n"


class Compiler:
    """A stand-in compile_fn that counts its calls."""

    def __init__(self, payload: bytes = b"\x7fELF object code") -> None:
        self.payload = payload
        self.calls = 0

    def __call__(self, llvm_ir: str) -> bytes:
        self.calls += 1
        return self.payload


def _only_entry(directory: Path) -> Path:
    entries = sorted(p for p in directory.iterdir() if p.name != SECRET_NAME)
    assert len(entries) == 1, entries
    return entries[0]


def test_default_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHRNN_CACHE_DIR", str(tmp_path / "explicit"))
    assert default_cache_dir() == tmp_path / "explicit"
    assert KernelCache(host=HOST).directory == tmp_path / "explicit"
    monkeypatch.delenv("GRAPHRNN_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "graphrnn"
    monkeypatch.delenv("XDG_CACHE_HOME")
    (tmp_path / "home").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_cache_dir() == tmp_path / "home" / ".cache" / "graphrnn"


def test_key_covers_ir_version_and_host():
    base = cache_key(IR, "v1", HOST)
    assert base == cache_key(IR, "v1", dict(reversed(list(HOST.items()))))
    assert len({
        base,
        cache_key(IR + " ", "v1", HOST),
        cache_key(IR, "v2", HOST),
        cache_key(IR, "v1", {**HOST, "cpu": "other"}),
        cache_key("v1" + IR, "", HOST),  # boundaries between the parts matter
    }) == 5


def test_memory_then_disk_hits(tmp_path):
    compiler = Compiler()
    cache = KernelCache(tmp_path, host=HOST)
    assert cache.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert cache.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert compiler.calls == 1
    assert (cache.stats.misses, cache.stats.hits, cache.stats.disk_hits) == (1, 1, 0)

    fresh = KernelCache(tmp_path, host=HOST)  # a new process, in effect
    assert fresh.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert compiler.calls == 1 and fresh.stats.disk_hits == 1 and fresh.stats.misses == 0
    assert fresh.get_or_compile(IR, "v2", compiler) == compiler.payload
    assert compiler.calls == 2 and len(list(tmp_path.glob("*.obj"))) == 2


def test_load_and_store(tmp_path):
    cache = KernelCache(tmp_path, host=HOST)
    key = cache.key(IR, "v1")
    assert cache.load(key) is None
    cache.store(key, b"data")
    assert cache.load(key) == b"data"
    assert KernelCache(tmp_path, host=HOST).load(key) == b"data"
    assert cache.path(key).parent == tmp_path


def _corrupt(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[-3] ^= 0x40
    path.write_bytes(bytes(blob))


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[:-5])


def _header_only(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: _HEADER.size - 1])


def _foreign(path: Path) -> None:
    path.write_bytes(b"not a graphrnn cache entry at all")


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _wrong_format_version(path: Path) -> None:
    blob = bytearray(path.read_bytes())
    blob[8] += 1
    path.write_bytes(bytes(blob))


@pytest.mark.parametrize(
    "damage", [_corrupt, _truncate, _header_only, _foreign, _empty, _wrong_format_version]
)
def test_bad_entries_are_discarded_and_recompiled(tmp_path, damage):
    compiler = Compiler(b"payload" * 100)
    KernelCache(tmp_path, host=HOST).get_or_compile(IR, "v1", compiler)
    damage(_only_entry(tmp_path))

    cache = KernelCache(tmp_path, host=HOST)
    assert cache.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert compiler.calls == 2 and cache.stats.discarded == 1 and cache.stats.misses == 1
    # The recompiled entry replaced the bad one and is good again.
    again = KernelCache(tmp_path, host=HOST)
    assert again.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert again.stats.disk_hits == 1 and compiler.calls == 2


def test_entry_under_another_key_is_rejected(tmp_path):
    cache = KernelCache(tmp_path, host=HOST)
    cache.store(cache.key(IR, "v1"), b"one")
    other = cache.key(IR, "v2")
    cache.path(other).write_bytes(cache.path(cache.key(IR, "v1")).read_bytes())
    fresh = KernelCache(tmp_path, host=HOST)
    assert fresh.load(other) is None and fresh.stats.discarded == 1
    assert not fresh.path(other).exists()


def test_unusable_directory_degrades_to_memory(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_bytes(b"")
    compiler = Compiler()
    cache = KernelCache(blocker / "cache", host=HOST)  # cannot mkdir below a regular file
    assert cache.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert cache.get_or_compile(IR, "v1", compiler) == compiler.payload
    assert compiler.calls == 1 and cache.stats.write_errors == 1 and cache.stats.hits == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write to read-only directories")
def test_read_only_directory_degrades_to_memory(tmp_path):
    tmp_path.chmod(0o500)
    try:
        cache = KernelCache(tmp_path, host=HOST)
        assert cache.get_or_compile(IR, "v1", Compiler()) == Compiler().payload
        assert cache.stats.write_errors == 1
    finally:
        tmp_path.chmod(0o700)


_WORKER = """
import hashlib, sys
from graphrnn.runtime.cache import KernelCache
directory = sys.argv[1]
payload = hashlib.sha256(b"kernel").digest() * 8192  # 256 KiB
for i in range(60):
    cache = KernelCache(directory, host={"cpu": "testcpu"})
    assert cache.get_or_compile("ir", "v1", lambda ir: payload) == payload
    cache.store(cache.key("ir", "v1"), payload)  # rewrite it while the others read
    assert cache.stats.discarded == 0 and cache.stats.write_errors == 0, cache.stats
"""


def test_concurrent_processes(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    procs = [
        subprocess.Popen([sys.executable, "-c", _WORKER, str(tmp_path)], env=env,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
    entry = _only_entry(tmp_path)  # no temp files left behind
    assert entry.suffix == ".obj"


def test_real_object_code_round_trip(tmp_path):
    ir = """
    define float @twice(float %x) {
      %y = fmul float %x, 2.0
      ret float %y
    }
    """
    engine = Engine()
    calls = []

    def compile_fn(text: str) -> bytes:
        calls.append(text)
        return engine.compile_to_object(text).obj

    for _ in range(2):  # the second round reads the disk entry through a fresh cache
        obj = KernelCache(tmp_path).get_or_compile(ir, "v1", compile_fn)
        twice = engine.load(obj).function("twice", ctypes.c_float, ctypes.c_float)
        assert twice(1.25) == 2.5 and len(calls) == 1
