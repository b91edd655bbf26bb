"""Which values of a graph belong to single batch rows: when splitting the batch is exact.

A compiled call may run its batch as several parts of rows (`gr.compile(model, threads=n)`)
only if every row is computed from its own rows alone. `row_plan` proves it by giving every
value of the graph a *kind*, one ROW_RULES entry per op:

    ROWS   row b of the value depends only on row b of the inputs; the batch dim is in its type
    SAME   the value does not depend on the batch at all (parameters, constants)
    MEAN   an average over the batch (e.g. a mean-reduced loss): the parts' values combine as
           sum_i (rows_i / B) * value_i, and so do any affine functions of it
    SUM    a sum over the batch: the parts' values add up
    None   rows are mixed some other way (a softmax across the batch, a batch-mean subtracted
           from every row, dropout in training, whose mask follows the flat index): no split

    kinds = row_plan(graph, training=False)       # RowPlan(inputs=(ROWS, ...), outputs=...)

`matmul_flops` counts the multiply-adds per row, the work measure of the thread threshold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Optional, Sequence

from .axes import batch_symbols, time_axis
from .ir import (ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, GraphError, Node, Op, TensorType,
                 loop_operands)
from .ops import infer_graph

ROWS, SAME, MEAN, SUM = "rows", "same", "mean", "sum"
REDUCED = (MEAN, SUM)
Kind = Optional[str]


@dataclass(frozen=True)
class RowPlan:
    """How one call splits: per input ROWS (cut on axis 0) or SAME (given whole to every
    part); per output ROWS (rows concatenated on axis 0), SAME, MEAN or SUM. `reason` says
    why calls cannot be split (then the kinds are empty)."""
    batch: str = ""
    inputs: tuple[str, ...] = ()
    outputs: tuple[str, ...] = ()
    time: tuple[int, int] | None = None     # (input, axis) of the time dim, for the work
    typed: Graph | None = None
    reason: str = ""


@dataclass(frozen=True)
class _Ctx:
    batch: str
    training: bool


def _batch_axes(t: Any, batch: str) -> list[int]:
    return [i for i, d in enumerate(t.shape) if d == batch] if isinstance(t, TensorType) else []


def _rowwise(kinds: Sequence[Kind]) -> Kind:
    """Row-by-row ops: rows and batch-free values mix freely, batch reductions do not."""
    if any(k not in (ROWS, SAME) for k in kinds):
        return None
    return ROWS if ROWS in kinds else SAME


def _affine(node: Node, kinds: Sequence[Kind], reduced: str) -> bool:
    """Does `node` keep a combination of the parts exact? sum_i w_i f(v_i) = f(sum_i w_i v_i)
    for linear f; affine f too when the weights add up to 1 (MEAN)."""
    n_red = sum(k == reduced for k in kinds)
    if node.op == Op.NEG:
        return True
    if node.op in (Op.ADD, Op.SUB):
        return n_red == len(kinds) or reduced == MEAN
    if node.op == Op.MUL:
        return n_red == 1
    if node.op == Op.DIV:
        return kinds[0] == reduced and kinds[1] == SAME
    return False


def _elementwise(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    if None in kinds:
        return None
    reduced = {k for k in kinds if k in REDUCED}
    if not reduced:
        return _rowwise(kinds)
    if ROWS in kinds or len(reduced) > 1:
        return None
    kind = reduced.pop()
    return kind if _affine(node, kinds, kind) else None


def _dropout(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    if ctx.training and node.attrs["p"] > 0 and kinds[0] != SAME:
        return None             # the mask follows the element's flat index in the whole batch
    return kinds[0]


def _matmul(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    a, b = kinds
    if b != SAME:
        return None
    if a == ROWS and _batch_axes(node.inputs[0].type, ctx.batch)[-1:] == \
            [node.inputs[0].type.rank - 1]:
        return None             # rows summed over: the batch is the contracted dim
    return a


def _bmm(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    """Row by row when the batch is one of the leading dims, not a matrix dim."""
    for x, k in zip(node.inputs, kinds):
        if k == ROWS and any(a >= x.type.rank - 2 for a in _batch_axes(x.type, ctx.batch)):
            return None
    return _rowwise(kinds)


def _reduce(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    k = kinds[0]
    if k == ROWS:
        if any(a in node.attrs["axes"] for a in _batch_axes(node.inputs[0].type, ctx.batch)):
            return MEAN if node.op == Op.MEAN else SUM
        return ROWS
    return k                    # sums and means of batch reductions are linear in them


def _along_axis(attr: str) -> Callable[[Node, list, _Ctx], Kind]:
    """Ops that work along one axis: fine unless that axis is the batch."""
    def rule(node: Node, kinds: list, ctx: _Ctx) -> Kind:
        if ROWS in kinds and node.attrs[attr] in _batch_axes(node.inputs[0].type, ctx.batch):
            return None
        if node.op == Op.CONCAT:
            return _rowwise(kinds)
        if node.op in ROW_WISE:
            return _rowwise(kinds)
        return kinds[0]         # slices, indexes and pads of a reduction are linear
    return rule


# ops along one axis that mix its values non-linearly
ROW_WISE = frozenset({Op.SOFTMAX, Op.LOG_SOFTMAX, Op.MAX, Op.MIN, Op.LOGSUMEXP, Op.ARG_ONEHOT})


def _normalize(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    t = node.inputs[0].type
    if any(a >= t.rank - len(node.attrs["shape"]) for a in _batch_axes(t, ctx.batch)):
        return None
    return _rowwise(kinds)


def _lookup(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    return _rowwise(kinds[1:]) if kinds[0] == SAME else None


def _reshape(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    if kinds[0] == ROWS and (_batch_axes(node.inputs[0].type, ctx.batch) != [0]
                             or _batch_axes(node.type, ctx.batch) != [0]):
        return None
    return kinds[0]


def _fill(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    return ROWS if _batch_axes(node.type, ctx.batch) else SAME


def _leaf(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    return SAME


def _get(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    parts = kinds[0]
    return parts[node.attrs["index"]] if isinstance(parts, tuple) else None


def _join(a: Kind, b: Kind) -> Kind:
    if a == b:
        return a
    return ROWS if {a, b} == {ROWS, SAME} else None


def _loop(node: Node, kinds: list, ctx: _Ctx) -> Any:
    """The body's kinds given the operands'; a carry's kind is iterated to a fixed point."""
    consts, carry, xs, lengths = loop_operands(node)
    n_c, n_h = len(consts), len(carry)
    k_c = kinds[:n_c]
    k_h = kinds[n_c:n_c + n_h]
    k_x = kinds[n_c + n_h:n_c + n_h + len(xs)]
    if lengths is not None and kinds[-1] not in (ROWS, SAME):
        return None
    for x, k in zip(xs, k_x):
        if k == ROWS and _batch_axes(x.type, ctx.batch) != [0]:
            return None
    body: Graph = node.attrs["body"]
    for _ in range(n_h + 2):
        outs = run_kinds(body, [*k_c, *k_h, *k_x], ctx)
        new = [_join(a, b) for a, b in zip(k_h, outs[:n_h])]
        if new == k_h:
            if lengths is not None and any(k in REDUCED for k in outs):
                return None     # masked row by row: a batch reduction would mix with rows
            return tuple(new) + tuple(outs[n_h:])
        k_h = new
    return None


