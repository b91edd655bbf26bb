"""`gr.load_library`: an exported library loaded through ctypes, called like a compiled model.

    lib = gr.load_library("out/libreader.so")
    y = lib(x)                              # the library's forward, numpy in and out
    y1, y2 = lib.step(x[:, :5]), lib.step(x[:, 5:]); lib.reset_state()
    loss, grad = lib.train_step(x, target=t)

Shapes and dtypes are checked by the library itself (its error becomes an InputError with
the library's message); the loader only lays the arrays out as tensors. One context per
loaded library, its calls serialised by a lock.
"""
from __future__ import annotations

import ctypes
import json
import threading
from pathlib import Path
from typing import Any

import numpy as np

from graphrnn.ir import InputError

_KINDS = {"forward": 0, "step": 2, "train": 3}
_DTYPES = {np.dtype(np.float32): 1, np.dtype(np.int64): 2}
_INPUT_ERRORS = {1, 2, 3, 4, 5, 6}      # E_ARG .. E_STATE: the caller's arrays
_T, _B = -1, -2                         # the port dims of the step count and the batch size


class LibraryError(RuntimeError):
    """The library refused to load or to run (wrong CPU, weights file, ...)."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class LibraryInputError(InputError):
    """The library refused the arrays of a call; `code` is its error code."""

    def __init__(self, message: str, code: int):
        super().__init__(message)
        self.code = code


class Tensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("dtype", ctypes.c_int32), ("rank", ctypes.c_int32),
                ("shape", ctypes.c_int64 * 8), ("strides", ctypes.c_int64 * 8)]


def _tensor(a: np.ndarray) -> Tensor:
    t = Tensor()
    t.data = a.ctypes.data if a.size else None
    t.dtype = _DTYPES.get(a.dtype, 0)
    t.rank = a.ndim
    for k, (s, st) in enumerate(zip(a.shape[:8], a.strides[:8])):
        t.shape[k] = s
        t.strides[k] = st // a.itemsize if a.itemsize else 0
    return t


class LoadedLibrary:
    """An exported graphrnn library, with one context of its own."""

    def __init__(self, path: str | Path, weights: str | Path | None = None):
        path = Path(path)
        self._dll = ctypes.CDLL(str(path.resolve()))
        self._prefix = path.name.split(".")[0].removeprefix("lib")
        fn = self._bind
        self.manifest: dict[str, Any] = json.loads(fn("manifest", ctypes.c_char_p)().decode())
        ptr, vp = ctypes.POINTER(ctypes.c_float), ctypes.c_void_p
        self._last = fn("last_error", ctypes.c_char_p, vp)
        self._run = fn("run", ctypes.c_int, vp, ctypes.c_int, ctypes.POINTER(Tensor),
                       ctypes.c_int, ctypes.POINTER(Tensor), ctypes.c_int)
        self._reset = fn("reset", ctypes.c_int, vp)
        self._params = fn("params", ptr, vp)
        self._destroy = fn("destroy", None, vp)
        self._lock = threading.Lock()
        ctx = vp()
        w = str(weights).encode() if weights is not None else None
        code = fn("create", ctypes.c_int, ctypes.POINTER(vp), ctypes.c_char_p)(ctypes.byref(ctx), w)
        if code:
            message = self._last(ctx).decode() if ctx.value else "out of memory"
            self._destroy(ctx)
            raise LibraryError(f"{path.name}: {message}", code)
        self._ctx = ctx

    def _bind(self, name: str, res: Any, *args: Any) -> Any:
        """The library's function `<prefix>_<name>`, typed."""
        f = getattr(self._dll, f"{self._prefix}_{name}")
        f.restype, f.argtypes = res, list(args)
        return f

    def __del__(self) -> None:
        ctx = getattr(self, "_ctx", None)
        if ctx is not None and ctx.value:
            self._destroy(ctx)
            self._ctx = None

    # -- what it is
    @property
    def params(self) -> np.ndarray:
        """The context's flat parameter vector (a view: writes take effect at the next call)."""
        n = self.manifest["params"]
        if not n:
            return np.zeros(0, np.float32)
        return np.ctypeslib.as_array(self._params(self._ctx), (n,))

    @property
    def table(self) -> dict[str, tuple[int, tuple[int, ...]]]:
        """Parameter name -> (offset in the flat vector, shape)."""
        return {t["name"]: (t["offset"], tuple(t["shape"])) for t in self.manifest["tensors"]}

    # -- calls
    def _program(self, kind: str) -> dict[str, Any]:
        prog = next((p for p in self.manifest["programs"] if p["kind"] == kind), None)
        if prog is None:
            raise LibraryError(f"the library has no {kind} program", 10)
        return prog

    def _call(self, kind: str, values: tuple) -> list[np.ndarray]:
        arrays = []
        for v in values:
            a = np.asarray(v)
            if a.dtype.kind in "iu" and a.dtype != np.int64:
                a = a.astype(np.int64)
            arrays.append(np.ascontiguousarray(a))
        prog = self._program(kind)
        n_state = self.manifest["n_state"] if kind == "step" else 0
        ins = prog["inputs"][:len(prog["inputs"]) - n_state]
        # B and T as the first input holding each gives them; the library checks the rest
        size = {d: next((a.shape[k] for a, p in zip(arrays, ins)
                         for k, e in enumerate(p["dims"]) if e == d and k < a.ndim), 0)
                for d in (_T, _B)}
        outs = [np.empty([size.get(d, d) for d in p["dims"]],
                         np.float32 if p["dtype"] == "float32" else np.int64)
                for p in prog["outputs"][:len(prog["outputs"]) - n_state]]
        t_in = (Tensor * max(len(arrays), 1))(*map(_tensor, arrays))
        t_out = (Tensor * max(len(outs), 1))(*map(_tensor, outs))
        with self._lock:
            code = self._run(self._ctx, _KINDS[kind], t_in, len(arrays), t_out, len(outs))
            message = self._last(self._ctx).decode() if code else ""
        if code:
            raise (LibraryInputError if code in _INPUT_ERRORS else LibraryError)(message, code)
        return outs

    def __call__(self, *inputs: Any) -> Any:
        """The forward pass: an array, or a tuple for several outputs."""
        outs = self._call("forward", inputs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def step(self, *inputs: Any) -> Any:
        """The next chunk of a stream: the state carries over from the previous call."""
        outs = self._call("step", inputs)
        return outs[0] if len(outs) == 1 else tuple(outs)

    def reset_state(self) -> None:
        """Start a new stream at the next step."""
        with self._lock:
            self._reset(self._ctx)

    def train_step(self, *inputs: Any, target: Any) -> tuple[float, np.ndarray]:
        """Forward, loss and backward: (loss, the flat gradient)."""
        loss, grad = self._call("train", (*inputs, target))
        return float(loss), grad

    def __repr__(self) -> str:
        m = self.manifest
        kinds = ", ".join(p["kind"] for p in m["programs"] if p["kind"] != "init")
        return f"LoadedLibrary({m['name']!r}, model {m['model']!r}: {kinds})"


def load_library(path: str | Path, weights: str | Path | None = None) -> LoadedLibrary:
    """Load an exported library (lib<name>.so); `weights`: its weights file, when it was
    exported with external weights (default: <name>.weights next to it, if there)."""
    path = Path(path)
    if weights is None:
        guess = path.with_name(path.name.split(".")[0].removeprefix("lib") + ".weights")
        weights = guess if guess.exists() else None
    return LoadedLibrary(path, weights)


__all__ = ["load_library", "LoadedLibrary", "LibraryError", "LibraryInputError"]
