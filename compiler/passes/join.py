"""join_projections: one step product over K = D + H instead of a hoisted input projection.

A recurrent cell adds an input projection and a recurrent one:

    z = (x_t @ W_x^T + b_x) + (h @ W_h^T + b_h)

hoist.py computes the first for all steps as one GEMM into a [B, T, N] buffer that the loop
reads back step by step. With many rows that buffer is far larger than the caches, and the
step product, whose fused gate epilogue is paid once per K, is short. Joined, the step runs
one product over the concatenated operands, reading x_t in place of the hoisted buffer:

    z = concat(x_t, h) @ concat(W_x, W_h)^T + (b_x + b_h)

The weight concatenation and the bias sum are invariant, so hoisting computes them once before
the loop. When it pays (`join_pays`; LSTM, CPU time, joined / hoisted, interleaved medians,
2 shared vCPUs of an AMD EPYC (znver5) under load from other work):

    (B, T, D, H)          AVX-512 fwd / train     AVX2 fwd / train
    (1, 100, 32, 64)       1.20 / 1.10             1.04 / 1.01
    (4, 100, 32, 64)       0.97                    -
    (32, 100, 32, 64)      0.99                    -
    (1, 100, 128, 128)     1.25                    -
    (8, 100, 128, 128)     1.00                    -
    (1, 50, 256, 256)      1.67                    1.45
    (4, 50, 256, 256)      1.14                    -
    (8, 50, 256, 256)      0.97                    1.01
    (32, 50, 256, 256)     0.88 / 0.96             0.95-0.99 / 0.99
    (64, 100, 512, 512)    0.94 / 0.97             1.03-1.07 / 0.96-1.01

With few rows each step re-reads the input weights that the hoisted GEMM reads once, hence
MIN_ROWS. With 16 vector registers (AVX2) the join saves nothing at any size, so it is
not done. A batch of symbolic size (one program for every B) may be one row: it is joined
only where the inputs are wide enough (MIN_SYMBOLIC_INPUT) that the join saves 3-13% on large
batches, which is where such layers spend their time; small layers, where it saves 1-4%, keep
the hoisted GEMM (20% faster at one row). Large layers at a batch of few rows are faster
compiled with `specialize=(1,)` (or True). Only a sum of exactly these two shapes is joined
(LSTM and RNN cells; a GRU keeps the projections apart); the projections must be read by the
sum alone.

`join_loops` is the driver's step "join", run just before "hoist" (inner loops first).
"""
from __future__ import annotations

from graphrnn.ir import Graph, Node, Op, loop_operands
from graphrnn.isa import current_isa
from graphrnn.ops import apply_rule

from .loop_kinds import SeqContext, classify, leaf_key
from .rewrite import fresh_name, map_nodes, read_counts, rewrite, with_inputs

# Batch rows from which the joined step product pays (measured), or None: never join. At
# most threads.MIN_ROWS_PER_PART, and bit-identical across a batch split because the
# epilogue never contracts mul + add into an FMA on its own (irbuilder.FLAGS).
MIN_ROWS: int | None = 8
# Input features from which a product of a batch of unknown size is joined (measured, above)
MIN_SYMBOLIC_INPUT = 128
# Vector registers of the ISA kernels are built for from which the join pays (AVX-512's 32)
MIN_REGISTERS = 32


def join_loops(graph: Graph, *, min_input_size: int = 4) -> Graph:
    """`graph` with the projection sums of every loop body joined (inner loops first).

    `min_input_size`: as for hoist_invariants, whose classification of the body it uses.
    Returns `graph` itself when nothing is joined. Needs a typed graph.
    """
    taken = {n.name for n in graph.nodes}
    shared = shared_projections(graph)

    def visit(n: Node) -> Node:
        if n.op != Op.LOOP:
            return n
        body = join_loops(n.attrs["body"], min_input_size=min_input_size)
        if body is not n.attrs["body"]:
            n = n.replace(attrs={**n.attrs, "body": body})
        return _joined_loop(n, min_input_size, taken, shared)
    return rewrite(graph, visit, into_loops=False)


def _joined_loop(loop: Node, min_input_size: int, taken: set[str], shared: set[tuple]) -> Node:
    """`loop` with its projection sums joined, classified as hoist.py classifies them."""
    body: Graph = loop.attrs["body"]
    consts, carry, xs, _ = loop_operands(loop)
    if any(x.type is None for x in loop.inputs) or any(n.type is None for n in body.nodes):
        return loop
    steps = xs[0].type.shape[1] if xs else loop.attrs.get("length")
    kinds = classify(body, len(consts), len(carry), SeqContext(min_input_size, steps))
    return join_projections(loop, taken, kinds=kinds, min_input_size=min_input_size,
                            shared=shared)


def join_projections(loop: Node, taken: set[str], *, kinds: dict[int, str],
                     min_input_size: int, shared: set[tuple] = frozenset(),
                     min_rows: int | None = None) -> Node:
    """`loop` with each input + recurrent projection sum of its body joined into one product.

    `kinds`: loop_kinds.classify of the body (INV, SEQ or STEP by node id). Returns `loop` itself
    when nothing is joined. `shared`: projection keys (shared_projections) left hoisted.
    `min_rows`: the batch rows from which to join (default MIN_ROWS; None: none).
    """
    min_rows = MIN_ROWS if min_rows is None else min_rows
    if min_rows is None:
        return loop
    body: Graph = loop.attrs["body"]
    keys = projection_keys(loop)
    skip = {i for i, key in keys.items() if key in shared}
    users = read_counts(body.nodes, body.outputs)

    def visit(n: Node, ins: tuple[Node, ...]) -> Node:
        joined = _joined(n, kinds, users, min_input_size, min_rows, taken, skip) \
            if n.op == Op.ADD else None
        return joined if joined is not None else with_inputs(n, ins)
    new = map_nodes(body.nodes, visit)
    if all(new[id(n)] is n for n in body.nodes):
        return loop
    outputs = [new.get(id(y), y) for y in body.outputs]
    return loop.replace(attrs={**loop.attrs, "body": body.rebuilt(list(body.inputs), outputs)})


