"""graphrnn.compiler: the passes from a user's graph to native code, driven by `compile_graph`.

The folders are the pipeline: `passes/` (graph -> graph: shapes -> unroll -> tie -> flatten
-> fold / cse / dce and the loop optimisations; rewrite.py is their traversal toolkit), then
`codegen/` (schedule -> kernels -> LLVM IR). `pipeline.py` runs them in that order: `prepare` /
`compile_graph` for a forward program, `prepare_training` / `compile_training` for a training
step; what both stages consult (per_step.py) sits here.
"""
from __future__ import annotations

from .passes.cse import eliminate_common_subexpressions
from .passes.dce import eliminate_dead_code
from .passes.flatten import flatten_params
from .passes.fold import fold_constants
from .pipeline import (OPTIMISATIONS, PassRecord, Trace, compile_graph, compile_training, expose,
                       prepare, prepare_training)
from .passes.shapes import infer_shapes
from .passes.tie import tie_params
from .passes.unroll import unroll_loops
from .passes.validate import verify

__all__ = ["compile_graph", "compile_training", "expose", "prepare", "prepare_training",
           "OPTIMISATIONS", "Trace",
           "PassRecord", "infer_shapes", "verify", "unroll_loops", "tie_params",
           "flatten_params", "fold_constants", "eliminate_common_subexpressions",
           "eliminate_dead_code"]
