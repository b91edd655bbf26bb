"""Row kernels: max, min, logsumexp, arg_onehot along one axis, normalize over the last dims.

Each row is read in one pass for its statistics (two for logsumexp and arg_onehot, which
need the extremum first), then written in one pass:

    max:        for i in ndindex(others): out[i] = max(x[i, :])   (llvm.maximum: NaN wins)
    logsumexp:  m = max(x[i, :]) (0 when not finite); out[i] = m + log(sum(exp(x[i, :] - m)))
    arg_onehot: k = first argmax(x[i, :]) (a NaN counts as the max); out[i, :] = (j == k)
    normalize:  s1, s2 = sum(x[i, :]), sum(x[i, :] ** 2) in double
                out[i, :] = (x[i, :] - s1 / n) / sqrt(s2 / n - (s1 / n) ** 2 + eps)
                (s1 taken as 0 without centering)
    normalize_grad: in one pass the same sums, sum(g[i, :]) and sum(g[i, :] * x[i, :]) (so
                mean(g * y) = rstd * (mean(g * x) - mean(x) * mean(g)), y the normalised
                row), then out[i, :] = rstd * (g - mean(g) - y * mean(g * y))

The double sums of normalize may be reassociated (vectorised): the tests compare them with
numpy's and PyTorch's to 1e-5.
"""
from __future__ import annotations

from typing import Callable

from llvmlite import ir

from graphrnn.ir import Graph, Node, Op

from .emit_map import eval_body
from .irbuilder import F32, FLAGS, I64, Emitter, Ref
from .mathfns import emit_exp, emit_log
from .strides import Layout, collapse, product

F64 = ir.DoubleType()
SUM_FLAGS = FLAGS + ("reassoc",)


def _split(layout: Layout, axes: tuple[int, ...]) -> tuple[Layout, Layout]:
    """(layout over the dims not in axes, layout over the dims in axes)."""
    keep = [i for i in range(layout.rank) if i not in axes]
    return layout.permute(keep), layout.permute(list(axes))


def _rows(x: Ref, out: Ref, axis: int) -> tuple[Ref, Ref]:
    """The other dims of x and out, collapsed together (out has them alone, or also the axis:
    at full size, or as 1 with keepdims)."""
    x_o = _split(x.layout, (axis,))[0]
    o_o = _split(out.layout, (axis,))[0] if out.layout.rank == x.layout.rank else out.layout
    x_o, o_o = collapse([x_o, Layout(x_o.shape, o_o.strides, out.layout.dtype)])
    return Ref(x.ptr, x_o), Ref(out.ptr, o_o)


def _extremum(em: Emitter, xp: ir.Value, size, stride, low: bool) -> ir.Value:
    bld = em.builder
    m = em.alloca(F32, ir.Constant(F32, float("inf") if low else float("-inf")))
    pick = em.intrinsic("minimum" if low else "maximum", F32, 2)
    with em.loop(size, "row_max") as j:
        v = em.load(em.gep(xp, em.mul(j, stride)))
        bld.store(bld.call(pick, [bld.load(m), v]), m)
    return bld.load(m)