def _fused(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    return run_kinds(node.attrs["body"], kinds, ctx)[0]


def _gathered(node: Node, kinds: list, ctx: _Ctx) -> Kind:
    """Sums over rows (contract, scatter, assemble of their parts): a SUM."""
    if None in kinds or MEAN in kinds:
        return None
    return SAME if all(k == SAME for k in kinds) else SUM


ROW_RULES: dict[Op, Callable[[Node, list, _Ctx], Any]] = {
    Op.PARAM: _leaf, Op.CONST: _leaf, Op.FILL: _fill,
    **{op: _elementwise for op in ELEMENTWISE_UNARY | ELEMENTWISE_BINARY},
    Op.WHERE: _elementwise, Op.ASTYPE: _elementwise, Op.EXPAND: _elementwise,
    Op.DROPOUT: _dropout,
    Op.MATMUL: _matmul, Op.BMM: _bmm, Op.SUM: _reduce, Op.MEAN: _reduce,
    Op.SOFTMAX: _along_axis("axis"), Op.LOG_SOFTMAX: _along_axis("axis"),
    Op.CONCAT: _along_axis("axis"), Op.SLICE: _along_axis("axis"),
    Op.INDEX: _along_axis("axis"), Op.PAD: _along_axis("axis"),
    **{op: _along_axis("axis") for op in ROW_WISE - {Op.SOFTMAX, Op.LOG_SOFTMAX}},
    Op.NORMALIZE: _normalize, Op.NORMALIZE_GRAD: _normalize,
    Op.LOOKUP: _lookup, Op.PICK: lambda n, k, c: _rowwise(k),
    Op.SEQ_MASK: lambda n, k, c: _rowwise(k), Op.SAMPLE: lambda n, k, c: _rowwise(k),
    Op.ONEHOT: lambda n, k, c: _rowwise(k), Op.RESHAPE: _reshape,
    Op.TRANSPOSE: lambda n, k, c: k[0], Op.SHIFT: _along_axis("axis"),
    Op.LOOP: _loop, Op.GET: _get, Op.VIEW: _leaf, Op.FUSED: _fused,
    Op.CONTRACT: _gathered, Op.SCATTER: _gathered, Op.ASSEMBLE: _gathered,
}


def _checked(node: Node, kind: Any, batch: str) -> Any:
    """A kind that agrees with the node's type: a batch-free value of a type with the batch
    dim is uniform over rows (ROWS); ROWS needs the batch dim exactly once."""
    if isinstance(kind, tuple) or kind is None:
        return kind
    axes = _batch_axes(node.type, batch)
    if kind == SAME and axes:
        return ROWS
    if kind == ROWS and len(axes) != 1:
        return None
    if kind in REDUCED and axes:
        return None
    return kind


def run_kinds(graph: Graph, in_kinds: Sequence[Kind], ctx: _Ctx) -> list:
    """The kind of every output of a typed graph, given its inputs' kinds."""
    kinds: dict[int, Any] = {id(x): k for x, k in zip(graph.inputs, in_kinds)}
    for n in graph.nodes:
        if id(n) in kinds:
            continue
        rule = ROW_RULES.get(n.op)
        k = rule(n, [kinds[id(x)] for x in n.inputs], ctx) if rule is not None else None
        kinds[id(n)] = _checked(n, k, ctx.batch)
    return [kinds[id(y)] for y in graph.outputs]


def row_plan(graph: Graph, *, training: bool) -> RowPlan:
    """The kinds of the graph's inputs and outputs, or a RowPlan whose `reason` says why a
    call cannot be split by rows."""
    types = [x.type for x in graph.inputs]
    if any(t is None for t in types):
        names = ", ".join(x.name for x, t in zip(graph.inputs, types) if t is None)
        return RowPlan(reason=f"input {names} has no declared type (declare it with "
                              "gr.Input('B', ...) to let calls split the batch)")
    symbols = batch_symbols(types)
    if len(symbols) != 1:
        return RowPlan(reason="no input has a symbolic batch dim on axis 0" if not symbols
                       else f"several batch symbols on axis 0: {sorted(symbols)}")
    batch = symbols.pop()
    try:
        typed = infer_graph(graph, types)
    except (GraphError, ValueError) as e:
        return RowPlan(reason=f"the graph does not type with a symbolic batch: {e}")
    ctx = _Ctx(batch, training)
    in_kinds = []
    for x, t in zip(graph.inputs, types):
        axes = _batch_axes(t, batch)
        if axes not in ([], [0]):
            return RowPlan(reason=f"input {x.name} ({t}) has its batch dim off axis 0")
        in_kinds.append(ROWS if axes else SAME)
    outs = run_kinds(typed, in_kinds, ctx)
    for y, k in zip(typed.outputs, outs):
        if k is None or isinstance(k, tuple):
            return RowPlan(reason=f"output {y.name} mixes the rows of the batch")
        if k == ROWS and _batch_axes(y.type, batch) != [0]:
            return RowPlan(reason=f"output {y.name} ({y.type}) has its batch dim off axis 0")
    time = time_axis(types, {batch})
    return RowPlan(batch, tuple(in_kinds), tuple(outs), time, typed)


def matmul_flops(graph: Graph, batch: str, steps: int) -> float:
    """Flops of the matrix products for one batch row: 2*K*N per row of each product, the
    time dims (and every loop's steps) taken as `steps`. The other ops are left out."""
    total = 0.0
    for n in graph.nodes:
        if n.op == Op.MATMUL:
            a, out = n.inputs[0].type, n.type
            lead = [d for d in a.shape[:-1] if d != batch]
            total += 2.0 * _size(a.shape[-1], steps) * _size(out.shape[-1], steps) * \
                math.prod(_size(d, steps) for d in lead)
        elif n.op == Op.LOOP:
            _, _, xs, _ = loop_operands(n)
            length = n.attrs.get("length")
            length = length if length is not None else xs[0].type.shape[1]
            total += _size(length, steps) * matmul_flops(n.attrs["body"], batch, steps)
    return total


def _size(d: Any, steps: int) -> int:
    return d if isinstance(d, int) else steps


__all__ = ["ROW_RULES", "ROWS", "SAME", "MEAN", "SUM", "RowPlan", "row_plan", "run_kinds",
           "matmul_flops"]
