"""`gr.export_library`: a model as a C library with a stable ABI.

    lib = gr.export_library(model, "out/", name="reader", loss=gr.MSECriterion())
    # out/libreader.so, out/libreader.a, out/reader.h, out/README.md, out/reader.c, ...

The programs come from `gr.compile` (programs.py), their object code from the runtime's
engine for the chosen target (objects.py), the C wrapper from cabi's generators
(cheader.py, csource.py, cruntime_*.c), and the system C compiler links them (build.py).
"""
from __future__ import annotations

import re
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.version import __version__

from .build import link
from .cheader import header, readme
from .cnames import check_name, typed_calls
from .csource import params_source, source
from .objects import emit_objects, target_for
from .programs import ProgramSet, lowered_programs
from .target import Target

WEIGHTS_MAGIC = b"GRNNPAR1"


@dataclass(frozen=True)
class ExportedLibrary:
    """What `export_library` wrote."""
    shared: Path
    static: Path
    header: Path
    weights: Path | None
    target: Target
    programs: ProgramSet


def write_weights(path: Path, params: np.ndarray) -> None:
    """A weights file: magic, u64 count, u64 CRC-32 of the data, the float32 data."""
    data = np.ascontiguousarray(params, dtype="<f4").tobytes()
    path.write_bytes(WEIGHTS_MAGIC + struct.pack("<QQ", len(data) // 4, zlib.crc32(data)) + data)


def _exports(prefix: str, ps: ProgramSet) -> list[str]:
    fixed = ("create", "destroy", "last_error", "error_string", "run", "supports", "reset",
             "num_inputs", "num_outputs", "port",
             "num_params", "params", "params_read", "params_changed", "load_params",
             "save_params", "num_tensors", "tensor_name", "tensor_offset", "tensor_rank",
             "tensor_dim", "abi_version", "model_name", "graphrnn_version", "target_cpu",
             "target_features", "manifest")
    return [f"{prefix}_{f}" for f in fixed] + [f"{prefix}_{c.name}" for c in typed_calls(ps)]


def export_library(model: Any, out: str | Path, *, name: str | None = None,
                   stateful: bool | None = None,
                   loss: Any = None, bptt_max: int | None = None, target: str | None = None,
                   features: str | None = None, weights: str = "embedded",
                   cc: str | None = None) -> ExportedLibrary:
    """Write `model` as a C library into directory `out`: lib<name>.so, lib<name>.a,
    <name>.h (the ABI), README.md, the C source and the object code.

    Each call takes any batch size and length (the programs of the default `gr.compile`,
    whose results it gives bit for bit on the same target). stateful: None adds the
    streaming step (`<name>_step`, `<name>_reset`) when the model has top-level loops, True
    requires it, False leaves it out. loss: a criterion; adds `<name>_train_step` (truncated
    at bptt_max steps). target: None (the host CPU and all its features), "x86-64-v2/v3/v4",
    or an LLVM CPU name (with `features`, "+avx2,+fma"). weights: "embedded" (in the
    library) or "external" (read at create from <name>.weights, written here, checksummed).
    cc: the C compiler (default $CC or cc).
    """
    if weights not in ("embedded", "external"):
        raise ValueError(f"weights must be 'embedded' or 'external', got {weights!r}")
    model_name = getattr(model, "name", None) or "model"
    prefix = check_name(name or re.sub(r"\W", "_", model_name))
    ps = lowered_programs(model, stateful=stateful, loss=loss, bptt_max=bptt_max)
    tgt = target_for(target, features)
    objects = emit_objects(ps.programs, prefix, tgt)
    folder = Path(out).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    names = []
    for po in objects:
        (folder / f"{po.entry}.o").write_bytes(po.obj)
        names.append(f"{po.entry}.o")
    (folder / f"{prefix}.h").write_text(header(prefix, model_name, ps, tgt))
    (folder / f"{prefix}.c").write_text(source(prefix, model_name, __version__, ps, objects,
                                               tgt, weights))
    (folder / "README.md").write_text(readme(prefix, model_name, ps, tgt, weights))
    sources = [f"{prefix}.c"]
    weights_path = None
    if weights == "embedded":
        (folder / f"{prefix}_params.c").write_text(params_source(prefix, ps.params))
        sources.append(f"{prefix}_params.c")
    else:
        weights_path = folder / f"{prefix}.weights"
        write_weights(weights_path, ps.params)
    shared, static = link(folder, prefix, sources, names, _exports(prefix, ps), cc)
    return ExportedLibrary(shared, static, folder / f"{prefix}.h", weights_path, tgt, ps)


__all__ = ["export_library", "ExportedLibrary", "write_weights"]
