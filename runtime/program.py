"""Program: one compiled forward pass, called from numpy.

    program = Program(executable, library, params=model.flat)
    y = program(x, lengths)          # validate every input, then one native call

The entry point is `void f(float* params, float* arena, i8** io, i64 steps)`. `io` holds the
input pointers, the output pointers, then `contract.extras` more: the persistent region, the
run block (i64 seed and training flag, for dropout masks, then the batch size when the
program's batch dim is symbolic: `contract.batch`, then the sizes of the further time
symbols, `contract.more`) and the profile counters; `steps` is the size of the symbolic time
dim. The arena is sized per call from them all (a sum of one term per product of sizes, in
Python ints: a size too large raises InputError before the call). Every
input is checked before the call, and a bad one raises InputError naming the input and its
expected type: count, rank, each fixed dim, one size per symbol (>= 0), dtype (float32 inputs must
be float32 arrays; integer inputs may be any integer dtype and are converted to int64),
contiguity (non-contiguous and negative-stride arrays are copied), the ranges of ids and
lengths (the compiler lists which inputs feed a lookup, a pick or a loop's lengths), and
sizes too large to allocate. Native code never sees an out-of-range id.

The arena is scratch memory. Each concurrent call takes its own workspace (arena plus io
pointer array) from a small pool, so threads may call one Program at once; the native call
releases the GIL. The parameter vector is the model's own (not a copy), so parameter
updates are seen by the next call without recompiling. `run(arrays, steps, outs)` is the
native call alone, on inputs from `validate`, writing into output arrays the caller gives
(views into larger arrays are fine: a call split by rows, graphrnn/threads.py, writes each
part's rows straight into one output).

Packed weights: when the executable has a pack entry (`contract.pack`), the weights that
depend on the parameters alone are packed into a persistent buffer the Program owns, and
repacked only when the parameters changed: the bound vector is another array, or the count
returned by `refresh` (given by the owner of the vector: graphrnn/store.py's
`ParamStore.refresh`, called before every native call to bring the vector up to date and
compare it with what was packed) moved on. Without `refresh` every call repacks, which is
always right.
"""
from __future__ import annotations

import ctypes
import math
import threading
from typing import Any, Callable, Sequence

import numpy as np

from graphrnn.executable import Executable
from graphrnn.ir import InputError

from .buffers import aligned_zeros
from .forksafe import renew_after_fork
from .inputs import address, as_input, bind_dims, describe, shapes_key
from .jit import Library

MAX_FLOATS = 1 << 36            # 256 GiB: larger buffers are refused before allocation
_F32 = np.dtype(np.float32)
_I64 = np.dtype(np.int64)


class _Workspace:
    """Scratch memory of one call in flight: the arena, the io pointer array, the run block."""

    def __init__(self, n_io: int, extras: Sequence[int | None], floats: int, n_more: int = 0):
        self.io = (ctypes.c_void_p * max(n_io + len(extras), 1))()
        self.io_address = ctypes.addressof(self.io)
        # seed, training, batch, the further time sizes: this call's
        self.run = (ctypes.c_int64 * (3 + n_more))()
        for k, a in enumerate(extras):
            self.io[n_io + k] = a if a is not None else ctypes.addressof(self.run)
        self.floats = -1
        self.grow(floats)

    def grow(self, floats: int) -> None:
        if floats > self.floats:
            self.arena = aligned_zeros(max(floats, 16))
            self.arena_address = self.arena.ctypes.data
            self.floats = floats


