"""The kernel cache against another local user: planted code is never run.

Tests run as root in CI, so "another user" is a uid the files are chowned to (attacker.py), and
permission bits are checked by the cache itself (root opens any file whatever its mode).
Each attack plants native code that would create a marker file if it ever ran; the victim
must get the interpreter's result and the marker must not exist. A positive control shows the
planted code does create the marker when loaded directly.
"""
from __future__ import annotations

import ctypes
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
import pytest

import attacker
import graphrnn as gr
from graphrnn.runtime.cache import KernelCache
from graphrnn.runtime import cache_dir
from graphrnn.runtime.cache_dir import CacheWarning, default_cache_dir
from graphrnn.runtime.jit import Library
from graphrnn.runtime.secure_files import SECRET_NAME

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def victim(tmp_path_factory: pytest.TempPathFactory) -> attacker.Victim:
    return attacker.victim(tmp_path_factory.mktemp("reference"))


@pytest.fixture
def marker(tmp_path: Path) -> Path:
    return tmp_path / "planted_code_ran"


def run_victim(v: attacker.Victim, cache: KernelCache) -> np.ndarray:
    return gr.compile(v.model, cache=cache)(v.x)


def assert_never_ran(v: attacker.Victim, cache: KernelCache, marker: Path) -> None:
    np.testing.assert_allclose(run_victim(v, cache), v.expected, rtol=1e-4, atol=1e-5)
    assert not marker.exists(), "the planted code ran"


def test_the_planted_code_runs_when_loaded_directly(victim, marker) -> None:
    """Positive control: the code the attacks plant does leave its marker when run."""
    lib = Library(attacker.evil_object(victim, marker))
    fn = lib.function(victim.exe.entry_points[0], None, *[ctypes.c_void_p] * 3, ctypes.c_int64)
    fn(None, None, None, 0)
    assert marker.exists()


# ----------------------------------------------------------------------------- the directory

@pytest.mark.parametrize("setup", ["owned by another user", "world-writable",
                                   "group-writable"])
def test_a_planted_entry_in_an_untrusted_directory_is_never_run(victim, marker, tmp_path,
                                                                 setup) -> None:
    shared = tmp_path / "graphrnn-cache"        # an attacker made it first, with their secret
    planted = attacker.plant(victim, shared, attacker.evil_object(victim, marker),
                             "attacker secret")
    if setup == "owned by another user":
        attacker.give_away(shared, shared / SECRET_NAME, *planted)
        shared.chmod(0o755)
    else:
        shared.chmod(0o777 if setup == "world-writable" else 0o770)
    before = sorted(p.name for p in shared.iterdir())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = KernelCache(shared)
        assert_never_ran(victim, cache, marker)
        assert_never_ran(victim, cache, marker)
    ours = [w for w in caught if issubclass(w.category, CacheWarning)]
    assert len(ours) == 1, [str(w.message) for w in caught]     # one warning, not one a call
    text = str(ours[0].message)
    assert str(shared) in text and "Fix:" in text and "memory only" in text
    assert sorted(p.name for p in shared.iterdir()) == before   # nothing written there
    assert cache.disk.refused and cache.stats.disk_hits == 0


def test_graphrnn_cache_dir_follows_the_same_rules(victim, marker, tmp_path,
                                                   monkeypatch) -> None:
    shared = tmp_path / "everyone"
    attacker.plant(victim, shared, attacker.evil_object(victim, marker), "attacker secret")
    shared.chmod(0o777)
    monkeypatch.setenv("GRAPHRNN_CACHE_DIR", str(shared))
    with pytest.warns(CacheWarning, match=re.escape(str(shared))):
        cache = KernelCache()
        assert_never_ran(victim, cache, marker)
    monkeypatch.setenv("GRAPHRNN_CACHE_DIR", "off")
    assert default_cache_dir() is None and KernelCache().directory is None


