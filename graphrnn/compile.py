"""gr.compile: a model as native code, compiled lazily and called from numpy.

    fast = gr.compile(model)            # nothing is compiled yet
    y = fast(x)                         # compiles for x's fixed dims and dtypes, then runs
    y = fast(x_other)                   # another batch size or length: no recompile

One program per *signature* (signature.py): the fixed dims and dtypes; batch and every time dim
stay symbolic (time unless loops are unrolled), for untyped inputs too; a graph that needs them
fixed gets the next less general signature. `specialize=True`: one program per batch size. The compiled forward is
inference: dropout is the identity. Programs come from the kernel cache at two levels: whole
programs keyed on the structure of the compilation (fingerprint.py: no passes, no lowering on a
hit) and object code keyed on the LLVM IR. With GRAPHRNN_DEBUG (or dump) the passes run.

The one module of graphrnn that uses both the compiler and the runtime; the rest reaches the
compiler through it (`tie_params`, `rewrite`, and `gradient_graph` for the interpreter).

Never stale: a compiled model reads its model's ParamStore (store.py), brings in the values of
parameters another model owns, and repacks its packed weights when the vector's bytes changed since
the last call, whatever wrote them. It pickles as its model and options and compiles again (or
loads from the kernel cache) where it is unpickled.

`stateful=True` keeps each top-level loop's carry between calls: a stream fed in chunks gives the
result of one long call, bit for bit, in memory that does not grow with the stream
(tests/test_streams.py); `reset_state()` starts again. Reverse loops cannot be stateful.

Calls are thread-safe: each call in flight has its own scratch arena (a stateful model serialises
its calls). `threads=n` runs one call's batch as up to n parts of rows at once, with one thread's
results (threads.py). A forked child gets fresh locks (runtime/forksafe.py); a model keeps its
`gr.cache_limits().programs` most recently used programs (runtime/lru.py)."""
from __future__ import annotations

import threading
from functools import partial
from typing import Any, Collection, Sequence

import numpy as np

from . import settings
from .compiler.codegen.lower import VERSION as LOWERING_VERSION
from .compiler.codegen.lower import lower_graph
from .compiler.passes.rewrite import rewrite
from .compiler.passes.tie import tie_params
from .compiler.pipeline import compile_graph, compile_training, expose, gradient_graph
from .engine import cache_version, load_object_code, shared_cache, shared_engine
from .fingerprint import structure_text
from .interpret import interpret
from .isa import resolve_isa, using_isa
from .executable import Executable
from .flat import ParamTable
from .ir import Graph, InputError, Op, TensorType
from .losses import loss_graph
from .module import graph_of
from .runtime.cache import KernelCache
from .runtime.forksafe import renew_after_fork
from .runtime.jit import JitError, Library
from .runtime.lru import LRU, programs_limit
from .runtime.program import Program, shapes_key
from .signature import Levels, batch_types, check_dims, generalised, signature
from .store import params_for
from .micro_batch import RowBlocks
from .threads import BatchSplitter, Parts


