"""Files another local user may have planted: checked before they are trusted or read.

    problem = make_private_dir(path)         # "" or why the directory cannot be trusted
    data, problem = read_owned(path, 8 << 20)   # (None, "") when missing
    secret, problem = user_secret(path)      # 32 random bytes, 0600, made on first use
    remove_orphans(path, ".grnn-tmp-", ".tmp")  # temporaries of killed writers, ours only

A trusted directory is owned by the effective user and writable by nobody else; a trusted
file is a regular file (never followed through a symbolic link, never a FIFO, device or
directory) owned by the effective user, writable by nobody else and no larger than a cap.
Checks are made on the opened descriptor (`fstat`), so a file swapped after the check is
still the one checked. Root reads every file whatever its mode, so ownership is checked by
uid, never left to the kernel's EACCES.
"""
from __future__ import annotations

import errno
import os
import secrets
import stat
import tempfile
import time
from pathlib import Path

SECRET_NAME = "secret.key"
SECRET_BYTES = 32
TMP_PREFIX = ".grnn-tmp-"          # names of the cache's temporary files (and the secret's)
TMP_SUFFIX = ".tmp"
ORPHAN_AGE = 60.0                  # seconds: older temporaries belong to killed writers

_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"),
                       (stat.S_ISLNK, "a symbolic link"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _untrusted(st: os.stat_result, *, secret: bool = False) -> str:
    """Why a file or directory with this status cannot be trusted ('' when it can)."""
    uid = os.geteuid()
    if st.st_uid != uid:
        return f"owned by uid {st.st_uid}, not by this user (uid {uid})"
    if st.st_mode & (0o077 if secret else 0o022):
        what = "readable or writable" if secret else "writable"
        return f"{what} by group or others (mode {stat.S_IMODE(st.st_mode):o})"
    return ""


def check_private_dir(path: Path) -> str:
    """Why the directory `path` cannot hold trusted files ('' when it can)."""
    st = os.stat(path)
    if not stat.S_ISDIR(st.st_mode):
        return "not a directory"
    return _untrusted(st)


def make_private_dir(path: Path) -> str:
    """Create `path` mode 0700 whatever the umask (parents as usual) unless it exists; then
    why it cannot hold trusted files ('' when it can). OSError when it cannot be made."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    else:
        os.chmod(path, 0o700)       # the umask may have taken bits mkdir was given
    return check_private_dir(path)


def read_owned(path: Path, max_bytes: int, *, secret: bool = False) -> tuple[bytes | None, str]:
    """(contents, '') of a trusted file; (None, '') when there is none; (None, why) when what
    is there is not trusted (a link, FIFO, directory, another user's file, too large)."""
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except FileNotFoundError:
        return None, ""
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, "a symbolic link"
        return None, f"not readable ({e.strerror})"
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None, _kind(st.st_mode)
        problem = _untrusted(st, secret=secret)
        if problem:
            return None, problem
        if st.st_size > max_bytes:
            return None, f"{st.st_size} bytes, more than the {max_bytes} allowed"
        chunks, total = [], 0
        while total <= max_bytes:           # the file may grow after fstat: read to the cap
            chunk = os.read(fd, min(1 << 20, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
        if total > max_bytes:
            return None, f"more than the {max_bytes} bytes allowed"
        return b"".join(chunks), ""
    finally:
        os.close(fd)


def owned_by_another(path: Path) -> bool:
    """Whether what is at `path` (not followed if a link) belongs to another user."""
    try:
        return os.lstat(path).st_uid != os.geteuid()
    except OSError:
        return False


def remove_untrusted(path: Path) -> bool:
    """Delete what is at `path` if it is ours (an empty directory too); leave another user's
    file alone. True when it is gone."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    if st.st_uid != os.geteuid():
        return False
    try:
        if stat.S_ISDIR(st.st_mode):
            os.rmdir(path)
        else:
            os.unlink(path)
    except OSError:
        return False
    return True


def write_private(directory: Path, name: str, data: bytes) -> None:
    """Write `directory/name` atomically: a 0600 temporary file, fsync, rename over."""
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def user_secret(directory: Path) -> tuple[bytes | None, str]:
    """(the secret of `directory`, '') made on first use, or (None, why it cannot be had).

    The secret is SECRET_BYTES random bytes in `directory/secret.key`, mode 0600, created
    atomically (written to an O_EXCL temporary file, then hard-linked into place, which fails
    if another process got there first; then theirs is read). A damaged secret of ours is
    replaced (the entries it signed are then recompiled); another user's is refused.
    """
    path = directory / SECRET_NAME
    problem = ""
    for _ in range(3):
        data, problem = read_owned(path, 4096, secret=True)
        if data is not None and len(data) == SECRET_BYTES:
            return data, ""
        if data is not None or problem:
            problem = problem or f"{len(data or b'')} bytes, not {SECRET_BYTES}"
            if not remove_untrusted(path):
                return None, problem
            continue
        fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=TMP_SUFFIX, dir=directory)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(SECRET_BYTES))
                f.flush()
                os.fsync(f.fileno())
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass                        # another process made it: read theirs
        finally:
            os.unlink(tmp)
    return None, f"not made ({problem or 'it keeps changing'})"


def remove_orphans(directory: Path, prefix: str, suffix: str,
                   age: float = ORPHAN_AGE) -> int:
    """Delete our regular files in `directory` named prefix*suffix and older than `age`
    seconds (temporaries of writers that were killed); returns how many went."""
    cutoff = time.time() - age
    removed = 0
    uid = os.geteuid()
    with os.scandir(directory) as entries:
        for entry in entries:
            if not (entry.name.startswith(prefix) and entry.name.endswith(suffix)):
                continue
            try:
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISREG(st.st_mode) and st.st_uid == uid and st.st_mtime < cutoff:
                    os.unlink(entry.path)
                    removed += 1
            except OSError:
                pass                        # gone already, or not ours to remove
    return removed


__all__ = ["make_private_dir", "check_private_dir", "read_owned", "remove_untrusted",
           "owned_by_another",
           "write_private", "user_secret", "remove_orphans", "SECRET_NAME", "TMP_PREFIX",
           "TMP_SUFFIX", "ORPHAN_AGE"]
