"""The input types one compiled program serves, read from the arrays of a call.

A program is made per signature: every fixed dim bound to the arrays' sizes and the dtypes,
with the batch dim and every time dim left symbolic (axes.py says which dim is which), so a
new batch size or sequence length never recompiles. The symbols are renamed to BATCH ("B"),
TIME ("T") and, for further time dims (a decoder's target length beside the source length),
T2, T3, ... (`more_times`): the names the lowering knows them by. How general a signature is,
is its level:

    GENERAL      declared batch and time symbolic; an untyped input (an nngraph
                 `nn.Identity()()`) generalised from its first arrays: axis 0 is the batch,
                 and axis 1 the time when the input has rank 3 or more, or is integer ids of
                 rank 2 (its axis 1 the same size as the other time dims)
    ROWS         as GENERAL, but untyped inputs keep their time axis fixed
    DECLARED     declared batch and time symbolic; untyped inputs fixed by their arrays
    SPECIALISED  the batch bound too (one program per batch size), untyped inputs fixed

A graph that cannot be compiled at one level (a slice of the batch, a width read from an
untyped input) is compiled at the next (compile.py).
"""
from __future__ import annotations

from typing import Any, Callable, Collection, Sequence

import numpy as np

from .axes import batch_symbols, time_symbols
from .ir import GraphError, InputError, LoweringError, Node, TensorType
from .runtime.program import as_input, describe

MAX_DIM = 1 << 31              # every dim of an input must be smaller
BATCH, TIME = "B", "T"         # the symbols as the lowering names them (codegen/strides.py)
GENERAL, ROWS, DECLARED, SPECIALISED = 0, 1, 2, 3


class Levels:
    """The level each GENERAL signature compiles at: the most general one that compiled.
    Calls whose batch size is in `batches` are always SPECIALISED."""

    def __init__(self, start: int = GENERAL, batches: Collection[int] = ()):
        self.start = start
        self.batches = frozenset(int(b) for b in batches)
        self._floor: dict[tuple[TensorType, ...], int] = {}

    @staticmethod
    def option(specialize: bool | Collection[int]) -> "Levels":
        """The levels of `gr.compile(..., specialize=...)`: True every batch size
        SPECIALISED, a collection of sizes those, False none."""
        if isinstance(specialize, bool):
            return Levels(SPECIALISED if specialize else GENERAL)
        return Levels(GENERAL, specialize)

    def of(self, general: tuple[TensorType, ...]) -> int:
        return self._floor.get(general, self.start)

    def build(self, types_at: Callable[[int], tuple[TensorType, ...]],
              build: Callable[[tuple[TensorType, ...]], Any]) -> tuple[tuple, Any]:
        """(types, build(types)) at the most general level from `start` that compiles;
        `types_at(level)` gives the signature at a level."""
        general = types_at(GENERAL)
        failed: tuple | None = None
        error: Exception = LoweringError("no level compiled")
        while True:
            level = self.of(general)
            types = types_at(level)
            try:
                if types == failed:         # this level adds nothing for these inputs
                    raise error
                return types, build(types)
            except (GraphError, LoweringError) as e:
                if level >= SPECIALISED:
                    raise
                # a slice of the batch, a width read from an untyped input: less general
                self._floor[general] = level + 1
                failed, error = types, e


