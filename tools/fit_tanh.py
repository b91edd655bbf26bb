"""Fit the polynomial of the inline tanh (compiler/codegen/mathfns.py, emit_tanh).

    python tools/fit_tanh.py [m] [n] [bound]     # defaults 3 0 0.1734: mathfns._TANH_POLY

emit_tanh reduces x to |u| <= ln(2) / 4 = 0.17329 and needs tanh(u) there; this fits
tanh(u) ~ u P(u^2) / Q(u^2) with P of degree m and Q of degree n in z = u^2, P(0) = Q(0) = 1
(so tanh(u) = u exactly for tiny and subnormal u), and prints both in float32. With n = 0
the fit is the odd polynomial u + u^3 (p1 + p2 u^2 + p3 u^4) that mathfns uses (written there
highest degree first, without the leading 1); other degrees show what a rational on a wider
range would cost (the rational over all of [0, 9.2] is accurate, but its float32 evaluation
is 5 ulp off near |tanh| = 1, which is why emit_tanh reduces the argument).

Method, numpy only, float64: minimax of the relative error of P(z) / Q(z) against
g(z) = tanh(u) / u on a dense grid of u in [0, bound], by Loeb's linearisation (least squares
of P - g Q, weighted by 1 / (g Q) of the previous iterate) with Lawson's weight updates
(w *= |error|), which converge to the equi-oscillating (Remez) solution. The coefficients are
then rounded to float32 one at a time, highest degree first, the ones not yet rounded refitted
after each, and the float32 set re-checked on a finer grid.
"""

from __future__ import annotations

import sys

import numpy as np

BOUND = 0.1734


def _target(x: np.ndarray) -> np.ndarray:
    """g = tanh(x) / x, with its series below 1e-4 where the quotient loses digits."""
    safe = np.where(x < 1e-4, 1.0, x)
    return np.where(x < 1e-4, 1 - x * x / 3 + 2 * x ** 4 / 15, np.tanh(safe) / safe)


def _rel_error(p: np.ndarray, q: np.ndarray, z: np.ndarray, g: np.ndarray) -> np.ndarray:
    pz = np.polyval(p[::-1], z)
    qz = np.polyval(q[::-1], z)
    return pz / (qz * g) - 1


def fit(m: int, n: int, bound: float = BOUND, fixed: dict | None = None,
        iterations: int = 300) -> tuple[np.ndarray, np.ndarray, float]:
    """Coefficients p[0..m], q[0..n] (ascending, p[0] = q[0] = 1) and the max relative error.

    `fixed` maps ("p", i) / ("q", j) to values held constant (the already rounded ones).
    """
    fixed = dict(fixed or {})
    fixed.setdefault(("p", 0), 1.0)
    fixed.setdefault(("q", 0), 1.0)
    x = np.concatenate([np.linspace(0, bound, 60001), bound * np.linspace(0, 1, 2001) ** 3])
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


def fit_float32(m: int, n: int, bound: float = BOUND) -> tuple[np.ndarray, np.ndarray, float]:
    """fit(), then the coefficients rounded to float32 one by one with the rest refitted."""
    order = [("p", i) for i in range(m, 0, -1)] + [("q", j) for j in range(n, 0, -1)]
    order.sort(key=lambda k: -k[1])
    fixed: dict = {}
    p, q, err = fit(m, n, bound)
    for key in order:
        value = (p if key[0] == "p" else q)[key[1]]
        fixed[key] = float(np.float32(value))
        if len(fixed) < m + n:
            p, q, err = fit(m, n, bound, fixed)
    p = np.array([1.0] + [fixed["p", i] for i in range(1, m + 1)])
    q = np.array([1.0] + [fixed["q", j] for j in range(1, n + 1)])
    x = np.linspace(0, bound, 2_000_001)
    return p, q, float(np.abs(_rel_error(p, q, x * x, _target(x))).max())


def main() -> None:
    m = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    n = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    bound = float(sys.argv[3]) if len(sys.argv) > 3 else BOUND
    p, q, err64 = fit(m, n, bound)
    print(f"float64 fit ({m}, {n}) on [0, {bound}]: max relative error {err64:.3g}")
    p, q, err32 = fit_float32(m, n, bound)
    print(f"float32 coefficients: max relative error {err32:.3g}")
    print("P (ascending):", ", ".join(f"{float(np.float32(c)):.8e}" for c in p))
    print("Q (ascending):", ", ".join(f"{float(np.float32(c)):.8e}" for c in q))


if __name__ == "__main__":
    main()
