"""Inline float32 transcendentals for LLVM IR: exp, sigmoid, tanh, log, erf, softplus, pow.

Each emitter takes an `ir.IRBuilder` and a value of type ``float`` or ``<n x float>`` and
returns a value of the same type, built from plain arithmetic, selects and the intrinsics
``llvm.rint``, ``llvm.fma``, ``llvm.fabs`` and ``llvm.copysign``, so that the same code
serves vector kernels and scalar tails and the loop vectorizer can widen it. Libm is never
called: a scalar ``expf`` per element was measured 5x slower than these polynomials.

The exp and log polynomials are the Cephes single-precision ones; tanh's is fitted by
tools/fit_tanh.py and checked over every float32 by tools/check_mathfns.py. Special values
follow C99: NaN in gives NaN out, exp(+inf) = +inf, exp(-inf) = 0, sigmoid(+-inf) = 1 / 0,
tanh(+-inf) = +-1, tanh(+-0) = +-0, log(0) = -inf, log(x < 0) = NaN, log(+inf) = +inf.

Fast-math flags are limited to ``nsz arcp afn``: ``nnan``/``ninf`` would make the special
values unobservable, ``reassoc`` lets LLVM undo the Cody-Waite reduction, and ``contract``
would round an element differently depending on the code around it (irbuilder.FLAGS).
"""

from __future__ import annotations

from llvmlite import ir

FLAGS = ("nsz", "arcp", "afn")

_F32 = ir.FloatType()
_I32 = ir.IntType(32)

LOG2E = 1.44269504088896341
# Cody-Waite split of ln 2: the high part has 9 significant bits, so n * hi is exact.
LN2_HI = 0.693359375
LN2_LO = -2.12194440e-4
# Adding 1.5 * 2**23 to an integral float n puts n in the low mantissa bits; unlike
# fptosi this is defined for NaN (fptosi of NaN is poison).
_MAGIC = 12582912.0
_MAGIC_BITS = 0x4B400000

_EXP_POLY = (1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1)
# the exp polynomial in -r: exp(-s) = 1 - s + s^2 P(-s), odd powers of P negated
_EXP_POLY_NEG = tuple(c * (-1) ** (len(_EXP_POLY) - 1 - k) for k, c in enumerate(_EXP_POLY))
# tanh(u) = u + u^3 P(u^2) for |u| <= ln(2) / 4: a minimax fit of the relative error, 1.9e-10
# with these float32 coefficients (tools/fit_tanh.py 3 0 0.1734)
_TANH_POLY = (-5.27040809e-02, 1.33311123e-01, -3.33333224e-01)
_LOG_POLY = (7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1, -1.2420140846e-1,
             1.4249322787e-1, -1.6668057665e-1, 2.0000714765e-1, -2.4999993993e-1,
             3.3333331174e-1)

# exp(x) is 0 in float32 below -103.97 and +inf above 88.7228; the clamp keeps n = rint(x
# log2 e) inside [-162, 128], where 2**n is exact as a product of two normal powers of two.
_EXP_LO, _EXP_HI = -112.0, 89.0
# Single-power variant for sigmoid: n in [-126, 128], where n = 128 encodes +inf.
_FAST_EXP_LO, _FAST_EXP_HI = -87.33654, 89.0
_TANH_CLAMP = 9.2
_HALF_LN2 = 0.34657359027997264
_SQRT_HALF = 0.707106781186547524
_FLT_MIN = 1.17549435e-38


def _like(x: ir.Value, value: float | int, scalar: ir.Type = _F32) -> ir.Constant:
    """A constant of x's shape (scalar or vector) with element type `scalar`."""
    if isinstance(x.type, ir.VectorType):
        return ir.Constant(ir.VectorType(scalar, x.type.count), [value] * x.type.count)
    return ir.Constant(scalar, value)


def _int_type(x: ir.Value) -> ir.Type:
    if isinstance(x.type, ir.VectorType):
        return ir.VectorType(_I32, x.type.count)
    return _I32


def _check_type(x: ir.Value) -> None:
    ty = x.type
    elem = ty.element if isinstance(ty, ir.VectorType) else ty
    if not isinstance(elem, ir.FloatType):
        raise TypeError(f"expected float or <n x float>, got {ty}")


