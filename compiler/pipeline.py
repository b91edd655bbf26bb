"""The driver: the whole pipeline, one line per pass, top to bottom.

Every pass goes through `Trace.run`, the only instrumentation: it times the pass, runs
`verify` on the result when GRAPHRNN_VERIFY is on (the default under pytest), and prints the
pass name and time (level 1) and the graph after it (level 2) when GRAPHRNN_DEBUG or the
`dump` argument asks. The records stay in the Trace for `graphrnn ir` and for tests.

Two entry points, and the lowering after each:

    prepare / compile_graph            forward:   [state] shapes reroll unroll tie flatten
                                                     OPTIMISATIONS
    prepare_training / compile_training  training: [state] shapes [reroll] unroll tie flatten
                                          [checkpoint] grad [unroll] OPTIMISATIONS [unit]

"reroll" turns hand-unrolled steps that are tied copies of one subgraph (the nngraph idiom)
into a loop, so their code and compile time do not grow with T; it is skipped under
truncated BPTT, which would then cut a recurrence the graph as written does not have.

`prepare_training` differentiates the flattened graph (pass "grad") before the optimisations,
which then see the forward and backward loops together: the weight gradients leave the
backward loops (accumulate), the recomputed forward products leave them too (hoist), and cse
keeps one copy of what both directions compute. "state" (stateful models: the top-level
loops' carries become inputs and outputs) comes first when asked for; "unit" fixes the loss
cotangent to 1 for a training step. `expose` runs "state" alone, for callers that need the
exposed graph's inputs before anything is compiled.
"""
from __future__ import annotations

import functools
import gc
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Callable, Collection, Sequence

from graphrnn import settings
from graphrnn.flat import ParamTable
from graphrnn.ir import Graph, GraphError, TensorType

from .codegen.lower import lower_graph
from .passes.accumulate import hoist_accumulations
from .passes.autodiff import differentiate
from .passes.checkpoint import checkpoint_loops
from .passes.cotangent import fix_unit_cotangent
from .passes.cse import eliminate_common_subexpressions
from .passes.dce import eliminate_dead_code
from .passes.flatten import flatten_params
from .passes.fold import fold_constants
from .passes.fuse_elementwise import fuse_elementwise
from .passes.hoist import hoist_invariants
from .passes.join import join_loops
from .passes.merge import merge_matmuls, reuse_merged_products
from .passes.reroll import reroll_steps
from .passes.shapes import infer_shapes
from .passes.share import share_loop_outputs
from .passes.state import StatefulGraph, expose_state
from .passes.tie import tie_params
from .passes.unroll import unroll_loops
from .passes.validate import verify

# The optimisations, in order, each (name, Graph -> Graph). A name in `disable` skips it.
OPTIMISATIONS: list[tuple[str, Callable[[Graph], Graph]]] = [
    ("fold", fold_constants),                       # constant subgraphs -> CONST, x*1 -> x
    ("cse", eliminate_common_subexpressions),       # one node per distinct computation
    ("dce", eliminate_dead_code),                   # unreachable nodes, unread loop outputs
    ("accumulate", hoist_accumulations),            # weight gradients summed after the loop
    ("merge", merge_matmuls),                       # matmuls sharing their left operand
    ("join", join_loops),                           # x_t and h in one step product (many rows)
    ("hoist", hoist_invariants),                    # W_x x_t for all t as one GEMM
    ("reuse", reuse_merged_products),               # a hoisted product a merged one has
    ("cse", eliminate_common_subexpressions),       # projections hoisted twice (fwd and bwd)
    ("hoist", hoist_invariants),                    # what a loop recomputes that cse shares
    ("cse", eliminate_common_subexpressions),       # (a norm of a hoisted product: fwd, bwd)
    ("share", share_loop_outputs),                  # a loop's equal ys (y and saved) as one
    ("fuse", fuse_elementwise),                     # map/zip chains -> FUSED
    ("dce", eliminate_dead_code),                   # again, for what those leave behind
]

# A step that only prepares the one after it is skipped with it.
PREPARES = {"join": "hoist"}


