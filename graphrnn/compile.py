"""gr.compile: a model as native code, compiled lazily per batch size and called from numpy.

    fast = gr.compile(model)            # nothing is compiled yet
    y = fast(x)                         # compiles for x's batch size and dtypes, then runs
    y = fast(x_longer)                  # same batch size: no recompile, whatever T is

One native program is made per *signature*: the batch size (and every other fixed dim) and
the dtypes; the time dim stays symbolic and is an argument of the native code, so a new
sequence length never recompiles (unless loops are unrolled, which needs T at compile time).
The dims of an input declared with `gr.Input("B", "T", D)` are read as follows: a symbol on
axis 0 is the batch (fixed per program), the first other symbol is the time (runtime), any
further symbol is fixed per program. Inputs without a declared type are fixed entirely by
the arrays (one program per shape).

The compiled forward is inference: dropout is the identity whatever `model.training` says.

Programs come from the kernel cache, at two levels: whole programs keyed on the structure of
the compilation (graph, input signature, options, versions, host: see fingerprint.py), so a
second process skips the passes and the lowering and only loads object code; and object
code keyed on the LLVM IR. With GRAPHRNN_DEBUG (or dump) set, the passes always run, so their
output is printed. This is the one module that uses both the compiler and the runtime.

Weights are packed into panels once per parameter update, not per call. Updates made through
the library are noticed: an optimiser's step(), load_state_dict(), reset_parameters(), and
model.parameters() / named_parameters() (which hand the vector out to be written). After
writing into a vector (or a Param's data) kept from earlier, call `invalidate()` (or
`graphrnn.flat.params_changed(flat)`), else the next call may use the old weights.

`stateful=True` keeps each top-level loop's carry between calls: a stream fed in chunks gives
the result of one long call, bit for bit, whatever the chunk sizes (empty chunks included:
the same kernels run on the same rows; tests/test_streams.py), in memory that does not grow
with the stream. The state starts from the model's own initial values (computed for the
first chunk's inputs), is reset by `reset_state()`, and a call with another batch size
raises InputError until it is reset. Reverse loops cannot be stateful.

Calls are thread-safe: each call in flight has its own scratch arena (a stateful model
serialises its calls, since the state is shared). `threads=n` runs one call's batch as up to n
parts of rows at once, where each part has enough work (see threads.py and `parts_for`); the
results are those of one thread. A forked child gets fresh locks (runtime/forksafe.py); a
model keeps its `gr.cache_limits().programs` most recently used programs (runtime/lru.py).
"""
from __future__ import annotations

import sys
import threading
from functools import partial
from typing import Any, Collection, Sequence

import numpy as np

from . import settings
from .compiler import compile_graph
from .compiler.codegen.lower import VERSION as LOWERING_VERSION
from .compiler.codegen.lower import lower_graph
from .compiler.passes.state import expose_state
from .fingerprint import structure_text
from .flat import params_version
from .interpret import interpret
from .ir import Executable, Graph, InputError, Op, ParamTable, TensorType, layout_params
from .runtime.cache import KernelCache
from .runtime.forksafe import renew_after_fork
from .runtime.jit import JitError, Library
from .runtime.lru import LRU, programs_limit
from .runtime.program import Program, as_input, describe, shapes_key
from .engine import cache_version, shared_cache, shared_engine
from .threads import BatchSplitter, Parts