def signature(xs: Sequence[Node], inputs: Sequence[Any], *, n_user: int, fixed_time: bool,
              check_state: bool = False, level: int | None = GENERAL,
              levels: Levels | None = None
              ) -> tuple[tuple[TensorType, ...], dict[str, int]]:
    """(the types of `inputs` for the graph inputs `xs`, the sizes bound to the fixed
    symbols). `n_user`: the inputs a caller gives (the rest are a stateful model's state);
    `fixed_time`: the time dim is bound too (unrolled or checkpointed loops); `level`: how
    general the types are (see the module's docstring); None: the level `levels` keeps for
    such inputs."""
    if level is None:
        general = signature(xs, inputs, n_user=n_user, fixed_time=fixed_time,
                            check_state=check_state)[0]
        level = levels.of(general) if levels is not None else GENERAL
    if len(inputs) != len(xs):
        names = ", ".join(x.name for x in xs[:n_user])
        raise InputError(f"the model takes {n_user} inputs ({names}), got "
                         f"{len(inputs) - (len(xs) - n_user)}")
    declared = [x.type for x in xs]
    symbols = batch_symbols(declared)
    time, extra = _times(declared, symbols, fixed_time)
    arrays = [_array(x, t, v) for x, t, v in zip(xs, declared, inputs)]
    if levels is not None and levels.batches and level < SPECIALISED:
        rows = sizes_of(declared, arrays, time)[0]
        rows = rows if rows is not None else next((a.shape[0] for a in arrays if a.ndim), None)
        level = SPECIALISED if rows in levels.batches else level
    # the first declared batch symbol stays symbolic (below SPECIALISED)
    batch = next((t.shape[0] for t in declared if t is not None and t.rank
                  and t.shape[0] in symbols), None) if level < SPECIALISED else None
    rename = {**extra, time: TIME, batch: BATCH}
    sizes: dict[str, int] = {}
    seen: dict[str, int] = {}               # the symbolic dims' sizes in this call
    generic = _untyped_symbols(declared, arrays, sizes_of(declared, arrays, time),
                               fixed_time or level != GENERAL) if level <= ROWS else {}
    out = []
    for k, (x, t, arr) in enumerate(zip(xs, declared, arrays)):
        if t is None:
            dims = tuple(generic.get((k, a), s) for a, s in enumerate(arr.shape))
            out.append(TensorType(dims, _kind(arr)))
            continue
        dims = []
        for axis, (d, s) in enumerate(zip(t.shape, arr.shape)):
            symbolic = isinstance(d, str) and d in rename
            want = (seen.setdefault(d, s) if symbolic else sizes.setdefault(d, s)) \
                if isinstance(d, str) else d
            if s != want:
                what = ("the state kept from the previous call; call reset_state() to "
                        "start a new stream" if check_state and x in xs[n_user:]
                        else f"dim {axis} should be {want}")
                raise InputError(f"input {x.name}: expected {t}, got {describe(arr)} "
                                 f"({what})")
            dims.append(rename[d] if symbolic else s)
        out.append(TensorType(tuple(dims), t.dtype))
    return tuple(out), sizes


def _kind(arr: np.ndarray) -> str:
    return "int64" if arr.dtype.kind in "iu" else "float32"


def _array(x: Node, t: TensorType | None, v: Any) -> np.ndarray:
    """The input as an array of its declared (or, untyped, its own) type, dims checked."""
    if t is None:
        arr = np.asarray(v) if not isinstance(v, np.ndarray) else v
        t = TensorType(arr.shape, _kind(arr))
    arr = as_input(x.name, t, v)
    check_dims(x.name, arr)
    return arr


def sizes_of(declared: Sequence[TensorType | None], arrays: Sequence[np.ndarray],
             time: str | None) -> tuple[int | None, int | None]:
    """(the batch size, the step count) the typed inputs give (None where none does)."""
    batch = steps = None
    for t, arr in zip(declared, arrays):
        if t is None:
            continue
        if t.rank and isinstance(t.shape[0], str) and batch is None:
            batch = arr.shape[0]
        for d, s in zip(t.shape, arr.shape):
            if time is not None and d == time and steps is None:
                steps = s
    return batch, steps


def _untyped_symbols(declared: Sequence[TensorType | None], arrays: Sequence[np.ndarray],
                     known: tuple[int | None, int | None], fixed_time: bool
                     ) -> dict[tuple[int, int], str]:
    """{(input, axis): symbol} for the dims of untyped inputs taken as the batch or time."""
    batch, steps = known
    out: dict[tuple[int, int], str] = {}
    for k, (t, arr) in enumerate(zip(declared, arrays)):
        if t is not None or arr.ndim == 0:
            continue
        batch = arr.shape[0] if batch is None else batch
        if arr.shape[0] == batch:
            out[(k, 0)] = BATCH
        timed = arr.ndim >= 3 or (arr.ndim == 2 and arr.dtype.kind in "iu")
        if timed and not fixed_time:
            steps = arr.shape[1] if steps is None else steps
            if arr.shape[1] == steps:
                out[(k, 1)] = TIME
    return out