@dataclass
class PassRecord:
    """One pass as it ran: its name, its time, and the graph it returned."""
    name: str
    seconds: float
    graph: Graph | None         # None for steps that do not return a graph (the lowering)
    changed: bool

    def text(self) -> str:
        """The graph after the pass, as the printer lays it out."""
        return str(self.graph) if self.graph is not None else ""


@dataclass
class Trace:
    """The record of one compilation, and the switches that instrument it."""
    level: int = field(default_factory=settings.debug_level)
    check: bool = field(default_factory=settings.verify_enabled)
    records: list[PassRecord] = field(default_factory=list)

    def run(self, pass_fn: Callable[[Graph], Any], graph: Graph, name: str) -> Any:
        """`pass_fn(graph)`, timed, verified and dumped. A pass may return (Graph, extra)."""
        start = time.perf_counter()
        result = pass_fn(graph)
        seconds = time.perf_counter() - start
        out = _graph_of(result)
        if out is not None and self.check:
            try:
                verify(out)
            except GraphError as e:
                raise type(e)(f"after pass {name!r}: {e}") from e
        record = PassRecord(name, seconds, out, out is not graph)
        self.records.append(record)
        if self.level >= 1:
            print(self._line(record), file=sys.stderr)
        if self.level >= 2 and out is not None:
            print(record.text(), file=sys.stderr)
        return result

    @staticmethod
    def _line(r: PassRecord) -> str:
        size = f"{sum(1 for _ in r.graph.walk()):6d} nodes" if r.graph is not None else ""
        note = "" if r.changed else "  (unchanged)"
        return f"[graphrnn] {r.name:<10} {r.seconds * 1e3:9.3f} ms {size}{note}"

    def __str__(self) -> str:
        return "\n".join(self._line(r) for r in self.records)

    def __iter__(self) -> Any:
        return iter(self.records)


def _graph_of(result: Any) -> Graph | None:
    if isinstance(result, Graph):
        return result
    if isinstance(result, tuple) and result and isinstance(result[0], Graph):
        return result[0]
    return None


def prepare(graph: Graph, input_types: Sequence[TensorType] | None = None, *,
            stateful: bool = False, unroll: bool | int | None = None, optimize: bool = True,
            disable: Collection[str] = (), dump: int | None = None,
            trace: Trace | None = None) -> tuple[Graph, ParamTable]:
    """The forward entry point: a typed, flattened, optimised graph and its parameter table.

    stateful: first expose the top-level loops' carries (step "state"); `input_types` are
    then those of the exposed graph's inputs (`expose(graph).graph.inputs`).
    unroll: None unrolls only loops that ask for it (`Loop(..., unroll=k)`), True every loop
    fully, k every loop by k, False none. disable: names of passes to skip ("unroll" or any
    name in OPTIMISATIONS, or "reroll"). dump: a GRAPHRNN_DEBUG level for this call.
    """
    trace = _trace(trace, dump, disable)
    if stateful:
        graph = _exposed(graph, trace).graph
    g, table = _front(graph, input_types, unroll, disable, trace)
    return _optimised(g, optimize, disable, trace), table


