"""lower_graph: a prepared graph -> an Executable holding one LLVM module.

The module has one entry point per direction,

    void graphrnn_<hash8>_forward(float* params, float* arena, i8** io, i64 steps)

where `io` points to the inputs then the outputs (graph order; int64 values as i64*), then
EXTRAS more pointers: the persistent region (packed weights), the run block (i64 seed,
i64 training: what dropout masks draw from; then i64 batch, the size of the symbolic batch
dim, read only by programs that have one: `contract.batch`; then one i64 per further time
symbol, `contract.more`: T2, T3, ...) and the profile counters (i64, or null); `steps` is the
size of the symbolic time dim. Every kernel takes every size, so one program serves every
batch size and every sequence length of each time symbol.

Kernels that depend on the parameters alone (see persist.py) go into a second function,

    void graphrnn_<hash8>_pack(float* params, float* persistent)

named in `contract.pack`, which the Program runs once per parameter update instead of on every
call. `profile=True` brackets every kernel with cycle counters (emit_profile.py). Each kernel
of the schedule is an internal function `k<i>_<kind>_<ops>` that the entry point calls in
order (kernels of the same code share one function: kernel_twins.py); EMIT_RULES gives the
emitter of each op. A loop stays an LLVM loop: code and compile time do not depend on T.
"""
from __future__ import annotations

import hashlib
import re
from typing import Any

import numpy as np
from llvmlite import ir

from graphrnn.executable import Contract, Executable
from graphrnn.flat import ParamTable
from graphrnn.ir import Graph, LoweringError, Node, Op, TensorType

from .emit_dropout import emit_dropout
from .emit_index import INDEX_RULES
from .emit_context import Env, Frame, Rule
from .emit_loop import emit_loop
from .emit_map import MAP_RULES, emit_copy
from .checks import value_checks
from .emit_profile import Profiler, clock_function
from .emit_reduce import REDUCE_RULES
from .emit_rows import postmapped_normalize, premapped_normalize_grad
from .emit_sum_map import premapped_sum
from .row_maps import premap_reads
from .emit_gemm import emit_cluster_call, emit_gemm_call, emit_pack_call
from .gemm import emit_matmul
from .irbuilder import I8, I64, VOID, F32, Emitter, Ref, global_array, kernel_function
from .kernel_twins import KernelTwins
from .strides import BATCH, EXTRA, STEPS, Layout
from .arena import Buffer
from .schedule import Home, Kernel, Schedule, schedule

VERSION = "lower-7"              # part of the kernel cache key: bump when the code changes
ENTRY = "graphrnn_forward"
PACK_ENTRY = "graphrnn_pack"
CLOCK = "graphrnn_clock"         # profile builds: i64 f() reading the cycle counter
EXTRAS = 3                       # io pointers after the outputs: persistent, run block, counters
RUN_SIZES = 3                    # run block: seed, training, batch, then the further time sizes

# every op that needs code, and its emitter: (emitter, node, out, inputs) -> None; the others
# are kernel.NO_CODE (dropout, a view at inference, has its own kernel in training)
EMIT_RULES: dict[Op, Rule] = {
    **MAP_RULES, **REDUCE_RULES, **INDEX_RULES,
    Op.MATMUL: lambda em, n, out, ins: emit_matmul(em, n, out, ins[0], ins[1]),
}


