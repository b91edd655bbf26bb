"""The generated C source of an exported library: the tables of its programs, ports,
checks, parameters and CPU features, the fixed runtime (cruntime_*.c), the typed calls, and
the embedded parameters (`<name>_params.c`)."""
from __future__ import annotations

import json
from importlib import resources
from typing import Any, Sequence

import numpy as np

from .cnames import ABI_VERSION, DTYPES, ERRORS, TypedCall, kind_index, typed_calls
from .contract import Port
from .objects import ProgramObject
from .programs import ProgramSet
from .target import Target

MAX_RANK = 8
RUNTIME = ("cruntime_context.c", "cruntime_call.c")     # the fixed C, in this order


def c_string(text: str, sep: str = "\n    ") -> str:
    """`text` as a C string literal, in pieces of ~100 characters joined by `sep`."""
    out, line = [], ""
    for ch in text:
        code = ord(ch)
        esc = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t"}.get(ch)
        piece = esc if esc else (ch if 32 <= code < 127 else f'\\{code:03o}')
        line += piece
        if len(line) > 96:
            out.append(f'"{line}"')
            line = ""
    out.append(f'"{line}"')
    return sep.join(out)


def _dims(dims: Sequence[int]) -> str:
    return "{" + ", ".join(str(int(d)) for d in dims) + "}" if dims else "{0}"


def _port(p: Port) -> str:
    if len(p.dims) > MAX_RANK:
        raise ValueError(f"{p.name}: rank {len(p.dims)} is above the ABI's {MAX_RANK}")
    return f"{{{c_string(p.name)}, {DTYPES[p.dtype]}, {len(p.dims)}, {_dims(p.dims)}}}"


def _program_tables(i: int, po: ProgramObject, n_state: int) -> tuple[str, str]:
    """(the static arrays of program i, its initializer in grnn_programs)."""
    c, p = po.program.contract, po.program
    lines = [f"extern void {po.entry}(float *, float *, void **, int64_t);"]
    if po.pack:
        lines.append(f"extern void {po.pack}(float *, float *);")
    lines.append(f"static const grnn_port grnn_p{i}_in[] = {{"
                 + ", ".join(map(_port, c.inputs)) + ("" if c.inputs else "{0}") + "};")
    lines.append(f"static const grnn_port grnn_p{i}_out[] = {{"
                 + ", ".join(map(_port, c.outputs)) + "};")
    kinds = {"ids": 0, "lengths": 1, "steps": 2}
    if c.checks:
        lines.append(f"static const grnn_check grnn_p{i}_checks[] = {{" + ", ".join(
            f"{{{kinds[k]}, {n}, {a}, {b}}}" for k, n, a, b in c.checks) + "};")
    if p.remap:
        lines.append(f"static const int64_t grnn_p{i}_remap[][3] = {{" + ", ".join(
            f"{{{a}, {b}, {n}}}" for a, b, n in p.remap) + "};")
    states = n_state if p.kind == "step" else 0
    rows = c.contract.arena_rows
    init = (f"{{.kind = {kind_index(p.kind)}, .entry = {po.entry}, "
            f".pack = {po.pack or 'NULL'}, .persistent = {c.persistent_floats}, "
            f".arena_fixed = {c.contract.arena[0]}, .arena_step = {c.contract.arena[1]}, "
            f".arena_row = {rows[0]}, .arena_row_step = {rows[1]}, "
            f".n_in = {len(c.inputs)}, .n_out = {len(c.outputs)}, .ins = grnn_p{i}_in, "
            f".outs = grnn_p{i}_out, .n_checks = {len(c.checks)}, "
            f".checks = {f'grnn_p{i}_checks' if c.checks else 'NULL'}, "
            f".n_remap = {len(p.remap or ())}, "
            f".remap = {f'grnn_p{i}_remap' if p.remap else 'NULL'}, "
            f".extras = {c.extras}, .n_state = {states}, "
            f".has_time = {int(c.has_time)}, .has_batch = {int(c.has_batch)}}}")
    return "\n".join(lines), init