def generalised(xs: Sequence[Node], types: Sequence[TensorType]) -> bool:
    """Whether `types` may hold symbols generalised from an untyped input's arrays (rather
    than declared), whose slices and indexes the lowering must then refuse."""
    return any(x.type is None for x in xs) and \
        any(isinstance(d, str) for t in types for d in t.shape)


def batch_types(xs: Sequence[Node], batch: int) -> tuple[TensorType, ...]:
    """The declared types of `xs` with the symbol on axis 0 bound to `batch`."""
    out = []
    for x in xs:
        if x.type is None:
            raise InputError(f"input {x.name} has no declared type: give example inputs")
        t = x.type
        out.append(TensorType(tuple(batch if i == 0 and isinstance(d, str) else d
                                    for i, d in enumerate(t.shape)), t.dtype))
    return tuple(out)


def general_types(xs: Sequence[Node], fixed_time: bool = False) -> tuple[TensorType, ...]:
    """The GENERAL signature of `xs` read from their declared types alone (no example
    inputs): the batch symbol renamed BATCH, the time symbol TIME and further time symbols
    T2, T3, ... (bound elsewhere when `fixed_time`). InputError when an input is untyped or
    has another symbolic dim."""
    declared = [x.type for x in xs]
    for x, t in zip(xs, declared):
        if t is None:
            raise InputError(f"input {x.name} has no declared type: declare it "
                             "(gr.Input(\"B\", \"T\", ...)) to compile without example inputs")
    symbols = batch_symbols(declared)
    time, extra = _times(declared, symbols, fixed_time)
    batch = next((t.shape[0] for t in declared if t.rank and t.shape[0] in symbols), None)
    rename = {**extra, batch: BATCH, time: TIME}
    out = []
    for x, t in zip(xs, declared):
        for d in t.shape:
            if isinstance(d, str) and d not in rename:
                raise InputError(f"input {x.name}: dim {d!r} of {t} is neither the batch "
                                 f"({batch!r}) nor the time ({time!r}): give it a size")
        out.append(TensorType(tuple(rename.get(d, d) if isinstance(d, str) else d
                                    for d in t.shape), t.dtype))
    return tuple(out)


def more_times(declared: Sequence[TensorType | None], batch: Collection[str]
               ) -> dict[str, str]:
    """{symbol: T2, T3, ...} for the time symbols after the first (axes.time_symbols)."""
    return _times(declared, batch, False)[1]


def _times(declared: Sequence[TensorType | None], batch: Collection[str], fixed_time: bool
           ) -> tuple[str | None, dict[str, str]]:
    """(the time symbol or None, more_times), from one scan; (None, {}) with a fixed time."""
    names = [] if fixed_time else time_symbols(declared, batch)
    return (names[0] if names else None), {d: f"T{k + 2}" for k, d in enumerate(names[1:])}


def check_dims(name: str, value: Any) -> None:
    """Refuse a dim of 2**31 or more before anything is compiled, copied or allocated: no real
    input has that many rows or steps, and a claimed one (a zero-strided view) must not make
    the runtime reserve memory for it."""
    shape = getattr(value, "shape", ())
    if any(s >= MAX_DIM for s in shape):
        raise InputError(f"input {name}: {describe(value)} is too large: every dim must be "
                         "below 2**31")


__all__ = ["signature", "Levels", "generalised", "batch_types", "general_types", "check_dims",
           "sizes_of", "more_times", "MAX_DIM", "BATCH", "TIME", "GENERAL", "ROWS", "DECLARED", "SPECIALISED"]
