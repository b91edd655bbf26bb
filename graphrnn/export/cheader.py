"""The header `<name>.h` of an exported library (the ABI, documented) and its README."""
from __future__ import annotations

from .cnames import ABI_VERSION, ERRORS, TypedCall, first, shape_text, typed_calls
from .programs import ProgramSet
from .target import Target

_FIXED = """\
/* ---- contexts: each has its own parameters, scratch arena and state; use one per thread. */
typedef struct {P}_ctx {P}_ctx;

/* Create a context. weights_path: NULL for the parameters embedded in the library, else a
   weights file ("GRNNPAR1", u64 count, u64 CRC-32 of the data, float32 data; see
   {P}_save_params).
   Checks the CPU first ({U}_E_CPU when it lacks a feature the code was compiled for).
   On failure *out may still hold a context carrying the message: read {P}_last_error, then
   {P}_destroy it. */
int {P}_create({P}_ctx **out, const char *weights_path);
void {P}_destroy({P}_ctx *ctx);
/* The message of the last failed call on ctx ("" after a success). */
const char *{P}_last_error(const {P}_ctx *ctx);
const char *{P}_error_string(int code);

/* ---- the generic call: tensors with their shapes, checked against the model.
   kind: {U}_FORWARD (inputs -> outputs), {U}_STEP (the same, carrying the state of every
   top-level loop from one call to the next: a stream fed in chunks gives the one-call
   result), {U}_TRAIN (inputs + target -> loss (shape []) and the flat gradient).
   One program serves every batch size B and length T: the tensors must agree on both, and
   the context's scratch arena grows to the largest call so far.
   strides are in elements; all zero means C-contiguous (the only layout accepted). */
typedef struct {{
    void *data;
    int32_t dtype;          /* {U}_F32 or {U}_I64 */
    int32_t rank;
    int64_t shape[8];
    int64_t strides[8];
}} {P}_tensor;
int {P}_run({P}_ctx *ctx, int kind, const {P}_tensor *inputs, int n_inputs,
            {P}_tensor *outputs, int n_outputs);
/* 1 when calls of `kind` take batch size `batch` (every size below 2**31, unless the model
   declares a fixed one). */
int {P}_supports(int kind, int64_t batch);
/* The tensors a call of `kind` takes: how many inputs and outputs (-1: no such call), and
   port i (output: 0 input, 1 output) at batch size `batch`: its name, dtype, rank and dims
   (up to 8; -1 stands for T; -2 for B when `batch` is -1, else B is `batch`). 0, or an
   error code. */
int {P}_num_inputs(int kind);
int {P}_num_outputs(int kind);
int {P}_port(int kind, int64_t batch, int output, int i, const char **name, int32_t *dtype,
             int32_t *rank, int64_t *dims);
/* Forget the carried state: the next step starts a new stream (from the initial state). */
int {P}_reset({P}_ctx *ctx);

/* ---- parameters: one flat float32 vector per context, laid out by the table below.
   Write it through {P}_params at any time (or load_params): every call sees the values the
   vector holds when it starts; a call whose code packs the weights first compares the vector
   with the one it packed from (a memcmp of num_params floats) and repacks if it changed.
   {P}_params_changed forces the repack (never needed). */
int64_t {P}_num_params(void);
float *{P}_params({P}_ctx *ctx);
const float *{P}_params_read(const {P}_ctx *ctx);
void {P}_params_changed({P}_ctx *ctx);
int {P}_load_params({P}_ctx *ctx, const char *path);
int {P}_save_params({P}_ctx *ctx, const char *path);
/* The parameter table: tensor i is named name(i), at offset(i) floats, of rank(i) dims. */
int {P}_num_tensors(void);
const char *{P}_tensor_name(int i);
int64_t {P}_tensor_offset(int i);
int {P}_tensor_rank(int i);
int64_t {P}_tensor_dim(int i, int axis);

/* ---- what the library is */
int {P}_abi_version(void);
const char *{P}_model_name(void);
const char *{P}_graphrnn_version(void);
const char *{P}_target_cpu(void);
const char *{P}_target_features(void);   /* the features checked at create */
const char *{P}_manifest(void);           /* all of the above, and every program, as JSON */
"""


