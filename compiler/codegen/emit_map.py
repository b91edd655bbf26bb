"""Elementwise kernels: maps, zips, FUSED bodies, and the copies (concat, pad, assemble).

    for i in ndindex(out.shape):           # adjacent dims merged where the layouts allow
        out[i] = f(a[bcast(i)], b[bcast(i)], ...)

Operands broadcast numpy-style (stride 0 on broadcast dims). When the innermost merged dim
is contiguous in the output and contiguous or broadcast in every input, it runs as vectors
of the host's width (`<16 x float>` with AVX-512; `<8 x float>` for rows shorter than that)
with a scalar tail; otherwise as scalars. Several outputs computed from the same inputs share
one loop (emit_elementwise_multi: a cluster of FUSED nodes). A FUSED body is evaluated in
registers per element (or per vector): one pass over the data, no intermediate buffers.
Transcendentals are codegen/mathfns.py's inline polynomials.
"""
from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from llvmlite import ir

from graphrnn.ir import ELEMENTWISE_BINARY, ELEMENTWISE_UNARY, Graph, LoweringError, Node, Op

from .irbuilder import FLAGS, I64, WIDTH, Emitter, Ref, elem_type
from .strides import ONE, ZERO, Layout, collapse
from .mathfns import (emit_erf, emit_exp, emit_log, emit_pow, emit_sigmoid, emit_softplus,
                      emit_tanh, intrinsic)
from .tiling import vector_width

ValueFn = Callable[[Emitter, list[ir.Value], int], ir.Value]


def _like(em: Emitter, x: ir.Value, value: float) -> ir.Constant:
    width = x.type.count if isinstance(x.type, ir.VectorType) else 0
    return em.const(value, width)


def _relu(em: Emitter, x: ir.Value) -> ir.Value:
    # `x < 0 ? 0 : x` keeps NaN, as np.maximum(x, 0) does
    b = em.builder
    return b.select(b.fcmp_ordered("<", x, _like(em, x, 0.0)), _like(em, x, 0.0), x)


def _step(em: Emitter, x: ir.Value) -> ir.Value:
    b = em.builder
    return b.select(b.fcmp_ordered(">", x, _like(em, x, 0.0)), _like(em, x, 1.0),
                    _like(em, x, 0.0))


def _sign(em: Emitter, x: ir.Value) -> ir.Value:
    # 0 and NaN fail both compares and return themselves, as np.sign does
    b, zero = em.builder, _like(em, x, 0.0)
    neg = b.select(b.fcmp_ordered("<", x, zero), _like(em, x, -1.0), x)
    return b.select(b.fcmp_ordered(">", x, zero), _like(em, x, 1.0), neg)


def _intrinsic(name: str) -> Callable[[Emitter, ir.Value], ir.Value]:
    def emit(em: Emitter, x: ir.Value) -> ir.Value:
        return em.builder.call(intrinsic(em.builder.module, name, x.type, 1), [x])
    return emit


def _sqrt(em: Emitter, x: ir.Value) -> ir.Value:
    # fenced: `arcp` would turn a division by it into an rsqrt estimate, NaN at 0 and inf
    # where IEEE gives inf and 0 (g / (2 sqrt(x)), the gradient of sqrt, in one body)
    root = _intrinsic("sqrt")(em, x)
    return em.builder.call(intrinsic(em.builder.module, "arithmetic.fence", x.type, 1), [root])


def _extremum(pred: str) -> Callable[[Emitter, ir.Value, ir.Value], ir.Value]:
    """maximum ('>') or minimum ('<') that returns NaN when either input is NaN, as
    np.maximum and torch.maximum do (llvm.maxnum would return the other input)."""
    def emit(em: Emitter, a: ir.Value, b: ir.Value) -> ir.Value:
        bld = em.builder
        r = bld.select(bld.fcmp_ordered(pred, b, a), b, a)     # a when a is NaN
        return bld.select(bld.fcmp_unordered("uno", b, b), b, r)
    return emit


UNARY: dict[Op, Callable[[Emitter, ir.Value], ir.Value]] = {
    Op.NEG: lambda em, x: em.builder.fneg(x, flags=FLAGS),
    Op.EXP: lambda em, x: emit_exp(em.builder, x),
    Op.LOG: lambda em, x: emit_log(em.builder, x),
    Op.TANH: lambda em, x: emit_tanh(em.builder, x),
    Op.SIGMOID: lambda em, x: emit_sigmoid(em.builder, x),
    Op.RELU: _relu,
    Op.STEP: _step,
    Op.ABS: _intrinsic("fabs"),
    Op.SIGN: _sign,
    Op.SQRT: _sqrt,
    Op.ERF: lambda em, x: emit_erf(em.builder, x),
    Op.SOFTPLUS: lambda em, x: emit_softplus(em.builder, x),
}
BINARY: dict[Op, Callable[[Emitter, ir.Value, ir.Value], ir.Value]] = {
    Op.ADD: lambda em, a, b: em.builder.fadd(a, b, flags=FLAGS),
    Op.SUB: lambda em, a, b: em.builder.fsub(a, b, flags=FLAGS),
    Op.MUL: lambda em, a, b: em.builder.fmul(a, b, flags=FLAGS),
    Op.DIV: lambda em, a, b: em.builder.fdiv(a, b, flags=FLAGS),
    Op.MAXIMUM: _extremum(">"),
    Op.MINIMUM: _extremum("<"),
}


