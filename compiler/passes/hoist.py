"""hoist_invariants: move the work that does not need the carried state out of loop bodies.

Aesara's two scan rewrites, done on graphrnn's three operand groups:

- *invariant* values, computed only from consts, parameters and constants (for example the
  concatenation of weights that `merge_matmuls` makes), are computed once before the loop and
  enter the body as new consts (`push_out_non_seq_scan`);
- *sequence* values, computed only from the step inputs x_t and invariants, never from the
  carry, are computed once over the whole sequence [B, T, ...] before the loop and enter the
  body as new sequences (`push_out_seq_scan`). The input projections `x_t @ W_ih^T + b_ih` of
  all steps become one matmul over [B, T, D]: one GEMM instead of T small ones.

A body value of shape [B, ...] becomes [B, T, ...] outside: T is inserted at axis 1, so axis
attributes >= 1 shift by one. Only ops listed in SEQ_RULES are moved to the sequence, and only
when that is valid on the extra axis (each rule says when); anything else stays per step. The
allowlist: elementwise ops, where, expand (an invariant operand must not have a batch axis:
lower rank, or a leading 1), matmul with an invariant right operand, lookup with invariant
weights, pick, onehot, slice/index/concat/pad/softmax/log_softmax along a non-batch axis,
sum/mean over non-batch axes, reshape that keeps the batch axis first. A matmul over
K <= `min_input_size` stays per step: with a tiny input the hoisted [B, T, N] result costs
more memory traffic than it saves.

Sequence values move when they are a matmul or feed one (BULK): the GEMM over all steps is
the gain. After it, a value moves only if it takes the place of the moved values it reads (a
bias add on the product, read by nothing else), so the frontier never grows: the gate
nonlinearities of the forward step that a backward loop recomputes from its saved carries
stay in the body and read the hoisted gate pre-activations, instead of becoming one more
[B, T, ...] buffer each, written and read back for no saved work.

A sequence value (not a map) that the graph already holds over all steps (a norm of a
hoisted product that the forward computed, recomputed by the backward loop) is read from
there instead: it moves, and cse keeps one copy (`_twins`).

Correct with lengths (steps past a row's length are computed but masked by the loop), in
either direction, and in nested loops (inner bodies first, so a value can leave several levels).
Slices, indexes and reshapes of a hoisted value are not given a sequence of their own: they
are recomputed in the body from the hoisted value. Loop consts and sequences the body no
longer reads are dropped. Dropout (its mask depends on the step) is never moved.

The driver's step "join" (join.py) runs just before: with many batch rows a loop's input
projection is joined into the step product instead (one product over concat(x_t, h), no
[B, T, ...] buffer); the weight concatenation it makes is then an invariant moved out here.

The kinds of body values (INV, SEQ, STEP) and SEQ_RULES live in loop_kinds.py; `outer_copies`
is shared with accumulate.py, which moves work the other way: after the loop.
"""
from __future__ import annotations

from graphrnn.ir import (ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, Node, Op, TensorType,
                         loop_operands, split)
from graphrnn.ops import apply_rule

from .cse import frozen
from .loop_kinds import BULK, INV, SEQ, SEQ_RULES, STEP, SeqContext, classify, leaf_key
from .rewrite import fresh_name, map_nodes, rewrite, with_inputs

CHEAP = frozenset({Op.PARAM, Op.CONST, Op.VIEW, Op.FILL})   # left in place when invariant
RECOMPUTED = frozenset({Op.SLICE, Op.INDEX, Op.RESHAPE})     # moved data, not computed
# recomputed per step as cheaply as read back: a twin of one outside (`_twins`) stays put
MAPS = ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE, Op.ASTYPE, Op.EXPAND}


def hoist_invariants(graph: Graph, *, min_input_size: int = 4) -> Graph:
    """`graph` with invariant and sequence-only work of every loop body moved before the loop.

    `min_input_size`: a per-step matmul over K <= this many input features is left in the
    body. Returns `graph` itself when nothing moved. Needs a typed graph (infer_shapes).
    """
    taken = {n.name for n in graph.nodes}
    leaves = {k: n for n in graph.nodes if (k := leaf_key(n, n.inputs)) is not None}
    held = {_key(n.op, n.inputs, n.attrs) for n in graph.nodes
            if n.op in SEQ_RULES and n.op not in MAPS and n.op not in CHEAP}

    def visit(n: Node) -> Node:
        if n.op != Op.LOOP:
            return n
        body = hoist_invariants(n.attrs["body"], min_input_size=min_input_size)
        n = n.replace(attrs={**n.attrs, "body": body})
        return _hoist_loop(n, min_input_size, taken, leaves, held)
    return rewrite(graph, visit, into_loops=False)