class CompiledModel:
    """A model compiled to native code on first use; call it like the model."""

    def __init__(self, model: Any, *, unroll: bool | int | None = None, optimize: bool = True,
                 disable: Collection[str] = (), dump: int | None = None,
                 stateful: bool = False, cache: KernelCache | None = None,
                 profile: bool = False, threads: int = 1,
                 specialize: bool | Collection[int] = False, isa: str | None = None):
        self.model = model
        self._pickled = dict(unroll=unroll, optimize=optimize, disable=tuple(disable), dump=dump,
                             stateful=stateful, profile=profile, threads=threads,
                             specialize=specialize, isa=isa)
        self.isa = None if isa is None else resolve_isa(isa, "gr.compile isa")
        graph = graph_of(model)
        if not isinstance(graph, Graph):
            raise TypeError(f"gr.compile takes a gModule or a Graph, got {type(model).__name__}")
        self.options = dict(unroll=unroll, optimize=optimize, disable=tuple(disable))
        self.lowering = dict(training=False, profile=profile)
        self.training: dict[str, Any] | None = None   # the training step's driver options
        self.source = graph                     # the driver's input: before step "state"
        self.compiles = 0                       # times the passes ran (cache hits skip them)
        self.dump = dump
        self.stateful = stateful
        self.n_user = len(graph.inputs)
        self.n_outputs = len(graph.outputs)
        self.initial_state_graph: Graph | None = None
        self.n_state = 0
        if stateful:
            exposed = expose(graph, dump=dump)
            graph, self.n_state = exposed.graph, exposed.n_state
            self.initial_state_graph = exposed.initial
        self.graph = graph
        # unrolled loops need a known step count: then T is fixed per program too
        self.fixed_time = unroll not in (None, False) or (unroll is None and any(
            n.op == Op.LOOP and n.attrs.get("unroll") for n, _ in graph.walk()))
        self._gather = not isinstance(getattr(model, "flat", None), np.ndarray)
        self.cache = cache if cache is not None else shared_cache()
        self.programs: LRU[tuple[TensorType, ...], Program] = LRU(bound=programs_limit)
        self._seen: dict[Any, tuple[TensorType, ...]] = {}  # (shape, dtype) per input -> types
        self.levels = Levels.option(specialize)
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
        per thread; one range when it does not split (`self.split.reason` says why)."""
        return self.split.parts(batch, steps)

    def _parts(self, values: Sequence[Any], check_state: bool = False) -> Parts:
        """How a call on `values` splits; checks the inputs the first time a shape is seen."""
        return self.split.parts_of(values, lambda: self.signature(values, check_state))

    def _bound_program(self, values: Sequence[Any], check_state: bool = False) -> Program:
        program = self.program_for(values, check_state)
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
                check_dims(x.name, v)          # before the initial state is allocated
            init = interpret(self.initial_state_graph, *inputs)
            state = list(init) if isinstance(init, tuple) else [init]
            state = [np.ascontiguousarray(s, dtype=s.dtype) for s in state]
        values = list(inputs) + state
        parts = self._parts(values, check_state=True) if not self.split.serial else ()
        if len(parts) > 1:
            outs = tuple(self.split.run(parts, values, self._bound_program))
            self._state = list(outs[self.n_outputs:])       # fresh arrays: each part's rows
        else:
            program = self._bound_program(values, check_state=True)
            outs = program(*inputs, *state)
            outs = outs if isinstance(outs, tuple) else (outs,)
            self._state = [np.array(s) for s in outs[self.n_outputs:]]
        user = outs[:self.n_outputs]
        return user[0] if len(user) == 1 else tuple(user)

    def reset_state(self) -> None:
        """Forget the carried state: the next call starts from the model's initial values."""
        with self._state_lock:
            self._state = None

    @property
    def state(self) -> list[np.ndarray] | None:
        """The carried state of a stateful model (None before the first call)."""
        return self._state

    # -- programs
    def program_for(self, inputs: Sequence[Any], check_state: bool = False) -> Program:
        """The program for these inputs; arrays of shapes seen before skip the signature."""
        key = shapes_key(inputs)
        types = self._seen.get(key) if key is not None else None
        if types is not None:
            return self.program(types)
        types, program = self.levels.build(
            lambda level: self.signature(inputs, check_state, level)[0], self.program)
        if key is not None and len(self._seen) < 4096:
            self._seen[key] = types
        return program

    def program(self, types: tuple[TensorType, ...]) -> Program:
        """The program for one signature, compiled (or loaded from the cache) on first use."""
        prog = self.programs.get(types)
        if prog is None:
            with self._lock, using_isa(self.isa):
                prog = self.programs.get(types)
                if prog is None:
                    prog = self._build(types)
                    self.programs[types] = prog
        return prog

    def signature(self, inputs: Sequence[Any], check_state: bool = False,
                  level: int | None = None) -> tuple[tuple[TensorType, ...], dict[str, int]]:
        """The input types one program serves at `level` (default: the level calls on such
        inputs compile at): fixed dims bound, the batch and time dims symbolic."""
        return signature(self.graph.inputs, inputs, n_user=self.n_user, level=level,
                         fixed_time=self.fixed_time, check_state=check_state, levels=self.levels)

    def types_for(self, inputs: Sequence[Any] = (), batch: int | None = None
                  ) -> tuple[TensorType, ...]:
        """Signature from example inputs, or from a batch size and the declared types."""
        if inputs:
            return self.signature(inputs)[0]
        if batch is None:
            raise TypeError("give example inputs or B=<batch size>")
        return batch_types(self.graph.inputs, batch)

    def executable(self, types: tuple[TensorType, ...]) -> Any:
        """The driver's forward program, or its training step when `self.training` is set."""
        self.compiles += 1
        strict = generalised(self.graph.inputs, types)
        options = dict(self.options, stateful=self.stateful, dump=self.dump,
                       lower=partial(lower_graph, **self.lowering, strict=strict))
        if self.training is None:
            return compile_graph(self.source, types, **options)
        return compile_training(self.source, types, **options, **self.training)

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
        version = cache_version(LOWERING_VERSION)
        return None if text is None else self.cache.key(text, "program/" + version)

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
        obj, program = load_object_code(exe.llvm_ir, exe.entry_points[0], self.cache,
                                        LOWERING_VERSION, level,
                                        lambda code: self._program(exe, code))
        if key is not None:
            self.cache.store_executable(key, exe, obj)
        return program

    def _program(self, exe: Executable, obj: bytes) -> Program:
        # a cache hit needs no Engine (that is, no optimiser target machine): only a loader
        params = self._params_for(exe.table)
        store = getattr(self.model, "store", None)
        own = store is not None and params is store.flat
        return Program(exe, Library(obj), params, refresh=store.refresh if own else None)

    def _params_for(self, table: ParamTable) -> np.ndarray:
        """The model's own flat vector when `table` is its layout, else a fresh gathered copy."""
        return params_for(getattr(self.model, "store", None), self.graph.params(), table)

    # -- inspection
    def arena_bytes(self, *inputs: Any, target: Any = None) -> int:
        """Bytes of scratch memory (the activation arena) one call on these inputs takes,
        compiling its program if needed. For a training step pass `target=` as in the call."""
        values = list(inputs) + ([target] if target is not None else [])
        if self.stateful:
            init = (interpret(self.initial_state_graph, *inputs) if self._state is None
                    else self._state)
            values += list(init) if isinstance(init, (tuple, list)) else [init]
        program = self.program_for(values)
        arrays, steps = program.validate(values)
        return 4 * program.arena_floats(arrays, steps)

    def llvm_ir(self, *inputs: Any, B: int | None = None) -> str:
        """The LLVM IR (before optimisation) of the program for these inputs or batch size."""
        with using_isa(self.isa):
            return self.executable(self.types_for(inputs, B)).llvm_ir

    def asm(self, *inputs: Any, B: int | None = None) -> str:
        """The host assembly of the program for these inputs or batch size."""
        with using_isa(self.isa):
            ir = self.llvm_ir(*inputs, B=B)
            return shared_engine().compile_to_object(ir, assembly=True).asm or ""

    def __reduce__(self) -> tuple:
        if type(self) is not CompiledModel:
            raise TypeError(f"a {type(self).__name__} does not pickle: pickle the model and "
                            "compile it again")
        return (_recompiled, (self.model, self._pickled))

    def __repr__(self) -> str:
        return (f"CompiledModel({type(self.model).__name__}, {len(self.programs)} programs"
                f"{', stateful' if self.stateful else ''})")


