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


def _flat(params: Any) -> tuple[np.ndarray, np.ndarray]:
    if hasattr(params, "parameters"):
        params = params.parameters()
    p, g = params
    if p.dtype != np.float32 or g.shape != p.shape or p.ndim != 1:
        raise ValueError("expected (params, grads): two flat float32 vectors of one size")
    return p, g


def clip_grad_norm(grads: np.ndarray, max_norm: float) -> float:
    """Scale `grads` in place so its L2 norm is at most `max_norm`; returns the norm before."""
    norm = float(np.sqrt(np.dot(grads.astype(np.float64), grads.astype(np.float64))))
    if max_norm > 0 and norm > max_norm:
        grads *= np.float32(max_norm / (norm + 1e-12))
    return norm


class Optimizer:
    """Base: learning rate (a float or a schedule `step -> lr`), weight decay, clipping."""

    def __init__(self, params: Any, lr: float | Callable[[int], float] = 1e-3,
                 weight_decay: float = 0.0, clip_norm: float | None = None):
        self.params, self.grads = _flat(params)
        self.schedule = lr if callable(lr) else (lambda step, lr=lr: lr)
        self.weight_decay, self.clip_norm = weight_decay, clip_norm
        self.steps = 0
        self.last_grad_norm = 0.0

    @property
    def lr(self) -> float:
        return float(self.schedule(self.steps))

    def zero_grad(self) -> None:
        self.grads[...] = 0.0

    def step(self) -> None:
        """Apply one update from the current gradients."""
        g = self.grads
        if self.clip_norm:
            self.last_grad_norm = clip_grad_norm(g, self.clip_norm)
        if self.weight_decay:
            g = g + np.float32(self.weight_decay) * self.params
        self._update(g, np.float32(self.lr))      # in place: compiled models see it by compare
        self.steps += 1

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        raise NotImplementedError

    def _scratch(self) -> tuple[np.ndarray, np.ndarray]:
        """Two work arrays the size of the parameters, made once (not optimiser state)."""
        if getattr(self, "_work", None) is None:
            self._work = (np.empty_like(self.params), np.empty_like(self.params))
        return self._work

    def state_dict(self) -> dict[str, Any]:
        return {"steps": self.steps, **{k: v.copy() for k, v in vars(self).items()
                                         if isinstance(v, np.ndarray)
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

    def _update(self, g: np.ndarray, lr: np.float32) -> None:
        # the same operations in the same order as the textbook expressions, in place: each
        # temporary would be a fresh mapping (and its page faults) at every step
        t = self.steps + 1
        a, b = self._scratch()
        self.m *= self.b1
        self.m += np.multiply(g, 1 - self.b1, out=a)
        self.v *= self.b2
        np.multiply(g, 1 - self.b2, out=a)
        self.v += np.multiply(a, g, out=a)
        step = lr * math.sqrt(1 - float(self.b2) ** t) / (1 - float(self.b1) ** t)
        np.sqrt(self.v, out=a)
        a += self.eps
        np.multiply(self.m, np.float32(step), out=b)
        self.params -= np.divide(b, a, out=b)


class RMSProp(Optimizer):
    """v = alpha * v + (1 - alpha) * g^2; p -= lr * g / (sqrt(v) + eps)."""

    def __init__(self, params: Any, lr: Any = 1e-2, alpha: float = 0.99, eps: float = 1e-8,
                 **kw: Any):
        super().__init__(params, lr, **kw)
        self.alpha, self.eps = np.float32(alpha), np.float32(eps)
        self.v = np.zeros_like(self.params)

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
