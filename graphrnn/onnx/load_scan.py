"""Import rules for ONNX's control flow, Scan and Loop (its for-loops), as graphrnn loops.

ONNX's Scan (opset 9 on) has no batch axis: states and scanned slices are whatever shape the
body says. It becomes one `loop` node on a batch of one row: states enter as [1, *S] carries,
each scanned input as a [1, T, ...] sequence (the scan axis moved to position 1), and the body
graph is imported with reshapes at its edges that drop and restore that row axis, so the
body's own ops see exactly the shapes ONNX gives them. Outer values the body reads enter as
loop consts (the body stays closed). Opset 8's Scan, batched on axis 0, runs one such loop per
batch row (a static batch). The loop's `reverse` is the scan direction, so per-input
directions must agree, and an output's direction must equal the inputs' (graphrnn keeps ys in
element order). A Loop is imported when it is a for-loop: a known trip count and a condition
that is known true and that the body passes through; the iteration number enters as a
sequence. A computed condition (a while-loop) is refused naming the node.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .. import ops
from ..ir import Node
from .importer import Importer, build_graph, rule
from .proto import tensor_to_array
from .values import Lazy, lazy


def _outer_names(body: Any) -> list[str]:
    """Names the body reads but does not define: values of the enclosing graph."""
    defined = {x.name for x in body.input} | {t.name for t in body.initializer}
    for n in body.node:
        defined.update(o for o in n.output if o)
    used = []
    for n in body.node:
        for x in n.input:
            if x and x not in defined and x not in used:
                used.append(x)
    return used


def _scan_loop(imp: Importer, body: Any, states: list[Node], xs: list[Node], reverse: bool,
               lengths: Node | None = None, fixed: dict[int, Any] | None = None,
               skip_outputs: int = 0, xs_first: bool = False
               ) -> tuple[list[Node], list[Node]]:
    """Run `body` over xs ([T, ...] each): (final states, scan outputs [T, ...]).

    The body's inputs are the states then the xs (the xs first with `xs_first`), after the
    inputs `fixed` gives known values (by position); its first `skip_outputs` outputs are
    not loop values (Loop's condition).
    """
    fixed = fixed or {}
    child = Importer(imp.opset, imp.initializers, imp.prefix)
    child.params, child.tokens, child.outer = imp.params, imp.tokens, imp
    for t in body.initializer:
        raise imp.error(f"the body's initializer {t.name!r}: give it in the outer graph")
    consts, inner = [], []
    for name in _outer_names(body):
        v = imp.values.get(name)
        if v is None:
            raise imp.error(f"the body reads {name!r}, which the outer graph does not define")
        if isinstance(v, Lazy):
            node = imp.node_of(v)
            x = ops.input_(node.type.shape, node.type.dtype, name=f"outer_{len(consts)}")
            consts.append(node)
            inner.append(x)
            child.values[name] = lazy(x)
        else:
            child.values[name] = v
    n_states = len(states)
    if len(body.input) != len(fixed) + n_states + len(xs):
        raise imp.error(f"the body takes {len(body.input)} inputs, expected {n_states} states "
                        f"+ {len(xs)} scanned inputs")
    for i, v in fixed.items():
        child.values[body.input[i].name] = v
    free = [vi for i, vi in enumerate(body.input) if i not in fixed]
    body_inputs = []
    outers = [(x, False) for x in xs] + [(x, True) for x in states] if xs_first else \
        [(x, True) for x in states] + [(x, False) for x in xs]
    for vi, (outer, is_state) in zip(free, outers):
        shape = outer.type.shape if is_state else outer.type.shape[1:]
        x = ops.input_((1,) + tuple(shape), outer.type.dtype, name=f"{vi.name}_row")
        body_inputs.append(x)
        child.values[vi.name] = lazy(ops.reshape(x, tuple(shape)))
    outs = build_graph(child, body, body_inputs)[skip_outputs:]
    if len(outs) < n_states:
        raise imp.error(f"the body returns {len(outs)} values, fewer than its {n_states} states")
    for k, (o, s) in enumerate(zip(outs, states)):
        if o.type.shape != s.type.shape:
            raise imp.error(f"body output {k} has shape {list(o.type.shape)}, its state "
                            f"{list(s.type.shape)}")
    rows = [ops.reshape(o, (1,) + o.type.shape) for o in outs]
    if xs_first:       # the loop node takes its carries before its sequences
        body_inputs = body_inputs[len(xs):] + body_inputs[:len(xs)]
    graph = ops.internal_graph(inner + body_inputs, rows)
    init = [ops.reshape(s, (1,) + s.type.shape) for s in states]
    seqs = [ops.reshape(x, (1,) + x.type.shape) for x in xs]
    loop = ops.loop(graph, consts, init, seqs, lengths, reverse=reverse)
    parts = [ops.get(loop, i) for i in range(len(outs))]
    finals = [ops.reshape(p, p.type.shape[1:]) for p in parts[:n_states]]
    ys = [ops.reshape(p, p.type.shape[1:]) for p in parts[n_states:]]
    return finals, ys


def _ints(imp: Importer, name: str, count: int, default: int) -> list[int]:
    v = imp.attr(name)
    v = [default] * count if v is None else [int(x) for x in v]
    if len(v) != count:
        raise imp.error(f"attribute {name!r} has {len(v)} entries, expected {count}")
    return v


@rule("Scan")
def _scan(imp: Importer, n: Any) -> list:
    body = imp.attr("body")
    m = int(imp.attr("num_scan_inputs", 0))
    first = 1 if imp.opset < 9 else 0          # opset 8 starts with sequence_lens
    names = list(n.input[first:])
    n_states = len(names) - m
    k = len(body.output) - n_states
    if m < 1 or n_states < 0:
        raise imp.error(f"num_scan_inputs = {m} does not fit {len(names)} inputs")
    if imp.opset < 9:
        return _scan_batched(imp, body, n_states, m)
    dirs = _ints(imp, "scan_input_directions", m, 0)
    out_dirs = _ints(imp, "scan_output_directions", k, 0)
    in_axes = _ints(imp, "scan_input_axes", m, 0)
    out_axes = _ints(imp, "scan_output_axes", k, 0)
    if len(set(dirs)) > 1 or any(d != dirs[0] for d in out_dirs):
        raise imp.error(f"scan directions {dirs} (inputs) and {out_dirs} (outputs) differ; "
                        "graphrnn's loop runs every sequence one way")
    states = [imp.node_of(imp.lazy(i, "state")) for i in range(n_states)]
    xs = []
    for j, a in enumerate(in_axes):
        v = imp.lazy(n_states + j, "scan input")
        a %= v.rank
        xs.append(imp.node_of(v.transposed([a] + [i for i in range(v.rank) if i != a])))
    finals, ys = _scan_loop(imp, body, states, xs, bool(dirs[0]))
    outs: list = [lazy(f) for f in finals]
    for y, a in zip(ys, out_axes):
        r = y.type.rank
        a %= r
        outs.append(Lazy(y, tuple(range(1, a + 1)) + (0,) + tuple(range(a + 1, r))))
    return outs


def _scan_batched(imp: Importer, body: Any, n_states: int, m: int) -> list:
    """Opset 8: every input has a batch axis 0; one loop per (static) batch row."""
    if imp.attr("directions") is not None and any(int(d) for d in imp.attr("directions")):
        raise imp.error("reverse directions of an opset-8 Scan are not supported")
    ins = [imp.node_of(imp.lazy(1 + i, "input")) for i in range(n_states + m)]
    batch = ins[0].type.shape[0]
    if not isinstance(batch, int):
        raise imp.error(f"an opset-8 Scan runs one loop per batch row: the batch dim "
                        f"{batch!r} must be static")
    lens = imp.get(0)
    lens = None if lens is None else imp.node_of(imp.lazy(0, "sequence_lens"))
    per_row = []
    imp.check_size([batch], "the batch of an opset-8 Scan (one loop per row)", limit=256)
    for b in range(batch):
        row = [ops.index(x, 0, b) for x in ins]
        lb = None if lens is None else ops.slice_(lens, 0, b, 1)
        finals, ys = _scan_loop(imp, body, row[:n_states], row[n_states:], False, lb)
        per_row.append(finals + ys)
    outs = []
    for parts in zip(*per_row):
        rows = [ops.reshape(p, (1,) + p.type.shape) for p in parts]
        outs.append(lazy(rows[0] if len(rows) == 1 else ops.concat(rows, 0)))
    return outs


@rule("Loop")
def _loop(imp: Importer, n: Any) -> list:
    """A for-loop: a known trip count, a condition that is (and stays) true."""
    body = imp.attr("body")
    trips = imp.static(0, "the trip count")
    if trips is None:
        raise imp.error("a Loop without a trip count is a while-loop, which graphrnn's scan "
                        "cannot express yet")
    trips = int(imp.concrete(trips, "trip count").reshape(-1)[0])
    cond = imp.static(1, "the condition")
    if cond is not None and not bool(cond.reshape(-1)[0]):
        raise imp.error("the Loop's condition must be a known true value (a for-loop)")
    if trips < 1:
        raise imp.error(f"a trip count of {trips}: graphrnn has no empty tensors")
    cond_out = body.output[0].name
    # the body's condition must be known true at import: a computed one makes a while-loop
    if not _known_true(body, cond_out):
        raise imp.error(f"the body's condition {cond_out!r} is computed: a while-loop, which "
                        "graphrnn's scan cannot express yet")
    states = [imp.node_of(imp.lazy(i, "loop-carried value")) for i in range(2, len(n.input))]
    imp.check_size([trips], "the trip count")
    steps = ops.const(np.arange(trips, dtype=np.int64))      # the iteration number
    finals, ys = _scan_loop(imp, body, states, [steps], False,
                            fixed={1: np.asarray(True)}, skip_outputs=1, xs_first=True)
    return [lazy(f) for f in finals] + [lazy(y) for y in ys]


def _known_true(body: Any, name: str) -> bool:
    """Whether `name` is the body's condition input passed through, or a true constant."""
    for node in body.node:
        if name in node.output:
            if node.op_type == "Identity":
                return _known_true(body, node.input[0])
            if node.op_type == "Constant" and node.attribute[0].name == "value":
                return bool(np.all(tensor_to_array(node.attribute[0].t, "condition")))
            return False
    return name == body.input[1].name


__all__: list[str] = []
