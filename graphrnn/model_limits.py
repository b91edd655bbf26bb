"""What a model file may claim, checked before anything it claims is read or allocated.

    raw = read_graph_member(zip_file)                           # at most MAX_GRAPH_BYTES
    check_param_table(zip_file, records, file_bytes, max_bytes)  # before any parameter data

- graph.json is read through a bounded stream: a member declaring more than MAX_GRAPH_BYTES
  is refused from its header, and no more than that is ever inflated (a member that lies
  about its size fails its CRC check at the cap).
- The parameter table must fit the file: `save` stores parameters uncompressed, so their
  declared bytes (4 per float32) can be no more than the file's actual size, and no more than
  `max_bytes` (the caller's cap, MAX_PARAM_BYTES by default); each key is listed once, and
  its member holds exactly its bytes plus a .npy header.
- Temporaries of `save` are named `.<file>.<random>.grnn-save.tmp`, so the ones left by a
  killed save can be told apart from anyone else's and removed by the next save
  (`runtime/secure_files.remove_orphans`: ours, regular, older than a minute).
"""
from __future__ import annotations

import zipfile
from typing import BinaryIO

import numpy as np

from .codec import ModelFileError

GRAPH_MEMBER = "graph.json"
MAX_GRAPH_BYTES = 16 << 20         # graph.json of real models is a few KB to a few MB
MAX_PARAM_BYTES = 16 << 30         # default cap on the parameter bytes a file may declare
MAX_NPY_HEADER = 64 << 10          # numpy refuses .npy headers above 10,000 bytes itself
SAVE_TMP_SUFFIX = ".grnn-save.tmp"


def file_size(f: BinaryIO) -> int:
    """Bytes in the seekable file `f` (its position is kept)."""
    here = f.tell()
    try:
        return f.seek(0, 2)
    finally:
        f.seek(here)


def read_graph_member(archive: zipfile.ZipFile, cap: int | None = None) -> bytes:
    """graph.json's bytes, never inflating more than `cap` (MAX_GRAPH_BYTES) bytes."""
    cap = MAX_GRAPH_BYTES if cap is None else cap
    try:
        info = archive.getinfo(GRAPH_MEMBER)
    except KeyError:
        raise ModelFileError(f"not a graphrnn model file (no {GRAPH_MEMBER} in the "
                             "archive)") from None
    if info.file_size > cap:
        raise ModelFileError(f"{GRAPH_MEMBER} declares {info.file_size} bytes, more than "
                             f"the {cap} a model's graph may have")
    with archive.open(info) as stream:          # inflates no more than it asks for
        raw = stream.read(info.file_size + 1)
    if len(raw) > min(info.file_size, cap):
        raise ModelFileError(f"{GRAPH_MEMBER} inflates to more than {info.file_size} bytes")
    return raw


def check_param_table(archive: zipfile.ZipFile, records: list[dict], file_bytes: int,
                      max_bytes: int) -> None:
    """Refuse a parameter table the file cannot hold, before any parameter data is read."""
    seen: set[str] = set()
    total = 0
    for r in records:
        key = r["key"]
        if key in seen:
            raise ModelFileError(f"parameter {key} is listed twice")
        seen.add(key)
        nbytes = 4 * int(np.prod(r["shape"], dtype=object))
        total += nbytes
        if total > max_bytes:
            raise ModelFileError(f"the parameters declare more than {max_bytes} bytes (at "
                                 f"{key}, shape {list(r['shape'])}): above the cap; "
                                 "gr.load(path, max_bytes=...) raises it")
        if total > file_bytes:
            raise ModelFileError(f"the parameters declare {total} bytes or more (at {key}, "
                                 f"shape {list(r['shape'])}), more than the file's "
                                 f"{file_bytes} bytes: parameters are stored uncompressed")
        member = f"params/{key}.npy"
        try:
            info = archive.getinfo(member)
        except KeyError:
            raise ModelFileError(f"parameter {key} is missing from the archive") from None
        if not nbytes <= info.file_size <= nbytes + MAX_NPY_HEADER:
            raise ModelFileError(f"parameter {key}: the archive holds {info.file_size} bytes "
                                 f"for float32{list(r['shape'])} ({nbytes} bytes of data)")
        if info.compress_size > file_bytes:
            raise ModelFileError(f"parameter {key}: its member claims more bytes than the "
                                 "file has")


__all__ = ["GRAPH_MEMBER", "MAX_GRAPH_BYTES", "MAX_PARAM_BYTES", "SAVE_TMP_SUFFIX",
           "file_size", "read_graph_member", "check_param_table"]