def _side(v: Node, kinds: dict[int, str], users: dict[int, int]
          ) -> tuple[Node, Node | None] | None:
    """(matmul, bias or None) when `v` is a product with invariant weights, plus an
    invariant rank-1 bias, each read once."""
    bias = None
    if v.op == Op.ADD and len(v.inputs) == 2:
        m, bias = v.inputs
        if m.op != Op.MATMUL:
            bias, m = m, bias
        if kinds.get(id(bias)) != "invariant" or bias.type.rank != 1 or users[id(m)] != 1:
            return None
        v = m
    if v.op != Op.MATMUL or kinds.get(id(v.inputs[1])) != "invariant" \
            or v.inputs[0].type.rank != 2:
        return None
    return v, bias


def _joined(z: Node, kinds: dict[int, str], users: dict[int, int], min_input_size: int,
            min_rows: int, taken: set[str], skip: set[int]) -> Node | None:
    """The joined replacement of the sum `z`, or None when it is not a projection sum."""
    if len(z.inputs) != 2 or any(users[id(v)] != 1 for v in z.inputs):
        return None
    sides = [_side(v, kinds, users) for v in z.inputs]
    if any(s is None for s in sides):
        return None
    by_kind = {kinds.get(id(m.inputs[0])): (m, b) for m, b in sides}
    if set(by_kind) != {"sequence", "step"}:
        return None
    (mx, bx), (mh, bh) = by_kind["sequence"], by_kind["step"]
    if id(mx) in skip:
        return None
    x, h = mx.inputs[0], mh.inputs[0]
    transpose = bool(mx.attrs.get("transpose_b"))
    rows, k = x.type.shape
    if transpose != bool(mh.attrs.get("transpose_b")) or mx.type.shape != mh.type.shape \
            or mx.type.shape != z.type.shape or h.type.shape[0] != rows \
            or not isinstance(k, int) or k <= min_input_size or not join_pays(rows, k, min_rows):
        return None

    def make(op: Op, inputs: tuple[Node, ...], base: str, **attrs) -> Node:
        node = Node(op, inputs, attrs, None, None, fresh_name(base, taken), z.scope, z.where)
        return apply_rule(node, [i.type for i in inputs])

    xh = make(Op.CONCAT, (x, h), "joined_input", axis=-1)
    w = make(Op.CONCAT, (mx.inputs[1], mh.inputs[1]), "joined_weight",
             axis=1 if transpose else 0)
    out = make(Op.MATMUL, (xh, w), "joined_product", transpose_b=transpose)
    biases = tuple(b for b in (bx, bh) if b is not None)
    if len(biases) == 2:
        biases = (make(Op.ADD, biases, "joined_bias"),)
    if biases:
        node = Node(Op.ADD, (out, biases[0]), {}, None, None, z.name, z.scope, z.where, z.doc)
        out = apply_rule(node, [out.type, biases[0].type])
    return out


def join_pays(rows: int | str, input_size: int, min_rows: int) -> bool:
    """Whether joining a step product of `rows` rows (a str: the symbolic batch) with
    `input_size` input features pays with the kernels' ISA (see the module docstring)."""
    if current_isa().registers < MIN_REGISTERS:
        return False
    if isinstance(rows, int):
        return rows >= min_rows
    return input_size >= MIN_SYMBOLIC_INPUT


def shared_projections(graph: Graph) -> set[tuple]:
    """(sequence, weights) keys of the input projections that more than one loop of `graph`
    computes (a training graph's forward loop and the backward loop that recomputes its
    steps): hoisted, cse computes them once for both, so they are not joined."""
    seen: dict[tuple, int] = {}
    for n in graph.nodes:
        if n.op == Op.LOOP:
            for key in set(projection_keys(n).values()):
                seen[key] = seen.get(key, 0) + 1
    return {k for k, c in seen.items() if c > 1}


def projection_keys(loop: Node) -> dict[int, tuple]:
    """Body matmul id -> (outer sequence, outer weights) for each product of a step input by
    weights the loop's graph also holds (a const, or a view of a const vector)."""
    consts_n, carry_n, xs_n, _ = loop_operands(loop)
    body: Graph = loop.attrs["body"]
    outer = {id(b): o for b, o in zip(body.inputs, (*consts_n, *carry_n, *xs_n))}
    xs = {id(b) for b in body.inputs[len(consts_n) + len(carry_n):]}
    keys: dict[int, tuple] = {}
    for n in body.nodes:
        if n.op != Op.MATMUL or id(n.inputs[0]) not in xs:
            continue
        w = n.inputs[1]
        if id(w) in outer:
            o = outer[id(w)]
            wkey = leaf_key(o, o.inputs) or ("node", id(o))
        elif w.op == Op.VIEW and id(w.inputs[0]) in outer:
            wkey = ("view", id(outer[id(w.inputs[0])]), w.attrs["offset"], tuple(w.attrs["shape"]))
        else:
            continue
        keys[id(n)] = (id(outer[id(n.inputs[0])]), wkey)
    return keys


__all__ = ["join_loops", "join_projections", "join_pays", "shared_projections", "projection_keys",
           "MIN_ROWS", "MIN_SYMBOLIC_INPUT", "MIN_REGISTERS"]
