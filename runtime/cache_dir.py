"""Where the kernel cache lives on disk, and whether that place can be trusted.

The directory is ``GRAPHRNN_CACHE_DIR`` (``off`` keeps the cache in memory only), else
``$XDG_CACHE_HOME/graphrnn``, else ``~/.cache/graphrnn``. Never a shared path: without a
usable home directory (none, or not a directory owned by this user) there is no disk cache.

The cache holds native code that is loaded and run, so the directory must be one only this
user can write: it is created mode 0700 whatever the umask, and a directory (or its secret)
owned by another user or writable by group or others is refused. The cache then runs in
memory only, after one `CacheWarning` naming the path and the fix.
"""
from __future__ import annotations

import os
import threading
import warnings
from pathlib import Path

from .forksafe import renew_after_fork
from .secure_files import (SECRET_NAME, TMP_PREFIX, TMP_SUFFIX, make_private_dir,
                           owned_by_another, read_owned, remove_orphans, remove_untrusted,
                           user_secret, write_private)

OFF = ("off", "none", "0")          # GRAPHRNN_CACHE_DIR values that turn the disk cache off
MAX_ENTRY_BYTES = 8 << 20           # entries are 6-30 KB; anything above the cap is refused

_WARNED: set[str] = set()


class CacheWarning(UserWarning):
    """The kernel cache cannot use its directory and keeps compiled code in memory only."""


def warn_once(what: str, message: str) -> None:
    """Warn with `message` the first time `what` is seen in this process."""
    if what not in _WARNED:
        _WARNED.add(what)
        warnings.warn(message, CacheWarning, stacklevel=4)


def usable_home() -> Path | None:
    """The home directory if it exists and belongs to this user, else None."""
    try:
        home = Path.home()
        st = os.stat(home)
    except (RuntimeError, KeyError, OSError):
        return None
    return home if os.path.isdir(home) and st.st_uid == os.geteuid() else None


def default_cache_dir() -> Path | None:
    """``GRAPHRNN_CACHE_DIR``, else ``$XDG_CACHE_HOME/graphrnn``, else ``~/.cache/graphrnn``;
    None when the disk cache is off or there is no usable home (said once, as a warning)."""
    explicit = os.environ.get("GRAPHRNN_CACHE_DIR", "").strip()
    if explicit:
        return None if explicit.lower() in OFF else Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "graphrnn"
    home = usable_home()
    if home is None:
        warn_once("<no home>", "graphrnn: no usable home directory (HOME="
                  f"{os.environ.get('HOME', '<unset>')}), so compiled kernels are cached in "
                  "memory only; set GRAPHRNN_CACHE_DIR to a directory of your own to keep "
                  "them on disk")
        return None
    return home / ".cache" / "graphrnn"


class CacheDir:
    """One cache directory: checked once before first use, then entries read and written
    through the checks of secure_files; `secret` is the key that authenticates entries."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self.secret = b""
        self.refused = ""           # why the directory is not used ("" when it is, or may be)
        self._ready = False
        self._lock = threading.Lock()
        renew_after_fork(self, _lock=threading.Lock)

    def ready(self, create: bool) -> bool:
        """Whether entries can be read (and, with `create`, written) here; makes the
        directory and its secret on first use. OSError when the directory cannot be made."""
        if self.refused or self.path is None:
            return False
        if self._ready:
            return True
        with self._lock:
            if self._ready or self.refused:
                return self._ready and not self.refused
            if not create and not os.path.lexists(self.path):
                return False                # nothing to read yet: made by the first write
            problem = make_private_dir(self.path)
            if problem:
                self._refuse(problem)
                return False
            secret, problem = user_secret(self.path)
            if secret is None:
                self._refuse(problem, self.path / SECRET_NAME)
                return False
            try:
                remove_orphans(self.path, TMP_PREFIX, TMP_SUFFIX)
            except OSError:
                pass
            self.secret = secret
            self._ready = True
            return True

    def _refuse(self, problem: str, what: Path | None = None) -> None:
        """Stop using the directory, saying once why and what to do."""
        what = what or self.path
        self.refused = f"{what} is {problem}"
        fix = (f"chmod go-rwx {what}" if "by group or others" in problem
               else f"remove {what}")
        warn_once(str(what), f"graphrnn: the kernel cache cannot trust {what}: it is "
                  f"{problem}. Whoever can write the cache can run code in this process, so "
                  f"compiled kernels are now cached in memory only. Fix: {fix}, or set "
                  "GRAPHRNN_CACHE_DIR to a directory only you can write (or to off)")

    def read(self, name: str) -> tuple[bytes | None, str]:
        """(contents, '') of entry `name`; (None, '') when absent; (None, why) when refused,
        after deleting it if it is ours (another user's file is left alone)."""
        if not self.ready(create=False):
            return None, ""
        path = self.path / name
        data, problem = read_owned(path, MAX_ENTRY_BYTES)
        if problem and owned_by_another(path):
            if "owned by" not in problem:
                problem = f"{problem} owned by another user"
            self._refuse(problem, path)     # planted in our directory: trust none of it
        elif problem:
            remove_untrusted(path)
        return data, problem

    def write(self, name: str, data: bytes) -> bool:
        """Write entry `name` atomically; False when the directory is not used (or the entry
        is above the cap). OSError when writing fails."""
        if len(data) > MAX_ENTRY_BYTES or self.refused or not self.ready(create=True):
            return False
        write_private(self.path, name, data)
        return True

    def remove(self, name: str) -> None:
        """Delete entry `name` if it is ours."""
        if self.path is not None:
            remove_untrusted(self.path / name)


__all__ = ["CacheDir", "CacheWarning", "default_cache_dir", "usable_home", "MAX_ENTRY_BYTES",
           "OFF"]