def prepare_training(graph: Graph, input_types: Sequence[TensorType] | None = None, *,
                     truncate: int | None = None, input_grads: bool = False,
                     stateful: bool = False, unit_cotangent: bool = False,
                     unroll: bool | int | None = None, optimize: bool = True,
                     disable: Collection[str] = (), dump: int | None = None,
                     trace: Trace | None = None, seed_outputs: Sequence[int] | None = None,
                     checkpoint: int | None = None
                     ) -> tuple[Graph, ParamTable, tuple[tuple[str, int], ...]]:
    """The training entry point: `prepare`, with the flattened graph differentiated (pass
    "grad") before the optimisations run, on the forward and backward loops together.

    The result's inputs are the graph's inputs, then `params` (the flat vector), then one
    cotangent per float output (`d_<name>`, same type as the output; 1.0 for a scalar loss).
    Its outputs are the graph's outputs, then gradients of sum(output * cotangent): output
    `len(graph.outputs) + k` is the gradient with respect to input `names[k][1]` of the
    result (`names[k] == ("input", i)`, differentiate's convention). By default the only
    gradient is the flat parameter gradient (i is the index of `params`; it has the
    ParamTable's layout); `input_grads=True` adds one per float input, in input order.
    `truncate=k`: truncated BPTT, nothing flows back across every k-th step; loops to be
    unrolled are then unrolled after differentiation (pass "unroll" after "grad").
    `seed_outputs`: the outputs to differentiate (default all float outputs); only they get
    a cotangent input.
    `stateful`: first expose the top-level loops' carries (step "state", as for `prepare`);
    only the graph's own outputs are then differentiated, not the exposed final states.
    `unit_cotangent`: the graph has one output, a scalar loss, whose cotangent is fixed to 1
    (step "unit", last): no cotangent input, `params` last, as a training step runs it.
    `checkpoint=k`: gradient checkpointing (pass "checkpoint", compiler/passes/checkpoint.py): the
    forward loops keep the carry of every k-th step only and the backward loops recompute
    the steps between; the same gradients for O(T/k + k) saved carries instead of O(T).
    """
    trace = _trace(trace, dump, disable)
    if stateful:
        if seed_outputs is None:
            seed_outputs = range(len(graph.outputs))
        graph = _exposed(graph, trace).graph
    # truncation cuts loop carries, and unrolled code has none: with truncate, loops are
    # unrolled after differentiation, when the cuts are already in the backward loops
    g, table = _front(graph, input_types, False if truncate else unroll, disable, trace,
                      reroll=not truncate)
    if checkpoint:
        g = trace.run(partial(checkpoint_loops, every=checkpoint, truncate=truncate), g,
                      "checkpoint")
    grad = partial(_differentiate, truncate=truncate, input_grads=input_grads,
                   seed_outputs=seed_outputs)
    g, names = trace.run(grad, g, "grad")
    if truncate:
        g = _unrolled(g, unroll, disable, trace)
    g = _optimised(g, optimize, disable, trace)
    if unit_cotangent:
        g = trace.run(fix_unit_cotangent, g, "unit")
    return g, table, names


def expose(graph: Graph, *, dump: int | None = None,
           trace: Trace | None = None) -> StatefulGraph:
    """Step "state" alone: the graph with its top-level loops' carries as inputs and outputs,
    and the graph of their initial values (passes/state.py)."""
    return _exposed(graph, _trace(trace, dump, ()))


def _collector_paused(compile_fn: Callable[..., Any]) -> Callable[..., Any]:
    """`compile_fn` run with Python's cyclic garbage collector paused (a compile makes some
    hundred thousand objects that live until it returns; collections during it free little
    and took 5-15% of a compile's time)."""
    @functools.wraps(compile_fn)
    def paused(*args: Any, **kwargs: Any) -> Any:
        if not gc.isenabled():
            return compile_fn(*args, **kwargs)
        gc.disable()
        try:
            return compile_fn(*args, **kwargs)
        finally:
            gc.enable()
    return paused


@_collector_paused
def compile_graph(graph: Graph, input_types: Sequence[TensorType] | None = None, *,
                  lower: Callable[[Graph, ParamTable], Any] | None = None,
                  trace: Trace | None = None, **options: Any) -> Any:
    """The forward program: `prepare(graph, input_types, **options)`, then the lowering
    (step "lower"): `lower(graph, table)`, by default `codegen.lower.lower_graph`. Pass a
    Trace to keep the per-pass records."""
    trace = trace if trace is not None else Trace()
    g, table = prepare(graph, input_types, trace=trace, **options)
    return _lowered(g, table, lower, trace)


@_collector_paused
def compile_training(graph: Graph, input_types: Sequence[TensorType] | None = None, *,
                     lower: Callable[[Graph, ParamTable], Any] | None = None,
                     trace: Trace | None = None, **options: Any) -> Any:
    """The training step of a loss graph: `prepare_training(..., unit_cotangent=True,
    **options)`, then the lowering (step "lower"), as for `compile_graph`."""
    trace = trace if trace is not None else Trace()
    g, table, _ = prepare_training(graph, input_types, unit_cotangent=True, trace=trace,
                                   **options)
    return _lowered(g, table, lower, trace)