class Program:
    """A compiled forward pass: `program(*arrays)` -> array, or a tuple for several outputs."""

    def __init__(self, exe: Executable, library: Library, params: np.ndarray | None = None,
                 *, refresh: Callable[[bool], int] | None = None):
        self.exe = exe
        self.library = library                  # keeps the code alive
        contract = exe.contract
        self.names: tuple[str, ...] = tuple(contract.inputs)
        self.output_names: tuple[str, ...] = tuple(contract.outputs)
        n_in = len(self.names)
        self.in_types = exe.io[:n_in]
        self.out_types = exe.io[n_in:]
        self.symbol: str | None = contract.symbol
        self.batch_symbol: str | None = contract.batch
        self.more: tuple[str, ...] = tuple(contract.more)
        self.contract = contract
        self.fixed, self.per_step = contract.arena
        self.checks = tuple(contract.checks)
        self._fn = library.function(exe.entry_points[0], None, ctypes.c_void_p, ctypes.c_void_p,
                                    ctypes.c_void_p, ctypes.c_int64)
        # persistent region, filled by the pack entry once per parameter update
        pack = contract.pack
        self._pack_fn = library.function(pack[0], None, ctypes.c_void_p, ctypes.c_void_p) \
            if pack else None
        self.persistent = aligned_zeros(max(pack[1] if pack else 0, 16))
        self._refresh = refresh
        self._packed_from: tuple[np.ndarray, int] | None = None
        self._pack_lock = threading.Lock()
        renew_after_fork(self, _pack_lock=threading.Lock)
        self.packs = 0                          # how many times the weights were packed
        records = contract.profile or ()
        self.counters = np.zeros(max(2 * len(records), 1), np.int64)
        n_extras = contract.extras
        # the io pointers after the outputs; None: the workspace's own run block
        self._extras = [self.persistent.ctypes.data, None, self.counters.ctypes.data][:n_extras]
        self._params: np.ndarray | None = None
        self._params_address = 0
        self.bind_params(params if params is not None else
                         aligned_zeros(max(exe.table.size, 1))[:exe.table.size])
        self._pool: list[_Workspace] = []
        row, more = self.batch_symbol, self.more
        # per input: (dtype, rank, fixed (axis, size) pairs, time axes, batch axes, (axis, k)
        # pairs of the further time symbols more[k]), for a fast check
        self._specs = [(_F32 if t.dtype == "float32" else _I64, t.rank,
                        tuple((i, d) for i, d in enumerate(t.shape) if isinstance(d, int)),
                        tuple(i for i, d in enumerate(t.shape) if isinstance(d, str)
                              and d != row and d not in more),
                        tuple(i for i, d in enumerate(t.shape) if d == row),
                        tuple((i, more.index(d)) for i, d in enumerate(t.shape) if d in more))
                       for t in self.in_types]
        # the (input, axis) the batch size is read from, and each further time size
        self._rows_at = next(((k, spec[4][0]) for k, spec in enumerate(self._specs)
                              if spec[4]), None)
        self._more_at = [next((k, i) for k, spec in enumerate(self._specs)
                              for i, j in spec[5] if j == m) for m in range(len(more))]
        # per output: shape (-1: the time dim, -2: the batch dim, -3 - k: more[k]), dtype,
        # symbolic at all
        self._outs = [(tuple(d if isinstance(d, int) else -2 if d == row else
                             -3 - more.index(d) if d in more else -1 for d in t.shape),
                       _F32 if t.dtype == "float32" else _I64,
                       any(isinstance(d, str) for d in t.shape)) for t in self.out_types]
        # the largest number of elements any buffer gains per unit of a product of sizes:
        # sizes are checked against MAX_FLOATS only when the product of them all could reach
        # it
        growing = [t for t in self.out_types if any(isinstance(d, str) for d in t.shape)]
        per = [self.per_step + sum(contract.arena_rows)
               + sum(k for _, k in contract.arena_more)] + [
            math.prod(d for d in t.shape if isinstance(d, int)) for t in growing]
        self._safe_steps = (MAX_FLOATS - self.fixed) // max(max(per), 1)

    # -- parameters
    def bind_params(self, flat: np.ndarray) -> None:
        """Use `flat` (float32, C-contiguous, the table's size) as the parameter vector."""
        size = self.exe.table.size
        if not isinstance(flat, np.ndarray) or flat.dtype != _F32 or flat.shape != (size,) \
                or not flat.flags.c_contiguous:
            raise InputError(f"parameter vector: expected a contiguous f32[{size}], got "
                             f"{describe(flat)}")
        self._params = flat
        self._params_address = flat.ctypes.data if size else 0

    @property
    def params(self) -> np.ndarray:
        return self._params

    def pack(self, version: int = -1) -> None:
        """Pack the weights from the bound parameters now, unless they are packed already
        from this vector at this `version` (-1: unknown, always pack)."""
        if self._pack_fn is None:
            return
        flat = self._params
        done = self._packed_from
        if version >= 0 and done is not None and done[0] is flat and done[1] == version:
            return
        with self._pack_lock:
            done = self._packed_from
            if version < 0 or done is None or done[0] is not flat or done[1] != version:
                self._pack_fn(self._params_address, self.persistent.ctypes.data)
                self.packs += 1
                self._packed_from = (flat, version)

    # -- calling
    def __call__(self, *values: Any, seed: int = 0, training: bool = True) -> Any:
        """Run on `values`; `seed` and `training` drive the dropout masks of a training
        program (a program lowered for inference has none)."""
        arrays, steps = self.validate(values)
        outs = self.outputs(arrays, steps)
        self._run(arrays, steps, outs, seed, training)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def outputs(self, arrays: Sequence[np.ndarray], steps: int,
                into: dict[int, np.ndarray] | None = None) -> list[np.ndarray]:
        """The output arrays of a call on `arrays` (from `validate`): those of `into` (output
        index -> array, e.g. a model's gradient) where they fit (`output_buffer`), else new."""
        return [output_buffer(into, j, shape, dt) for j, (shape, dt) in enumerate(
            self.output_shapes(steps, self.rows_of(arrays), self.more_of(arrays)))]

    def output_shapes(self, steps: int, batch: int = 0, more: Sequence[int] = ()
                      ) -> list[tuple[tuple[int, ...], np.dtype]]:
        """(shape, dtype) of every output for `steps` steps, `batch` rows and the sizes `more`
        of the further time symbols (the batch matters only to a program whose batch dim is
        symbolic, `more` to one that has such symbols: `more_of`)."""
        return [(tuple(steps if d == -1 else batch if d == -2 else more[-3 - d] if d < 0
                       else d for d in shape)
                 if sym else shape, dt) for shape, dt, sym in self._outs]

    def rows_of(self, arrays: Sequence[np.ndarray]) -> int:
        """The batch size of a call on `arrays` (0 when the program's batch is fixed)."""
        at = self._rows_at
        return arrays[at[0]].shape[at[1]] if at is not None else 0

    def more_of(self, arrays: Sequence[np.ndarray]) -> tuple[int, ...]:
        """The sizes of the further time symbols (`contract.more`) in a call on `arrays`."""
        return tuple(arrays[k].shape[i] for k, i in self._more_at)

    def arena_floats(self, arrays: Sequence[np.ndarray], steps: int) -> int:
        """Floats of scratch memory (the arena) a call on `arrays` from `validate` takes."""
        return self.contract.arena_floats(steps, self.rows_of(arrays), self.more_of(arrays))

    def run(self, arrays: Sequence[np.ndarray], steps: int, outs: Sequence[np.ndarray], *,
            seed: int = 0, training: bool = True, fresh: bool = False) -> None:
        """The native call on inputs from `validate`, writing into `outs`: arrays of
        `output_shapes(steps)`, C-contiguous and writable (views into larger arrays are fine:
        that is how a split batch writes its rows straight into one output). `fresh`: the
        caller vouches that nothing wrote the parameters since its previous call, on this
        thread, of a program of the same model (the next part of one batch): the bytes are not
        compared again (the vector is still brought up to date)."""
        if len(outs) != len(self._outs):
            raise InputError(f"expected {len(self._outs)} output buffers, got {len(outs)}")
        shapes = self.output_shapes(steps, self.rows_of(arrays), self.more_of(arrays))
        for name, a, (shape, dt) in zip(self.output_names, outs, shapes):
            if not (isinstance(a, np.ndarray) and a.shape == shape and a.dtype == dt
                    and a.flags.c_contiguous and a.flags.writeable):
                raise InputError(f"output {name}: expected a writable contiguous {dt} array of "
                                 f"shape {list(shape)}, got {describe(a)}")
        self._run(arrays, steps, outs, seed, training, fresh)

    def _run(self, arrays: Sequence[np.ndarray], steps: int, outs: Sequence[np.ndarray],
             seed: int, training: bool, fresh: bool = False) -> None:
        version = self._refresh(self._pack_fn is not None and not fresh) \
            if self._refresh is not None else -1
        if self._pack_fn is not None:
            self.pack(version)
        batch, more = self.rows_of(arrays), self.more_of(arrays)
        ws = self._acquire(self.contract.arena_floats(steps, batch, more))
        try:
            io = ws.io
            k = 0
            for a in arrays:
                io[k] = address(a)
                k += 1
            for a in outs:
                io[k] = address(a)
                k += 1
            run = ws.run
            run[0], run[1], run[2] = seed, 1 if training else 0, batch
            for k, m in enumerate(more):
                run[3 + k] = m
            self._fn(self._params_address, ws.arena_address, ws.io_address, steps)
        finally:
            self._pool.append(ws)

    def validate(self, values: Sequence[Any]) -> tuple[list[np.ndarray], int]:
        """The inputs as arrays the native code may read, and the step count; or InputError."""
        if len(values) != len(self.names):
            raise InputError(f"the model takes {len(self.names)} inputs "
                             f"({', '.join(self.names)}), got {len(values)}")
        arrays = []
        steps = batch = -1
        more = [-1] * len(self.more)
        for k, (v, (dtype, rank, fixed, sym, rows, extra)) in enumerate(
                zip(values, self._specs)):
            if type(v) is np.ndarray and v.dtype == dtype and v.ndim == rank:
                a = v
            else:
                a = as_input(self.names[k], self.in_types[k], v)
            shape = a.shape
            for axis, d in fixed:
                if shape[axis] != d:
                    bind_dims(self.names, self.in_types, [*arrays, a], self.symbol)
            for axis in sym:
                if steps < 0:
                    steps = shape[axis]
                elif shape[axis] != steps:
                    bind_dims(self.names, self.in_types, [*arrays, a], self.symbol)
            for axis in rows:
                if batch < 0:
                    batch = shape[axis]
                elif shape[axis] != batch:
                    bind_dims(self.names, self.in_types, [*arrays, a], self.symbol)
            for axis, j in extra:
                if more[j] < 0:
                    more[j] = shape[axis]
                elif shape[axis] != more[j]:
                    bind_dims(self.names, self.in_types, [*arrays, a], self.symbol)
            arrays.append(a)
        steps = max(steps, 0)
        if max(steps, 1) * max(batch, 1) * math.prod(max(m, 1) for m in more) \
                > self._safe_steps or any(a.size > MAX_FLOATS for a in arrays):
            self._check_sizes(arrays, steps)
        for k, a in enumerate(arrays):
            flags = a.flags
            if not (flags.c_contiguous and flags.aligned):
                arrays[k] = np.ascontiguousarray(a)
        for kind, k, limit in self.checks:
            if kind == "steps":
                need, name, have = (limit, self.symbol, steps) if isinstance(limit, int) else \
                    (limit[0], limit[1], more[self.more.index(limit[1])])
                if have < need:
                    raise InputError(f"the model reads step {need - 1} of its time axis "
                                     f"{name}: it needs at least {need} steps, got {have}")
                continue
            a = arrays[k]
            if not a.size:
                continue
            lo, hi = int(a.min()), int(a.max())
            if kind == "ids" and (lo < 0 or hi >= limit):
                raise InputError(f"input {self.names[k]}: ids must lie in [0, {limit}) for "
                                 f"{self.in_types[k]}, got values {lo}..{hi}")
            if kind == "lengths":
                top = limit[0] + limit[1] * (steps if len(limit) == 2 else
                                             more[self.more.index(limit[2])])
                if lo < 0 or hi > top:
                    raise InputError(f"input {self.names[k]}: lengths must lie in [0, {top}] "
                                     f"(the number of steps), got values {lo}..{hi}")
        return arrays, steps

    def _check_sizes(self, arrays: Sequence[np.ndarray], steps: int) -> None:
        batch = max(self.rows_of(arrays), 0)
        more = self.more_of(arrays)
        total = self.contract.arena_floats(steps, batch, more)
        sizes = [("the scratch arena", total)]
        for name, (shape, _) in zip(self.output_names, self.output_shapes(steps, batch, more)):
            sizes.append((f"output {name}", math.prod(shape)))
        for name, a in zip(self.names, arrays):
            sizes.append((f"input {name}", math.prod(a.shape)))
        given = ", ".join([f"T={steps}"] + [f"{m}={n}" for m, n in zip(self.more, more)])
        for what, n in sizes:
            if n > MAX_FLOATS:
                raise InputError(f"{what} would need {n} elements, more than {MAX_FLOATS}: "
                                 f"the input sizes ({given}) are too large")

    # -- workspaces
    def _acquire(self, floats: int) -> _Workspace:
        try:
            ws = self._pool.pop()       # list.pop and append are atomic: no lock needed
        except IndexError:
            return _Workspace(len(self.in_types) + len(self.out_types), self._extras, floats,
                              len(self.more))
        ws.grow(floats)
        return ws


def output_buffer(into: dict[int, np.ndarray] | None, j: int, shape: tuple[int, ...],
                  dtype: np.dtype) -> np.ndarray:
    """The caller's array for output j when it can be written directly, else a new one."""
    a = (into or {}).get(j)
    if a is not None and a.shape == shape and a.dtype == dtype and a.flags.c_contiguous \
            and a.flags.aligned and a.flags.writeable:
        return a
    return np.empty(shape, dtype)


__all__ = ["output_buffer", "Program", "as_input", "bind_dims", "address", "describe",
           "shapes_key", "MAX_FLOATS"]
