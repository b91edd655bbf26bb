"""ONNX's own backend node tests, run through graphrnn's ONNX import, interpreted and compiled.

Every operator graphrnn claims (docs/onnx.md) has all of its node test cases run here; the
cases left out are listed in EXCLUDED with the reason, and docs/onnx.md repeats the list.
"""
from __future__ import annotations

import re
import unittest
import warnings

import pytest

pytest.importorskip("onnx")

from onnx.backend.test import BackendTest  # noqa: E402

from graphrnn.onnx.backend import CompiledBackend, InterpretedBackend  # noqa: E402

CLAIMED = ("rnn", "simple_rnn", "lstm", "gru", "scan", "scan9", "gemm", "matmul", "add", "sub",
           "mul", "div", "sigmoid", "tanh", "relu", "softmax", "logsoftmax", "concat", "split",
           "slice", "squeeze", "unsqueeze", "transpose", "reshape", "gather", "identity",
           "constant", "constantofshape", "cast", "shape", "dropout", "loop11", "loop13",
           "loop16", "abs", "sign", "sqrt", "erf", "softplus", "pow", "max", "min",
           "reduce_max", "reduce_min", "reduce_log_sum_exp", "layer_normalization", "isnan",
           "greater", "less", "equal", "not", "and", "or", "where")

# pattern -> why the case is left out
EXCLUDED = {
    r"_(u?int(8|16|32)|uint64)_cpu$": "integer element types other than int64 "
                                   "(graphrnn computes in float32 and int64)",
    r"^test_div_int32_trunc_cpu$": "integer division (graphrnn's arithmetic is float32)",
    r"_expanded(_ver18)?_cpu$": "function-expanded variants use ReduceMax/ReduceSum/CastLike, "
                            "which are not claimed",
    r"^test_cast_|^test_castlike_": "casts between float16/bfloat16/float8/int4/double "
                                    "types: graphrnn has float32 and int64 only",
    r"^test_(gather_elements|gathernd|matmulinteger|constant_pad|split_to_sequence)":
        "other operators (GatherElements, GatherND, MatMulInteger, Pad, SplitToSequence)",
    r"^test_gather_(1|2d_indices)_cpu$": "Gather of computed indices along an axis other than 0",
    r"^test_gather_negative_indices_cpu$": "negative computed indices (graphrnn refuses "
                                       "out-of-range ids at run time)",
    r"^test_matmul_(1d_3d|3d|4d|bcast)_cpu$": "batched MatMul (a right operand of rank > 2)",
    r"^test_identity_(opt|sequence)_cpu$": "optional and sequence types",
    r"^test_slice_neg_steps_cpu$": "Slice with steps other than 1",
    r"^test_(slice_start_out_of_bounds|split_zero_size_splits_opset1[38])_cpu$":
        "empty tensors (graphrnn has no zero-size dims in a graph)",
    r"^test_loop11_cpu$": "int64 arithmetic on the iteration number and a data-dependent Slice",
    r"^test_loop1[36]_seq": "sequence and optional types",
    r"^test_equal_": "Equal of two computed tensors or strings (an equality with a finite "
                     "float constant is imported)",
    r"^test_(greater|less)_equal_": "GreaterOrEqual and LessOrEqual (not claimed)",
    r"^test_layer_normalization_": "the cases ask for the Mean and InvStdDev outputs "
                                   "(training only)",
    r"^test_(max|min)_int64_cpu$": "integer Max/Min (graphrnn's maximum is float32)",
    r"^test_pow_(cpu|example_cpu|bcast_array_cpu|types_)": "an exponent that is a tensor "
                                                          "(graphrnn's pow has a constant one)",
    r"^test_reduce_max_empty_set_bool_cpu$": "bool tensors",
    r"^test_where_(long_)?example_cpu$": "a bool graph input (graphrnn has no bool dtype)",
}
# left out for the compiled backend only, which refuses inputs other than float32/int64 (the
# interpreted one computes in their dtype)
COMPILED_EXCLUDED = {
    r"_float(16|64)_cpu$|^test_reduce_log_sum_exp_.*_(example|random)_cpu$":
        "float16/float64 data",
}


def _cases(backend: type, suffix: str) -> dict[str, type]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        runner = BackendTest(backend, __name__)
    runner.include(r"^test_(" + "|".join(CLAIMED) + r")(_|$)")
    for pattern in {**EXCLUDED, **(COMPILED_EXCLUDED if backend is CompiledBackend else {})}:
        runner.exclude(pattern)
    out = {}
    for name, cls in runner.test_cases.items():
        if "Node" not in name:
            continue
        for attr in list(vars(cls)):
            fn = getattr(cls, attr)
            if attr.startswith("test_") and (getattr(fn, "__unittest_skip__", False)
                                            or attr.endswith("_cuda")):
                delattr(cls, attr)
        cls.__name__ = cls.__qualname__ = f"OnnxNode{suffix}"
        out[cls.__name__] = cls
    return out


globals().update(_cases(InterpretedBackend, "Interpreted"))
globals().update(_cases(CompiledBackend, "Compiled"))


def test_every_recurrent_case_runs() -> None:
    """The recurrent operators' node cases are all claimed and none is excluded."""
    names = [n for n in dir(globals()["OnnxNodeCompiled"]) if n.startswith("test_")]
    rec = [n for n in names if re.match(r"test_(rnn|simple_rnn|lstm|gru|scan)", n)]
    assert len(rec) >= 22, rec
    assert not any(re.search(p, n) for p in EXCLUDED for n in rec)
    assert isinstance(globals()["OnnxNodeInterpreted"], type) and issubclass(
        globals()["OnnxNodeInterpreted"], unittest.TestCase)
