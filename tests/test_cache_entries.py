"""Kernel cache entries that are not what they seem: refused fast, in bounded memory.

A FIFO, a symbolic link to /dev/zero or to a huge file, a huge (sparse) file, a directory:
each is refused within a second without reading more than the size cap, deleted when it is
ours, and compiled afresh. An entry that authenticates but does not load is replaced once
instead of failing every later compile. Temporaries left by killed writers are removed.
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

import attacker
import graphrnn as gr
from graphrnn.runtime.cache import KernelCache
from graphrnn.runtime.cache_dir import MAX_ENTRY_BYTES
from graphrnn.runtime.secure_files import ORPHAN_AGE, TMP_PREFIX, TMP_SUFFIX

HOST = {"cpu": "testcpu"}
HUGE = 3 << 30                          # 3 GB, sparse: no disk behind it


def within(seconds: float, call: Callable[[], Any]) -> Any:
    """`call()` in a daemon thread; fails (rather than hangs) when it takes longer."""
    out: dict[str, Any] = {}

    def run() -> None:
        try:
            out["value"] = call()
        except BaseException as e:  # noqa: BLE001  (re-raised in the test's thread)
            out["error"] = e
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"still running after {seconds} s"
    if "error" in out:
        raise out["error"]
    return out["value"]


def sparse_file(path: Path, size: int = HUGE) -> None:
    with open(path, "wb") as f:
        f.truncate(size)


def fifo(path: Path, scratch: Path) -> None:
    os.mkfifo(path)


def link_to_dev_zero(path: Path, scratch: Path) -> None:
    path.symlink_to("/dev/zero")


def link_to_huge_file(path: Path, scratch: Path) -> None:
    sparse_file(scratch / "huge")
    path.symlink_to(scratch / "huge")


def huge_file(path: Path, scratch: Path) -> None:
    sparse_file(path)


def just_over_the_cap(path: Path, scratch: Path) -> None:
    sparse_file(path, MAX_ENTRY_BYTES + 1)


def directory(path: Path, scratch: Path) -> None:
    path.mkdir()


@pytest.mark.parametrize("plant", [fifo, link_to_dev_zero, link_to_huge_file, huge_file,
                                   just_over_the_cap, directory])
def test_an_entry_that_is_not_a_small_regular_file_is_refused(tmp_path, plant) -> None:
    kernels = tmp_path / "kernels"
    cache = KernelCache(kernels, host=HOST)
    cache.store(cache.key("other", "v1"), b"makes the directory and its secret")
    key = cache.key("ir", "v1")
    plant(cache.path(key), tmp_path)
    fresh = KernelCache(kernels, host=HOST)
    tracemalloc.start()
    try:
        start = time.perf_counter()
        assert within(5.0, lambda: fresh.load(key)) is None
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert seconds < 1.0 and peak < 4 << 20, (seconds, peak)
    assert fresh.stats.discarded == 1 and not os.path.lexists(cache.path(key))  # ours: gone
    assert fresh.get_or_compile("ir", "v1", lambda ir: b"compiled") == b"compiled"
    assert KernelCache(kernels, host=HOST).load(key) == b"compiled"


def test_another_users_odd_entry_is_left_alone(tmp_path) -> None:
    cache = KernelCache(tmp_path / "kernels", host=HOST)
    cache.store(cache.key("other", "v1"), b"x")
    key = cache.key("ir", "v1")
    link_to_dev_zero(cache.path(key), tmp_path)
    attacker.give_away(cache.path(key))
    with pytest.warns(UserWarning, match="another user"):
        assert within(5.0, lambda: KernelCache(cache.directory, host=HOST).load(key)) is None
    assert cache.path(key).is_symlink()


# ----------------------------------------------------------------------------- loading

def elf_for_another_machine() -> bytes:
    blob = bytearray(4096)
    blob[:4] = b"\x7fELF"
    blob[4:6] = b"\x02\x01"
    blob[16:20] = (1).to_bytes(2, "little") + (183).to_bytes(2, "little")    # AArch64
    return bytes(blob)


@pytest.mark.parametrize("bad", ["another machine's ELF", "random bytes"])
def test_an_authentic_entry_that_does_not_load_is_replaced_once(tmp_path, bad) -> None:
    v = attacker.victim(tmp_path / "reference")
    kernels = tmp_path / "kernels"
    payload = elf_for_another_machine() if bad != "random bytes" else os.urandom(20000)
    KernelCache(kernels).store(v.object_key, payload)        # with our MAC: authentic
    cache = KernelCache(kernels)
    got = gr.compile(v.model, cache=cache)(v.x)
    np.testing.assert_allclose(got, v.expected, rtol=1e-4, atol=1e-5)
    assert cache.stats.discarded == 1
    again = KernelCache(kernels)
    assert again.load(v.object_key)[:4] == b"\x7fELF" and again.stats.disk_hits == 1
    compiled = gr.compile(v.model, cache=KernelCache(kernels))
    np.testing.assert_allclose(compiled(v.x), v.expected, rtol=1e-4, atol=1e-5)
    assert compiled.compiles == 0               # the whole program now comes from the disk


# ----------------------------------------------------------------------------- orphans

def test_temporaries_of_killed_writers_are_removed_by_the_next_use(tmp_path) -> None:
    kernels = tmp_path / "kernels"
    KernelCache(kernels, host=HOST).store("0" * 64, b"x")
    old = time.time() - ORPHAN_AGE - 60
    names = {"stale": f"{TMP_PREFIX}abc{TMP_SUFFIX}", "fresh": f"{TMP_PREFIX}def{TMP_SUFFIX}",
             "foreign": f"{TMP_PREFIX}ghi{TMP_SUFFIX}", "unrelated": ".other.tmp"}
    for what, name in names.items():
        (kernels / name).write_bytes(b"partial entry" * 100)
        if what != "fresh":
            os.utime(kernels / name, (old, old))
    attacker.give_away(kernels / names["foreign"])
    KernelCache(kernels, host=HOST).load("0" * 64)
    left = {p.name for p in kernels.iterdir()}
    assert names["stale"] not in left
    assert {names["fresh"], names["foreign"], names["unrelated"]} <= left


def test_an_entry_above_the_cap_is_kept_in_memory_only(tmp_path) -> None:
    cache = KernelCache(tmp_path, host=HOST)
    big = b"\0" * (MAX_ENTRY_BYTES + 1)
    cache.store(cache.key("ir", "v1"), big)
    assert cache.load(cache.key("ir", "v1")) == big
    assert not cache.path(cache.key("ir", "v1")).exists() and cache.stats.write_errors == 0


def test_the_memory_cache_is_bounded(tmp_path) -> None:
    limits = gr.cache_limits()
    try:
        gr.set_cache_limits(kernel_bytes=10_000)
        cache = KernelCache(tmp_path, host=HOST)
        for i in range(50):
            cache.store(cache.key(f"ir{i}", "v1"), bytes(1000))
        assert cache._memory.total <= 10_000 and len(cache._memory) == 10
        assert cache.load(cache.key("ir0", "v1")) == bytes(1000)      # back from the disk
        assert cache.stats.disk_hits == 1
    finally:
        gr.set_cache_limits(kernel_bytes=limits.kernel_bytes, programs=limits.programs)


def test_a_compiled_model_keeps_a_bounded_number_of_programs(tmp_path) -> None:
    v = attacker.victim(tmp_path / "reference")
    limits = gr.cache_limits()
    try:
        gr.set_cache_limits(programs=3)
        # one program per batch size
        fast = gr.compile(v.model, cache=KernelCache(tmp_path / "kernels"), specialize=True)
        for batch in (1, 2, 3, 4, 5, 1):
            x = np.repeat(v.x[:1], batch, axis=0)
            np.testing.assert_allclose(fast(x), gr.interpret(v.model, x), rtol=1e-4, atol=1e-5)
        assert len(fast.programs) == 3
        assert [t[0].shape[0] for t in fast.programs] == [4, 5, 1]      # least recent gone
    finally:
        gr.set_cache_limits(kernel_bytes=limits.kernel_bytes, programs=limits.programs)
    with pytest.raises(ValueError, match="positive integer"):
        gr.set_cache_limits(programs=0)


def test_the_limits_come_from_the_environment() -> None:
    env = dict(os.environ, GRAPHRNN_CACHE_MEMORY="3", GRAPHRNN_MAX_PROGRAMS="7")
    out = subprocess.run([sys.executable, "-c", "import graphrnn as gr; "
                          "l = gr.cache_limits(); print(l.kernel_bytes, l.programs)"],
                         env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(3 << 20), "7"]