_TYPES = """\
typedef struct { const char *name; int32_t dtype; int32_t rank; int64_t dims[8]; } grnn_port;
typedef struct { int kind; int input; int64_t c, s; } grnn_check;
typedef struct {
    int kind;
    void (*entry)(float *, float *, void **, int64_t);
    void (*pack)(float *, float *);
    int64_t persistent, arena_fixed, arena_step, arena_row, arena_row_step;
    int n_in, n_out;
    const grnn_port *ins, *outs;
    int n_checks;
    const grnn_check *checks;
    int n_remap;
    const int64_t (*remap)[3];
    int extras, n_state, has_time, has_batch;
} grnn_program;
typedef struct {
    const char *name;
    unsigned leaf, subleaf;
    int reg, bit;
    uint64_t xcr0;
} grnn_cpu_check;
typedef struct { const char *name; int64_t offset; int rank; int64_t dims[8]; } grnn_param_info;
"""


def _typed(prefix: str, call: TypedCall) -> str:
    args = ", ".join([f"{prefix}_ctx *ctx"] + [f"{a.ctype}{a.name}" for a in call.ins]
                     + ["int64_t B", "int64_t T"] + [f"{a.ctype}{a.name}" for a in call.outs])
    ins = ", ".join([a.name for a in call.ins] + ["NULL"])
    outs = ", ".join([a.name for a in call.outs] + ["NULL"])
    return (f"int {prefix}_{call.name}({args}) {{\n"
            f"    const void *ins[] = {{{ins}}};\n    void *outs[] = {{{outs}}};\n"
            f"    return grnn_typed(ctx, {kind_index(call.kind)}, B, T, ins, outs);\n}}\n")


def manifest(prefix: str, model_name: str, version: str, ps: ProgramSet, target: Target,
             weights: str) -> dict[str, Any]:
    """Everything the library is, as plain data (embedded as JSON; read by the loader)."""
    def ports(ps_: tuple[Port, ...]) -> list[dict[str, Any]]:
        return [{"name": p.name, "dtype": p.dtype, "dims": list(p.dims)} for p in ps_]
    return {
        "name": prefix, "model": model_name, "graphrnn": version, "abi": ABI_VERSION,
        "target": {"cpu": target.cpu, "features": list(target.required)},
        "weights": weights, "params": int(ps.table.size), "n_state": ps.n_state,
        "tensors": [{"name": k, "offset": s.offset, "shape": list(s.shape)}
                    for k, s in ps.table.slots.items()],
        "programs": [{"kind": p.kind, "has_time": p.contract.has_time,
                      "has_batch": p.contract.has_batch,
                      "inputs": ports(p.contract.inputs), "outputs": ports(p.contract.outputs)}
                     for p in ps.programs],
    }


