"""ParamStore: where parameter values and gradients live (the IR's `Param` holds neither).

A model owns one store: the flat float32 vector of its parameters (Torch `getParameters`),
the flat gradient of the same layout, and a version counter. Every way of writing values
ends there: in-place numpy writes into the flat vector or into a named view of it,
`load_state_dict`, `reset_parameters`, an optimiser's step.

Staleness. numpy writes cannot be intercepted, so compiled code asks at call time:
`refresh(compare=True)` compares the flat vector with a copy kept at the last check (one
`memcmp`) and moves `version` on when they differ; API routes move it on too (`changed()`).
A Program whose weights are packed into a persistent buffer repacks when the version moved.
Code that reads the flat vector directly needs no check: it is the model's own.

Sharing. A Param belongs to one store at a time, its *home*: the store of the model that
closed over it last, or whose parameters were asked for last (`parameters()`,
`named_parameters()`, `load_state_dict`, `reset_parameters` claim them, copying the current
values in). Every other store holding that Param copies its slice from the home at each
compiled call (`sync`), so an encoder sharing a Recurrent with a full model answers with
the weights `fit` gave the full model. Writes into a store that is not the home of a Param
(into a vector taken before another model claimed it) are overwritten at its next call:
write through the vector of the model whose parameters you asked for last.
Parameters outside every model (a module not yet in a gModule) live in arrays of their own.
Gradients are per store: each model's training step fills its own.

Cost per compiled call (AMD znver4, 2 shared vCPUs; LSTM forward, T=100, the user holding
the vector from `parameters()`; medians of 4000 and 40 calls, best of 5):
  B=1, D=32, H=64 (25k params, 0.1 MB):     47.0 us a call before, 49.0 us now; the check
      alone (`refresh`: lock, sync, one memcmp) 1.9-2.1 us, about 4 %
  B=64, D=512, H=512 (2.1M params, 8.4 MB): 128 ms a call before and now; the check 0.17-0.2
      ms, 0.15 %
Packing every call instead costs more than the compare: 3.4 us against 1.8 us (small), 450
us against 150 us (large). A call that finds changed weights copies the vector and repacks.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import itertools
import threading
import weakref
from typing import Any, Callable, Sequence

import numpy as np

from .flat import ParamTable, layout_params
from .ir import InputError, Param
from .runtime.buffers import aligned_zeros
from .runtime.forksafe import renew_after_fork

# Param -> the array holding its value: a view into its home store's flat vector, or an
# array of its own. Keys are weak, and arrays do not refer back to Params, so nothing leaks.
_HOME: "weakref.WeakKeyDictionary[Param, np.ndarray]" = weakref.WeakKeyDictionary()
# moves on whenever a Param changes home: stores re-derive their foreign slices lazily
_moves = itertools.count(1)
_moved = [0]


def _libc_memcmp() -> Any:
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None).memcmp
    except (OSError, AttributeError):
        return None
    fn.argtypes = (ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
    fn.restype = ctypes.c_int
    return fn


_MEMCMP = _libc_memcmp()


def same_bytes(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two contiguous arrays of one size hold the same bytes (NaNs included)."""
    if _MEMCMP is None:
        return bool(np.array_equal(a.view(np.uint8), b.view(np.uint8)))
    return a.nbytes == 0 or _MEMCMP(a.ctypes.data, b.ctypes.data, a.nbytes) == 0


def _comparer(a: np.ndarray, b: np.ndarray) -> Callable[[], bool]:
    """`same_bytes(a, b)` with the pointers looked up once (`.ctypes.data` costs ~1 us)."""
    if _MEMCMP is None or a.nbytes == 0:
        return lambda: same_bytes(a, b)
    fn, pa, pb, n = _MEMCMP, a.ctypes.data, b.ctypes.data, a.nbytes
    return lambda: fn(pa, pb, n) == 0


def _note_move() -> None:
    _moved[0] = next(_moves)


def value(p: Param) -> np.ndarray:
    """The current value of `p` (of the Param it is tied to): its home's array, not a copy."""
    root = p.root()
    home = _HOME.get(root)
    if home is None:
        home = adopt(root, None)
    return home


def params_for(store: "ParamStore | None", params: Sequence[Param], table: ParamTable
               ) -> np.ndarray:
    """The store's own flat vector when `table` is its layout, else a fresh gathered copy of
    `params` (whose layout must be `table`)."""
    if store is not None and store.table == table:
        return store.flat
    if layout_params(params)[0] != table:
        raise InputError("the compiled parameter layout does not match the model's")
    return gather(params, table)


