"""What a local attacker plants in a kernel cache, for the security tests.

`Victim` compiles a small model once and knows the keys its entries go under; `evil_object`
is native code defining the victim's entry points that, when run, creates a marker file (so a
test can tell whether planted code ever ran); `plant` writes entries for the victim's keys in
one of the forms an attacker can produce: the old plain-checksum format anyone can recompute,
the current format with a recomputed checksum in place of the MAC, or the current format
authenticated with the attacker's own secret.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn
from graphrnn.compile import CompiledModel
from graphrnn.runtime.cache import (_EXE_SUFFIX, _HEADER, _SUFFIX, MAGIC, KernelCache, _pack,
                                    encode_executable)
from graphrnn.runtime.jit import Engine
from graphrnn.runtime.secure_files import SECRET_NAME
from graphrnn.compiler.codegen.lower import VERSION as LOWERING_VERSION
from graphrnn.engine import cache_version

OTHER_UID = 12345                   # "another user": files are chowned to it (tests run as root)


@dataclass
class Victim:
    """A small LSTM, an input, and the disk keys of its program and object code."""

    model: gr.gModule
    x: np.ndarray
    structure_key: str
    object_key: str
    exe: object

    @property
    def expected(self) -> np.ndarray:
        return gr.interpret(self.model, self.x)


def victim(scratch: Path) -> Victim:
    x = gr.Input("B", "T", 3, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.RNN(3, 4))(x)])
    model.reset_parameters(seed=5)
    xs = np.random.default_rng(2).standard_normal((2, 3, 3)).astype(np.float32)
    compiled = CompiledModel(model, cache=KernelCache(scratch))
    types = compiled.types_for([xs])
    exe = compiled.executable(types)
    return Victim(model, xs, compiled.structure_key(types),
                  compiled.cache.key(exe.llvm_ir, cache_version(LOWERING_VERSION)), exe)


def evil_object(v: Victim, marker: Path) -> bytes:
    """Object code defining the victim's symbols; running any of them creates `marker`."""
    path = os.fsencode(marker) + b"\0"
    symbols = [v.exe.entry_points[0]]
    if v.exe.contract.pack:
        symbols.append(v.exe.contract.pack[0])
    lines = [f'@path = private constant [{len(path)} x i8] c"{path[:-1].decode()}\\00"',
             "declare i32 @creat(ptr, i32)"]
    for name in symbols:
        lines += [f"define void @{name}(ptr %a, ptr %b, ptr %c, i64 %d) {{",
                  "  %r = call i32 @creat(ptr @path, i32 420)", "  ret void", "}"]
    return Engine().compile_to_object("\n".join(lines) + "\n").obj


def plain_checksum_entry(key: str, payload: bytes, version: int) -> bytes:
    """An entry whose integrity field is a sha256 of the payload, as anyone can compute."""
    return _HEADER.pack(MAGIC, version, len(payload), bytes.fromhex(key),
                        hashlib.sha256(payload).digest()) + payload


def plant(v: Victim, directory: Path, obj: bytes, form: str) -> list[Path]:
    """Write the victim's program and object entries holding `obj` into `directory`.

    form: "v1 checksum" (the old format), "recomputed checksum" (today's header with a sha256
    where the MAC goes), or "attacker secret" (a MAC under a secret file the attacker wrote
    into `directory` as its own).
    """
    directory.mkdir(parents=True, exist_ok=True)
    entries = {v.structure_key + _EXE_SUFFIX: encode_executable(v.exe, obj),
               v.object_key + _SUFFIX: obj}
    if form == "attacker secret":
        secret = directory / SECRET_NAME
        if not secret.exists():
            secret.write_bytes(os.urandom(32))
            secret.chmod(0o600)
    paths = []
    for name, payload in entries.items():
        key = name.split(".")[0]
        if form == "v1 checksum":
            blob = plain_checksum_entry(key, payload, 1)
        elif form == "recomputed checksum":
            blob = plain_checksum_entry(key, payload, 2)
        else:
            blob = _pack(key, payload, (directory / SECRET_NAME).read_bytes())
        (directory / name).write_bytes(blob)
        paths.append(directory / name)
    return paths


def give_away(*paths: Path) -> None:
    """Make `paths` belong to another user (the planted files' real owner); skips the test
    when not run as root (CI runs as root)."""
    if os.geteuid() != 0:
        pytest.skip("making a file another user's needs root")
    for p in paths:
        os.chown(p, OTHER_UID, OTHER_UID, follow_symlinks=False)
