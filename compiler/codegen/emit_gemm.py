"""The schedule's kernels of several parts as calls: operands from the env, epilogues built.

    pack:    packed = panels of mm.inputs[1]               (N in `segments` segments)
    gemm:    out = mm                                      (a plain product)
             out = fused(..., mm, ...)                     (a FUSED epilogue on the tile)
             members' homes = group(mm)                    (an epilogue group: the head's
                                                           slices and the FUSED members,
                                                           codegen/epilogue.py)
             out = contract(a, g)                          (emit_contract.py)
    map:     members' homes = cluster(inputs)              (FUSED nodes of one loop)

A group's kernel function takes its pointers in this order: the output (the group's first
stored member), then a, the packed panels, the head's other inputs, the members' outside
inputs, and the other stored members.
"""
from __future__ import annotations

from typing import Any

from graphrnn.ir import Node, Op

from .emit_context import Lowerer
from .emit_contract import emit_contract
from .emit_map import emit_elementwise_multi, eval_body
from .gemm import Arg, Epilogue, Stage, emit_gemm, emit_pack_rule
from .irbuilder import Emitter, Ref
from .kernel import Kernel
from .strides import Layout, Lin, product
from .tiling import GemmPlan, plan


def _packed(low: Lowerer, k: Kernel) -> Ref:
    return low.buffer_ref(k.packed, Layout.contiguous((k.packed.size,)))


def emit_pack_call(low: Lowerer, k: Kernel, env: Any) -> None:
    segments = k.segments
    low.call(k.name, k.node,
             lambda em, nd, o, ins: emit_pack_rule(em, nd, o, ins[0], segments),
             _packed(low, k), [env[k.node.inputs[1]]], kind="pack")


def emit_gemm_call(low: Lowerer, k: Kernel, env: Any, frame: Any) -> None:
    """A gemm kernel: a product, with its FUSED epilogue or its epilogue group."""
    if k.group is not None:
        _group_call(low, k, env, frame)
        return
    n = k.node
    if n.op == Op.CONTRACT:
        out = low.home_ref(k.dest, frame)
        low.call(k.name, n, lambda em, nd, o, refs: emit_contract(em, nd, o, refs[:2], refs[2]),
                 out, [env[x] for x in n.inputs] + [_packed(low, k)], kind="gemm")
        env[n] = out
        return
    mm = k.matmul if k.matmul is not None else n
    p = plan(mm, k.segments)
    if k.matmul is None:
        first, slot, extra = None, 0, []
    else:
        first, slot = n.attrs["body"], n.inputs.index(mm)
        extra = [env[x] for x in n.inputs if x is not mm]

    scalars = _step(p, frame, _rows(mm))
    stepped, a = bool(scalars), _left(env, mm)
    na = len(a)

    def rule(em: Emitter, node: Node, out: Ref, refs: list[Ref]) -> None:
        epilogue = Epilogue(first, slot, tuple(refs[na + 1:])) if first is not None else None
        emit_gemm(em, p, _one(refs[:na]), refs[na].ptr, out, epilogue,
                  step=em.function.args[1 + len(refs)] if stepped else None)
    out = low.home_ref(k.dest, frame)
    names = (mm.name, n.name) if k.matmul is not None else (n.name,)
    low.call(k.name, n, rule, out, a + [_packed(low, k)] + extra, scalars,
             kind="gemm", nodes=names)
    env[n] = out