class Lowering:
    """Emits the kernels of a schedule into one module."""

    def __init__(self, sched: Schedule, module: ir.Module, *, profile: bool = False,
                 batched: bool = False, more: tuple[str, ...] = ()):
        self.sched = sched
        self.module = module
        ptr = F32.as_pointer()
        fn = ir.Function(module, ir.FunctionType(VOID, [ptr, ptr, I8.as_pointer().as_pointer(),
                                                        I64]), ENTRY)
        for a, name in zip(fn.args, ("params", "arena", "io", "steps")):
            a.name = name
        for a in fn.args[:3]:
            a.add_attribute("noalias")
        fn.attributes.add("nounwind")
        self.params, self.arena, io = fn.args[:3]
        self.em = Emitter(fn, fn.args[3])
        n_io = len(sched.inputs) + len(sched.outputs)
        bld = self.em.builder
        self.io = [bld.load(bld.gep(io, [ir.Constant(I64, k)], inbounds=True), align=8)
                   for k in range(n_io + EXTRAS)]
        self.extra = 0
        self.persist_base = self.em.cast(self.io[n_io], "float32")
        run = self.em.cast(self.io[n_io + 1], "int64")
        self.seed, self.training = (self.em.load(self.em.gep(run, k)) for k in (0, 1))
        if batched:
            self.em.batch = self.em.load(self.em.gep(run, 2))
        self.more = more
        for k, m in enumerate(more):
            self.em.more[m] = self.em.load(self.em.gep(run, RUN_SIZES + k))
        self.packing = False            # emitting the pack entry (persistent kernels only)
        self.twins = KernelTwins(module)   # unrolled steps share kernel functions
        self.profiler = Profiler(self.em.cast(self.io[n_io + 2], "int64")) if profile else None
        self.total = self.profiler.begin(self.em, "total", "entry", ()) if profile else None

    # -- refs
    def home_ref(self, home: Home, frame: Frame | None) -> Ref:
        dtype = home.layout.dtype
        if home.slot >= 0:
            n_h = frame.node.attrs["n_carry"]
            part = frame.parts[n_h + home.slot]
            ptr = self.em.gep(part.ptr, self.em.mul(frame.t, part.layout.strides[1]))
        else:
            b = home.buffer
            if b in self.sched.persist_buffers:
                ptr = self.em.gep(self.persist_base, b.offset)
            elif b.io >= 0:
                ptr = self.io[b.io]
            else:
                ptr = self.em.gep(self.arena, b.offset)
        return Ref(self.em.gep(self.em.cast(ptr, dtype), home.offset), home.layout)

    def buffer_ref(self, buffer: Buffer, layout: Layout) -> Ref:
        return self.home_ref(Home(layout, buffer), None)

    # -- kernels
    def run(self, kernels: tuple[Kernel, ...], env: Env, frame: Frame | None) -> None:
        for k in kernels:
            try:
                self.kernel(k, env, frame)
            except LoweringError as e:
                if str(e).startswith("lowering "):
                    raise
                raise _failure(k.node, e) from e
            except Exception as e:          # noqa: BLE001  (named after the node that failed)
                raise _failure(k.node, e) from e

    def kernel(self, k: Kernel, env: Env, frame: Frame | None) -> None:
        n = k.node
        if k in self.sched.persistent and not self.packing:
            if k.kind != "pack":            # computed by the pack entry: only its place
                env[n] = self.home_ref(k.dest, frame)
            return
        if k.kind == "view":
            env[n] = self.view(n, env)
        elif k.kind == "placed":            # its pieces were computed into its memory
            env[n] = self.home_ref(k.dest, frame)
        elif k.kind == "split":             # never written: its products read the pieces
            env[n] = tuple(env[x] for x in n.inputs)
        elif k.stages and k.kind == "map":
            emit_cluster_call(self, k, env, frame)
        elif k.kind == "loop":
            clock = self.profiler.begin(self.em, k.name, "loop", (n.name,)) \
                if self.profiler else None
            emit_loop(self, k, env, frame)
            if clock is not None:
                self.profiler.end(self.em, *clock)
        elif k.kind == "copy":
            out = self.home_ref(k.dest, frame)
            self.call(k.name, n, emit_copy, out, [env[n]], kind="copy")
            env[k] = out
        elif k.kind == "pack":
            emit_pack_call(self, k, env)
        elif k.kind == "gemm":
            emit_gemm_call(self, k, env, frame)
        else:
            out = self.home_ref(k.dest, frame) if k.dest is not None else None
            pre = k.premap
            ins = [env[x] for x in premap_reads(n, pre)]
            post = k.stages[0] if k.stages else None
            if post is not None:            # a NORMALIZE or sum that also writes a map
                env[post[0]] = self.home_ref(post[1], frame)
                ins += [env[post[0]]] + [env[x] for x in post[0].inputs if x is not n]
                out = env[post[0]] if out is None else out  # no home: only the map reads it
            scalars: tuple[ir.Value, ...] = ()
            if n.op == Op.DROPOUT:          # a kernel only in training (else a view)
                rule: Rule | None = emit_dropout
                salt = frame.salt if frame is not None else ir.Constant(I64, 0)
                scalars = (self.seed, self.training, salt)
            else:
                rule = EMIT_RULES.get(n.op) if pre is None else _premapped_rule(n, pre)
                if post is not None:
                    rule = _postmapped_rule(n, pre, post[0], k.dest is not None)
            if rule is None:
                raise LoweringError(f"no emitter for op {n.op.value}")
            labels = (n.name, post[0].name) if post is not None and pre is not None else ()
            self.call(k.name, n, rule, out, ins, scalars, kind=k.kind, nodes=labels)
            if k.dest is not None:
                env[n] = out

    def call(self, name: str, node: Node, rule: Rule, out: Ref, ins: list[Ref],
             scalars: tuple[ir.Value, ...] = (), *, kind: str = "map",
             nodes: tuple[str, ...] = ()) -> None:
        """Emit `rule` as the internal function `name` and call it here (timed when
        profiling: `kind` and `nodes` label the counter)."""
        refs = [out] + list(ins)
        layouts = [r.layout for r in refs]

        def emit() -> ir.Function:
            fn, em, _ = kernel_function(self.module, name, [x.dtype for x in layouts],
                                        len(scalars), self.more)
            inner = [Ref(arg, x) for arg, x in zip(fn.args, layouts)]
            rule(em, node, inner[0], inner[1:])
            em.builder.ret_void()
            return fn
        fn = self.twins.function(emit, rule, node, layouts, len(scalars), self.more)
        args = [r.ptr for r in refs] + list(scalars) + [self.em.steps, self.em.batch] + \
            [self.em.size(m) for m in self.more]
        if self.profiler is None or self.packing:
            self.em.builder.call(fn, args)
            return
        clock = self.profiler.begin(self.em, name, kind, nodes or (node.name,))
        self.em.builder.call(fn, args)
        self.profiler.end(self.em, *clock)

    def pack_entry(self) -> None:
        """`void graphrnn_pack(float* params, float* persistent)`: the persistent kernels."""
        ptr = F32.as_pointer()
        fn = ir.Function(self.module, ir.FunctionType(VOID, [ptr, ptr]), PACK_ENTRY)
        for a, name in zip(fn.args, ("params", "persistent")):
            a.name = name
            a.add_attribute("noalias")
        fn.attributes.add("nounwind")
        saved = self.em, self.persist_base
        zero = ir.Constant(I64, 0)
        self.em, self.persist_base, self.packing = Emitter(
            fn, zero, more={m: zero for m in self.more}), fn.args[1], True
        env = _StaticEnv(self, Ref(fn.args[0], self.sched.layouts[self.sched.params]))
        for top in self.sched.kernels:
            self.run(tuple(k for k in top.walk() if k in self.sched.persistent), env, None)
        self.em.builder.ret_void()
        self.em, self.persist_base = saved
        self.packing = False

    def helper(self, base: str) -> str:
        self.extra += 1
        return f"{base}_{self.extra}"

    def view(self, n: Node, env: Env) -> Any:
        layout = self.sched.layouts.get(n)
        if n.op == Op.INPUT:
            return env[n]
        if n.op == Op.CONST:
            g = global_array(self.module, self.helper(_symbol(f"const_{n.name}")),
                             n.attrs["value"])
            return Ref(self.em.cast(self.em.builder.bitcast(g, g.type.pointee.element
                                                            .as_pointer()), layout.dtype), layout)
        if n.op == Op.FILL:
            dtype = n.type.dtype
            value = np.array([n.attrs["value"]], np.int64 if dtype == "int64" else np.float32)
            g = global_array(self.module, self.helper(_symbol(f"fill_{n.name}")), value)
            return Ref(self.em.builder.bitcast(g, g.type.pointee.element.as_pointer()), layout)
        if n.op == Op.GET:
            return env[n.inputs[0]][n.attrs["index"]]
        src = env[n.inputs[0]]
        return Ref(self.em.gep(src.ptr, self.sched.offsets[n]), layout)