def test_no_home_means_memory_only_never_a_shared_path(victim, tmp_path, monkeypatch) -> None:
    for var in ("GRAPHRNN_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    foreign_home = tmp_path / "not-mine"
    foreign_home.mkdir()
    attacker.give_away(foreign_home)
    monkeypatch.setattr(cache_dir, "_WARNED", set())
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for home in (tmp_path / "missing", foreign_home):
            monkeypatch.setenv("HOME", str(home))
            assert default_cache_dir() is None
        cache = KernelCache()
    said = [str(w.message) for w in caught if issubclass(w.category, CacheWarning)]
    assert len(said) == 1 and "no usable home" in said[0], said        # said once
    assert cache.directory is None
    np.testing.assert_allclose(run_victim(victim, cache), victim.expected, rtol=1e-4,
                               atol=1e-5)
    assert cache.stats.write_errors == 0 and cache.stats.misses >= 1


def test_the_directory_is_made_0700_whatever_the_umask(tmp_path) -> None:
    old = os.umask(0)
    try:
        cache = KernelCache(tmp_path / "fresh" / "kernels")
        cache.store(cache.key("ir", "v1"), b"payload")
    finally:
        os.umask(old)
    mode = {p.name: stat.S_IMODE(p.stat().st_mode) for p in cache.directory.iterdir()}
    assert stat.S_IMODE(cache.directory.stat().st_mode) == 0o700
    assert set(mode.values()) == {0o600} and SECRET_NAME in mode and len(mode) == 2


# ----------------------------------------------------------------------------- the entries

@pytest.mark.parametrize("form", ["v1 checksum", "recomputed checksum", "attacker secret"])
def test_an_entry_without_our_mac_is_never_run(victim, marker, tmp_path, form) -> None:
    """A replaced entry in our own directory: forged with the checksum anyone can compute, or
    MACed under a secret that is not ours (here, one the attacker swapped in first)."""
    ours = tmp_path / "ours"
    KernelCache(ours).store("0" * 64, b"makes the directory and its secret")
    secret = (ours / SECRET_NAME).read_bytes()
    attacker.plant(victim, ours / "elsewhere", attacker.evil_object(victim, marker), form)
    for p in (ours / "elsewhere").iterdir():
        if p.name != SECRET_NAME:
            p.rename(ours / p.name)
    cache = KernelCache(ours)
    assert_never_ran(victim, cache, marker)
    assert cache.stats.discarded >= 1 and (ours / SECRET_NAME).read_bytes() == secret
    fresh = KernelCache(ours)                   # the entries were replaced by good ones
    assert_never_ran(victim, fresh, marker)
    assert fresh.stats.exe_hits == 1 and fresh.stats.misses == 0


def test_another_users_entry_in_our_directory_is_ignored(victim, marker, tmp_path) -> None:
    ours = tmp_path / "ours"
    KernelCache(ours).store("0" * 64, b"makes the directory and its secret")
    planted = attacker.plant(victim, ours, attacker.evil_object(victim, marker),
                             "attacker secret")      # MACed with our own secret, even
    attacker.give_away(*planted)
    with pytest.warns(CacheWarning, match=re.escape(str(planted[0]))):
        assert_never_ran(victim, KernelCache(ours), marker)
    assert all(p.exists() and p.stat().st_uid == attacker.OTHER_UID for p in planted)


@pytest.mark.parametrize("setup", ["owned by another user", "readable by others"])
def test_a_secret_that_is_not_private_is_not_used(tmp_path, setup) -> None:
    directory = tmp_path / "kernels"
    KernelCache(directory).store("0" * 64, b"x")
    secret = directory / SECRET_NAME
    first = secret.read_bytes()
    if setup == "owned by another user":
        attacker.give_away(secret)
        with pytest.warns(CacheWarning, match=re.escape(str(secret))):
            assert KernelCache(directory).load("0" * 64) is None
        assert secret.read_bytes() == first
    else:
        secret.chmod(0o644)                     # others may have read it: a new one is made
        assert KernelCache(directory).load("0" * 64) is None
        assert secret.read_bytes() != first and stat.S_IMODE(secret.stat().st_mode) == 0o600


def test_the_local_attacker_table_names_real_tests() -> None:
    text = (ROOT / "docs" / "hostile_inputs.md").read_text()
    section = text[text.index("## Local attacker"):]
    section = section[:section.index("\n## ", 1)] if "\n## " in section[1:] else section
    named = re.findall(r"`(test_\w+\.py)::(test_\w+)", section)
    assert len(named) >= 10, named
    for module, function in named:
        assert f"def {function}(" in (ROOT / "tests" / module).read_text(), (module, function)
