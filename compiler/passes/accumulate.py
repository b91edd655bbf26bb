"""hoist_accumulations: per-step work whose result only leaves the loop runs after it, once.

The dual of hoist_invariants, which moves work before the loop. Two rewrites:

- an *accumulator*, a carry `acc' = acc + f` that nothing else in the body reads (neither
  acc nor acc'), is summed after the loop: the loop emits f's per-step operands as new
  per-step outputs, stacked [B, T, ...], and the sum over the steps is rewritten onto them:

      sum_t contract(a_t, b_t)      = contract(A, B)        one GEMM over B*T rows
      sum_t sum(g_t, axes)          = sum(G, axes and T)
      sum_t scatter(g_t, ids_t)     = scatter(G, IDS)
      sum_t op(f_t, ...)            = op(sum_t f_t, ...)    op linear: reshape, pad, slice,
                                      index, concat, neg, assemble, add/sub of same-shaped
                                      terms, mul/div by a loop invariant

  Its final value is init + that sum (the sum alone when init is zero). These are the weight
  gradients of a backward loop: after flatten_params, the ASSEMBLE of CONTRACT/SUM parts into
  the flat gradient vector at every step becomes one ASSEMBLE after the loop, and ADDs of
  ASSEMBLEs (several loops, the layers outside them) merge into one;
- a per-step output whose computation nothing else in the body reads and which contains a
  matmul is computed after the loop from stacked operands (loop_kinds.SEQ_RULES): the input
  gradient dx_t = dg_t @ W_ih of a backward loop becomes one matmul over [B, T, ...]; so
  does a summed value made from emitted operands alone (a norm weight's gradient).

Operands the loop already has as sequences (x_t, the saved carries) are read from its
sequence inputs instead of being emitted again, and a value is emitted once. Exact up to the
order of the float additions (the loop's direction does not matter). Loops with lengths are
left alone: a step past a row's length must add nothing, which stacked operands do not
guarantee (differentiate turns lengths into masks, so gradient loops have none); so are
while loops, whose early exit pads the per-step outputs of the steps it skips. Nested
loops: inner bodies first, so a sum can leave several levels.
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from graphrnn.ir import Graph, Node, Op, TensorType, loop_operands, split, toposort
from graphrnn.ops import apply_rule

from .hoist import outer_copies
from .loop_kinds import BULK, INV, SEQ, SEQ_RULES, STEP, SeqContext, classify, leaf_key, per_step
from .rewrite import fresh_name, map_nodes, read_counts, with_inputs

LINEAR = frozenset({Op.RESHAPE, Op.PAD, Op.SLICE, Op.INDEX, Op.CONCAT, Op.NEG, Op.ASSEMBLE,
                    Op.ADD, Op.SUB, Op.MUL, Op.DIV})
REDUCTIONS = frozenset({Op.CONTRACT, Op.SUM, Op.SCATTER})   # their operands are emitted

Parts = list  # per old part of a loop: its new index, or the outer node that replaces it


def hoist_accumulations(graph: Graph, *, min_input_size: int = 4) -> Graph:
    """`graph` with the accumulators and matmul outputs of loop bodies computed after them.

    `min_input_size`: a matmul over K <= this many features is left per step (as in
    hoist_invariants). Returns `graph` itself when nothing moved. Needs a typed graph.
    """
    taken = {n.name for n in graph.nodes}
    leaves = {k: n for n in graph.nodes if (k := leaf_key(n, n.inputs)) is not None}
    uses = read_counts(graph.nodes, graph.outputs)
    whole = {id(y) for y in graph.outputs} | {     # loops read other than through GET
        id(x) for n in graph.nodes if n.op != Op.GET for x in n.inputs}
    parts: dict[int, Parts] = {}

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        m = with_inputs(n, ins)
        if m.op == Op.LOOP:
            body = hoist_accumulations(m.attrs["body"], min_input_size=min_input_size)
            m = m.replace(attrs={**m.attrs, "body": body})
            # a loop of checkpointed segments sums its segments' gradients as it goes: the
            # stacked per-step operands would take the memory checkpointing saves
            done = None if id(n) in whole or m.attrs.get("checkpoint") else \
                _rewrite_loop(m, min_input_size, taken, leaves)
            if done is not None:
                m, parts[id(m)] = done
        elif m.op == Op.GET and id(m.inputs[0]) in parts:
            p = parts[id(m.inputs[0])][m.attrs["index"]]
            m = p if isinstance(p, Node) else m.replace(attrs={**m.attrs, "index": p})
        elif m.op == Op.ADD and all(uses[id(x)] == 1 for x in n.inputs):
            m = _joined_assembles(m) or m
        return m
    moved = graph.remapped(map_nodes(graph.nodes, visit))
    return graph if moved is graph else merge_contracts(moved)


def merge_contracts(graph: Graph) -> Graph:
    """Contracts of one left operand as one: contract(a, g_i) for i = 1..n becomes column
    slices of contract(a, concat(g_1, ..., g_n)), so that `a` (a backward loop's stacked
    gate gradients, the largest operand) is packed and read once for all the weight
    gradients, and the product runs on the wider output. A sum of `a` over its rows (a bias
    gradient) joins as a column of ones. Only when the joined columns are no wider than `a`
    (the copy they take costs less than the reads of `a` it saves). Returns `graph` when
    there is nothing to merge."""
    groups: dict[tuple, list[Node]] = {}
    sums: dict[int, list[Node]] = {}
    for n in graph.nodes:
        if n.op == Op.CONTRACT and not n.attrs.get("transpose_out") \
                and n.inputs[1].type.dtype == "float32" \
                and isinstance(n.inputs[1].type.shape[-1], int):
            a, g = n.inputs
            groups.setdefault((id(a), g.type.shape[:-1]), []).append(n)
        elif n.op == Op.SUM and not n.attrs.get("keepdims") and isinstance(n.type, TensorType) \
                and n.type.dtype == "float32" \
                and tuple(n.attrs.get("axes") or ()) == tuple(range(n.inputs[0].type.rank - 1)):
            sums.setdefault(id(n.inputs[0]), []).append(n)
    make = _maker({n.name for n in graph.nodes})
    repl: dict[int, Node] = {}
    for (a_id, _), found in groups.items():
        rows = sums.pop(a_id, [])
        if len(found) + len(rows) < 2:
            continue
        first, g = found[0], found[0].inputs[1]
        columns = [n.inputs[1] for n in found]
        # the concatenation copies the g_i: worth it while they are narrower than `a`, whose
        # reads it saves
        width = first.inputs[0].type.shape[-1]
        if not isinstance(width, int) or any(c.type.shape[-1] == 0 for c in columns) or \
                sum(c.type.shape[-1] for c in columns) + bool(rows) > width:
            continue                # (an empty g has no column to shape the ones after)
        if rows:
            like = make(g, Op.SLICE, [g], axis=g.type.rank - 1, start=0, length=1)
            one = make(first, Op.CONST, [], value=np.asarray(1.0, np.float32))
            columns.append(make(first, Op.EXPAND, [one, like]))
        cat = make(g, Op.CONCAT, columns, axis=g.type.rank - 1)
        whole = make(first, Op.CONTRACT, [first.inputs[0], cat], transpose_out=False)
        start = 0
        for n in found:
            width = n.type.shape[1]
            repl[id(n)] = make(n, Op.SLICE, [whole], axis=1, start=start, length=width)
            start += width
        for n in rows:
            column = make(n, Op.SLICE, [whole], axis=1, start=start, length=1)
            repl[id(n)] = make(n, Op.RESHAPE, [column], shape=n.type.shape)
    if not repl:
        return graph
    return graph.remapped(map_nodes(graph.nodes, with_inputs, dict(repl)))


def _joined_assembles(n: Node) -> Node | None:
    """add(assemble(p...), assemble(q...)) as one assemble(p..., q...)."""
    a, b = n.inputs
    if a.op != Op.ASSEMBLE or b.op != Op.ASSEMBLE or a.type != b.type or a.type != n.type:
        return None
    attrs = {"offsets": a.attrs["offsets"] + b.attrs["offsets"], "size": a.attrs["size"]}
    return n.replace(op=Op.ASSEMBLE, inputs=a.inputs + b.inputs, attrs=attrs, name=a.name)


# ----------------------------------------------------------------------------- analysis

def _readers(body: Graph) -> dict[int, list[Node]]:
    """Distinct body nodes reading each value."""
    readers: dict[int, list[Node]] = {}
    for n in body.nodes:
        for x in dict.fromkeys(n.inputs):
            readers.setdefault(id(x), []).append(n)
    return readers


def _summable(n: Node, kind: dict[int, str]) -> bool:
    """Whether the sum over the steps of n is one of the module docstring's rewrites."""
    if kind[id(n)] == INV or per_step(n) or not isinstance(n.type, TensorType):
        return False
    if n.op in REDUCTIONS:
        return all(kind[id(x)] != INV for x in n.inputs)
    if n.op not in LINEAR:
        return False
    terms = _terms(n, kind)
    if terms is None:
        return False
    return all(_summable(x, kind) for x in terms) and \
        (n.op not in (Op.ADD, Op.SUB, Op.MUL, Op.DIV) or all(x.type == n.type for x in terms))