class _StaticEnv(Env):
    """Values the pack entry reads: the parameters, and views of them made on demand
    (through loop bodies' consts to the outer values they stand for)."""

    def __init__(self, low: Lowering, params: Ref):
        super().__init__()
        self.low = low
        self.values[low.sched.params] = params

    def __getitem__(self, n: Any) -> Any:
        if n not in self.values:
            alias = self.low.sched.aliases.get(n)
            if alias is None and n.op == Op.INPUT:
                raise LoweringError(f"{n.name}: a persistent kernel reads an input that is "
                                    "not the parameters")
            self.values[n] = self[alias] if alias is not None else self.low.view(n, self)
        return self.values[n]


def _premapped_rule(n: Node, pre: Node) -> Rule:
    """The rule of a reduction that computes its FUSED operand `pre` as it reads it."""
    if n.op == Op.NORMALIZE_GRAD:
        return premapped_normalize_grad(pre.attrs["body"])
    return premapped_sum(pre)


def _postmapped_rule(n: Node, pre: Node | None, f: Node, store: bool) -> Rule:
    """The rule of a reduction that also writes the FUSED map `f` (row_maps.py)."""
    if n.op == Op.NORMALIZE:
        return postmapped_normalize(f.attrs["body"], [x is n for x in f.inputs], store)
    return premapped_sum(pre, f)


def _symbol(name: str) -> str:
    return re.sub(r"\W", "_", name)


def _failure(n: Node, e: Exception) -> LoweringError:
    return LoweringError(f"lowering {n.name} ({n.op.value}) at {n.where or '?'}: "
                         f"{type(e).__name__}: {e}")


# ----------------------------------------------------------------------------- the pass

