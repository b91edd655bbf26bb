"""Content-keyed cache of compiled object code, in memory and on disk.

The key is a sha256 over the LLVM IR text, the host signature (CPU, features, llvmlite
version) and a version string from the caller, so any change to what produced the code
is a different entry. Disk entries are written atomically and carry an HMAC-SHA256 of the
key and payload under a per-user secret kept in the cache directory (runtime/cache_dir.py):
native code is loaded from these files and run, so an entry anyone else wrote (or forged
with a plain checksum) is rejected before it is loaded. Entries are opened without following
links, and only regular files of this user under a size cap are read (secure_files.py); a bad
entry is deleted and recompiled. The disk is an optimisation only: when the directory cannot
be used, the cache keeps working in memory (a bounded LRU: runtime/lru.py).

A second kind of entry (`.exe`) holds a whole program: the Executable's metadata (entry
points, ParamTable, arena sizes, io types, its Contract, as Python literal text) next to its object
code, keyed by the caller on the *structure* of the compilation rather than on the IR (see
graphrnn/fingerprint.py), so a hit skips the passes and the lowering. It is written and checked
like an object entry; metadata that does not parse as a well-formed Executable is deleted.

``GRAPHRNN_CACHE_DIR`` chooses the directory (``off``: memory only); otherwise
``$XDG_CACHE_HOME/graphrnn`` or ``~/.cache/graphrnn`` (cache_dir.py states the rules).
"""

from __future__ import annotations

import ast
import hashlib
import hmac
import json
import os
import struct
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, TypeVar

from graphrnn.executable import Contract, Executable
from graphrnn.flat import ParamTable, Slot
from graphrnn.ir import TensorType

from .cache_dir import CacheDir, default_cache_dir
from .forksafe import renew_after_fork
from .jit import JitError, host_signature
from .lru import LRU, kernel_bytes_limit

MAGIC = b"GRNNOBJ\x00"
FORMAT_VERSION = 2
# magic, format version, payload length, sha256 of the key, HMAC-SHA256 of all before + payload
_HEADER = struct.Struct("<8sIQ32s32s")
_MAC_AT = _HEADER.size - 32
_SUFFIX = ".obj"
_EXE_SUFFIX = ".exe"
_LENGTH = struct.Struct("<Q")
T = TypeVar("T")


@dataclass
class CacheStats:
    """Counters for tests and debugging output."""

    hits: int = 0  # served from memory (object code or whole programs)
    disk_hits: int = 0  # read from disk (object code or whole programs)
    misses: int = 0  # compiled
    discarded: int = 0  # bad disk entries deleted
    write_errors: int = 0  # disk writes that failed (the entry stays in memory)
    exe_hits: int = 0  # whole programs served (memory or disk): no passes, no lowering
    exe_misses: int = 0  # whole programs not found


def cache_key(llvm_ir: str, version: str, host: Mapping[str, str]) -> str:
    """Hex sha256 identifying the object code compiled from `llvm_ir` on `host`."""
    digest = hashlib.sha256()
    for part in (version, json.dumps(dict(host), sort_keys=True), llvm_ir):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _mac(secret: bytes, head: bytes, payload: bytes) -> bytes:
    mac = hmac.new(secret, head, hashlib.sha256)
    mac.update(payload)
    return mac.digest()


def _pack(key: str, payload: bytes, secret: bytes) -> bytes:
    head = _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), bytes.fromhex(key),
                        b"\0" * 32)[:_MAC_AT]
    return head + _mac(secret, head, payload) + payload


def _unpack(key: str, blob: bytes, secret: bytes) -> bytes | None:
    """The payload of a disk entry, or None if it is truncated, corrupt, or not written with
    this user's secret (a plain checksum anyone can recompute is not enough)."""
    if len(blob) < _HEADER.size or not secret:
        return None
    magic, fmt, length, key_digest, mac = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if (
        magic != MAGIC
        or fmt != FORMAT_VERSION
        or length != len(payload)
        or key_digest != bytes.fromhex(key)
        or not hmac.compare_digest(mac, _mac(secret, blob[:_MAC_AT], payload))
    ):
        return None
    return payload