def emit_extremum(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x, axis = ins[0], n.attrs["axis"]
    xs, os = _rows(x, out, axis)
    with em.nest(xs.layout.shape, "rmax") as idx:
        m = _extremum(em, em.at(xs, idx), x.layout.shape[axis], x.layout.strides[axis],
                      n.op == Op.MIN)
        em.store(m, em.at(os, idx))


def emit_logsumexp(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x, axis = ins[0], n.attrs["axis"]
    size, sx = x.layout.shape[axis], x.layout.strides[axis]
    xs, os = _rows(x, out, axis)
    bld = em.builder
    fabs = em.intrinsic("fabs", F32, 1)
    with em.nest(xs.layout.shape, "lse") as idx:
        xp = em.at(xs, idx)
        m = _extremum(em, xp, size, sx, False)
        finite = bld.fcmp_ordered("<", bld.call(fabs, [m]), ir.Constant(F32, float("inf")))
        m = bld.select(finite, m, ir.Constant(F32, 0.0))
        s = em.alloca(F32, ir.Constant(F32, 0.0))
        with em.loop(size, "lse_exp") as j:
            e = emit_exp(bld, bld.fsub(em.load(em.gep(xp, em.mul(j, sx))), m, flags=FLAGS))
            bld.store(bld.fadd(bld.load(s), e, flags=FLAGS), s)
        em.store(bld.fadd(m, emit_log(bld, bld.load(s)), flags=FLAGS), em.at(os, idx))


def emit_arg_onehot(em: Emitter, n: Node, out: Ref, ins: list[Ref]) -> None:
    x, axis = ins[0], n.attrs["axis"]
    size, sx, so = x.layout.shape[axis], x.layout.strides[axis], out.layout.strides[axis]
    low = n.attrs["min"]
    xs, os = _rows(x, out, axis)
    bld = em.builder
    with em.nest(xs.layout.shape, "argx") as idx:
        xp, op = em.at(xs, idx), em.at(os, idx)
        m = em.alloca(F32, ir.Constant(F32, float("inf") if low else float("-inf")))
        k = em.alloca(I64, ir.Constant(I64, 0))
        with em.loop(size, "argx_find") as j:
            v, best = em.load(em.gep(xp, em.mul(j, sx))), bld.load(m)
            better = bld.fcmp_ordered("<" if low else ">", v, best)
            # the first NaN is the extremum, as numpy's argmax and torch's max(dim) say
            nan_first = bld.and_(bld.fcmp_unordered("uno", v, v),
                                 bld.fcmp_ordered("ord", best, best))
            take = bld.or_(better, nan_first)
            bld.store(bld.select(take, v, best), m)
            bld.store(bld.select(take, j, bld.load(k)), k)
        at = bld.load(k)
        with em.loop(size, "argx_out") as j:
            hot = bld.select(bld.icmp_signed("==", j, at), ir.Constant(F32, 1.0),
                             ir.Constant(F32, 0.0))
            em.store(hot, em.gep(op, em.mul(j, so)))


def _sqrt64(em: Emitter) -> ir.Function:
    found = em.module.globals.get("llvm.sqrt.f64")
    return found if found is not None else ir.Function(
        em.module, ir.FunctionType(F64, [F64]), "llvm.sqrt.f64")


def _row_stats(em: Emitter, xp: ir.Value, region: Layout, center: bool, eps: float,
               count: ir.Value) -> tuple[ir.Value, ir.Value]:
    """(mean, 1 / sqrt(var + eps)) of one row, as float (mean 0 without centering)."""
    bld = em.builder
    s1 = em.alloca(F64, ir.Constant(F64, 0.0))
    s2 = em.alloca(F64, ir.Constant(F64, 0.0))
    with em.nest(region.shape, "norm_sum") as ridx:
        v = bld.fpext(em.load(em.at(Ref(xp, region), ridx)), F64)
        if center:
            bld.store(bld.fadd(bld.load(s1), v, flags=SUM_FLAGS), s1)
        bld.store(bld.fadd(bld.load(s2), bld.fmul(v, v, flags=FLAGS), flags=SUM_FLAGS), s2)
    mean, rstd = _stats(em, bld.fdiv(bld.load(s1), count), bld.fdiv(bld.load(s2), count),
                        eps)
    return bld.fptrunc(mean, F32), bld.fptrunc(rstd, F32)


def _stats(em: Emitter, mean: ir.Value, square: ir.Value, eps: float
           ) -> tuple[ir.Value, ir.Value]:
    """(mean, 1 / sqrt(var + eps)) in double from the row's mean and mean square."""
    bld = em.builder
    var = bld.fsub(square, bld.fmul(mean, mean))
    var = bld.select(bld.fcmp_ordered("<", var, ir.Constant(F64, 0.0)),
                     ir.Constant(F64, 0.0), var)   # rounding can make E[x^2] - mean^2 < 0
    std = bld.call(_sqrt64(em), [bld.fadd(var, ir.Constant(F64, eps))])
    return mean, bld.fdiv(ir.Constant(F64, 1.0), std)


def _norm_rows(n: Node, refs: list[Ref]) -> tuple[list[Layout], list[Layout]]:
    """(the leading dims, the normalised dims) of every ref, each collapsed together."""
    rank, k = refs[0].layout.rank, len(n.attrs["shape"])
    split = [_split(r.layout, tuple(range(rank - k, rank))) for r in refs]
    return collapse([s[0] for s in split]), collapse([s[1] for s in split])


def emit_normalize(em: Emitter, n: Node, out: Ref, ins: list[Ref],
                   post: tuple[Graph, list[bool]] | None = None, store: bool = True) -> None:
    """With `post` (a FUSED body, and which of its arguments are the normalised value), also
    writes that body to ins[1], its other arguments being ins[2:] (broadcast to the rows);
    the normalised row itself only if `store`."""
    x = ins[0]
    shape = out.layout.shape
    extra = [ins[1], *(Ref(r.ptr, r.layout.broadcast_to(shape)) for r in ins[2:])] \
        if post is not None else []
    (x_o, o_o, *e_o), (x_r, o_r, *e_r) = _norm_rows(n, [x, out, *extra])
    bld = em.builder
    count = bld.sitofp(em.lin(product(x_r.shape)), F64)
    with em.nest(x_o.shape, "norm") as idx:
        xp, op = em.at(Ref(x.ptr, x_o), idx), em.at(Ref(out.ptr, o_o), idx)
        eps = [em.at(Ref(r.ptr, lay), idx) for r, lay in zip(extra, e_o)]
        mu, rstd = _row_stats(em, xp, x_r, n.attrs["center"], n.attrs["eps"], count)
        with em.nest(x_r.shape, "norm_out") as ridx:
            v = em.load(em.at(Ref(xp, x_r), ridx))
            y = bld.fmul(bld.fsub(v, mu, flags=FLAGS), rstd, flags=FLAGS)
            if store:
                em.store(y, em.at(Ref(op, o_r), ridx))
            if post is not None:
                body, at = post
                vals = iter([em.load(em.at(Ref(p, r), ridx)) for p, r in zip(eps[1:], e_r[1:])])
                args = [y if is_y else next(vals) for is_y in at]
                em.store(eval_body(em, body, args, 0), em.at(Ref(eps[0], e_r[0]), ridx))


def postmapped_normalize(body: Graph, at: list[bool], store: bool
                         ) -> Callable[[Emitter, Node, Ref, list[Ref]], None]:
    """The NORMALIZE rule that also writes the FUSED `body` of it (`at`: which of the body's
    arguments are the normalised value) to ins[1], and the normalised row if `store`."""
    return lambda em, n, out, ins: emit_normalize(em, n, out, ins, (body, at), store)


def emit_normalize_grad(em: Emitter, n: Node, out: Ref, ins: list[Ref],
                        pre: Graph | None = None) -> None:
    """With `pre`, the gradient operand is that FUSED body over ins[1:] (broadcast to the row
    shape), evaluated as each element is read."""
    x, gs = ins[0], ins[1:]
    shape = out.layout.shape
    bcast = [Ref(g.ptr, g.layout.broadcast_to(shape)) for g in gs]
    (x_o, o_o, *g_o), (x_r, o_r, *g_r) = _norm_rows(n, [x, out, *bcast])
    bld = em.builder
    center = n.attrs["center"]
    count = bld.sitofp(em.lin(product(x_r.shape)), F64)
    zero = ir.Constant(F64, 0.0)

    def grad(gps: list[ir.Value], ridx) -> ir.Value:
        vals = [em.load(em.at(Ref(p, r), ridx)) for p, r in zip(gps, g_r)]
        return vals[0] if pre is None else eval_body(em, pre, vals, 0)

    with em.nest(x_o.shape, "normg") as idx:
        xp = em.at(Ref(x.ptr, x_o), idx)
        gps = [em.at(Ref(g.ptr, lay), idx) for g, lay in zip(bcast, g_o)]
        op = em.at(Ref(out.ptr, o_o), idx)
        sums = [em.alloca(F64, zero) for _ in range(4)]     # x, x^2, g, g * x
        with em.nest(x_r.shape, "normg_sum") as ridx:
            xv = bld.fpext(em.load(em.at(Ref(xp, x_r), ridx)), F64)
            gv = bld.fpext(grad(gps, ridx), F64)
            terms = [xv, bld.fmul(xv, xv, flags=FLAGS), gv, bld.fmul(gv, xv, flags=FLAGS)]
            for k, (acc, v) in enumerate(zip(sums, terms)):
                if center or k % 2:
                    bld.store(bld.fadd(bld.load(acc), v, flags=SUM_FLAGS), acc)
        s1, s2, sg, sgx = (bld.fdiv(bld.load(acc), count) for acc in sums)
        mu, rstd = _stats(em, s1 if center else zero, s2, n.attrs["eps"])
        # mean(g * y) = rstd * (mean(g * x) - mean(x) * mean(g)): exact products, double sums
        mean_gy = bld.fmul(rstd, bld.fsub(sgx, bld.fmul(mu, sg)) if center else sgx)
        mu, rstd = bld.fptrunc(mu, F32), bld.fptrunc(rstd, F32)
        mean_g = bld.fptrunc(sg if center else zero, F32)
        mean_gy = bld.fptrunc(mean_gy, F32)
        with em.nest(x_r.shape, "normg_out") as ridx:
            y = bld.fmul(bld.fsub(em.load(em.at(Ref(xp, x_r), ridx)), mu, flags=FLAGS), rstd,
                         flags=FLAGS)
            gv = bld.fsub(grad(gps, ridx), mean_g, flags=FLAGS)
            dx = bld.fmul(bld.fsub(gv, bld.fmul(y, mean_gy, flags=FLAGS), flags=FLAGS), rstd,
                          flags=FLAGS)
            em.store(dx, em.at(Ref(op, o_r), ridx))


def premapped_normalize_grad(pre: Graph) -> Callable[[Emitter, Node, Ref, list[Ref]], None]:
    """The NORMALIZE_GRAD rule whose gradient operand is the FUSED body `pre` of its inputs."""
    return lambda em, n, out, ins: emit_normalize_grad(em, n, out, ins, pre)


ROW_KERNEL_RULES = {Op.MAX: emit_extremum, Op.MIN: emit_extremum,
                    Op.LOGSUMEXP: emit_logsumexp, Op.ARG_ONEHOT: emit_arg_onehot,
                    Op.NORMALIZE: emit_normalize, Op.NORMALIZE_GRAD: emit_normalize_grad}

__all__ = ["ROW_KERNEL_RULES", "premapped_normalize_grad", "postmapped_normalize"]
