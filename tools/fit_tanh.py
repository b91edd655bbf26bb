"""Fit the rational tanh of compiler/codegen/mathfns.py: tanh(x) ~ x P(x^2) / Q(x^2).

Reproducible (numpy only, float64): ``python tools/fit_tanh.py [m] [n] [clamp]`` prints the
float32 coefficients of P (degree m in z = x^2, P(0) = 1) and Q (degree n, Q(0) = 1).

Method: minimax of the relative error of P(z) / Q(z) against g(z) = tanh(x) / x on a dense grid
of x in [0, clamp], by Loeb's linearisation (least squares of P - g Q, weighted by 1 / (g Q) of
the previous iterate) with Lawson's weight updates (w *= |error|), which converge to the
equi-oscillating (Remez) solution. P(0) = Q(0) = 1 is kept exact, so x P / Q is exactly x for
tiny and subnormal x. The coefficients are then rounded to float32 one at a time, highest
degree first, refitting the ones not yet rounded after each, and the float32 set is re-checked.
"""

from __future__ import annotations

import sys

import numpy as np

CLAMP = 9.0


def _target(x: np.ndarray) -> np.ndarray:
    """g = tanh(x) / x, with its series below 1e-4 where the quotient loses digits."""
    safe = np.where(x < 1e-4, 1.0, x)
    return np.where(x < 1e-4, 1 - x * x / 3 + 2 * x ** 4 / 15, np.tanh(safe) / safe)


def _rel_error(p: np.ndarray, q: np.ndarray, z: np.ndarray, g: np.ndarray) -> np.ndarray:
    pz = np.polyval(p[::-1], z)
    qz = np.polyval(q[::-1], z)
    return pz / (qz * g) - 1


def fit(m: int, n: int, clamp: float = CLAMP, fixed: dict | None = None,
        iterations: int = 300) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients p[0..m], q[0..n] (ascending, p[0] = q[0] = 1) and the max relative error.

    `fixed` maps ("p", i) / ("q", j) to values held constant (the already rounded ones).
    """
    fixed = dict(fixed or {})
    fixed.setdefault(("p", 0), 1.0)
    fixed.setdefault(("q", 0), 1.0)
    x = np.concatenate([np.linspace(0, clamp, 60001), clamp * np.linspace(0, 1, 2001) ** 3])
    z = x * x
    g = _target(x)
    scale = np.maximum(z.max(), 1.0)
    # unknown columns: p_i z^i and -g q_j z^j; the fixed ones move to the right-hand side
    free = [k for k in [("p", i) for i in range(m + 1)] + [("q", j) for j in range(n + 1)]
            if k not in fixed]

    def column(key: tuple[str, int]) -> np.ndarray:
        kind, i = key
        return (z / scale) ** i * (1.0 if kind == "p" else -g)

    rhs0 = -sum(fixed[k] * scale ** k[1] * column(k) for k in fixed)
    w = np.ones_like(x)
    qprev = np.ones_like(x)
    p = np.zeros(m + 1)
    q = np.zeros(n + 1)
    for _ in range(iterations):
        weight = w / (g * qprev)
        a = np.stack([column(k) for k in free], axis=1) * weight[:, None]
        sol, *_ = np.linalg.lstsq(a, rhs0 * weight, rcond=None)
        values = dict(fixed)
        values.update({k: s / scale ** k[1] for k, s in zip(free, sol)})
        p = np.array([values["p", i] for i in range(m + 1)])
        q = np.array([values["q", j] for j in range(n + 1)])
        err = _rel_error(p, q, z, g)
        qprev = np.polyval(q[::-1], z)
        w = w * np.abs(err)
        w = w / w.sum()
        w = np.maximum(w, 1e-12 / len(w))
    return p, q, float(np.abs(_rel_error(p, q, z, g)).max())


def fit_float32(m: int, n: int, clamp: float = CLAMP) -> tuple[np.ndarray, np.ndarray, float]:
    """fit(), then the coefficients rounded to float32 one by one with the rest refitted."""
    order = [("p", i) for i in range(m, 0, -1)] + [("q", j) for j in range(n, 0, -1)]
    order.sort(key=lambda k: -k[1])
    fixed: dict = {}
    p, q, err = fit(m, n, clamp)
    for key in order:
        value = (p if key[0] == "p" else q)[key[1]]
        fixed[key] = float(np.float32(value))
        if len(fixed) < m + n:
            p, q, err = fit(m, n, clamp, fixed)
    p = np.array([1.0] + [fixed["p", i] for i in range(1, m + 1)])
    q = np.array([1.0] + [fixed["q", j] for j in range(1, n + 1)])
    x = np.linspace(0, clamp, 2_000_001)
    return p, q, float(np.abs(_rel_error(p, q, x * x, _target(x))).max())


def main() -> None:
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 6
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    clamp = float(sys.argv[3]) if len(sys.argv) > 3 else CLAMP
    p, q, err64 = fit(m, n, clamp)
    print(f"float64 fit ({m}, {n}) on [0, {clamp}]: max relative error {err64:.3g}")
    p, q, err32 = fit_float32(m, n, clamp)
    print(f"float32 coefficients: max relative error {err32:.3g}")
    print("P (ascending):", ", ".join(f"{float(np.float32(c)):.8e}" for c in p))
    print("Q (ascending):", ", ".join(f"{float(np.float32(c)):.8e}" for c in q))


if __name__ == "__main__":
    main()