def intrinsic(module: ir.Module, name: str, ty: ir.Type, nargs: int) -> ir.Function:
    """Get or declare ``llvm.<name>.f32`` / ``llvm.<name>.v<n>f32`` taking `nargs` of `ty`.

    ``Module.declare_intrinsic`` rejects vector types, and declaring a name twice is an
    error, so every emitter that needs e.g. ``llvm.fma.v8f32`` should come through here.
    """
    suffix = f"v{ty.count}f32" if isinstance(ty, ir.VectorType) else "f32"
    full = f"llvm.{name}.{suffix}"
    existing = module.globals.get(full)
    if existing is not None:
        return existing
    return ir.Function(module, ir.FunctionType(ty, [ty] * nargs), full)


def _call(builder: ir.IRBuilder, name: str, *args: ir.Value) -> ir.Value:
    fn = intrinsic(builder.module, name, args[0].type, len(args))
    return builder.call(fn, list(args))


def _fma(builder: ir.IRBuilder, a: ir.Value, b: ir.Value, c: ir.Value) -> ir.Value:
    return _call(builder, "fma", a, b, c)


def _horner(builder: ir.IRBuilder, x: ir.Value, coeffs: tuple[float, ...]) -> ir.Value:
    """coeffs[0] * x**(k-1) + ... + coeffs[-1], one fma per step."""
    acc = _like(x, coeffs[0])
    for c in coeffs[1:]:
        acc = _fma(builder, acc, x, _like(x, c))
    return acc


def _clamp(builder: ir.IRBuilder, x: ir.Value, lo: float, hi: float) -> ir.Value:
    # `x > hi ? hi : x` keeps NaN (the compare is false), and x86 matches it to one vminps
    # with NaN-propagating operand order; llvm.minnum would return hi for NaN.
    x = builder.select(builder.fcmp_ordered(">", x, _like(x, hi)), _like(x, hi), x)
    return builder.select(builder.fcmp_ordered("<", x, _like(x, lo)), _like(x, lo), x)


def _pow2(builder: ir.IRBuilder, n: ir.Value) -> ir.Value:
    """2**n for integral float n in [-126, 127] (n = 128 gives +inf), built in the exponent bits."""
    return _pow2_magic(builder, builder.fadd(n, _like(n, _MAGIC), flags=FLAGS))


def _rint_magic(builder: ir.IRBuilder, x: ir.Value, scale: float) -> tuple[ir.Value, ir.Value]:
    """(m, n) with n = rint(x * scale) and m = n + 1.5 * 2**23, in one rounding: n's bits are
    m's low mantissa bits (see _MAGIC), for `_pow2_magic`."""
    magic = _fma(builder, x, _like(x, scale), _like(x, _MAGIC))
    return magic, builder.fsub(magic, _like(x, _MAGIC), flags=FLAGS)


def _pow2_magic(builder: ir.IRBuilder, magic: ir.Value) -> ir.Value:
    """2**n from `_rint_magic`'s m, for n in [-126, 127] (n = 128 gives +inf)."""
    bits = builder.add(builder.bitcast(magic, _int_type(magic)),
                       _like(magic, 127 - _MAGIC_BITS, _I32))
    return builder.bitcast(builder.shl(bits, _like(magic, 23, _I32)), magic.type)