def gather(params: Sequence[Param], table: ParamTable, dtype: Any = np.float32) -> np.ndarray:
    """The values of `params` (tied ones by their roots) as one new vector of `table`'s layout;
    InputError-free: the caller checks that `table` is the layout of `params`."""
    roots = list({id(p.root()): p.root() for p in params}.values())
    _, keys = layout_params(roots)
    flat = np.zeros(table.size, dtype)
    views = table.views(flat)
    for p, key in keys.items():
        views[key][...] = value(p)
    return flat


def adopt(p: Param, initial: Any, *, replace: bool = True) -> np.ndarray:
    """Give `p` an array of its own holding `initial` (zeros when None); returns the array.

    With `replace=False` a Param that already has a home keeps it, and `initial` must be an
    array of its shape (the Param may be half unpickled: its fields are not read)."""
    if not replace:
        if p in _HOME:
            return _HOME[p]
        arr = np.array(initial, np.float32)
    else:
        arr = (np.zeros(p.shape, np.float32) if initial is None
               else np.array(initial, np.float32).reshape(p.shape))
    _HOME[p] = arr
    _note_move()
    return arr


class ParamStore:
    """The flat parameter vector, the flat gradient and a version counter of one model."""

    def __init__(self, params: Sequence[Param]):
        self.table: ParamTable
        self.table, keys = layout_params(params)
        self.params: dict[str, Param] = {k: p for p, k in keys.items()}
        self.keys: dict[Param, str] = dict(keys)
        self.flat = aligned_zeros(self.table.size)
        self.grad = aligned_zeros(self.table.size)
        self.version = 0
        self._setup()
        self.claim()

    def _setup(self) -> None:
        self._views = self.table.views(self.flat)
        self._grads = self.table.views(self.grad)
        self._lock = threading.Lock()
        # every compiled call takes the lock (refresh): a child forked while another thread
        # held it must not inherit it held
        renew_after_fork(self, _lock=threading.Lock)
        self._seen: np.ndarray | None = None     # the flat vector at the last compare
        self._same: Callable[[], bool] = lambda: False
        self._checked = -1                        # `_moved` when `_foreign` was derived
        self._foreign: list[tuple[np.ndarray, np.ndarray]] = []

    # -- values
    def views(self) -> dict[str, np.ndarray]:
        """Parameter key -> its value, a view into the flat vector."""
        return dict(self._views)

    def grad_views(self) -> dict[str, np.ndarray]:
        """Parameter key -> its gradient, a view into the flat gradient."""
        return dict(self._grads)

    def grad_of(self, p: Param) -> np.ndarray:
        """The gradient view of `p` (of the Param it is tied to)."""
        return self._grads[self.keys[p.root()]]

    def claim(self) -> None:
        """Become the home of every parameter, copying in the values from their homes."""
        moved = False
        for k, p in self.params.items():
            mine = self._views[k]
            home = _HOME.get(p)
            if home is mine:
                continue
            if home is not None:
                mine[...] = home
            _HOME[p] = mine
            moved = True
        if moved:
            _note_move()
            self.changed()

    def changed(self) -> None:
        """Note a write through the API (compiled programs repack at their next call)."""
        self.version += 1

    # -- keeping compiled code current
    def sync(self) -> None:
        """Copy in the values of parameters whose home is another store."""
        if self._checked != _moved[0]:
            self._checked = _moved[0]
            self._foreign = [(self._views[k], _HOME[p]) for k, p in self.params.items()
                             if _HOME.get(p) is not self._views[k] and p in _HOME]
        for mine, home in self._foreign:
            np.copyto(mine, home)

    def refresh(self, compare: bool = True) -> int:
        """Bring the flat vector up to date (`sync`) and return the version; with `compare`,
        first move the version on if the values changed since the last compare."""
        with self._lock:
            self.sync()
            if compare and not self._same():
                if self._seen is None:
                    self._seen = aligned_zeros(self.table.size)
                    self._same = _comparer(self._seen, self.flat)
                np.copyto(self._seen, self.flat)
                self.version += 1
            return self.version

    # -- pickling: the values travel, the caches and the lock do not
    def __getstate__(self) -> dict[str, Any]:
        self.sync()
        return {"params": self.params, "keys": self.keys, "table": self.table,
                "flat": np.array(self.flat), "grad": np.array(self.grad)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.params, self.keys, self.table = state["params"], state["keys"], state["table"]
        self.flat = aligned_zeros(self.table.size)
        self.grad = aligned_zeros(self.table.size)
        self.flat[...], self.grad[...] = state["flat"], state["grad"]
        self.version = 0
        self._setup()
        for k, p in self.params.items():
            _HOME[p] = self._views[k]
        _note_move()
