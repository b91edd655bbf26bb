"""The LOOP lowering: an LLVM loop over t, with the body's kernels inside.

    parts = (carry buffers, ys buffers)          # the loop's value; carry is its state
    prologue: carry = carry_init; invariant body work; pack invariant weights
    for s in range(steps):
        t = steps - 1 - s if reverse else s
        x_t = xs[:, t]                            # a strided view, no copy
        body kernels                              # y_t written straight into ys[:, t]
        carry[b] = new_carry[b]   for rows b with t < lengths[b] (all rows without lengths)
        ys[b, t] = 0              for rows b with t >= lengths[b]

exactly the interpreter's semantics: a finished row keeps its state and emits zeros. A while
loop (attrs["until"]: the index of its `live` carry, see graphrnn/while_loop.py) checks
before each step that a row still runs, and pads the steps it leaves out:

    for s in range(steps) while any(live[b] != 0 for b in rows): ...
    ys[:, s:] = pad The
new carry is computed into separate buffers and copied at the end of the step, since the
body may still read the old one; a carry that only depends on the old carry through a view
(a pass-through, a swap) was copied to a temporary by the schedule first. A carry that one of
the ys saves (a training step's h_{t-1}) is read from that sequence's row t and its new value
copied into row t +- 1, the loop's carry buffer getting the last step's (saved_carry.py).
"""
from __future__ import annotations

from llvmlite import ir

from graphrnn.ir import Node, loop_operands, split

from .emit_context import Env, Frame, Lowerer
from .emit_dropout import step_salt
from .emit_map import emit_elementwise, fill, identity
from .irbuilder import I64, Emitter, Ref
from .kernel import Home, Kernel
from .strides import lin


def emit_loop(low: Lowerer, k: Kernel, env: Env, frame: Frame | None) -> None:
    n = k.node
    em = low.em
    bld = em.builder
    consts, carry, xs, lengths = loop_operands(n)
    body = n.attrs["body"]
    n_h = len(carry)
    parts = [low.home_ref(h, frame) for h in k.homes]
    inner = Env(env)
    b_consts, b_carry, b_xs = split(body.inputs, len(consts), n_h)
    for bx, x in zip(b_consts, consts):
        inner[bx] = env[x]
    for i, bc in enumerate(b_carry):
        inner[bc] = parts[i]
    low.run(k.prologue, inner, frame)

    count = low.sched.layouts[xs[0]].shape[1] if xs else lin(n.attrs["length"])
    total = em.lin(count)
    reverse = bool(n.attrs.get("reverse"))
    last = bld.sub(total, ir.Constant(I64, 1), flags=["nsw"])
    slots = {i: j for i, j in enumerate(k.carry_slots) if j >= 0}

    def saved(i: int, t: ir.Value) -> Ref:
        """Step t's row of the sequence carry i lives in (saved_carry.py)."""
        part = parts[n_h + slots[i]]
        return Ref(em.gep(part.ptr, em.mul(t, part.layout.strides[1])), part.layout.drop(1))
    if slots:
        with em.if_then(bld.icmp_signed(">", total, ir.Constant(I64, 0))):
            for i in slots:
                _copy(low, f"{k.name}_first{i}", n, saved(i, last if reverse else
                                                          ir.Constant(I64, 0)), parts[i])
    seqs = [env[x] for x in xs]
    len_ref = env[lengths] if lengths is not None else None
    until = n.attrs.get("until")
    live = None if until is None else (lambda s: _any_live(em, parts[until]))
    with em.loop(total, f"loop_{n.name}", until=live) as s:
        t = bld.sub(last, s, flags=["nsw"]) if reverse else s
        for bx, x in zip(b_xs, seqs):
            inner[bx] = Ref(em.gep(x.ptr, em.mul(t, x.layout.strides[1])), x.layout.drop(1))
        for i in slots:
            inner[b_carry[i]] = saved(i, t)
        outer = frame.salt if frame is not None else ir.Constant(I64, 0)
        step = Frame(n, t, parts, step_salt(bld, outer, t))
        low.run(k.body, inner, step)
        for i, src in enumerate(k.carry_from):
            if src is None:
                continue
            value = inner[src]
            if i in slots:                  # the last step's goes to the final carry
                step_next = bld.add(t, ir.Constant(I64, -1 if reverse else 1), flags=["nsw"])
                with bld.if_else(bld.icmp_signed("==", s, last)) as (final, ahead):
                    with final:
                        _copy(low, f"{k.name}_carry{i}", n, parts[i], value)
                    with ahead:
                        _copy(low, f"{k.name}_next{i}", n, saved(i, step_next), value)
                continue
            if len_ref is None:
                _copy(low, f"{k.name}_carry{i}", n, parts[i], value)
            else:
                low.call(low.helper(f"{k.name}_carry{i}"), n, _masked(keep_live=True), parts[i],
                         [value, len_ref], (t,), kind="carry")
        if len_ref is not None:
            for j in range(len(parts) - n_h):
                home = k.homes[n_h + j]
                row = low.home_ref(Home(home.layout.drop(1), home.buffer, slot=j), step)
                low.call(low.helper(f"{k.name}_zero{j}"), n, _masked(keep_live=False), row,
                         [len_ref], (t,), kind="mask")
    if until is not None:
        _pad_rest(low, k, s, total, parts)
    env[n] = tuple(parts)