def _recompiled(model: Any, options: dict[str, Any]) -> CompiledModel:
    return CompiledModel(model, **options)      # lazily, or from the kernel cache


class CompiledTrainStep(CompiledModel):
    """forward + loss + backward of (model, criterion) in one native call, one program for every
    batch size: the driver's training step of the loss graph (outputs: the loss, the flat
    gradient). Dropout draws the interpreter's masks; with `threads=n` (or `micro_batch`: blocks
    of rows, micro_batch.py) the parts' results combine as the mean."""
    blocks = RowBlocks(None, 0)                 # CompiledVJP: never blocked

    def __init__(self, model: Any, criterion: Any, *, bptt_max: int | None = None,
                 checkpoint: int | None = None, micro_batch: int | None = None,
                 **options: Any):
        self.blocks = RowBlocks(self, micro_batch)      # before the splitter is made
        super().__init__(loss_graph(model, criterion), **options)
        self.model, self._gather = model, False
        self.truncate, self.checkpoint = bptt_max, checkpoint
        self.training = dict(truncate=bptt_max, checkpoint=checkpoint)
        self.fixed_time |= bool(checkpoint)     # segments of k steps: one program per T
        self.forward_loss = CompiledModel(self.graph, cache=self.cache, threads=self.threads,
                                          specialize=options.get("specialize", False),
                                          isa=options.get("isa"))
        self.forward_loss.model, self.forward_loss._gather = model, False
        self.lowering["training"] = True        # dropout draws the interpreter's masks
        dropout = any(n.op == Op.DROPOUT and n.attrs["p"] > 0 for n, _ in self.graph.walk())
        if dropout and (checkpoint or self.fixed_time):
            # both restructure the loops, and a mask is salted by its loop step
            raise InputError("dropout in loops that are unrolled or checkpointed is not "
                             "compiled: use the interpreted step (compiled=False)")

    def splitter(self, threads: int) -> BatchSplitter:
        # forward and backward: about three times the forward's flops per row
        return BatchSplitter(self.graph, threads, training=True, work=3.0, gradient=True,
                             blocks=self.blocks.micro_batch != 0)

    def key_options(self) -> dict[str, Any]:
        return dict(super().key_options(), truncate=self.truncate, checkpoint=self.checkpoint)

    def __call__(self, *inputs: Any, target: Any, training: bool = True, seed: int = 0) -> float:
        """One step: returns the loss and leaves the gradient in the model's flat gradient;
        dropout as `gr.interpret(..., training=True, seed=seed)` (none unless `training`)."""
        return self.blocks.run((*inputs, target), seed=seed, training=training)

    def loss(self, *inputs: Any, target: Any) -> float:
        """The loss alone, compiled, in inference mode."""
        self.model.parameters()
        return float(self.forward_loss(*inputs, target))