class KernelCache:
    """Object code by content key: a per-instance memory map backed by a directory."""

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        host: Mapping[str, str] | None = None,
    ) -> None:
        self.directory = Path(directory) if directory is not None else default_cache_dir()
        self.disk = CacheDir(self.directory)
        self.stats = CacheStats()
        self._host = dict(host) if host is not None else None
        self._memory: LRU[str, bytes] = LRU(size=len, bound=kernel_bytes_limit)
        self._lock = threading.Lock()
        renew_after_fork(self, _lock=threading.Lock)

    def key(self, llvm_ir: str, version: str) -> str:
        """The cache key of `llvm_ir` compiled by generator `version` on this host."""
        return cache_key(llvm_ir, version, self._host or host_signature())

    def path(self, key: str, suffix: str = _SUFFIX) -> Path:
        """Where the disk entry for `key` lives (or would, for a memory-only cache)."""
        return (self.directory or Path(".")) / f"{key}{suffix}"

    def get_or_compile(
        self, llvm_ir: str, version: str, compile_fn: Callable[[str], bytes]
    ) -> bytes:
        """Cached object code for `llvm_ir`, calling ``compile_fn(llvm_ir)`` on a miss."""
        key = self.key(llvm_ir, version)
        data = self.load(key)
        if data is None:
            data = compile_fn(llvm_ir)
            with self._lock:
                self.stats.misses += 1
            self.store(key, data)
        return data

    def get_or_load(self, llvm_ir: str, version: str, compile_fn: Callable[[str], bytes],
                    load_fn: Callable[[bytes], T]) -> tuple[bytes, T]:
        """(object code, ``load_fn(object code)``) as `get_or_compile`; an entry that
        authenticates but does not load (JitError: written by another LLVM, say) is
        replaced by a fresh compile, so it fails once, not for ever."""
        data = self.get_or_compile(llvm_ir, version, compile_fn)
        try:
            return data, load_fn(data)
        except JitError:
            key = self.key(llvm_ir, version)
            self.discard(key, _SUFFIX)
            data = compile_fn(llvm_ir)
            with self._lock:
                self.stats.misses += 1
            self.store(key, data)
            return data, load_fn(data)

    def load(self, key: str, suffix: str = _SUFFIX) -> bytes | None:
        """The entry for `key` from memory or disk, or None; bad disk entries are deleted."""
        data = self._memory.get(key)
        if data is not None:
            with self._lock:
                self.stats.hits += 1
            return data
        data = self._read(key, suffix)
        if data is not None:
            self._memory[key] = data
            with self._lock:
                self.stats.disk_hits += 1
        return data

    def store(self, key: str, data: bytes, suffix: str = _SUFFIX) -> None:
        """Keep `data` under `key` in memory and, when the directory allows it, on disk."""
        self._memory[key] = data
        try:
            self._write(key, data, suffix)
        except OSError:
            with self._lock:
                self.stats.write_errors += 1

    # -- whole programs
    def load_executable(self, key: str) -> tuple[Executable, bytes] | None:
        """(Executable, object code) stored under `key`, or None; bad entries are deleted."""
        data = self.load(key, _EXE_SUFFIX)
        found = None
        if data is not None:
            try:
                found = decode_executable(data)
            except Exception:  # noqa: BLE001  (whatever is wrong with it, it is not ours)
                self.discard(key, _EXE_SUFFIX)
        with self._lock:
            if found is None:
                self.stats.exe_misses += 1
            else:
                self.stats.exe_hits += 1
        return found

    def store_executable(self, key: str, exe: Executable, obj: bytes) -> None:
        """Keep a compiled program under `key` (skipped if its metadata is not literal data)."""
        data = encode_executable(exe, obj)
        if data is not None:
            self.store(key, data, _EXE_SUFFIX)

    def discard(self, key: str, suffix: str = _EXE_SUFFIX) -> None:
        """Forget the entry under `key`, in memory and on disk (it was found to be bad)."""
        self._memory.pop(key)
        with self._lock:
            self.stats.discarded += 1
        self.disk.remove(f"{key}{suffix}")

    def _read(self, key: str, suffix: str = _SUFFIX) -> bytes | None:
        name = f"{key}{suffix}"
        try:
            blob, problem = self.disk.read(name)
        except OSError:
            return None
        payload = None if blob is None else _unpack(key, blob, self.disk.secret)
        if problem or (blob is not None and payload is None):
            with self._lock:
                self.stats.discarded += 1
            if not problem:
                self.disk.remove(name)  # ours, but bad; another process may have gone first
        return payload

    def _write(self, key: str, data: bytes, suffix: str = _SUFFIX) -> None:
        # CacheDir.write renames a complete temporary file over the entry: readers in other
        # processes see either the old entry or the new one, never a partial write.
        if self.disk.ready(create=True):
            self.disk.write(f"{key}{suffix}", _pack(key, data, self.disk.secret))