def _where(em: Emitter, m: ir.Value, a: ir.Value, b: ir.Value) -> ir.Value:
    # numpy: m != 0 is true for NaN, as an unordered compare is
    return em.builder.select(em.builder.fcmp_unordered("!=", m, _like(em, m, 0.0)), a, b)


def apply_op(em: Emitter, n: Node, args: Sequence[ir.Value], width: int) -> ir.Value:
    """One elementwise node on scalars (width 0) or <width x float> vectors."""
    if n.op in UNARY:
        return UNARY[n.op](em, args[0])
    if n.op in BINARY:
        return BINARY[n.op](em, args[0], args[1])
    if n.op == Op.WHERE:
        return _where(em, *args)
    if n.op == Op.POW:
        return emit_pow(em.builder, args[0], n.attrs["p"])
    if n.op in (Op.DROPOUT,):
        return args[0]
    raise LoweringError(f"{n.name} ({n.op.value}) is not an elementwise op")


def eval_body(em: Emitter, body: Graph, args: Sequence[ir.Value], width: int) -> ir.Value:
    """The FUSED body's output from its input values, in registers."""
    env: dict[Node, ir.Value] = dict(zip(body.inputs, args))
    for n in body.nodes:
        if n in env:
            continue
        if n.op in (Op.CONST, Op.FILL):
            env[n] = em.const(_scalar(n), width)
            continue
        env[n] = apply_op(em, n, [env[x] for x in n.inputs], width)
    return env[body.outputs[0]]


def _scalar(n: Node) -> float:
    value = n.attrs["value"]
    if isinstance(value, np.ndarray):
        if value.size != 1:
            raise LoweringError(f"{n.name}: a constant inside a fused body must be a scalar, "
                                f"got shape {list(value.shape)}")
        return float(value.reshape(-1)[0])
    return float(value)


def emit_elementwise(em: Emitter, out: Ref, ins: Sequence[Ref], fn: ValueFn) -> None:
    """out[i] = fn(ins[bcast(i)]) over out's shape; vectorised when the layouts allow."""
    emit_elementwise_multi(em, [out], ins, lambda e, vals, w: [fn(e, vals, w)])


def emit_elementwise_multi(em: Emitter, outs: Sequence[Ref], ins: Sequence[Ref],
                           fn: Callable[[Emitter, list[ir.Value], int], list[ir.Value]]
                           ) -> None:
    """outs[j][i] = fn(ins[bcast(i)])[j] over the outputs' shape (one loop for all of them);
    vectorised when every output is contiguous and every input contiguous or broadcast along
    the innermost merged dim."""
    shape = outs[0].layout.shape
    layouts = collapse([o.layout for o in outs] + [r.layout.broadcast_to(shape) for r in ins])
    o_lay, rest = layouts[:len(outs)], layouts[len(outs):]
    floats = all(r.layout.dtype == "float32" for r in (*outs, *ins))
    vector = floats and all(o.strides[-1] == ONE for o in o_lay) and \
        all(l.strides[-1] in (ZERO, ONE) for l in rest)
    inner = o_lay[0].shape[-1]
    # the host's full vectors (zmm with AVX-512) when the rows are long enough for them
    width = vector_width() if not (inner.const and inner.c < vector_width()) else WIDTH
    with em.nest(o_lay[0].shape[:-1], "ew") as idx:
        optr = [em.at(Ref(o.ptr, l), idx) for o, l in zip(outs, o_lay)]
        iptr = [em.at(Ref(r.ptr, l), idx) for r, l in zip(ins, rest)]
        start: ir.Value | int = 0
        if vector and not (inner.const and inner.c < width):
            fixed = [em.splat(em.load(p), width) if l.strides[-1] == ZERO else None
                     for p, l in zip(iptr, rest)]
            with em.loop(inner, "ew_v", step=width) as j:
                vals = [f if f is not None else em.load(em.gep(p, j), width)
                        for f, p in zip(fixed, iptr)]
                for v, p in zip(fn(em, vals, width), optr):
                    em.store(v, em.gep(p, j))
            if inner.const:
                start = inner.c // width * width
            else:
                n = em.lin(inner)
                start = em.builder.mul(em.builder.sdiv(n, ir.Constant(I64, width)),
                                       ir.Constant(I64, width), flags=["nsw"])
        if isinstance(start, int) and inner.const and start >= inner.c:
            return
        scalars = [em.load(p) if l.strides[-1] == ZERO else None for p, l in zip(iptr, rest)]
        with em.loop(inner, "ew_s", start=start) as j:
            vals = [s if s is not None else em.load(em.gep(p, em.mul(j, l.strides[-1])))
                    for s, p, l in zip(scalars, iptr, rest)]
            for v, p, l in zip(fn(em, vals, 0), optr, o_lay):
                em.store(v, em.gep(p, em.mul(j, l.strides[-1])))


