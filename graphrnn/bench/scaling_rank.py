"""Where a rank's time goes during a timed `fit`: the native step, the waits in collectives,
the rest (Python, the optimiser), any other thread of the process; CPU and wall time."""
from __future__ import annotations

import functools
import time
from typing import Any, Callable

from ..distributed.mpi import Collectives
from ..runtime.program import Program

# (owner, attribute, phase): the calls timed; every other CPU second of the main thread
# counts as "rest"
_TIMED = ((Program, "_run", "native"), (Collectives, "wait", "waits"))


class PhaseClock:
    """`with PhaseClock() as clock: ...` then `clock.per_step_ms(steps)`. Times the calls in
    _TIMED (on the calling thread's CPU clock) while the block runs, by wrapping them."""

    def __init__(self) -> None:
        self.seconds = {phase: 0.0 for _, _, phase in _TIMED}
        self.wall_seconds = {phase: 0.0 for _, _, phase in _TIMED}
        self.waits_by_what: dict[str, float] = {}       # wall seconds in each collective
        self._saved: list[tuple[Any, str, Any]] = []

    def __enter__(self) -> "PhaseClock":
        for owner, name, phase in _TIMED:
            original = getattr(owner, name)
            self._saved.append((owner, name, original))
            setattr(owner, name, self._timed(original, phase))
        self._cpu0, self._proc0 = time.thread_time(), time.process_time()
        self._wall0 = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.cpu = time.thread_time() - self._cpu0
        self.proc = time.process_time() - self._proc0
        self.wall = time.perf_counter() - self._wall0
        for owner, name, original in self._saved:
            setattr(owner, name, original)

    def _timed(self, fn: Callable, phase: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kw: Any) -> Any:
            t0, w0 = time.thread_time(), time.perf_counter()
            try:
                return fn(*args, **kw)
            finally:
                self.seconds[phase] += time.thread_time() - t0
                wall = time.perf_counter() - w0
                self.wall_seconds[phase] += wall
                if phase == "waits" and len(args) > 2:      # wait(self, request, what)
                    self.waits_by_what[args[2]] = self.waits_by_what.get(args[2], 0.0) + wall
        return timed

    def per_step_ms(self, steps: int) -> dict[str, float]:
        """Milliseconds per step: CPU by phase (the rest of the main thread, other threads),
        then wall time, in all, by phase and in each collective waited for."""
        k = 1e3 / max(steps, 1)
        out = {phase: s * k for phase, s in self.seconds.items()}
        out["rest"] = (self.cpu - sum(self.seconds.values())) * k
        out["other threads"] = (self.proc - self.cpu) * k
        out["wall"] = self.wall * k
        out.update({f"{phase} wall": s * k for phase, s in self.wall_seconds.items()})
        out.update({f"wall in {what}": s * k for what, s in self.waits_by_what.items()})
        return out


__all__ = ["PhaseClock"]
