"""Model files that claim more than they hold: refused before anything is inflated or allocated.

A 2 GB parameter declared in a small file and a graph.json that inflates to 1 GiB are each
refused in under 0.1 s with under 100 MB of peak memory, measured in a fresh process (the
rise of its peak resident size across the load, after a warm-up load of a good file).
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest

import attacker
import graphrnn as gr
from graphrnn import nn
from graphrnn.model_limits import MAX_GRAPH_BYTES, SAVE_TMP_SUFFIX
from graphrnn.serialize import ModelFileError

GIB = 1 << 30


def small_model() -> gr.gModule:
    x = gr.Input("B", 2)
    return gr.gModule([x], [nn.Linear(2, 2)(x)])


def members_of(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {n: z.read(n) for n in z.namelist()}


def build_zip(path: Path, members: list[tuple[str, bytes, int, int, int]]) -> None:
    """A zip archive from (name, bytes as stored, method, crc, declared size) records: the
    sizes and CRCs are whatever the caller claims."""
    out, central = bytearray(), bytearray()
    for name, data, method, crc, size in members:
        n = name.encode()
        central += struct.pack("<4s6H3I5H2I", b"PK\x01\x02", 20, 20, 0, method, 0, 0x21, crc,
                               len(data), size, len(n), 0, 0, 0, 0, 0, len(out)) + n
        out += struct.pack("<4s5H3I2H", b"PK\x03\x04", 20, 0, method, 0, 0x21, crc, len(data),
                           size, len(n), 0) + n + data
    end = struct.pack("<4s4H2IH", b"PK\x05\x06", 0, 0, len(members), len(members),
                      len(central), len(out), 0)
    path.write_bytes(bytes(out + central + end))


def stored(members: dict[str, bytes]) -> list[tuple[str, bytes, int, int, int]]:
    return [(n, d, zipfile.ZIP_STORED, zlib.crc32(d), len(d)) for n, d in members.items()]


def raw_deflate_of(byte: bytes, total: int) -> bytes:
    """A raw deflate stream of `total` copies of `byte`, made in milliseconds: one fully
    flushed block of 1 MiB, repeated (each block stands alone), then the end of the stream."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = c.compress(byte * (1 << 20)) + c.flush(zlib.Z_FULL_FLUSH)
    return block * (total >> 20) + c.flush()


def two_gb_parameter(path: Path) -> None:
    """A saved model whose weight is declared float32[16384, 32768] (2 GiB): its member an
    .npy header for that shape and 2 GiB of zeros, deflated to a few MB."""
    gr.save(small_model(), path)
    members = members_of(path)
    doc = json.loads(members["graph.json"])
    doc["params"][0]["shape"] = [16384, 32768]
    members["graph.json"] = json.dumps(doc).encode()
    member = f"params/{doc['params'][0]['key']}.npy"
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (16384, 32768)})
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    data = c.compress(header.getvalue()) + c.flush(zlib.Z_FULL_FLUSH) + raw_deflate_of(
        b"\0", 2 * GIB)
    records = stored({k: v for k, v in members.items() if k != member})
    build_zip(path, records + [(member, data, zipfile.ZIP_DEFLATED, 0,
                                2 * GIB + len(header.getvalue()))])


def json_bomb(path: Path, claimed: int | None = None) -> None:
    """graph.json as a deflated stream of 1 GiB of spaces; the archive claims `claimed` bytes
    for it (default: the truth)."""
    gr.save(small_model(), path)
    members = members_of(path)
    del members["graph.json"]
    bomb = raw_deflate_of(b" ", GIB)
    build_zip(path, [("graph.json", bomb, zipfile.ZIP_DEFLATED, 0,
                      GIB if claimed is None else claimed)] + stored(members))


_MEASURE = textwrap.dedent("""
    import json, resource, sys, time
    import graphrnn as gr
    good, bad = sys.argv[1], sys.argv[2]
    gr.load(good)                               # warm-up: lazy imports, first-use setup
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        gr.load(bad)
        error = None
    except gr.ModelFileError as e:
        error = str(e)
    seconds = time.perf_counter() - start
    rise = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    print(json.dumps({"seconds": seconds, "rise_mb": rise / 1024, "error": error}))
""")


def measure(good: Path, bad: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", _MEASURE, str(good), str(bad)],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("craft, message", [
    (two_gb_parameter, "more than the file's"),
    (json_bomb, f"more than the {MAX_GRAPH_BYTES}"),
    (lambda p: json_bomb(p, claimed=100_000), "damaged model file"),
], ids=["2 GB parameter", "1 GiB graph.json", "graph.json lying about its size"])
def test_a_file_claiming_more_than_it_holds_is_refused_fast_in_little_memory(
        tmp_path, craft, message) -> None:
    good, bad = tmp_path / "good.grnn", tmp_path / "bad.grnn"
    gr.save(small_model(), good)
    craft(bad)
    assert bad.stat().st_size < 4 << 20
    got = measure(good, bad)
    assert got["error"] is not None and message in got["error"], got
    assert got["seconds"] < 0.1 and got["rise_mb"] < 100, got


def test_the_parameter_cap_is_configurable(tmp_path) -> None:
    path = tmp_path / "m.grnn"
    gr.save(small_model(), path)
    assert isinstance(gr.load(path), gr.gModule)
    with pytest.raises(ModelFileError, match="above the cap"):
        gr.load(path, max_bytes=8)


def test_a_key_listed_twice_is_refused(tmp_path) -> None:
    path = tmp_path / "m.grnn"
    gr.save(small_model(), path)
    members = members_of(path)
    doc = json.loads(members["graph.json"])
    doc["params"][1]["key"] = doc["params"][0]["key"]
    members["graph.json"] = json.dumps(doc).encode()
    build_zip(path, stored(members))
    with pytest.raises(ModelFileError, match="listed twice"):
        gr.load(path)


def test_temporaries_of_killed_saves_are_removed_by_the_next_save(tmp_path) -> None:
    old = time.time() - 120
    stale = tmp_path / f".m.grnn.abc12345{SAVE_TMP_SUFFIX}"
    fresh = tmp_path / f".m.grnn.def67890{SAVE_TMP_SUFFIX}"
    foreign = tmp_path / f".x.grnn.ghi{SAVE_TMP_SUFFIX}"
    unrelated = tmp_path / ".m.grnn.jkl.tmp"        # not a name save gives
    for p in (stale, fresh, foreign, unrelated):
        p.write_bytes(b"half a model" * 1000)
        if p is not fresh:
            os.utime(p, (old, old))
    attacker.give_away(foreign)
    gr.save(small_model(), tmp_path / "other.grnn")
    left = {p.name for p in tmp_path.iterdir()}
    assert stale.name not in left
    assert {fresh.name, foreign.name, unrelated.name, "other.grnn"} <= left