# ----------------------------------------------------------------------------- one loop

def _cheap(body: Graph, n_consts: int) -> set[int]:
    """Invariant nodes not worth a const: leaves, and views or fills of them."""
    cheap = {id(x) for x in body.inputs[:n_consts]}
    for n in body.nodes:
        if n.op in CHEAP and all(id(x) in cheap for x in n.inputs):
            cheap.add(id(n))
    return cheap


def _key(op: Op, inputs: tuple[Node, ...], attrs: dict) -> tuple:
    """What makes two nodes of one graph the same computation (for `_twins`)."""
    return op, tuple(id(x) for x in inputs), tuple(sorted((k, frozen(v))
                                                          for k, v in attrs.items()))


def _twins(body: Graph, kind: dict[int, str], outer: dict[int, Node], ctx: SeqContext,
           held: set[tuple]) -> set[int]:
    """Sequence nodes reading only the loop's sequences whose [B, T, ...] version the loop's
    graph already computes (`held`): moving them costs no new work. Not maps, which cost a
    read either way and, read outside by two, would no longer fuse into their reader."""
    found: set[int] = set()
    for n in body.nodes:
        if kind[id(n)] != SEQ or n.op in CHEAP or n.op in MAPS or not n.inputs or \
                not all(id(x) in outer for x in n.inputs):
            continue
        attrs = SEQ_RULES[n.op](n, [kind[id(x)] for x in n.inputs], ctx)
        if attrs is not None and \
                _key(n.op, tuple(outer[id(x)] for x in n.inputs), {**n.attrs, **attrs}) in held:
            found.add(id(n))
    return found


def _moved(body: Graph, kind: dict[int, str], cheap: set[int]) -> set[int]:
    """Invariant nodes worth a const; sequence nodes that are BULK or feed one, and those
    that only replace moved values as the frontier (each sequence operand moved, read by
    this node alone and not an output: a bias add on a hoisted product)."""
    inputs = {id(x) for x in body.inputs}
    feeds: set[int] = set()
    moved: set[int] = set()
    for n in reversed(body.nodes):
        if id(n) in inputs:
            continue
        if kind[id(n)] == SEQ and (n.op in BULK or id(n) in feeds):
            moved.add(id(n))
            feeds.update(id(x) for x in n.inputs if kind[id(x)] == SEQ)
        elif kind[id(n)] == INV and id(n) not in cheap:
            moved.add(id(n))
    readers: dict[int, set[int]] = {id(y): {-1} for y in body.outputs}
    for n in body.nodes:
        for x in n.inputs:
            readers.setdefault(id(x), set()).add(id(n))
    for n in body.nodes:
        seq = [x for x in n.inputs if kind[id(x)] == SEQ]
        if kind[id(n)] == SEQ and id(n) not in moved and seq and \
                all(id(x) in moved and readers[id(x)] == {id(n)} for x in seq):
            moved.add(id(n))
    return moved


def _frontier(body: Graph, kind: dict[int, str], moved: set[int]) -> tuple[list[Node], set[int]]:
    """(moved nodes the body still reads, which become body inputs; nodes kept in the body)."""
    needed = {id(y) for y in body.outputs}
    inputs = {id(x) for x in body.inputs}
    frontier: list[Node] = []
    keep: set[int] = set()
    for n in reversed(body.nodes):
        if id(n) not in needed or id(n) in inputs:
            continue
        recompute = n.op in RECOMPUTED and kind[id(n)] == SEQ
        if id(n) in moved and not recompute and isinstance(n.type, TensorType):
            frontier.append(n)
        else:
            keep.add(id(n))
            needed.update(id(x) for x in n.inputs)
    return frontier[::-1], keep