MAX_DIM = 1 << 31              # every dim of an input must be smaller
class CompiledModel:
    """A model compiled to native code on first use; call it like the model."""

    def __init__(self, model: Any, *, unroll: bool | int | None = None, optimize: bool = True,
                 disable: Collection[str] = (), dump: int | None = None,
                 stateful: bool = False, cache: KernelCache | None = None,
                 profile: bool = False, threads: int = 1):
        self.model = model
        graph: Graph = model.graph if hasattr(model, "graph") else model
        if not isinstance(graph, Graph):
            raise TypeError(f"gr.compile takes a gModule or a Graph, got {type(model).__name__}")
        self.options = dict(unroll=unroll, optimize=optimize, disable=tuple(disable))
        self.lowering = dict(training=False, profile=profile)
        self.compiles = 0                       # times the passes ran (cache hits skip them)
        self.dump = dump
        self.stateful = stateful
        self.n_user = len(graph.inputs)
        self.n_outputs = len(graph.outputs)
        self._initial: Graph | None = None
        self.n_state = 0
        if stateful:
            exposed = expose_state(graph)
            graph, self._initial, self.n_state = exposed.graph, exposed.initial, exposed.n_state
        self.graph = graph
        # unrolled loops need a known step count: then T is fixed per program too
        self.fixed_time = unroll not in (None, False) or (unroll is None and any(
            n.op == Op.LOOP and n.attrs.get("unroll") for n, _ in graph.walk()))
        self._gather = not isinstance(getattr(model, "flat", None), np.ndarray)
        self.cache = cache if cache is not None else shared_cache()
        self.programs: LRU[tuple[TensorType, ...], Program] = LRU(bound=programs_limit)
        self._seen: dict[Any, tuple[TensorType, ...]] = {}  # (shape, dtype) per input -> types
        self._lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._state: list[np.ndarray] | None = None
        renew_after_fork(self, _lock=threading.Lock, _state_lock=threading.Lock)
        self.split = self.splitter(threads)

    def splitter(self, threads: int) -> BatchSplitter:
        """How calls split their batch (a training step's splitter weighs its work by 3)."""
        return BatchSplitter(self.graph, threads)

    @property
    def threads(self) -> int:
        return self.split.threads

    def parts_for(self, batch: int, steps: int = 1) -> Parts:
        """The (start, stop) row ranges a call of `batch` rows and `steps` steps runs as, one
        per thread; a single range when it does not split (too little work per part, one
        thread, or a graph whose rows depend on each other: `self.split.reason` says)."""
        return self.split.parts(batch, steps)

    def _parts(self, values: Sequence[Any], check_state: bool = False) -> Parts:
        """How a call on `values` splits; checks the inputs the first time a shape is seen."""
        return self.split.parts_of(values, lambda: self.signature(values, check_state))

    def _bound_program(self, values: Sequence[Any]) -> Program:
        program = self.program_for(values)
        if self._gather:
            program.bind_params(self._params_for(program.exe.table))
        return program

    # -- calling
    def __call__(self, *inputs: Any) -> Any:
        if not self.stateful:
            if not self.split.serial:
                parts = self._parts(inputs)
                if len(parts) > 1:
                    outs = self.split.run(parts, inputs, self._bound_program)
                    return outs[0] if len(outs) == 1 else tuple(outs)
            return self._bound_program(inputs)(*inputs)
        with self._state_lock:
            return self._stateful_call(inputs)

    def _stateful_call(self, inputs: Sequence[Any]) -> Any:
        if len(inputs) != self.n_user:
            raise InputError(f"the model takes {self.n_user} inputs, got {len(inputs)}")
        state = self._state
        if state is None:
            for x, v in zip(self.graph.inputs, inputs):
                _check_dims(x.name, v)          # before the initial state is allocated
            init = interpret(self._initial, *inputs)
            state = list(init) if isinstance(init, tuple) else [init]
            state = [np.ascontiguousarray(s, dtype=s.dtype) for s in state]
        values = list(inputs) + state
        parts = self._parts(values, check_state=True) if not self.split.serial else ()
        if len(parts) > 1:
            outs = tuple(self.split.run(parts, values, self._bound_program))
            self._state = list(outs[self.n_outputs:])       # fresh arrays: each part's rows
        else:
            types, _ = self.signature(values, check_state=True)
            program = self.program(types)
            if self._gather:
                program.bind_params(self._params_for(program.exe.table))
            outs = program(*inputs, *state)
            outs = outs if isinstance(outs, tuple) else (outs,)
            self._state = [np.array(s) for s in outs[self.n_outputs:]]
        user = outs[:self.n_outputs]
        return user[0] if len(user) == 1 else tuple(user)

    def reset_state(self) -> None:
        """Forget the carried state: the next call starts from the model's initial values."""
        with self._state_lock:
            self._state = None

    clear_state = reset_state

    @property
    def initial_state_graph(self) -> Graph | None:
        """A stateful model's initial-state graph: the user inputs -> the first carries."""
        return self._initial

    @property
    def state(self) -> list[np.ndarray] | None:
        """The carried state of a stateful model (None before the first call)."""
        return self._state

    # -- programs
    def program_for(self, inputs: Sequence[Any]) -> Program:
        """The program for these inputs; arrays of shapes seen before skip the signature."""
        key = shapes_key(inputs)
        types = self._seen.get(key) if key is not None else None
        if types is None:
            types, _ = self.signature(inputs)
            if key is not None and len(self._seen) < 4096:
                self._seen[key] = types
        return self.program(types)

    def program(self, types: tuple[TensorType, ...]) -> Program:
        """The program for one signature, compiled (or loaded from the cache) on first use."""
        prog = self.programs.get(types)
        if prog is None:
            with self._lock:
                prog = self.programs.get(types)
                if prog is None:
                    prog = self._build(types)
                    self.programs[types] = prog
        return prog

    def signature(self, inputs: Sequence[Any], check_state: bool = False
                  ) -> tuple[tuple[TensorType, ...], dict[str, int]]:
        """The input types one program serves: fixed dims bound, the time dim symbolic."""
        xs = self.graph.inputs
        if len(inputs) != len(xs):
            names = ", ".join(x.name for x in xs[:self.n_user])
            raise InputError(f"the model takes {self.n_user} inputs ({names}), got "
                             f"{len(inputs) - (len(xs) - self.n_user)}")
        declared = [x.type for x in xs]
        batch = {t.shape[0] for t in declared if t is not None and t.rank
                 and isinstance(t.shape[0], str)}
        sizes: dict[str, int] = {}
        time: str | None = None
        out = []
        for x, t, v in zip(xs, declared, inputs):
            if t is None:
                arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
                kind = "int64" if arr.dtype.kind in "iu" else "float32"
                t = TensorType(arr.shape, kind)
            arr = as_input(x.name, t, v)
            _check_dims(x.name, arr)
            dims: list[Any] = []
            for axis, (d, s) in enumerate(zip(t.shape, arr.shape)):
                if isinstance(d, str) and d not in batch and time in (None, d) \
                        and not self.fixed_time:
                    time = d
                    dims.append(d)
                    continue
                want = sizes.setdefault(d, s) if isinstance(d, str) else d
                if s != want:
                    what = ("the state kept from the previous call; call reset_state() to "
                            "start a new stream" if check_state and x in xs[self.n_user:]
                            else f"dim {axis} should be {want}")
                    raise InputError(f"input {x.name}: expected {t}, got {describe(arr)} "
                                     f"({what})")
                dims.append(s)
            out.append(TensorType(tuple(dims), t.dtype))
        return tuple(out), sizes

    def types_for(self, inputs: Sequence[Any] = (), batch: int | None = None
                  ) -> tuple[TensorType, ...]:
        """Signature from example inputs, or from a batch size and the declared types."""
        if inputs:
            return self.signature(inputs)[0]
        if batch is None:
            raise TypeError("give example inputs or B=<batch size>")
        out = []
        for x in self.graph.inputs:
            if x.type is None:
                raise InputError(f"input {x.name} has no declared type: give example inputs")
            t = x.type
            out.append(TensorType(tuple(batch if i == 0 and isinstance(d, str) else d
                                        for i, d in enumerate(t.shape)), t.dtype))
        return tuple(out)

    def executable(self, types: tuple[TensorType, ...]) -> Any:
        self.compiles += 1
        return compile_graph(self.graph, types, dump=self.dump,
                             lower=partial(lower_graph, **self.lowering), **self.options)

    def key_options(self) -> dict[str, Any]:
        """Everything besides the graph and the signature that shapes the program."""
        return dict(kind=type(self).__name__, stateful=self.stateful, **self.options,
                    **self.lowering)

    def structure_key(self, types: tuple[TensorType, ...]) -> str | None:
        """The whole-program cache key for `types` (None: not cacheable as a whole program,
        e.g. a subclass compiles with its own `executable` but names no `key_options`)."""
        owner = {name: next(c for c in type(self).__mro__ if name in c.__dict__)
                 for name in ("executable", "key_options")}
        if not issubclass(owner["key_options"], owner["executable"]):
            return None
        text = structure_text(self.graph, types, self.key_options(), LOWERING_VERSION)
        return None if text is None else self.cache.key(text, "program/" + cache_version())

    def invalidate(self) -> None:
        """Repack the weights at the next call, for parameter writes the library cannot see
        (into a vector kept from earlier, or a Param's data)."""
        for program in list(self.programs.values()):
            program.invalidate()

    def _build(self, types: tuple[TensorType, ...]) -> Program:
        level = self.dump if self.dump is not None else settings.debug_level()
        key = self.structure_key(types) if level == 0 else None
        if key is not None:
            found = self.cache.load_executable(key)
            if found is not None:
                try:
                    return self._program(*found)
                except (JitError, InputError, KeyError, TypeError, ValueError, IndexError):
                    self.cache.discard(key)     # loads but does not fit: compile afresh
        exe = self.executable(types)
        engine = shared_engine()
        if level >= 3:
            compiled = engine.compile_to_object(exe.llvm_ir, assembly=level >= 4)
            print(f"[graphrnn] LLVM IR ({exe.entry_points[0]}):\n{exe.llvm_ir}", file=sys.stderr)
            print(f"[graphrnn] optimised LLVM IR:\n{compiled.optimized_ir}", file=sys.stderr)
            if compiled.asm:
                print(f"[graphrnn] assembly:\n{compiled.asm}", file=sys.stderr)
            obj, program = compiled.obj, self._program(exe, compiled.obj)
        else:
            obj, program = self.cache.get_or_load(
                exe.llvm_ir, cache_version(), lambda text: engine.compile_to_object(text).obj,
                lambda code: self._program(exe, code))
        if key is not None:
            self.cache.store_executable(key, exe, obj)
        return program

    def _program(self, exe: Executable, obj: bytes) -> Program:
        # a cache hit needs no Engine (that is, no optimiser target machine): only a loader
        return Program(exe, Library(obj), self._params_for(exe.table), version=params_version)

    def _params_for(self, table: ParamTable) -> np.ndarray:
        flat = getattr(self.model, "flat", None)
        if flat is not None and getattr(self.model, "table", None) == table:
            return flat
        own, keys = layout_params(self.graph.params())
        if own != table:
            raise InputError("the compiled parameter layout does not match the model's")
        flat = np.zeros(table.size, np.float32)
        views = table.views(flat)
        for p, k in keys.items():
            views[k][...] = p.data
        return flat

    # -- inspection
    def arena_bytes(self, *inputs: Any, target: Any = None) -> int:
        """Bytes of scratch memory (the activation arena) one call on these inputs takes,
        compiling its program if needed. For a training step pass `target=` as in the call."""
        values = list(inputs) + ([target] if target is not None else [])
        if self.stateful:
            init = interpret(self._initial, *inputs) if self._state is None else self._state
            values += list(init) if isinstance(init, (tuple, list)) else [init]
        program = self.program(self.signature(values)[0])
        _, steps = program.validate(values)
        return 4 * (program.fixed + program.per_step * steps)

    def llvm_ir(self, *inputs: Any, B: int | None = None) -> str:
        """The LLVM IR (before optimisation) of the program for these inputs or batch size."""
        return self.executable(self.types_for(inputs, B)).llvm_ir

    def asm(self, *inputs: Any, B: int | None = None) -> str:
        """The host assembly of the program for these inputs or batch size."""
        exe = self.executable(self.types_for(inputs, B))
        return shared_engine().compile_to_object(exe.llvm_ir, assembly=True).asm or ""

    def __repr__(self) -> str:
        return (f"CompiledModel({type(self.model).__name__}, {len(self.programs)} programs"
                f"{', stateful' if self.stateful else ''})")