def lower_graph(graph: Graph, table: ParamTable, *, training: bool = False,
                profile: bool = False, strict: bool = False) -> Executable:
    """The Executable of a typed, flattened (and optimised) graph.

    training: dropout draws its masks (from the run block's seed) instead of being the
    identity. profile: count the cycles of every kernel (contract.profile names the counters).
    strict: refuse a slice or index of the time dim too (always refused for the batch dim),
    for dims a caller generalised from the sizes of one call rather than declared symbolic.
    """
    params = graph.inputs[-1] if graph.inputs and graph.inputs[-1].name == "params" else None
    symbol, batched, more = _symbols(graph, params, strict)
    sched = schedule(graph, params, training=training)
    module = ir.Module(name="graphrnn")
    low = Lowering(sched, module, profile=profile, batched=batched, more=more)
    env = Env()
    for k, x in enumerate(sched.inputs):
        env[x] = Ref(low.em.cast(low.io[k], x.type.dtype), sched.layouts[x])
    if params is not None:
        env[params] = Ref(low.params, sched.layouts[params])
    low.run(sched.kernels, env, None)
    if low.profiler is not None:
        low.profiler.end(low.em, *low.total)
        low.profiler.flush(low.em)
    low.em.builder.ret_void()
    if sched.persistent:
        low.pack_entry()
    if profile:
        clock_function(module, CLOCK)
    text = str(module)
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    names = {base: f"graphrnn_{digest}_{base.split('_')[1]}" for base in (ENTRY, PACK_ENTRY,
                                                                           CLOCK)}
    for base, name in names.items():
        text = text.replace(f'@"{base}"', f'@"{name}"')
    entry, pack = names[ENTRY], names[PACK_ENTRY]
    io = tuple(x.type for x in sched.inputs) + tuple(y.type for y in graph.outputs)
    contract = Contract(
        inputs=tuple(x.name for x in sched.inputs),
        outputs=tuple(y.name for y in graph.outputs),
        symbol=symbol,
        arena=(sched.arena.c, sched.arena.s),
        batch=BATCH if batched else None,
        arena_rows=(sched.arena.b, sched.arena.bs),
        more=more,
        arena_more=tuple((m, k) for m, k in sched.arena.terms if not set(m) <= {BATCH, STEPS}),
        checks=tuple(value_checks(graph, sched.inputs, symbol)),
        pack=(pack, sched.persist_floats) if sched.persistent else None,
        profile=low.profiler.meta() if low.profiler is not None else None,
        clock=names[CLOCK] if profile else None,
        kernels=sum(1 for k in sched.kernels for _ in k.walk()),
        extras=EXTRAS,
        version=VERSION,
    )
    return Executable(text, (entry,), table, sched.fixed_floats, io, contract)


def _symbols(graph: Graph, params: Node | None, strict: bool = False
             ) -> tuple[str | None, bool, tuple[str, ...]]:
    """(the symbolic dim the entry point takes as `steps`, or None; whether the batch dim,
    BATCH, is symbolic too and taken from the run block; the further time symbols
    (strides.EXTRA), whose sizes the run block carries after the batch)."""
    found = {d for x in graph.inputs if x is not params for d in x.type.shape
             if isinstance(d, str)}
    batched = BATCH in found
    found.discard(BATCH)
    more = tuple(sorted((d for d in found if EXTRA.fullmatch(d)), key=lambda d: int(d[1:])))
    found -= set(more)
    if len(found) > 1:
        raise LoweringError(f"inputs use several symbolic dims ({', '.join(sorted(found))}): "
                            "besides the batch, one time dim keeps its name and the others "
                            "must be named T2, T3, ... (graphrnn.signature renames them)")
    symbol = next(iter(found), None)
    known = {symbol, *more} | ({BATCH} if batched else set())
    for n, _ in graph.walk():
        for t in (n.type if isinstance(n.type, tuple) else (n.type,)):
            for d in (t.shape if isinstance(t, TensorType) else ()):
                if isinstance(d, str) and d not in known:
                    raise LoweringError(f"{n.name} ({n.where or '?'}): dim {d!r} is not "
                                        "given by any input, so its size is unknown")
        if n.op in (Op.SLICE, Op.INDEX):
            d = n.inputs[0].type.shape[n.attrs["axis"]]
            if (batched and d == BATCH) or (strict and isinstance(d, str)):
                # a row (or step) picked from a dim of unknown size could lie outside it
                raise LoweringError(f"{n.name} ({n.where or '?'}): {n.op.value} of symbolic "
                                    f"dim {d!r}: its size must be fixed")
    return symbol, batched, more


__all__ = ["lower_graph", "EMIT_RULES", "VERSION", "EXTRAS", "Lowering"]
