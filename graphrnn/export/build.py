"""Linking an exported library with the system C compiler: `lib<name>.so` and `lib<name>.a`
from the generated source and the programs' object code, and the check that the shared
library needs nothing but libc and libm."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import Sequence

ALLOWED = ("libc.so", "libm.so", "ld-linux")     # the only libraries the .so may need
CFLAGS = ("-O2", "-std=c11", "-fPIC", "-Wall", "-Wno-unused-function")


class BuildError(RuntimeError):
    """The C compiler or the archiver failed, or the library needs another library."""


def find_cc(cc: str | None = None) -> str:
    """The C compiler: `cc`, else $CC, else `cc` on the PATH; BuildError when there is none."""
    name = cc or os.environ.get("CC") or "cc"
    path = shutil.which(name)
    if path is None:
        raise BuildError(f"no C compiler {name!r} on the PATH (set CC or pass cc=)")
    return path


def _run(cmd: Sequence[str], cwd: Path) -> str:
    done = subprocess.run(list(cmd), cwd=cwd, capture_output=True, text=True)
    if done.returncode != 0:
        raise BuildError(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    return done.stdout


def needed(lib: Path) -> list[str]:
    """The NEEDED entries of a shared library's dynamic section (readelf, else objdump)."""
    for tool, args in (("readelf", ["-d"]), ("objdump", ["-p"])):
        if shutil.which(tool):
            out = _run([tool, *args, lib.name], lib.parent)
            return [line.split("[")[1].split("]")[0] if "[" in line else line.split()[-1]
                    for line in out.splitlines() if "NEEDED" in line]
    return []


def link(out: Path, prefix: str, sources: Sequence[str], objects: Sequence[str],
         exports: Sequence[str], cc: str | None = None) -> tuple[Path, Path]:
    """Compile `sources` and link them with `objects` into lib<prefix>.so (exporting only
    `exports`) and lib<prefix>.a, in `out`."""
    compiler = find_cc(cc)
    compiled = []
    for src in sources:
        obj = Path(src).with_suffix(".c.o").name
        _run([compiler, *CFLAGS, "-c", src, "-o", obj], out)
        compiled.append(obj)
    script = out / f"{prefix}.map"
    script.write_text("{\n  global:\n" + "".join(f"    {e};\n" for e in exports)
                      + "  local: *;\n};\n")
    shared, static = out / f"lib{prefix}.so", out / f"lib{prefix}.a"
    _run([compiler, "-shared", "-o", shared.name, *compiled, *objects,
          f"-Wl,--version-script={script.name}", "-Wl,-z,noexecstack", "-lm"], out)
    static.unlink(missing_ok=True)
    _run(["ar", "rcs", static.name, *compiled, *objects], out)
    extra = [n for n in needed(shared) if not n.startswith(ALLOWED)]
    if extra:
        raise BuildError(f"{shared} needs {', '.join(extra)}: only libc and libm are allowed")
    return shared, static


__all__ = ["link", "needed", "find_cc", "BuildError", "ALLOWED"]