def _check_dims(name: str, value: Any) -> None:
    """Refuse a dim of 2**31 or more before anything is compiled, copied or allocated: no real
    input has that many rows or steps, and a claimed one (a zero-strided view) must not make
    the runtime reserve memory for it."""
    shape = getattr(value, "shape", ())
    if any(s >= MAX_DIM for s in shape):
        raise InputError(f"input {name}: {describe(value)} is too large: every dim must be "
                         "below 2**31")


def compile(model: Any, *, unroll: bool | int | None = None, optimize: bool = True,
            disable: Collection[str] = (), dump: int | None = None, stateful: bool = False,
            cache: KernelCache | None = None, loss: Any = None, train: bool = False,
            bptt_max: int | None = None, checkpoint: int | None = None,
            threads: int = 1) -> CompiledModel:
    """Compile `model` (a gModule or Graph) to native code, lazily per batch size.

    unroll: None unrolls only loops that ask for it; k unrolls every loop by k (compile time
    then grows with T). disable: pass names to skip. dump: a GRAPHRNN_DEBUG level for this
    model (3: LLVM IR, 4: assembly). stateful: keep the top-level loops' state across calls.
    cache: a KernelCache (default: the process-wide one backed by GRAPHRNN_CACHE_DIR).
    loss, train=True: compile the training step of (model, loss) instead: calling it with
    `(*inputs, target=...)` runs forward, loss and backward in one native call, returns the
    loss and fills the model's flat gradient; `bptt_max=k` truncates BPTT at every k-th step;
    `checkpoint=k` saves the loops' carries every k steps only and recomputes the rest in the
    backward pass (gradient checkpointing; one program per sequence length).
    threads: run a call's batch as up to this many parts of rows at once, each part on its own
    core, where each part has enough work (threads.py states the rule; `parts_for(B, T)`
    shows it). Results are those of one thread; a training step's loss and gradients are the
    batch mean, combined from the parts.
    """
    if train or loss is not None:
        if loss is None:
            raise TypeError("train=True needs a loss criterion: gr.compile(model, loss=..., "
                            "train=True)")
        from .trainstep import CompiledTrainStep
        return CompiledTrainStep(model, loss, bptt_max=bptt_max, unroll=unroll,
                                 optimize=optimize, disable=disable, dump=dump, cache=cache,
                                 checkpoint=checkpoint, threads=threads)
    if checkpoint is not None:
        raise TypeError("checkpoint=k applies to training: gr.compile(model, loss=..., "
                        "train=True, checkpoint=k)")
    return CompiledModel(model, unroll=unroll, optimize=optimize, disable=disable, dump=dump,
                         stateful=stateful, cache=cache, threads=threads)


__all__ = ["compile", "CompiledModel", "shared_cache", "shared_engine"]
