"""The op codes of the IR: one enum member per primitive, grouped by kind.

A leaf like the IR itself. New primitives go in the group of their kind, and the kind sets
below (`ELEMENTWISE_UNARY`, ...) decide which generic rules (shape, fusion, lowering) they get.
"""
from __future__ import annotations

from enum import Enum


class Op(str, Enum):
    # leaves
    INPUT = "input"             # a graph input
    PARAM = "param"             # a trainable tensor; identity is its Param
    CONST = "const"             # a literal array, attrs["value"]
    FILL = "fill"               # one value everywhere; with an input x, shape [x.shape[0], *shape]
    # elementwise, one input (map)
    NEG = "neg"
    EXP = "exp"
    LOG = "log"
    TANH = "tanh"
    SIGMOID = "sigmoid"
    RELU = "relu"
    ABS = "abs"
    SIGN = "sign"               # -1, 0 or 1 (NaN stays NaN)
    SQRT = "sqrt"
    ERF = "erf"
    SOFTPLUS = "softplus"       # log(1 + exp(x)), stable for every x
    POW = "pow"                 # x ** attrs["p"], a constant exponent
    # elementwise, two inputs with numpy broadcasting (zip)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    MAXIMUM = "maximum"         # NaN if either is NaN (torch.maximum)
    MINIMUM = "minimum"
    # products and reductions
    MATMUL = "matmul"           # a[..., K] @ b[K, N], or b[N, K] with attrs["transpose_b"]
    BMM = "bmm"                 # a[..., n, k] @ b[..., k, m] per leading index (equal leading
                                # dims); attrs["transpose_a"], attrs["transpose_b"] swap the
                                # last two axes of an operand first
    SUM = "sum"                 # attrs["axes"], attrs["keepdims"]
    MEAN = "mean"
    SOFTMAX = "softmax"         # along attrs["axis"]
    LOG_SOFTMAX = "log_softmax"
    MAX = "max"                 # along attrs["axis"] (attrs["keepdims"]); NaN wins, as in numpy
    MIN = "min"
    LOGSUMEXP = "logsumexp"     # log(sum(exp(x))) along attrs["axis"] (attrs["keepdims"])
    NORMALIZE = "normalize"     # over the last len(attrs["shape"]) dims: (x - mean) /
                                # sqrt(var + attrs["eps"]), or x / sqrt(mean(x^2) + eps)
                                # without attrs["center"] (layer norm, RMS norm)
    # indexing
    LOOKUP = "lookup"           # weight[n, d], ids[...] -> [..., d]
    PICK = "pick"               # x[..., C], idx[...] -> x[..., idx]
    # structure
    CONCAT = "concat"           # attrs["axis"]
    SLICE = "slice"             # attrs["axis"], attrs["start"], attrs["length"]
    INDEX = "index"             # attrs["axis"], attrs["index"]; drops the axis
    RESHAPE = "reshape"         # attrs["shape"]
    TRANSPOSE = "transpose"     # attrs["dim0"], attrs["dim1"]: the two axes swapped
    SHIFT = "shift"             # attrs["axis"], attrs["by"]: y[.., t, ..] = x[.., t - by, ..],
                                # zeros where t - by falls outside the axis
    DROPOUT = "dropout"         # attrs["p"], attrs["seed"]; identity unless training
    # higher order
    LOOP = "loop"               # the only node with a sub-graph: attrs["body"]
    GET = "get"                 # attrs["index"]: one part of a loop's tuple value
    # introduced by passes
    VIEW = "view"               # attrs["offset"], attrs["shape"]: a slice of the flat params
    FUSED = "fused"             # attrs["body"]: a Graph of elementwise ops, one pass over data
    SAMPLE = "sample"           # logits[B, C], u[B] in [0, 1), temperature[] -> i64[B]: the
                                # class where the cumulative softmax(logits / T) passes u;
                                # argmax when T <= 0
    ASTYPE = "astype"           # x as attrs["dtype"] (float32 <-> int64): a float becomes the
                                # int64 it truncates to (NaN 0, out of range saturates)
    # introduced by differentiation
    STEP = "step"               # 1 where x > 0, else 0 (the derivative of relu)
    WHERE = "where"             # where(mask != 0, a, b), numpy broadcasting
    SEQ_MASK = "seq_mask"       # like[B, T, ...][, lengths] -> f32[B, T]: t < lengths[b] and,
                                # with attrs["every"] = k, t % k != 0 (truncated BPTT borders)
    CONTRACT = "contract"       # a[..., K], b[..., N] -> sum over leading dims of a^T b: [K, N]
                                # ([N, K] with attrs["transpose_out"])
    EXPAND = "expand"           # x broadcast to the shape of ref
    PAD = "pad"                 # zeros around x: attrs["axis"], attrs["before"], attrs["after"]
    SCATTER = "scatter"         # g[..., d], ids[...] -> f32[n, d]: rows added at ids
    ONEHOT = "onehot"           # idx[...] -> f32[..., n]
    ASSEMBLE = "assemble"       # 1-D parts added into f32[size] at attrs["offsets"]
    ARG_ONEHOT = "arg_onehot"   # f32 like x: 1 at the first max along attrs["axis"] (the first
                                # min with attrs["min"]), 0 elsewhere (the derivative of max)
    NORMALIZE_GRAD = "normalize_grad"   # x, g -> the VJP of normalize at x (its attrs)


ELEMENTWISE_UNARY = frozenset({Op.NEG, Op.EXP, Op.LOG, Op.TANH, Op.SIGMOID, Op.RELU, Op.STEP,
                               Op.ABS, Op.SIGN, Op.SQRT, Op.ERF, Op.SOFTPLUS, Op.POW})
ELEMENTWISE_BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV, Op.MAXIMUM, Op.MINIMUM})
LEAVES = frozenset({Op.INPUT, Op.PARAM, Op.CONST})
