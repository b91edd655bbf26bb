"""Which values of a loop body can leave it after the loop, for accumulate.py.

    accumulators    carries `acc' = acc + f` read by nothing else, f a sum over the steps
                    that `hoist_accumulations` rewrites onto stacked operands
    sinkable        per-step values with a SEQ_RULES version that only per-step outputs and
                    the sums need
    cheap_groups    outputs and sum operands with a row kernel, computed after the loop
                    from values it emits anyway (no new per-step buffer)
"""
from __future__ import annotations

from graphrnn.ir import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, Node, Op, TensorType

from .loop_kinds import BULK, INV, SEQ, SEQ_RULES, STEP, SeqContext, per_step

LINEAR = frozenset({Op.RESHAPE, Op.PAD, Op.SLICE, Op.INDEX, Op.CONCAT, Op.NEG, Op.ASSEMBLE,
                    Op.ADD, Op.SUB, Op.MUL, Op.DIV})
REDUCTIONS = frozenset({Op.CONTRACT, Op.SUM, Op.SCATTER})   # their operands are emitted
# work that fuses into the step's elementwise loops at no cost: it stays per step (after the
# loop it would read its stacked operands back from memory)
MAPS = ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE, Op.ASTYPE, Op.EXPAND, Op.SLICE,
                                                 Op.INDEX, Op.CONCAT, Op.PAD, Op.RESHAPE}


def body_readers(body: Graph) -> dict[int, list[Node]]:
    """Distinct body nodes reading each value."""
    readers: dict[int, list[Node]] = {}
    for n in body.nodes:
        for x in dict.fromkeys(n.inputs):
            readers.setdefault(id(x), []).append(n)
    return readers


def summable(n: Node, kind: dict[int, str]) -> bool:
    """Whether the sum over the steps of n is one of accumulate.py's rewrites."""
    if kind[id(n)] == INV or per_step(n) or not isinstance(n.type, TensorType):
        return False
    if n.op in REDUCTIONS:
        return all(kind[id(x)] != INV for x in n.inputs)
    if n.op not in LINEAR:
        return False
    terms = step_terms(n, kind)
    if terms is None:
        return False
    return all(summable(x, kind) for x in terms) and \
        (n.op not in (Op.ADD, Op.SUB, Op.MUL, Op.DIV) or all(x.type == n.type for x in terms))


def step_terms(n: Node, kind: dict[int, str]) -> list[Node] | None:
    """The inputs of linear op n that carry the per-step sum (the others are invariant)."""
    if n.op == Op.MUL:
        a, b = n.inputs
        return [a] if kind[id(b)] == INV else [b] if kind[id(a)] == INV else None
    if n.op == Op.DIV:
        return [n.inputs[0]] if kind[id(n.inputs[1])] == INV else None
    return list(n.inputs)


def find_accumulators(body: Graph, n_c: int, n_h: int, kind: dict[int, str],
                  readers: dict[int, list[Node]]) -> dict[int, Node]:
    """{carry index: increment f} for every carry `acc' = acc + f` read by nothing else."""
    outputs = [id(y) for y in body.outputs]
    found: dict[int, Node] = {}
    for i in range(n_h):
        h, o = body.inputs[n_c + i], body.outputs[i]
        if o.op != Op.ADD or readers.get(id(h)) != [o] or id(h) in outputs or \
                outputs.count(id(o)) != 1 or readers.get(id(o)):
            continue
        a, b = o.inputs
        f = b if a is h else a
        if f is not h and f.type == o.type and summable(f, kind):
            found[i] = f
    return found


def add_increment(f: Node, kind: dict[int, str], into: set[int]) -> None:
    """Add the nodes of increment f down to its reductions (those leave the body)."""
    into.add(id(f))
    if f.op not in REDUCTIONS:
        for x in step_terms(f, kind):
            add_increment(x, kind, into)


def find_sinkable(body: Graph, n_h: int, kind: dict[int, str], readers: dict[int, list[Node]],
              ctx: SeqContext, gone: set[int]) -> set[int]:
    """Per-step values with a SEQ_RULES version that only per-step outputs, the sums of the
    accumulators (`gone`) and other such values need."""
    carry_out = {id(y) for y in body.outputs[:n_h]}
    inputs = {id(x) for x in body.inputs}
    found: set[int] = set()
    for n in reversed(body.nodes):
        if id(n) in inputs or id(n) in carry_out or id(n) in gone or kind[id(n)] == INV \
                or per_step(n):
            continue
        if not isinstance(n.type, TensorType) or n.type.rank < 1:
            continue
        if not all(id(u) in found or id(u) in gone for u in readers.get(id(n), [])):
            continue
        rule = SEQ_RULES.get(n.op)
        kinds = [INV if kind[id(x)] == INV else SEQ for x in n.inputs]
        if rule is not None and rule(n, kinds, ctx) is not None:
            found.add(id(n))
    return found


def cheap_groups(body: Graph, n_h: int, n_xs: int, sunk: dict[int, list[Node]],
                 operands: list[Node], kind: dict[int, str], sinkable: set[int]
                 ) -> dict[Node, list[Node]]:
    """Per-step outputs and operands of the sums (no product among them, some work beyond
    elementwise maps: a row kernel) that are computed after the loop with no new per-step
    buffer: from invariants, the loop's sequences, values the loop emits anyway, and
    products of the sequence (which hoist_invariants moves before the loop: cse then keeps
    one copy). One kernel over all the steps instead of one per step.

        {root: its group}, each root an output or a step operand, each group its ancestors
        among `sinkable`
    """
    inputs = {id(x) for x in body.inputs[len(body.inputs) - n_xs:]}
    roots = [y for j, y in enumerate(body.outputs[n_h:], n_h) if j not in sunk]
    roots += [x for x in operands if kind[id(x)] == STEP]
    emitted = {id(x) for x in roots}
    found: dict[Node, list[Node]] = {}
    for root in dict.fromkeys(roots):
        group = group_of(root, sinkable)
        inside = {id(n) for n in group}
        outer = [x for n in group for x in n.inputs if id(x) not in inside]
        if any(n.op not in MAPS for n in group) and all(
                kind[id(x)] == INV or id(x) in inputs or id(x) in emitted
                or (kind[id(x)] == SEQ and x.op in BULK) for x in outer):
            found[root] = group
    return found


def group_of(root: Node, among: set[int]) -> list[Node]:
    """`root` and its ancestors within `among`."""
    out, stack, seen = [], [root], set()
    while stack:
        n = stack.pop()
        if id(n) in seen or id(n) not in among:
            continue
        seen.add(id(n))
        out.append(n)
        stack.extend(n.inputs)
    return out


def collect_operands(f: Node, kind: dict[int, str], operands: list[Node],
              invariants: list[Node]) -> None:
    """Collect the per-step operands of increment f's reductions, and its invariant factors."""
    if f.op in REDUCTIONS:
        operands.extend(f.inputs)
        return
    terms = step_terms(f, kind)
    for x in f.inputs:
        if any(x is t for t in terms):
            collect_operands(x, kind, operands, invariants)
        else:
            invariants.append(x)


__all__ = ["LINEAR", "REDUCTIONS", "body_readers", "step_terms", "find_accumulators",
           "add_increment", "find_sinkable", "group_of", "collect_operands", "summable",
           "cheap_groups"]
