"""Optimiser updates over the flat vectors as one native loop each (graphrnn/fused_update.py).

Every update reads the parameter and gradient vectors and updates the parameters and the
optimiser's state vectors in place, in one pass. The kernel is

    void graphrnn_update_<kind>(float* params, float* grads, float* state0, float* state1,
                                float* scalars, i64 n)

with `scalars` holding the rule's float32 scalars in the order of UPDATE_RULES[kind].scalars
(`weight_decay` first when the kernel decays). Each rule is the numpy update of
graphrnn/optim.py written per element, the same float32 operations in the same order: no
fast-math flags at all (no contraction into FMAs), correctly rounded sqrt and division, so
the kernel and numpy agree to the bit. For example Adam:

    for i in range(n):
        g = grads[i] + weight_decay * params[i]        # only with weight decay
        m[i] = m[i] * b1 + g * c1                      # c1 = 1 - b1, in float32
        v[i] = v[i] * b2 + (g * c2) * g
        params[i] -= (m[i] * step) / (sqrt(v[i]) + eps)
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from llvmlite import ir

from .irbuilder import F32, I64, VOID

# (builder, values by name) -> new values by name ("params" and the state vectors written)
Body = Callable[[ir.IRBuilder, dict[str, ir.Value]], dict[str, ir.Value]]


@dataclass(frozen=True)
class UpdateRule:
    """One optimiser's update: its state vectors, its scalars, its per-element body."""
    state: tuple[str, ...]
    scalars: tuple[str, ...]
    body: Body


def _sqrt(b: ir.IRBuilder, x: ir.Value) -> ir.Value:
    fn = b.module.globals.get("llvm.sqrt.f32") or ir.Function(
        b.module, ir.FunctionType(F32, [F32]), "llvm.sqrt.f32")
    return b.call(fn, [x])


def _sgd(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    return {"params": b.fsub(x["params"], b.fmul(x["lr"], x["grads"]))}


def _momentum(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    v = b.fadd(b.fmul(x["velocity"], x["momentum"]), x["grads"])
    return {"velocity": v, "params": b.fsub(x["params"], b.fmul(x["lr"], v))}


def _nesterov(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    v = b.fadd(b.fmul(x["velocity"], x["momentum"]), x["grads"])
    ahead = b.fadd(x["grads"], b.fmul(x["momentum"], v))
    return {"velocity": v, "params": b.fsub(x["params"], b.fmul(x["lr"], ahead))}


def _adam(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    g = x["grads"]
    m = b.fadd(b.fmul(x["m"], x["b1"]), b.fmul(g, x["c1"]))
    v = b.fadd(b.fmul(x["v"], x["b2"]), b.fmul(b.fmul(g, x["c2"]), g))
    denom = b.fadd(_sqrt(b, v), x["eps"])
    return {"m": m, "v": v,
            "params": b.fsub(x["params"], b.fdiv(b.fmul(m, x["step"]), denom))}


def _scaled_step(b: ir.IRBuilder, x: dict[str, ir.Value], sq: ir.Value) -> ir.Value:
    denom = b.fadd(_sqrt(b, sq), x["eps"])
    return b.fsub(x["params"], b.fdiv(b.fmul(x["lr"], x["grads"]), denom))


def _rmsprop(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    g = x["grads"]
    v = b.fadd(b.fmul(x["v"], x["alpha"]), b.fmul(b.fmul(x["c"], g), g))
    return {"v": v, "params": _scaled_step(b, x, v)}


def _adagrad(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    g = x["grads"]
    s = b.fadd(x["sum_sq"], b.fmul(g, g))
    return {"sum_sq": s, "params": _scaled_step(b, x, s)}


def _scale_add(b: ir.IRBuilder, x: dict[str, ir.Value]) -> dict[str, ir.Value]:
    return {"params": b.fadd(b.fmul(x["a"], x["params"]), b.fmul(x["b"], x["grads"]))}


UPDATE_RULES: dict[str, UpdateRule] = {
    "sgd": UpdateRule((), ("lr",), _sgd),
    "momentum": UpdateRule(("velocity",), ("lr", "momentum"), _momentum),
    "nesterov": UpdateRule(("velocity",), ("lr", "momentum"), _nesterov),
    "adam": UpdateRule(("m", "v"), ("b1", "c1", "b2", "c2", "eps", "step"), _adam),
    "rmsprop": UpdateRule(("v",), ("alpha", "c", "lr", "eps"), _rmsprop),
    "adagrad": UpdateRule(("sum_sq",), ("lr", "eps"), _adagrad),
    # not an optimiser: out = a * out + b * x, the weighted sum of the gradients of a batch's
    # parts (graphrnn/threads.py)
    "scale_add": UpdateRule((), ("a", "b"), _scale_add),
}


def update_symbol(kind: str, decay: bool) -> str:
    return f"graphrnn_update_{kind}{'_decay' if decay else ''}"


def update_ir(kind: str, decay: bool) -> tuple[str, str]:
    """(LLVM IR text, symbol) of the update kernel of `kind` (UPDATE_RULES), with decoupled
    weight decay folded into the gradient first when `decay` (as Optimizer.step does)."""
    rule = UPDATE_RULES[kind]
    module = ir.Module(name=f"update_{kind}")
    fp = F32.as_pointer()
    fn = ir.Function(module, ir.FunctionType(VOID, [fp] * 5 + [I64]), update_symbol(kind, decay))
    params, grads, s0, s1, scalars, n = fn.args
    vectors = {"params": params, "grads": grads}
    vectors.update(zip(rule.state, (s0, s1)))
    for a in (params, grads, s0, s1):
        a.add_attribute("noalias")
    entry, loop, done = (fn.append_basic_block(name) for name in ("entry", "loop", "exit"))
    b = ir.IRBuilder(entry)
    names = (("weight_decay",) if decay else ()) + rule.scalars
    consts = {name: b.load(b.gep(scalars, [ir.Constant(I64, k)], inbounds=True))
              for k, name in enumerate(names)}
    b.cbranch(b.icmp_signed(">", n, ir.Constant(I64, 0)), loop, done)
    b.position_at_end(loop)
    i = b.phi(I64)
    i.add_incoming(ir.Constant(I64, 0), entry)
    ptrs = {name: b.gep(p, [i], inbounds=True) for name, p in vectors.items()}
    values = dict(consts, **{name: b.load(p) for name, p in ptrs.items()})
    if decay:
        values["grads"] = b.fadd(values["grads"], b.fmul(consts["weight_decay"],
                                                         values["params"]))
    for name, new in rule.body(b, values).items():
        b.store(new, ptrs[name])
    nxt = b.add(i, ir.Constant(I64, 1), flags=("nsw",))
    i.add_incoming(nxt, loop)
    b.cbranch(b.icmp_signed("<", nxt, n), loop, done)
    b.position_at_end(done)
    b.ret_void()
    return str(module), fn.name


__all__ = ["UPDATE_RULES", "UpdateRule", "update_ir", "update_symbol"]