def gradient_graph(graph: Graph, input_types: Sequence[TensorType], **options: Any
                   ) -> tuple[Graph, ParamTable, tuple[tuple[str, int], ...]]:
    """The driver's training graph for the interpreter: `prepare_training(graph, input_types,
    **options)`, loops kept, none made (the graph as written) and no optimisation."""
    options["disable"] = (*options.get("disable", ()), "reroll")
    return prepare_training(graph, input_types, unroll=False, optimize=False, **options)


def _trace(trace: Trace | None, dump: int | None, disable: Collection[str]) -> Trace:
    _check_names(disable)
    trace = trace if trace is not None else Trace()
    if dump is not None:
        trace.level = dump
    return trace


def _exposed(graph: Graph, trace: Trace) -> StatefulGraph:
    def state(g: Graph) -> tuple[Graph, StatefulGraph]:
        exposed = expose_state(g)
        return exposed.graph, exposed
    return trace.run(state, graph, "state")[1]


def _front(graph: Graph, input_types: Sequence[TensorType] | None, unroll: bool | int | None,
           disable: Collection[str], trace: Trace, reroll: bool = True
           ) -> tuple[Graph, ParamTable]:
    """Shapes, re-rolling, unrolling, tying and flattening."""
    run = trace.run
    order = graph.params()                           # the model's own layout order
    g = run(partial(infer_shapes, input_types=input_types), graph, "shapes")
    if reroll and "reroll" not in disable:
        g = run(reroll_steps, g, "reroll")           # hand-unrolled tied steps -> a loop
    g = _unrolled(g, unroll, disable, trace)         # compile time grows with T: only on request
    g = run(tie_params, g, "tie")                    # one PARAM node per parameter
    return run(partial(flatten_params, order=order), g, "flatten")


def _unrolled(g: Graph, unroll: bool | int | None, disable: Collection[str],
              trace: Trace) -> Graph:
    if unroll is False or "unroll" in disable:
        return g
    return trace.run(_unroller(unroll), g, "unroll")


def _optimised(g: Graph, optimize: bool, disable: Collection[str], trace: Trace) -> Graph:
    for name, optimisation in (OPTIMISATIONS if optimize else []):
        if name not in disable and PREPARES.get(name) not in disable:
            g = trace.run(optimisation, g, name)
    return g


def _lowered(g: Graph, table: ParamTable, lower: Callable[[Graph, ParamTable], Any] | None,
             trace: Trace) -> Any:
    back = lower if lower is not None else lower_graph
    return trace.run(lambda prepared: back(prepared, table), g, "lower")


def _differentiate(graph: Graph, *, truncate: int | None, input_grads: bool,
                   seed_outputs: Sequence[int] | None = None
                   ) -> tuple[Graph, tuple[tuple[str, int], ...]]:
    """differentiate, keeping the gradient of the flat parameters (the last input) and, with
    `input_grads`, those of the float inputs."""
    g, names = differentiate(graph, truncate=truncate, seed_outputs=seed_outputs)
    flat = len(graph.inputs) - 1
    n_out = len(graph.outputs)
    keep = [k for k, (kind, i) in enumerate(names) if input_grads or i == flat]
    outputs = list(g.outputs[:n_out]) + [g.outputs[n_out + k] for k in keep]
    return g.rebuilt(g.inputs, outputs), tuple(names[k] for k in keep)


def _unroller(unroll: bool | int | None) -> Callable[[Graph], Graph]:
    if unroll is None:
        return partial(unroll_loops, only_requested=True)
    if unroll is True:
        return unroll_loops
    return partial(unroll_loops, factor=int(unroll))


def _check_names(disable: Collection[str]) -> None:
    known = {"unroll", "reroll"} | {name for name, _ in OPTIMISATIONS}
    unknown = sorted(set(disable) - known)
    if unknown:
        raise ValueError(f"cannot disable {', '.join(unknown)}: known passes are "
                         f"{', '.join(sorted(known))}")


# The names of the steps outside OPTIMISATIONS, in the order they can run.
STEPS = ("state", "shapes", "reroll", "unroll", "tie", "flatten", "checkpoint", "grad", "unit",
         "lower")

__all__ = ["compile_graph", "compile_training", "prepare", "prepare_training", "expose",
           "gradient_graph", "OPTIMISATIONS", "STEPS", "Trace", "PassRecord", "StatefulGraph"]