def source(prefix: str, model_name: str, version: str, ps: ProgramSet,
           objects: list[ProgramObject], target: Target, weights: str) -> str:
    """The text of `<prefix>.c`."""
    tables, inits = [], []
    for i, po in enumerate(objects):
        t, init = _program_tables(i, po, ps.n_state)
        tables.append(t)
        inits.append(init)
    max_io = max(len(po.program.contract.inputs) + len(po.program.contract.outputs)
                 + po.program.contract.extras for po in objects) + 2
    checks = [f"{{{c_string(f)}, {leaf:#x}u, {sub}u, {reg}, {bit}, {xcr0:#x}u}}"
              for f, leaf, sub, reg, bit, xcr0 in target.checks] or ["{0}"]
    params = [f"{{{c_string(k)}, {s.offset}, {len(s.shape)}, {_dims(s.shape)}}}"
              for k, s in ps.table.slots.items()] or ["{0}"]
    embedded = weights == "embedded"
    errors = "\n".join(f"    GRNN_{code} = {k}," for k, (code, _) in enumerate(ERRORS))
    messages = "\n".join(f"    case {k}: return {c_string(why)};" for k, (_, why) in
                         enumerate(ERRORS))
    text = json.dumps(manifest(prefix, model_name, version, ps, target, weights))
    here = resources.files("graphrnn.export")
    runtime = "\n".join(here.joinpath(f).read_text() for f in RUNTIME)
    return f"""\
/* {prefix}.c: generated by graphrnn {version} for the model "{model_name}". Do not edit. */
#define _POSIX_C_SOURCE 200112L         /* posix_memalign */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include "{prefix}.h"

#define GRNN_API(x) {prefix}_##x
#define GRNN_CTX_TAG {prefix}_ctx
typedef {prefix}_ctx grnn_ctx;
typedef {prefix}_tensor grnn_tensor;
enum {{
{errors}
}};
enum {{ GRNN_KIND_FORWARD = 0, GRNN_KIND_INIT = 1, GRNN_KIND_STEP = 2, GRNN_KIND_TRAIN = 3 }};
enum {{ GRNN_F32 = 1, GRNN_I64 = 2 }};
#define GRNN_N_PARAMS ((int64_t){ps.table.size})
#define GRNN_N_TENSORS {len(ps.table.slots)}
#define GRNN_N_PROGRAMS {len(objects)}
#define GRNN_MAX_IO {max_io}
#define GRNN_N_CPU_CHECKS {len(target.checks)}
#define GRNN_TARGET_CPU {c_string(target.cpu, " ")}
#define GRNN_TARGET_FEATURES {c_string(",".join(target.required) or "(none)", " ")}
#define GRNN_EMBEDDED {int(embedded)}
{f"extern const uint32_t {prefix}__params_data[];" if embedded else ""}
#define GRNN_EMBEDDED_DATA {prefix}__params_data

{_TYPES}
{chr(10).join(tables)}

static const grnn_program grnn_programs[] = {{
    {("," + chr(10) + "    ").join(inits)}
}};
static const grnn_cpu_check grnn_cpu_checks[] = {{{", ".join(checks)}}};
static const grnn_param_info grnn_tensors[] = {{
    {("," + chr(10) + "    ").join(params)}
}};

{runtime}
/* ---------------------------------------------------------------- the typed calls */

{chr(10).join(_typed(prefix, c) for c in typed_calls(ps))}
/* ---------------------------------------------------------------- what the library is */

int {prefix}_abi_version(void) {{ return {ABI_VERSION}; }}
const char *{prefix}_model_name(void) {{ return {c_string(model_name)}; }}
const char *{prefix}_graphrnn_version(void) {{ return {c_string(version)}; }}
const char *{prefix}_target_cpu(void) {{ return GRNN_TARGET_CPU; }}
const char *{prefix}_target_features(void) {{ return GRNN_TARGET_FEATURES; }}
const char *{prefix}_error_string(int code) {{
    switch (code) {{
{messages}
    default: return "unknown error code";
    }}
}}
const char *{prefix}_manifest(void) {{
    return {c_string(text)};
}}
"""


def params_source(prefix: str, params: np.ndarray) -> str:
    """The text of `<prefix>_params.c`: the parameters as exact float32 bit patterns."""
    bits = np.ascontiguousarray(params, dtype=np.float32).view(np.uint32)
    words = [f"0x{int(w):08x}u" for w in bits] or ["0"]
    rows = [", ".join(words[k:k + 8]) for k in range(0, len(words), 8)]
    body = ",\n    ".join(rows)
    return (f"/* {prefix}_params.c: the parameters embedded in lib{prefix}, generated. */\n"
            "#include <stdint.h>\n"
            f"__attribute__((visibility(\"hidden\"), aligned(64)))\n"
            f"const uint32_t {prefix}__params_data[{max(len(words), 1)}] = {{\n    {body}\n}};\n")


__all__ = ["source", "params_source", "manifest", "c_string"]