def _hoist_loop(loop: Node, min_input_size: int, taken: set[str],
                leaves: dict[tuple, Node], held: set[tuple]) -> Node:
    """`loop` with its body's invariant and sequence-only frontier computed outside."""
    body: Graph = loop.attrs["body"]
    consts_n, carry_n, xs_n, lengths = loop_operands(loop)
    if any(x.type is None for x in loop.inputs) or any(n.type is None for n in body.nodes):
        return loop
    steps = xs_n[0].type.shape[1] if xs_n else loop.attrs.get("length")
    ctx = SeqContext(min_input_size, steps)
    n_c, n_h = len(consts_n), len(carry_n)
    kind = classify(body, n_c, n_h, ctx)
    if loop.attrs.get("checkpoint"):
        # a loop of checkpointed segments keeps per-segment work inside: moved out, it would
        # be stacked over all T steps, the memory checkpointing saves
        kind = {i: STEP if k == SEQ else k for i, k in kind.items()}
    cheap = _cheap(body, n_c)
    consts_b, _, xs_b = split(body.inputs, n_c, n_h)
    seqs = {id(x): o for x, o in zip(xs_b, xs_n)}
    moved = _moved(body, kind, cheap) | _twins(body, kind, seqs, ctx, held)
    frontier, keep = _frontier(body, kind, moved)
    if not frontier:
        return loop
    known = {**{id(x): o for x, o in zip(consts_b, consts_n)},
             **{id(x): o for x, o in zip(xs_b, xs_n)}}
    outer = outer_copies(body, frontier, kind, known, ctx, taken, leaves)

    # the new body: frontier values become inputs, everything else is copied
    new: dict[int, Node] = {id(x): x for x in body.inputs}
    for f in frontier:
        new[id(f)] = Node(Op.INPUT, (), {}, f.type, name=f.name, scope=f.scope, where=f.where,
                          doc=f.doc)
    new = map_nodes([n for n in body.nodes if id(n) in keep], with_inputs, new)
    outputs = [new[id(y)] for y in body.outputs]
    read = {id(x) for n in new.values() for x in n.inputs} | {id(y) for y in outputs}

    carry_b = body.inputs[n_c:n_c + n_h]
    inv = [f for f in frontier if kind[id(f)] == INV]
    seq = [f for f in frontier if kind[id(f)] == SEQ]
    consts = [(x, o) for x, o in zip(consts_b, consts_n) if id(x) in read]
    consts += [(new[id(f)], outer[id(f)]) for f in inv]
    xs = [(x, o) for x, o in zip(xs_b, xs_n) if id(x) in read]
    if not xs and not seq and xs_b:
        xs = [(xs_b[0], xs_n[0])]          # the loop takes its number of steps from it
    xs += [(new[id(f)], outer[id(f)]) for f in seq]
    new_body = body.rebuilt([x for x, _ in consts] + list(carry_b) + [x for x, _ in xs],
                            outputs)
    operands = ([o for _, o in consts] + list(carry_n) + [o for _, o in xs]
                + ([lengths] if lengths is not None else []))
    attrs = {**loop.attrs, "body": new_body, "n_consts": len(consts), "n_xs": len(xs)}
    return loop.replace(inputs=tuple(operands), attrs=attrs)


def outer_copies(body: Graph, targets: list[Node], kind: dict[int, str],
                 known: dict[int, Node], ctx: SeqContext, taken: set[str],
                 leaves: dict[tuple, Node]) -> dict[int, Node]:
    """Copies, in the loop's graph, of `targets` and every body value they read, down to the
    values `known` already maps to outer nodes (the loop's consts and sequences, and for
    accumulate.py the stacked per-step outputs).

    Sequence nodes get [B, T, ...] types and shifted axes from SEQ_RULES; invariant nodes are
    plain copies. Parameters, views and constants the graph already holds are reused.
    """
    outer = dict(known)
    wanted = {id(f) for f in targets}
    for n in reversed(body.nodes):
        if id(n) in wanted and id(n) not in outer:
            wanted.update(id(x) for x in n.inputs)
    for n in body.nodes:
        if id(n) not in wanted or id(n) in outer:
            continue
        ins = tuple(outer[id(x)] for x in n.inputs)
        key = leaf_key(n, ins)
        if key is not None and key in leaves:
            outer[id(n)] = leaves[key]
            continue
        attrs = dict(n.attrs)
        if kind[id(n)] == SEQ:
            attrs.update(SEQ_RULES[n.op](n, [kind[id(x)] for x in n.inputs], ctx))
        name = fresh_name(n.name or n.op.value, taken, numbered=False)
        copy = Node(n.op, ins, attrs, None, n.param, name, n.scope, n.where, n.doc)
        outer[id(n)] = apply_rule(copy, [x.type for x in ins])
        if key is not None:
            leaves[key] = outer[id(n)]
    return outer


__all__ = ["hoist_invariants", "outer_copies"]