def _copy(low: Lowerer, name: str, n: Node, out: Ref, value: Ref) -> None:
    """A carry update: out = value."""
    low.call(low.helper(name), n, lambda e, nd, o, ins: emit_elementwise(e, o, ins, identity),
             out, [value], kind="carry")


def _any_live(em: Emitter, live: Ref) -> ir.Value:
    """Whether a row of a while loop still runs: any(live[b] != 0), an i1."""
    bld = em.builder
    found = em.alloca(ir.IntType(1), ir.Constant(ir.IntType(1), 0))
    with em.loop(live.layout.shape[0], "live") as b:
        with em.if_then(bld.fcmp_unordered("!=", em.load(em.at(live, [b])), em.const(0.0))):
            bld.store(ir.Constant(ir.IntType(1), 1), found)
    return bld.load(found)


def _pad_rest(low: Lowerer, k: Kernel, reached: ir.Value, total: ir.Value,
              parts: list[Ref]) -> None:
    """ys[:, t] = pad for the steps t >= reached that a while loop left out: every row had
    stopped, so each would have emitted padding."""
    n = k.node
    n_h = len(loop_operands(n)[1])
    pad = n.attrs.get("pad", 0.0)

    def rule(em: Emitter, node: Node, out: Ref, ins: list[Ref]) -> None:
        fill(em, out, pad)
    with low.em.loop(total, f"pad_{n.name}", start=reached) as t:
        step = Frame(n, t, parts)
        for j in range(len(parts) - n_h):
            home = k.homes[n_h + j]
            row = low.home_ref(Home(home.layout.drop(1), home.buffer, slot=j), step)
            low.call(low.helper(f"{k.name}_pad{j}"), n, rule, row, [], kind="mask")


def _masked(keep_live: bool):
    """A kernel over batch rows b, guarded by t < lengths[b] (live) or its negation.

    live: out[b] = src[b]  (the carry update);  dead: out[b] = 0  (a finished row's y_t).
    """
    def rule(em: Emitter, node: Node, out: Ref, ins: list[Ref]) -> None:
        bld = em.builder
        lengths = ins[-1]
        t = em.function.args[len(ins) + 1]
        with em.loop(out.layout.shape[0], "row") as b:
            live = bld.icmp_signed("<", t, em.load(em.at(lengths, [b])))
            with em.if_then(live if keep_live else bld.not_(live)):
                dst = Ref(em.at(out, [b]), out.layout.drop(0))
                if keep_live:
                    src = Ref(em.at(ins[0], [b]), ins[0].layout.drop(0))
                    emit_elementwise(em, dst, [src], identity)
                else:
                    fill(em, dst, 0.0)
    return rule


__all__ = ["emit_loop"]
