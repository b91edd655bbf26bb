"""The C names of an exported library: its prefix, the typed calls and their arguments, and
the error codes and call kinds, shared by the header and the source."""
from __future__ import annotations

import re
from dataclasses import dataclass

from .contract import BATCH, TIME, Port
from .programs import KINDS, Lowered, ProgramSet

ABI_VERSION = 2                 # 2: one program per kind, for every batch size
ERRORS = (("OK", "success"), ("E_ARG", "a null pointer, or a wrong number of tensors"),
          ("E_SHAPE", "a shape, batch size or T the model does not take"),
          ("E_STRIDE", "a tensor that is not C-contiguous"),
          ("E_DTYPE", "a tensor of the wrong dtype"),
          ("E_VALUE", "an id or length out of range"),
          ("E_STATE", "a step with another batch size than the stream's: reset first"),
          ("E_CPU", "this CPU lacks a feature the code was compiled for"),
          ("E_NOMEM", "out of memory"),
          ("E_WEIGHTS", "the weights file is missing, of another model, or corrupted"),
          ("E_UNSUPPORTED", "the library has no program of that kind"))
CALLS = {"forward": "FORWARD", "step": "STEP", "train": "TRAIN"}     # kinds a caller runs
DTYPES = {"float32": 1, "int64": 2}


def check_name(name: str) -> str:
    """`name` if it can prefix C identifiers (and name the files), else ValueError."""
    if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", name):
        raise ValueError(f"library name {name!r}: use letters, digits and _ (a C identifier)")
    return name


def ident(text: str, taken: set[str]) -> str:
    """A C identifier for `text`, unique within `taken` (which it joins)."""
    base = re.sub(r"\W", "_", text) or "arg"
    if base[0].isdigit():
        base = "_" + base
    name, k = base, 1
    while name in taken or name in ("ctx", "B", "T"):
        name, k = f"{base}_{k}", k + 1
    taken.add(name)
    return name


@dataclass(frozen=True)
class Arg:
    """One pointer argument of a typed call: its C name, C type, and the port it carries."""
    name: str
    ctype: str
    port: Port


@dataclass(frozen=True)
class TypedCall:
    """`int <prefix>_<name>(ctx, *ins, int64_t B, int64_t T, *outs)` running programs of `kind`."""
    name: str
    kind: str
    ins: tuple[Arg, ...]
    outs: tuple[Arg, ...]


def _args(ports: tuple[Port, ...], out: bool, taken: set[str], names: list[str]) -> tuple[Arg, ...]:
    args = []
    for port, label in zip(ports, names):
        base = "float" if port.dtype == "float32" else "int64_t"
        args.append(Arg(ident(label, taken), base + " *" if out else f"const {base} *", port))
    return tuple(args)


def typed_calls(ps: ProgramSet) -> list[TypedCall]:
    """The typed calls of the library: forward, and step / train_step when exported."""
    calls = []
    for kind, name in (("forward", "forward"), ("step", "step"), ("train", "train_step")):
        p = next((p for p in ps.programs if p.kind == kind), None)
        if p is None:
            continue
        n_state = ps.n_state if kind == "step" else 0
        ins = p.contract.inputs[:len(p.contract.inputs) - n_state]
        outs = p.contract.outputs[:len(p.contract.outputs) - n_state]
        taken: set[str] = set()
        in_names = [port.name for port in ins]
        out_names = (["loss", "grad"] if kind == "train" else
                     ["y"] if len(outs) == 1 else [f"y{k}" for k in range(len(outs))])
        calls.append(TypedCall(name, kind, _args(ins, False, taken, in_names),
                               _args(outs, True, taken, out_names)))
    return calls


def shape_text(port: Port) -> str:
    """`float32[B, T, 3]`: the port's dims, the batch and time dims as B and T."""
    dims = ["T" if d == TIME else "B" if d == BATCH else str(d) for d in port.dims]
    return f"{port.dtype}[{', '.join(dims)}]"


def kind_index(kind: str) -> int:
    return KINDS.index(kind)


def first(ps: ProgramSet, kind: str) -> Lowered | None:
    return next((p for p in ps.programs if p.kind == kind), None)


__all__ = ["ABI_VERSION", "ERRORS", "CALLS", "DTYPES", "check_name", "ident", "Arg",
           "TypedCall", "typed_calls", "shape_text", "kind_index", "first"]