def _exp_reduced(builder: ir.IRBuilder, x: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(n, p) with exp(x) = 2**n * p: n = rint(x log2 e), p = exp(x - n ln 2) by polynomial."""
    n = _call(builder, "rint", builder.fmul(x, _like(x, LOG2E), flags=FLAGS))
    r = _fma(builder, n, _like(x, -LN2_HI), x)
    r = _fma(builder, n, _like(x, -LN2_LO), r)
    r2 = builder.fmul(r, r, flags=FLAGS)
    p = _fma(builder, _horner(builder, r, _EXP_POLY), r2, r)
    return n, builder.fadd(p, _like(x, 1.0), flags=FLAGS)


def emit_exp(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """exp(x) over the whole float32 range, subnormal results and overflow to inf included.

    2**n is applied as two factors 2**h and 2**(n - h) with h = rint(n / 2): both are
    normal floats and only the last multiplication rounds, which gives gradual underflow.
    """
    _check_type(x)
    n, p = _exp_reduced(builder, _clamp(builder, x, _EXP_LO, _EXP_HI))
    half = _call(builder, "rint", builder.fmul(n, _like(n, 0.5), flags=FLAGS))
    rest = builder.fsub(n, half, flags=FLAGS)
    scaled = builder.fmul(p, _pow2(builder, half), flags=FLAGS)
    return builder.fmul(scaled, _pow2(builder, rest), flags=FLAGS)


def emit_sigmoid(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """1 / (1 + exp(-x)) with exp(-x) = 2**n exp(r): n = rint(-x log2 e), exp(r) by polynomial.

    -x is clamped to [-87.34, 89], so n is in [-126, 128]: 2**128 is +inf, and the division
    (exact: no ``arcp``) gives 1 / inf = 0. 1 + 2**n exp(r) is one fma (one rounding).
    Max error 2 ulp over every float32 whose sigmoid is normal (tools/check_mathfns.py).
    """
    _check_type(x)
    xc = _clamp(builder, x, -_FAST_EXP_HI, -_FAST_EXP_LO)
    magic, n = _rint_magic(builder, xc, -LOG2E)
    # s = -r = x + n ln 2 (Cody-Waite), so that -x is never formed; exp(r) = exp(-s)
    s = _fma(builder, n, _like(x, LN2_HI), xc)
    s = _fma(builder, n, _like(x, LN2_LO), s)
    s2 = builder.fmul(s, s, flags=FLAGS)
    p = _fma(builder, _horner(builder, s, _EXP_POLY_NEG), s2, builder.fneg(s))
    one = _like(x, 1.0)
    p = builder.fadd(p, one, flags=FLAGS)
    return builder.fdiv(one, _fma(builder, p, _pow2_magic(builder, magic), one))


def emit_tanh(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """tanh(x) by the addition formula tanh(h + u) = (T + t) / (1 + T t), signed.

    For a = min(|x|, 9.2) (tanh rounds to 1 past 9.011): h = n ln(2) / 2 with n = rint(a 2 /
    ln 2), so T = tanh(h) = (2**n - 1) / (2**n + 1), and t = tanh(u) for the rest |u| <= ln(2)
    / 4 is an odd polynomial. Multiplied through by 2**n + 1, the quotient is
    ((2**n - 1) + (2**n + 1) t) / ((2**n + 1) + (2**n - 1) t): one division; for n = 0 it is
    2t / 2 = t exactly (small and subnormal x keep full precision), and for large n the error
    of t enters the numerator and the denominator alike. Max error 2 ulp over every float32
    (tools/check_mathfns.py).
    """
    _check_type(x)
    a = _call(builder, "fabs", x)
    a = builder.select(builder.fcmp_ordered(">", a, _like(x, _TANH_CLAMP)),
                       _like(x, _TANH_CLAMP), a)
    magic, n = _rint_magic(builder, a, 2 * LOG2E)
    # one fma suffices: ln(2) / 2 rounds to float32 within 9.6e-10, so u is off by n * 9.6e-10
    # at most, which is 1e-9 at n = 1 and 2.6e-8 at n = 27, where tanh' = 1 - tanh^2 < 1e-7
    u = _fma(builder, n, _like(x, -_HALF_LN2), a)
    u2 = builder.fmul(u, u, flags=FLAGS)
    u3 = builder.fmul(u2, u, flags=FLAGS)
    t = _fma(builder, u3, _horner(builder, u2, _TANH_POLY), u)
    two_n = _pow2_magic(builder, magic)
    minus = builder.fsub(two_n, _like(x, 1.0), flags=FLAGS)
    plus = builder.fadd(two_n, _like(x, 1.0), flags=FLAGS)
    num = _fma(builder, plus, t, minus)
    den = _fma(builder, minus, t, plus)
    # NaN stays NaN through t; copysign gives tanh(-0) = -0. The quotient is an exact
    # division: the error bound counts on it (no ``arcp``)
    return _call(builder, "copysign", builder.fdiv(num, den), x)


def emit_log(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """Natural log: x = m * 2**e with m in [sqrt(1/2), sqrt(2)), log m by polynomial."""
    _check_type(x)
    ity = _int_type(x)
    # Subnormals have no implicit leading bit; scale them into the normal range first.
    tiny = builder.fcmp_ordered("<", x, _like(x, _FLT_MIN))
    xs = builder.select(tiny, builder.fmul(x, _like(x, 2.0 ** 23), flags=FLAGS), x)
    bits = builder.bitcast(xs, ity)
    exponent = builder.sitofp(builder.lshr(bits, _like(x, 23, _I32)), x.type)
    mant_bits = builder.or_(builder.and_(bits, _like(x, 0x007FFFFF, _I32)),
                            _like(x, 0x3F000000, _I32))
    m = builder.bitcast(mant_bits, x.type)  # in [0.5, 1)
    below = builder.fcmp_ordered("<", m, _like(x, _SQRT_HALF))
    # Exact by Sterbenz: the doubled-or-not mantissa lies in [sqrt(1/2), sqrt(2)).
    f = builder.fsub(builder.select(below, builder.fadd(m, m, flags=FLAGS), m),
                     _like(x, 1.0), flags=FLAGS)
    bias = builder.select(below, _like(x, 127.0), _like(x, 126.0))
    bias = builder.fadd(bias, builder.select(tiny, _like(x, 23.0), _like(x, 0.0)), flags=FLAGS)
    e = builder.fsub(exponent, bias, flags=FLAGS)

    z = builder.fmul(f, f, flags=FLAGS)
    y = builder.fmul(builder.fmul(_horner(builder, f, _LOG_POLY), f, flags=FLAGS), z,
                     flags=FLAGS)
    y = _fma(builder, e, _like(x, LN2_LO), y)
    y = _fma(builder, z, _like(x, -0.5), y)
    r = _fma(builder, e, _like(x, LN2_HI), builder.fadd(f, y, flags=FLAGS))

    # +inf and NaN return themselves; 0 gives -inf; negatives (and -inf) give NaN.
    r = builder.select(builder.fcmp_unordered(">=", x, _like(x, float("inf"))), x, r)
    r = builder.select(builder.fcmp_ordered("==", x, _like(x, 0.0)), _like(x, float("-inf")), r)
    return builder.select(builder.fcmp_ordered("<", x, _like(x, 0.0)), _like(x, float("nan")), r)


# erf(x) = x P(x^2) for |x| < 1; else 1 - exp(-x^2) R(1 / |x|), with |x| clamped to 4, past
# which erf rounds to 1. Least-squares fits of erf(x) / x and erfc(t) exp(t^2); max error
# 2.4 ulp (1.8e-7 relative) against math.erf over [-5, 5] and [1e-30, 1].
_ERF_SMALL_POLY = (7.9334224414e-05, -8.0348279885e-04, 5.1912166077e-03, -2.6855398722e-02,
                   1.1283625713e-01, -3.7612629877e-01, 1.1283791666e+00)
_ERFC_POLY = (4.2425262081e-03, -2.0516958427e-02, 1.8828063320e-02, 9.8105428009e-02,
              -3.7047456904e-01, 6.1351447395e-01, -5.3410277807e-01, 6.1901195591e-02,
              5.5555685492e-01, 5.2933983463e-04)


def emit_erf(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """The error function; erf(+-inf) = +-1, NaN stays NaN."""
    _check_type(x)
    a = _call(builder, "fabs", x)
    small = builder.fmul(a, _horner(builder, builder.fmul(a, a, flags=FLAGS), _ERF_SMALL_POLY),
                         flags=FLAGS)
    t = builder.select(builder.fcmp_ordered(">", a, _like(x, 4.0)), _like(x, 4.0), a)
    u = builder.fdiv(_like(x, 1.0), t, flags=FLAGS)
    e = emit_exp(builder, builder.fneg(builder.fmul(t, t, flags=FLAGS), flags=FLAGS))
    large = builder.fsub(_like(x, 1.0), builder.fmul(e, _horner(builder, u, _ERFC_POLY),
                                                     flags=FLAGS), flags=FLAGS)
    # NaN fails the ordered compare and takes the large branch, which stays NaN.
    is_small = builder.fcmp_ordered("<", a, _like(x, 1.0))
    return _call(builder, "copysign", builder.select(is_small, small, large), x)


def _log1p_unit(builder: ir.IRBuilder, u: ir.Value) -> ir.Value:
    """log(1 + u) for u in [0, 1] (or NaN), exact to rounding also where 1 + u rounds to 1:
    log(w) * u / (w - 1) with w = 1 + u cancels the rounding of w."""
    w = builder.fadd(u, _like(u, 1.0), flags=FLAGS)
    d = builder.fsub(w, _like(u, 1.0), flags=FLAGS)
    ratio = builder.fdiv(builder.fmul(emit_log(builder, w), u, flags=FLAGS), d, flags=FLAGS)
    return builder.select(builder.fcmp_ordered("==", d, _like(u, 0.0)), u, ratio)


def emit_softplus(builder: ir.IRBuilder, x: ir.Value) -> ir.Value:
    """log(1 + exp(x)) as max(x, 0) + log1p(exp(-|x|)): no overflow for large x and full
    relative precision for very negative x, where the result is about exp(x)."""
    _check_type(x)
    pos = builder.select(builder.fcmp_ordered("<", x, _like(x, 0.0)), _like(x, 0.0), x)
    e = emit_exp(builder, builder.fneg(_call(builder, "fabs", x), flags=FLAGS))
    return builder.fadd(pos, _log1p_unit(builder, e), flags=FLAGS)


def _powi(builder: ir.IRBuilder, x: ir.Value, m: int) -> ir.Value:
    """x ** m for an int m >= 0 by repeated squaring."""
    out, base = None, x
    while m:
        if m & 1:
            out = base if out is None else builder.fmul(out, base, flags=FLAGS)
        m >>= 1
        if m:
            base = builder.fmul(base, base, flags=FLAGS)
    return out if out is not None else _like(x, 1.0)


_POWI_MAX = 64


def emit_pow(builder: ir.IRBuilder, x: ir.Value, p: float) -> ir.Value:
    """x ** p for a constant p, as np.power computes it: C's pow (pow(x < 0, non-integer) =
    NaN, pow(+-0, p < 0) = inf, pow(-inf, p) = inf or 0 by p's sign and parity), except that
    p = 0.5 is sqrt (sqrt(-inf) = NaN, sqrt(-0) = -0), as numpy and torch have it.

    Integer and half-integer p up to 64 in magnitude are products (and a sqrt), exact to a
    few ulp; other p go through exp(p log x), whose relative error grows with |p log x|
    (about 3e-6 at p log x = 50); for p < 0, results below FLT_MIN may be 0 (x ** -p
    overflows). Reciprocals are exact divisions: with ``arcp``/``afn``
    LLVM may turn 1 / sqrt into an rsqrt estimate, which is NaN at 0 and inf.
    """
    _check_type(x)
    one = _like(x, 1.0)
    m = abs(p)
    if p == 0.0:
        return one
    if p == 0.5:
        return _call(builder, "sqrt", x)
    if m == int(m) and m <= _POWI_MAX:
        r = _powi(builder, x, int(m))
        return builder.fdiv(one, r) if p < 0 else r
    if m == int(m):            # a large integer: exp(p log|x|), negative for odd p and x < 0
        r = emit_exp(builder, builder.fmul(_like(x, p), emit_log(builder, _call(
            builder, "fabs", x)), flags=FLAGS))
        return _call(builder, "copysign", r, x) if int(m) % 2 else r
    if 2 * m == int(2 * m) and m <= _POWI_MAX:
        # pow(-0, p) is +0 or +inf for a non-integer p: the sign of a zero must not count
        x = builder.select(builder.fcmp_ordered("==", x, _like(x, 0.0)), _like(x, 0.0), x)
        r = builder.fmul(_powi(builder, x, int(m - 0.5)), _call(builder, "sqrt", x), flags=FLAGS)
        r = builder.fdiv(one, r) if p < 0 else r
    else:
        r = emit_exp(builder, builder.fmul(_like(x, p), emit_log(builder, x), flags=FLAGS))
    # log and sqrt of -inf are NaN, but pow(-inf, p) for a non-integer p is +inf or 0
    minus_inf = builder.fcmp_ordered("==", x, _like(x, float("-inf")))
    return builder.select(minus_inf, _like(x, float("inf") if p > 0 else 0.0), r)