def _terms(n: Node, kind: dict[int, str]) -> list[Node] | None:
    """The inputs of linear op n that carry the per-step sum (the others are invariant)."""
    if n.op == Op.MUL:
        a, b = n.inputs
        return [a] if kind[id(b)] == INV else [b] if kind[id(a)] == INV else None
    if n.op == Op.DIV:
        return [n.inputs[0]] if kind[id(n.inputs[1])] == INV else None
    return list(n.inputs)


def _accumulators(body: Graph, n_c: int, n_h: int, kind: dict[int, str],
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
        if f is not h and f.type == o.type and _summable(f, kind):
            found[i] = f
    return found


def _sinkable(body: Graph, n_h: int, kind: dict[int, str], readers: dict[int, list[Node]],
              ctx: SeqContext) -> set[int]:
    """Per-step values with a SEQ_RULES version that only per-step outputs need."""
    carry_out = {id(y) for y in body.outputs[:n_h]}
    inputs = {id(x) for x in body.inputs}
    found: set[int] = set()
    for n in reversed(body.nodes):
        if id(n) in inputs or id(n) in carry_out or kind[id(n)] == INV or per_step(n):
            continue
        if not isinstance(n.type, TensorType) or n.type.rank < 1:
            continue
        if not all(id(u) in found for u in readers.get(id(n), [])):
            continue
        rule = SEQ_RULES.get(n.op)
        kinds = [INV if kind[id(x)] == INV else SEQ for x in n.inputs]
        if rule is not None and rule(n, kinds, ctx) is not None:
            found.add(id(n))
    return found


def _group(root: Node, among: set[int]) -> list[Node]:
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


# ----------------------------------------------------------------------------- one loop

def _rewrite_loop(loop: Node, min_input_size: int, taken: set[str],
                  leaves: dict[tuple, Node]) -> tuple[Node, Parts] | None:
    """(the loop without its accumulators and sunk outputs, what replaces each old part)."""
    body: Graph = loop.attrs["body"]
    consts_n, carry_n, xs_n, lengths = loop_operands(loop)
    if lengths is not None or loop.attrs.get("until") is not None or \
            any(n.type is None for n in (*loop.inputs, *body.nodes)):
        return None
    steps = xs_n[0].type.shape[1] if xs_n else loop.attrs.get("length")
    ctx = SeqContext(min_input_size, steps)
    n_c, n_h = len(consts_n), len(carry_n)
    kind, readers = classify(body, n_c, n_h, ctx), _readers(body)
    accs = _accumulators(body, n_c, n_h, kind, readers)
    sinkable = _sinkable(body, n_h, kind, readers, ctx)
    sunk: dict[int, list[Node]] = {}
    for j, y in enumerate(body.outputs[n_h:], n_h):
        group = _group(y, sinkable)
        if any(n.op in BULK for n in group):
            sunk[j] = group
    if not accs and not sunk:
        return None

    # what the new body emits: the operands of the sums and of the sunk outputs
    moved = {id(n) for g in sunk.values() for n in g}
    operands, outside = [], []      # emitted per step; computed after the loop
    for f in accs.values():
        _operands(f, kind, operands, outside)
    products = _products(operands, kind, readers, ctx)
    outside += products
    operands = [x for x in operands if all(x is not p for p in products)]
    for g in sunk.values():
        operands += [x for n in g for x in n.inputs if kind[id(x)] != INV and id(x) not in moved]
    # values of x_t and invariants alone are computed after the loop, over the sequence
    # (as hoist_invariants would for the body's own use: cse then keeps one copy); the
    # values of the carried state are emitted
    outside += [x for x in operands if kind[id(x)] == SEQ]
    operands = [x for x in operands if kind[id(x)] == STEP]
    consts_b, carry_b, xs_b = split(body.inputs, n_c, n_h)
    known = {**{id(x): o for x, o in zip(consts_b, consts_n)},
             **{id(x): o for x, o in zip(xs_b, xs_n)}}
    kept_carry = [i for i in range(n_h) if i not in accs]
    kept_ys = [j for j in range(n_h, len(body.outputs)) if j not in sunk]
    outputs = [body.outputs[i] for i in kept_carry] + [body.outputs[j] for j in kept_ys]
    emitted: dict[int, int] = {}
    for x in operands:
        if id(x) in emitted:
            continue
        at = next((k for k in range(len(kept_carry), len(outputs)) if outputs[k] is x), None)
        if at is None:
            outputs.append(x)
            at = len(outputs) - 1
        emitted[id(x)] = at

    # the new loop: consts and sequences the body no longer reads are dropped
    reached = {id(n) for n in toposort(outputs)}
    consts = [(b, o) for b, o in zip(consts_b, consts_n) if id(b) in reached]
    xs = [(b, o) for b, o in zip(xs_b, xs_n) if id(b) in reached]
    if not xs and xs_b:
        xs = [(xs_b[0], xs_n[0])]          # the loop takes its number of steps from it
    ins = [b for b, _ in consts] + [carry_b[i] for i in kept_carry] + [b for b, _ in xs]
    new_body = body.rebuilt(ins, outputs)
    types = [carry_n[i].type for i in kept_carry] + [
        TensorType(y.type.shape[:1] + (steps,) + y.type.shape[1:], y.type.dtype)
        for y in outputs[len(kept_carry):]]
    attrs = {**loop.attrs, "body": new_body, "n_consts": len(consts),
             "n_carry": len(kept_carry), "n_xs": len(xs)}
    operands_n = [o for _, o in consts] + [carry_n[i] for i in kept_carry] + [o for _, o in xs]
    new_loop = loop.replace(inputs=tuple(operands_n), attrs=attrs, type=tuple(types))

    # after it: stacked operands, the sunk outputs and the sums
    make = _maker(taken)
    for i, at in emitted.items():
        known[i] = make(new_loop, Op.GET, [new_loop], index=at)
    seq = {i: INV if k == INV else SEQ for i, k in kind.items()}
    outer = outer_copies(body, [body.outputs[j] for j in sunk] + outside, seq, known, ctx,
                         taken, leaves)
    parts: Parts = [None] * len(body.outputs)
    for k, i in enumerate(kept_carry):
        parts[i] = k
    for k, j in enumerate(kept_ys, len(kept_carry)):
        parts[j] = k
    for j in sunk:
        parts[j] = outer[id(body.outputs[j])]
    memo: dict[int, Node] = {}
    for i, f in accs.items():
        total = _lift(f, kind, outer, memo, make)
        init = carry_n[i]
        parts[i] = total if _zero(init) else make(init, Op.ADD, [init, total])
    return new_loop, parts


def _operands(f: Node, kind: dict[int, str], operands: list[Node],
              invariants: list[Node]) -> None:
    """Collect the per-step operands of increment f's reductions, and its invariant factors."""
    if f.op in REDUCTIONS:
        operands.extend(f.inputs)
        return
    terms = _terms(f, kind)
    for x in f.inputs:
        if any(x is t for t in terms):
            _operands(x, kind, operands, invariants)
        else:
            invariants.append(x)


def _products(operands: list[Node], kind: dict[int, str], readers: dict[int, list[Node]],
              ctx: SeqContext) -> list[Node]:
    """The reduced values computable after the loop from the per-step values it emits anyway
    (a norm weight's gradient dy_t * xhat_t, an input-side norm's): no new output."""
    emitted = {id(x) for x in operands}

    def after(x: Node, top: bool) -> bool:
        rule = SEQ_RULES.get(x.op)
        return kind[id(x)] in (INV, SEQ) or (not top and id(x) in emitted) or (
            kind[id(x)] == STEP and rule is not None and not per_step(x) and
            len(readers.get(id(x), [])) == 1 and isinstance(x.type, TensorType) and
            x.type.rank >= 1 and all(after(i, False) for i in x.inputs) and
            rule(x, [INV if kind[id(i)] == INV else SEQ for i in x.inputs], ctx) is not None)
    return [x for x in dict.fromkeys(operands) if after(x, True)]


def _lift(n: Node, kind: dict[int, str], outer: dict[int, Node], memo: dict[int, Node],
          make: Callable[..., Node]) -> Node:
    """The outer node computing the sum over all steps of body value n (a summable one)."""
    if id(n) in memo:
        return memo[id(n)]
    if n.op == Op.SUM:
        (g,) = n.inputs
        axes = {0 if a == 0 else a + 1 for a in n.attrs["axes"]} | {1}
        out = make(n, Op.SUM, [outer[id(g)]], axes=tuple(sorted(axes)), keepdims=False)
        if n.attrs["keepdims"]:
            out = make(n, Op.RESHAPE, [out], shape=n.type.shape)
    elif n.op in REDUCTIONS:
        out = make(n, n.op, [outer[id(x)] for x in n.inputs], **n.attrs)
    else:
        terms = {id(t) for t in _terms(n, kind)}
        ins = [_lift(x, kind, outer, memo, make) if id(x) in terms else outer[id(x)]
               for x in n.inputs]
        out = make(n, n.op, ins, **n.attrs)
    memo[id(n)] = out
    return out


def _maker(taken: set[str]) -> Callable[..., Node]:
    def make(like: Node, op: Op, inputs: list[Node], **attrs: object) -> Node:
        """A typed node in the loop's graph, named after `like` and placed at its line."""
        base = like.name if op == like.op and like.name else op.value
        n = Node(op, tuple(inputs), attrs, None, None, fresh_name(base, taken, numbered=False),
                 like.scope, like.where)
        return apply_rule(n, [x.type for x in inputs])
    return make


def _zero(n: Node) -> bool:
    """A literal zero: fill(0), a zero constant, or a zero scalar expanded (differentiate's
    initial gradients)."""
    if n.op == Op.FILL:
        return n.attrs["value"] == 0.0
    if n.op == Op.CONST:
        return not n.attrs["value"].any()
    return n.op == Op.EXPAND and _zero(n.inputs[0])


__all__ = ["hoist_accumulations", "merge_contracts"]
