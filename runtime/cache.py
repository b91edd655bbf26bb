"""Content-keyed cache of compiled object code, in memory and on disk.

The key is a sha256 over the LLVM IR text, the host signature (CPU, features, llvmlite
version) and a version string from the caller, so any change to what produced the code
is a different entry. Disk entries are written atomically and carry a checksum; a bad
entry is deleted and recompiled. The disk is an optimisation only: when the directory
cannot be used, the cache silently keeps working in memory.

``GRAPHRNN_CACHE_DIR`` chooses the directory; otherwise ``$XDG_CACHE_HOME/graphrnn`` or
``~/.cache/graphrnn``.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

from .jit import host_signature

MAGIC = b"GRNNOBJ\x00"
FORMAT_VERSION = 1
# magic, format version, payload length, sha256 of the key, sha256 of the payload
_HEADER = struct.Struct("<8sIQ32s32s")
_SUFFIX = ".obj"


@dataclass
class CacheStats:
    """Counters for tests and debugging output."""

    hits: int = 0  # served from memory
    disk_hits: int = 0  # read from disk
    misses: int = 0  # compiled
    discarded: int = 0  # bad disk entries deleted
    write_errors: int = 0  # disk writes that failed (the entry stays in memory)


def default_cache_dir() -> Path:
    """``GRAPHRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphrnn``, else ``~/.cache/graphrnn``."""
    explicit = os.environ.get("GRAPHRNN_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "graphrnn"
    try:
        return Path.home() / ".cache" / "graphrnn"
    except RuntimeError:  # no home directory (some containers); the cache must not fail
        return Path(tempfile.gettempdir()) / "graphrnn-cache"


def cache_key(llvm_ir: str, version: str, host: Mapping[str, str]) -> str:
    """Hex sha256 identifying the object code compiled from `llvm_ir` on `host`."""
    digest = hashlib.sha256()
    for part in (version, json.dumps(dict(host), sort_keys=True), llvm_ir):
        data = part.encode()
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def _pack(key: str, payload: bytes) -> bytes:
    header = _HEADER.pack(
        MAGIC, FORMAT_VERSION, len(payload), bytes.fromhex(key), hashlib.sha256(payload).digest()
    )
    return header + payload


def _unpack(key: str, blob: bytes) -> bytes | None:
    """The payload of a disk entry, or None if it is truncated, corrupt or not ours."""
    if len(blob) < _HEADER.size:
        return None
    magic, fmt, length, key_digest, payload_digest = _HEADER.unpack_from(blob)
    payload = blob[_HEADER.size:]
    if (
        magic != MAGIC
        or fmt != FORMAT_VERSION
        or length != len(payload)
        or key_digest != bytes.fromhex(key)
        or payload_digest != hashlib.sha256(payload).digest()
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
        self.stats = CacheStats()
        self._host = dict(host) if host is not None else host_signature()
        self._memory: dict[str, bytes] = {}
        self._lock = threading.Lock()

    def key(self, llvm_ir: str, version: str) -> str:
        """The cache key of `llvm_ir` compiled by generator `version` on this host."""
        return cache_key(llvm_ir, version, self._host)

    def path(self, key: str) -> Path:
        """Where the disk entry for `key` lives."""
        return self.directory / f"{key}{_SUFFIX}"

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

    def load(self, key: str) -> bytes | None:
        """The entry for `key` from memory or disk, or None; bad disk entries are deleted."""
        with self._lock:
            data = self._memory.get(key)
            if data is not None:
                self.stats.hits += 1
                return data
        data = self._read(key)
        if data is not None:
            with self._lock:
                self._memory[key] = data
                self.stats.disk_hits += 1
        return data

    def store(self, key: str, data: bytes) -> None:
        """Keep `data` under `key` in memory and, when the directory allows it, on disk."""
        with self._lock:
            self._memory[key] = data
        try:
            self._write(key, data)
        except OSError:
            with self._lock:
                self.stats.write_errors += 1

    def _read(self, key: str) -> bytes | None:
        path = self.path(key)
        try:
            blob = path.read_bytes()
        except OSError:
            return None
        payload = _unpack(key, blob)
        if payload is None:
            with self._lock:
                self.stats.discarded += 1
            try:
                path.unlink()
            except OSError:
                pass  # another process may have replaced or removed it already
        return payload

    def _write(self, key: str, data: bytes) -> None:
        # Temp file in the same directory + os.replace: readers in other processes see
        # either the old entry or the complete new one, never a partial write.
        self.directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{key[:16]}.", suffix=".tmp", dir=self.directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(_pack(key, data))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path(key))
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