def compile(model: Any, *, unroll: bool | int | None = None, optimize: bool = True,
            disable: Collection[str] = (), dump: int | None = None, stateful: bool = False,
            cache: KernelCache | None = None, loss: Any = None, train: bool = False,
            bptt_max: int | None = None, checkpoint: int | None = None,
            threads: int = 1, specialize: bool | Collection[int] = False,
            isa: str | None = None, micro_batch: int | None = None) -> CompiledModel:
    """Compile `model` (a gModule or Graph) to native code, lazily, for every batch size.

    unroll: None unrolls only loops that ask for it; k unrolls every loop by k. disable: pass names
    to skip. dump: a GRAPHRNN_DEBUG level (3: LLVM IR, 4: assembly). stateful: keep the top-level
    loops' state across calls. cache: a KernelCache (default: the process-wide one). loss,
    train=True: compile the training step of (model, loss) instead: calling it with `(*inputs,
    target=...)` runs forward, loss and backward in one native call, returns the loss and fills the
    model's flat gradient; `bptt_max=k` truncates BPTT at every k-th step; `checkpoint=k` saves the
    loops' carries every k steps only and recomputes the rest in the backward pass (gradient
    checkpointing; one program per sequence length). threads: run a call's batch as up to this many
    parts of rows, each on its own core, where each part has enough work (`parts_for(B, T)`), with
    one thread's results. specialize: a program per batch size, or per size in a collection (e.g.
    `(1,)`), not one for all. isa: the instruction set of the kernels, a `graphrnn.isa.using_isa`
    spec such as "avx2" (default: the current one); ValueError if the host cannot run it.
    micro_batch: a training step's batch as blocks of <= this many rows (None: auto; 0: never).
    """
    if train or loss is not None:
        if loss is None:
            raise TypeError("train=True needs a loss criterion: gr.compile(model, loss=..., "
                            "train=True)")
        return CompiledTrainStep(model, loss, bptt_max=bptt_max, unroll=unroll,
                                 optimize=optimize, disable=disable, dump=dump, cache=cache,
                                 checkpoint=checkpoint, threads=threads,
                                 specialize=specialize, isa=isa, micro_batch=micro_batch)
    if checkpoint is not None or micro_batch is not None:
        name = "checkpoint" if checkpoint is not None else "micro_batch"
        raise TypeError(f"{name}=k applies to training: gr.compile(model, loss=..., train=True, "
                        f"{name}=k)")
    return CompiledModel(model, unroll=unroll, optimize=optimize, disable=disable, dump=dump,
                         stateful=stateful, cache=cache, threads=threads,
                         specialize=specialize, isa=isa)


__all__ = ["compile", "CompiledModel", "CompiledTrainStep", "gradient_graph", "tie_params",
           "rewrite", "shared_cache", "shared_engine"]