def identity(em: Emitter, vals: list[ir.Value], width: int) -> ir.Value:
    return vals[0]


def fill(em: Emitter, out: Ref, value: float) -> None:
    ety = elem_type(out.layout.dtype)
    if ety == I64:
        emit_elementwise(em, out, [], lambda e, v, w: ir.Constant(I64, int(value)))
    else:
        emit_elementwise(em, out, [], lambda e, v, w: e.const(value, w))


# ----------------------------------------------------------------------------- rules

def emit_map(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """A single elementwise op."""
    emit_elementwise(em, out, ins, lambda e, vals, w: apply_op(e, n, vals, w))


def emit_fused(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    body: Graph = n.attrs["body"]
    emit_elementwise(em, out, ins, lambda e, vals, w: eval_body(e, body, vals, w))


def emit_copy(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """out = ins[0]; a reshape copies in the input's row-major order."""
    src = ins[0]
    if out.layout.shape != src.layout.shape:
        if not out.layout.is_contiguous():
            raise LoweringError(f"cannot copy {src.layout} into {out.layout}")
        out = Ref(out.ptr, Layout.contiguous(src.layout.shape, out.layout.dtype))
    emit_elementwise(em, out, [src], identity)


def emit_concat(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    axis = n.attrs["axis"]
    start = 0
    for r in ins:
        length = r.layout.shape[axis]
        offset, layout = out.layout.slice(axis, start, length.c)
        emit_elementwise(em, em.view(out, offset, layout), [r], identity)
        start += length.c


def emit_pad(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    fill(em, out, 0.0)
    axis = n.attrs["axis"]
    offset, layout = out.layout.slice(axis, n.attrs["before"], ins[0].layout.shape[axis].c)
    emit_elementwise(em, em.view(out, offset, layout), ins, identity)


def emit_transpose(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """out = swapaxes(in): a copy that reads the input through its permuted strides."""
    order = list(range(ins[0].layout.rank))
    d0, d1 = n.attrs["dim0"], n.attrs["dim1"]
    order[d0], order[d1] = d1, d0
    emit_elementwise(em, out, [Ref(ins[0].ptr, ins[0].layout.permute(order))], identity)


def emit_shift(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """Zeros, then the overlapping part: out[by:] = in[:-by] (by > 0), out[:by] = in[-by:]."""
    fill(em, out, 0.0)
    axis, by = n.attrs["axis"], n.attrs["by"]
    d = ins[0].layout.shape[axis]
    length = d - abs(by)    # may be negative at run time: the copy loops then run no times
    if length.const and length.c <= 0:
        return
    o_off, o_lay = out.layout.slice(axis, max(by, 0), length)
    i_off, i_lay = ins[0].layout.slice(axis, max(-by, 0), length)
    emit_elementwise(em, em.view(out, o_off, o_lay), [em.view(ins[0], i_off, i_lay)], identity)


def emit_assemble(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    fill(em, out, 0.0)
    for r, off in zip(ins, n.attrs["offsets"]):
        offset, layout = out.layout.slice(0, off, r.layout.shape[0].c)
        dst = em.view(out, offset, layout)
        emit_elementwise(em, dst, [dst, r], lambda e, v, w: BINARY[Op.ADD](e, v[0], v[1]))


def emit_astype(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    """float32 -> int64 truncating (saturating, NaN 0: never poison) or int64 -> float32."""
    if n.attrs["dtype"] == "float32":
        emit_elementwise(em, out, ins, lambda e, v, w: e.builder.sitofp(v[0], ir.FloatType()))
        return
    name = "llvm.fptosi.sat.i64.f32"
    fn = em.function.module.globals.get(name) or \
        ir.Function(em.function.module, ir.FunctionType(I64, [ir.FloatType()]), name)
    emit_elementwise(em, out, ins, lambda e, v, w: e.builder.call(fn, [v[0]]))


MAP_RULES = {
    **{op: emit_map for op in ELEMENTWISE_UNARY | ELEMENTWISE_BINARY | {Op.WHERE}},
    Op.FUSED: emit_fused,
    Op.CONCAT: emit_concat,
    Op.PAD: emit_pad,
    Op.ASSEMBLE: emit_assemble,
    Op.RESHAPE: emit_copy,
    Op.TRANSPOSE: emit_transpose,
    Op.SHIFT: emit_shift,
    Op.ASTYPE: emit_astype,
}

__all__ = ["emit_elementwise", "emit_elementwise_multi", "eval_body", "apply_op", "emit_copy",
           "fill", "identity", "MAP_RULES"]