def _group_call(low: Lowerer, k: Kernel, env: Any, frame: Any) -> None:
    g, mm = k.group, k.matmul
    p = plan(mm, k.segments)
    first = g.head.attrs["body"] if g.head is not mm else None
    slot = g.head.inputs.index(mm) if first is not None else 0
    first_refs = [env[x] for x in g.head.inputs if x is not mm] if first is not None else []
    pieces = set(g.slices)
    index = {m: i for i, (m, _) in enumerate(k.stages)}
    outside: dict[Node, int] = {}
    stage_refs: list[Ref] = []
    shapes: list[tuple[Any, tuple[Arg, ...], bool]] = []
    stores: list[Ref] = []
    for m, home in k.stages:
        args = []
        for x in m.inputs:
            if x in pieces:
                args.append(Arg("seg", g.segment(x)))
            elif x in index:
                args.append(Arg("stage", index[x]))
            else:
                if x not in outside:
                    outside[x] = len(stage_refs)
                    stage_refs.append(env[x])
                args.append(Arg("ref", outside[x]))
        shapes.append((m.attrs["body"], tuple(args), home is not None))
        if home is not None:
            ref = low.home_ref(home, frame)
            stores.append(ref)
            env[m] = ref
    n_first, n_stage = len(first_refs), len(stage_refs)
    scalars = _step(p, frame, _rows(mm))
    stepped, left = bool(scalars), _left(env, mm)
    na = len(left)

    def rule(em: Emitter, node: Node, out: Ref, refs: list[Ref]) -> None:
        a, packed, rest = _one(refs[:na]), refs[na], refs[na + 1:]
        homes = iter([out] + rest[n_first + n_stage:])
        stages = tuple(Stage(body, args, next(homes) if stored else None)
                       for body, args, stored in shapes)
        epilogue = Epilogue(first, slot, tuple(rest[:n_first]), stages,
                            tuple(rest[n_first:n_first + n_stage]))
        emit_gemm(em, p, a, packed.ptr, None, epilogue,
                  step=em.function.args[1 + len(refs)] if stepped else None)
    ins = left + [_packed(low, k)] + first_refs + stage_refs + stores[1:]
    low.call(k.name, g.head, rule, stores[0], ins, scalars, kind="gemm",
             nodes=tuple(x.name for x in (mm, *g.members)))


def _left(env: Any, mm: Node) -> list[Ref]:
    """The refs of a product's left operand: one, or its pieces along K when it is a
    concatenation never written (schedule: a "split" kernel)."""
    a = env[mm.inputs[0]]
    return list(a) if isinstance(a, tuple) else [a]


def _one(refs: list[Ref]) -> Ref | list[Ref]:
    return refs[0] if len(refs) == 1 else refs


def _step(p: GemmPlan, frame: Any, rows: Lin | None = None) -> tuple[Any, ...]:
    """The loop step a product inside a loop takes (gemm.emit_gemm's `step`): one of one
    row, or of `rows` known at run time only (one at B = 1), whose panels are walked whole."""
    if frame is None:
        return ()
    return (frame.t,) if p.mr == 1 or (rows is not None and not rows.const and not p.kc) else ()


def _rows(mm: Node) -> Lin:
    return product(mm.inputs[0].type.shape[:-1])


def emit_cluster_call(low: Lowerer, k: Kernel, env: Any, frame: Any) -> None:
    """A cluster of FUSED nodes (codegen/epilogue.py) as one elementwise loop: each member
    evaluated in registers from the outside inputs and the members before it."""
    members = [m for m, _ in k.stages]
    index = {m: i for i, m in enumerate(members)}
    outside: dict[Node, int] = {}
    plans: list[tuple[Any, tuple[tuple[bool, int], ...]]] = []
    for m in members:
        args = []
        for x in m.inputs:
            if x in index:
                args.append((True, index[x]))
            else:
                outside.setdefault(x, len(outside))
                args.append((False, outside[x]))
        plans.append((m.attrs["body"], tuple(args)))
    stored = [i for i, (_, home) in enumerate(k.stages) if home is not None]
    outs = [low.home_ref(k.stages[i][1], frame) for i in stored]
    for i, ref in zip(stored, outs):
        env[members[i]] = ref
    stored += [index[m] for m, _ in k.copies]       # the same values, stored again
    outs += [low.home_ref(home, frame) for _, home in k.copies]
    ins = [env[x] for x in outside]

    def values(em: Emitter, vals: list, width: int) -> list:
        done: list = []
        for body, args in plans:
            done.append(eval_body(em, body, [done[j] if member else vals[j]
                                             for member, j in args], width))
        return [done[i] for i in stored]

    def rule(em: Emitter, node: Node, out: Ref, refs: list[Ref]) -> None:
        n_out = len(outs)
        emit_elementwise_multi(em, [out] + refs[:n_out - 1], refs[n_out - 1:], values)
    low.call(k.name, k.node, rule, outs[0], outs[1:] + ins, kind="map",
             nodes=tuple(m.name for m in members))


__all__ = ["emit_gemm_call", "emit_pack_call", "emit_cluster_call"]