def _typed(prefix: str, call: TypedCall, ps: ProgramSet) -> str:
    p = first(ps, call.kind)
    if p is not None and not p.contract.has_batch:
        lines = [f"/* {call.name}: the model's batch size is fixed (pass it as B)"]
    else:
        lines = [f"/* {call.name}: any batch size B"]
    if p is not None and not p.contract.has_time:
        lines.append("   (the model has no time dim: pass T = 0)")
    for arg in call.ins + call.outs:
        lines.append(f"   {arg.name}: {shape_text(arg.port)}"
                     + (" (written)" if arg in call.outs else ""))
    if call.kind == "step":
        lines.append("   carries the state to the next call; reset starts a new stream")
    if call.kind == "train":
        lines.append("   forward + loss + backward: the loss, and the gradient of every parameter")
        lines.append("   (flat, num_params floats, the table's layout); the parameters stay")
    args = ", ".join([f"{prefix}_ctx *ctx"] + [f"{a.ctype}{a.name}" for a in call.ins]
                     + ["int64_t B", "int64_t T"] + [f"{a.ctype}{a.name}" for a in call.outs])
    return "\n".join(lines) + " */\n" + f"int {prefix}_{call.name}({args});\n"


def header(prefix: str, model_name: str, ps: ProgramSet, target: Target) -> str:
    """The text of `<prefix>.h`."""
    up = prefix.upper()
    errors = "\n".join(f"    {up}_{code} = {k},  /* {why} */"
                        for k, (code, why) in enumerate(ERRORS))
    typed = "\n".join(_typed(prefix, c, ps) for c in typed_calls(ps))
    return f"""\
/* {prefix}.h: the model "{model_name}" compiled by graphrnn, as a C library.
   Compiled for {target.cpu}. Every call returns {up}_OK (0) or an error code, with a
   message in {prefix}_last_error(ctx); shapes are checked before any work is done.
   Tensors are C-contiguous, batch first. Link: cc prog.c -L. -l{prefix} -lm */
#ifndef {up}_H
#define {up}_H
#include <stdint.h>
#ifdef __cplusplus
extern "C" {{
#endif

#define {up}_ABI_VERSION {ABI_VERSION}
enum {{
{errors}
}};
enum {{ {up}_FORWARD = 0, {up}_STEP = 2, {up}_TRAIN = 3 }};
enum {{ {up}_F32 = 1, {up}_I64 = 2 }};

{_FIXED.format(P=prefix, U=up)}
/* ---- the typed calls of this model */
{typed}
#ifdef __cplusplus
}}
#endif
#endif
"""


def readme(prefix: str, model_name: str, ps: ProgramSet, target: Target, weights: str) -> str:
    """The text of the README written next to the library."""
    calls = ", ".join(f"`{prefix}_{c.name}`" for c in typed_calls(ps))
    external = weights == "external"
    weights_arg = f'"{prefix}.weights"' if external else "NULL"
    return f"""\
# lib{prefix}: the graphrnn model "{model_name}" as a C library

Files: `lib{prefix}.so`, `lib{prefix}.a`, `{prefix}.h` (the ABI, documented), `{prefix}.c` and
`{prefix}_params.c` (the wrapper source), the object code of each program (`*.o`){
", and `" + prefix + ".weights` (the parameters, read at create)" if external else ""}.
The code is compiled for `{target.cpu}`; `{prefix}_create` refuses a CPU lacking a feature it
needs. The library needs libc and libm only.

    cc -O2 main.c -I. -L. -l{prefix} -lm -Wl,-rpath,'$ORIGIN'     # or link lib{prefix}.a

    {prefix}_ctx *ctx;
    if ({prefix}_create(&ctx, {weights_arg}) != 0) {{ puts({prefix}_last_error(ctx)); ... }}
    {prefix}_forward(ctx, x, B, T, y);                 /* 0, or an error code + last_error */
    {prefix}_destroy(ctx);

Typed calls: {calls}. The generic `{prefix}_run` takes tensors with shapes;
the parameter vector and its name -> (offset, shape) table are `{prefix}_params` and
`{prefix}_tensor_*`; writes to the vector are seen by the next call (it compares the vector
with the one it packed the weights from). One program serves every batch size B and length
T, read from each call's tensors (ABI version {ABI_VERSION}). Contexts are independent: one per
thread.
"""


__all__ = ["header", "readme"]
