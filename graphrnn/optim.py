"""Optimisers over the flat parameter and gradient vectors: one vectorised update per step.

    params, grads = model.parameters()
    opt = gr.optim.Adam((params, grads), lr=1e-3, weight_decay=0.0, clip_norm=1.0)
    ... fill grads ...
    opt.step()

Optimiser state (momentum, Adam's m and v) are flat vectors of the same layout, so a
parameter's state is the same slice as the parameter itself.
"""
from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from .fused_update import FusedUpdate


def _flat(params: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(params, "parameters"):
        params = params.parameters()
    p, g = params
    if p.dtype != np.float32 or g.shape != p.shape or p.ndim != 1:
        raise ValueError("expected (params, grads): two flat float32 vectors of one size")
    return p, g


def clip_grad_norm(grads: np.ndarray, max_norm: float, work: np.ndarray | None = None
                   ) -> float:
    """Scale `grads` in place so its L2 norm is at most `max_norm`; returns the norm before.
    `work`: a float64 array of its shape for the sum of squares (else one is made)."""
    if work is None or work.shape != grads.shape or work.dtype != np.float64:
        work = np.empty(grads.shape, np.float64)
    np.copyto(work, grads)
    norm = float(np.sqrt(np.dot(work, work)))
    if max_norm > 0 and norm > max_norm:
        grads *= np.float32(max_norm / (norm + 1e-12))
    return norm


class Optimizer:
    """Base: learning rate (a float or a schedule `step -> lr`), weight decay, clipping.

    fused: None (default) runs the update as one compiled loop over the flat vectors
    (fused_update.py, the same numbers as numpy to the bit) wherever it can, else in numpy;
    True insists on the compiled loop (ValueError when it cannot run: say, a non-contiguous
    vector); False always runs the numpy update."""

    def __init__(self, params: Any, lr: float | Callable[[int], float] = 1e-3,
                 weight_decay: float = 0.0, clip_norm: float | None = None,
                 fused: bool | None = None):
        self.params, self.grads = _flat(params)
        self.schedule = lr if callable(lr) else (lambda step, lr=lr: lr)
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.fused = fused
        self.steps = 0
        self.last_grad_norm = 0.0
        self._kernel: FusedUpdate | None = None
        self._norm_work: np.ndarray | None = None      # clip_grad_norm's, made once

    @property
    def lr(self) -> float:
        return float(self.schedule(self.steps))

    def zero_grad(self) -> None:
        self.grads[...] = 0.0

    def step(self) -> None:
        """Apply one update from the current gradients."""
        g = self.grads
        if self.clip_norm:
            if self._norm_work is None:
                self._norm_work = np.empty(g.shape, np.float64)
            self.last_grad_norm = clip_grad_norm(g, self.clip_norm, self._norm_work)
        lr = np.float32(self.lr)
        # in place: compiled models see the new values by compare
        if self.fused is False or not self._fused_step(lr):
            if self.weight_decay:
                g = g + np.float32(self.weight_decay) * self.params
            self._update(g, lr)
        self.steps += 1

    def _fused_step(self, lr: np.float32) -> bool:
        """The update by the compiled kernel; False when it cannot run (numpy then does)."""
        rule = self._rule()
        if rule is None:
            if self.fused:
                raise ValueError(f"{type(self).__name__}(fused=True): it has no compiled update")
            return False
        kind, state = rule
        vectors = (self.params, self.grads, *state)
        decay = bool(self.weight_decay)
        kernel = self._kernel
        if kernel is None or kernel.kind != kind or kernel.decay != decay \
                or not kernel.bound_to(vectors):
            kernel = self._kernel = FusedUpdate(kind, decay, vectors)
        if not kernel.usable:
            if self.fused:
                raise ValueError(f"{type(self).__name__}(fused=True): {kernel.reason}")
            return False
        scalars = self._scalars(lr)
        kernel(np.array([self.weight_decay, *scalars] if decay else scalars, np.float32))
        return True

    def _rule(self) -> tuple[str, tuple[np.ndarray, ...]] | None:
        """The kind of update (compiler/codegen/emit_optim.py) and its state vectors; None: the
        optimiser has no compiled update (a subclass defining `_update` alone)."""
        return None

    def _scalars(self, lr: np.float32) -> list[Any]:
        """The update's scalars, in the order of its rule."""
        raise NotImplementedError

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        raise NotImplementedError

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Two work arrays the size of the parameters, made once (not optimiser state)."""
        if getattr(self, "_work", None) is None:
            self._work = (np.empty_like(self.params), np.empty_like(self.params))
        return self._work

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **{k: v.copy() for k, v in vars(self).items()
                                         if isinstance(v, np.ndarray) and not k.startswith("_")
                                         and k not in ("params", "grads")}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps = int(state["steps"])
        for k, v in state.items():
            if k != "steps":
                getattr(self, k)[...] = v


class SGD(Optimizer):
    """p -= lr * v, v = momentum * v + g (Nesterov: p -= lr * (g + momentum * v))."""

    def __init__(self, params: Any, lr: Any = 0.01, momentum: float = 0.0,
                 nesterov: bool = False, **kw: Any):
        super().__init__(params, lr, **kw)
        self.momentum, self.nesterov = np.float32(momentum), nesterov
        self.velocity = np.zeros_like(self.params)

    def _rule(self) -> tuple[str, tuple[np.ndarray, ...]]:
        if not self.momentum:
            return "sgd", ()
        return ("nesterov" if self.nesterov else "momentum"), (self.velocity,)

    def _scalars(self, lr: np.float32) -> list[Any]:
        return [lr, self.momentum] if self.momentum else [lr]

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        if not self.momentum:
            self.params -= lr * g
            return
        self.velocity *= self.momentum
        self.velocity += g
        self.params -= lr * (g + self.momentum * self.velocity if self.nesterov
                             else self.velocity)


class Adam(Optimizer):
    """Adam (Kingma & Ba), bias-corrected."""

    def __init__(self, params: Any, lr: Any = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, **kw: Any):
        super().__init__(params, lr, **kw)
        self.b1, self.b2, self.eps = np.float32(betas[0]), np.float32(betas[1]), np.float32(eps)
        self.m = np.zeros_like(self.params)
        self.v = np.zeros_like(self.params)

    def _rule(self) -> tuple[str, tuple[np.ndarray, ...]]:
        return "adam", (self.m, self.v)

    def _scalars(self, lr: np.float32) -> list[Any]:
        t = self.steps + 1
        step = lr * math.sqrt(1 - float(self.b2) ** t) / (1 - float(self.b1) ** t)
        return [self.b1, 1 - self.b1, self.b2, 1 - self.b2, self.eps, np.float32(step)]

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        # the same operations in the same order as the textbook expressions, in place: each
        # temporary would be a fresh mapping (and its page faults) at every step
        b1, c1, b2, c2, eps, step = self._scalars(lr)
        a, b = self._scratch()
        self.m *= b1
        self.m += np.multiply(g, c1, out=a)
        self.v *= b2
        np.multiply(g, c2, out=a)
        self.v += np.multiply(a, g, out=a)
        np.sqrt(self.v, out=a)
        a += eps
        np.multiply(self.m, step, out=b)
        self.params -= np.divide(b, a, out=b)


class RMSProp(Optimizer):
    """v = alpha * v + (1 - alpha) * g^2; p -= lr * g / (sqrt(v) + eps)."""

    def __init__(self, params: Any, lr: Any = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 **kw: Any):
        super().__init__(params, lr, **kw)
        self.alpha, self.eps = np.float32(alpha), np.float32(eps)
        self.v = np.zeros_like(self.params)

    def _rule(self) -> tuple[str, tuple[np.ndarray, ...]]:
        return "rmsprop", (self.v,)

    def _scalars(self, lr: np.float32) -> list[Any]:
        return [self.alpha, 1 - self.alpha, lr, self.eps]

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        self.v *= self.alpha
        self.v += (1 - self.alpha) * g * g
        self.params -= lr * g / (np.sqrt(self.v) + self.eps)


class Adagrad(Optimizer):
    """s += g^2; p -= lr * g / (sqrt(s) + eps)."""

    def __init__(self, params: Any, lr: Any = 1e-2, eps: float = 1e-10, **kw: Any):
        super().__init__(params, lr, **kw)
        self.eps = np.float32(eps)
        self.sum_sq = np.zeros_like(self.params)

    def _rule(self) -> tuple[str, tuple[np.ndarray, ...]]:
        return "adagrad", (self.sum_sq,)

    def _scalars(self, lr: np.float32) -> list[Any]:
        return [lr, self.eps]

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        self.sum_sq += g * g
        self.params -= lr * g / (np.sqrt(self.sum_sq) + self.eps)


# ----------------------------------------------------------------------------- schedules

def step_decay(lr: float, every: int, gamma: float = 0.5) -> Callable[[int], float]:
    """lr * gamma ** (step // every)."""
    return lambda step: lr * gamma ** (step // every)


def exponential_decay(lr: float, gamma: float) -> Callable[[int], float]:
    """lr * gamma ** step."""
    return lambda step: lr * gamma ** step


def cosine_decay(lr: float, total: int, final: float = 0.0) -> Callable[[int], float]:
    """From lr down to `final` along half a cosine over `total` steps."""
    return lambda step: final + 0.5 * (lr - final) * (1 + math.cos(math.pi * min(step, total)
                                                                   / total))


def warmup(schedule: Callable[[int], float], steps: int) -> Callable[[int], float]:
    """Linear warm-up over `steps`, then `schedule`."""
    return lambda step: schedule(step) * min(1.0, (step + 1) / steps)
