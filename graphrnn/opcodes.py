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
    # elementwise, two inputs with numpy broadcasting (zip)
    ADD = "add"
    SUB = "sub"
    MUL = "mul"
    DIV = "div"
    # products and reductions
    MATMUL = "matmul"           # a[..., K] @ b[K, N], or b[N, K] with attrs["transpose_b"]
    SUM = "sum"                 # attrs["axes"], attrs["keepdims"]
    MEAN = "mean"
    SOFTMAX = "softmax"         # along attrs["axis"]
    LOG_SOFTMAX = "log_softmax"
    # indexing
    LOOKUP = "lookup"           # weight[n, d], ids[...] -> [..., d]
    PICK = "pick"               # x[..., C], idx[...] -> x[..., idx]
    # structure
    CONCAT = "concat"           # attrs["axis"]
    SLICE = "slice"             # attrs["axis"], attrs["start"], attrs["length"]
    INDEX = "index"             # attrs["axis"], attrs["index"]; drops the axis
    RESHAPE = "reshape"         # attrs["shape"]
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


ELEMENTWISE_UNARY = frozenset({Op.NEG, Op.EXP, Op.LOG, Op.TANH, Op.SIGMOID, Op.RELU, Op.STEP})
ELEMENTWISE_BINARY = frozenset({Op.ADD, Op.SUB, Op.MUL, Op.DIV})
LEAVES = frozenset({Op.INPUT, Op.PARAM, Op.CONST})