# ----------------------------------------------------------------------------- executables

def encode_executable(exe: Executable, obj: bytes) -> bytes | None:
    """The payload of a program entry: metadata length, metadata text, object code.

    None when the metadata is not plain literal data (it could not be read back as it is).
    """
    doc = {"entry_points": tuple(exe.entry_points),
           "table": (tuple((k, s.offset, tuple(s.shape)) for k, s in exe.table.slots.items()),
                     exe.table.size),
           "arena_floats": exe.arena_floats,
           "io": tuple((tuple(t.shape), t.dtype) for t in exe.io),
           "contract": exe.contract.as_literal()}
    text = repr(doc)
    try:
        if ast.literal_eval(text) != doc:
            return None
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    meta = text.encode()
    return _LENGTH.pack(len(meta)) + meta + obj


def decode_executable(payload: bytes) -> tuple[Executable, bytes]:
    """(Executable, object code) from a program entry; ValueError when it is malformed."""
    (length,) = _LENGTH.unpack_from(payload)
    if length > len(payload) - _LENGTH.size:
        raise ValueError("truncated metadata")
    doc = ast.literal_eval(payload[_LENGTH.size:_LENGTH.size + length].decode())
    obj = payload[_LENGTH.size + length:]
    _expect(isinstance(doc, dict) and set(doc) == {"entry_points", "table", "arena_floats",
                                                   "io", "contract"}, "fields")
    entries, (slots, size), arena, io, contract = (doc[k] for k in (
        "entry_points", "table", "arena_floats", "io", "contract"))
    _expect(isinstance(entries, tuple) and entries and all(isinstance(e, str) for e in entries),
            "entry points")
    _expect(all(isinstance(k, str) and _ints(o) and isinstance(sh, tuple) and _ints(*sh)
                for k, o, sh in slots) and _ints(size, arena), "parameter table")
    _expect(all(isinstance(sh, tuple) and all(isinstance(d, (int, str)) for d in sh)
                and dt in ("float32", "int64") for sh, dt in io), "io types")
    _expect(isinstance(contract, dict) and set(contract) == Contract.field_names(), "contract")
    _expect(all(isinstance(contract[k], tuple) for k in ("inputs", "outputs", "arena", "checks"))
            and _ints(*contract["arena"]) and isinstance(contract["symbol"], (str, type(None)))
            and isinstance(contract["pack"], (tuple, type(None)))
            and isinstance(contract["profile"], (tuple, type(None)))
            and _ints(contract["extras"], contract["kernels"]), "contract")
    _expect(isinstance(contract["more"], tuple) and all(isinstance(m, str)
                                                        for m in contract["more"])
            and isinstance(contract["arena_more"], tuple)
            and all(isinstance(t, tuple) and len(t) == 2 and isinstance(t[0], tuple)
                    and all(isinstance(d, str) for d in t[0]) and _ints(t[1])
                    for t in contract["arena_more"]), "contract sizes")
    _expect(len(obj) > 0, "object code")
    table = ParamTable({k: Slot(o, sh) for k, o, sh in slots}, size)
    exe = Executable("", entries, table, arena, tuple(TensorType(sh, dt) for sh, dt in io),
                     Contract(**contract))
    return exe, obj


def _ints(*values: object) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values)


def _expect(ok: bool, what: str) -> None:
    if not ok:
        raise ValueError(f"bad program entry: {what}")
