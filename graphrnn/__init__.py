"""graphrnn: declare recurrent nets as nngraph-style graphs, compile them to native code."""
from __future__ import annotations

__version__ = "0.1.0"

from . import nn, ops  # noqa: I001  (nn first: it pulls in gmodule)
from . import cells
from .gmodule import gModule
from .init import manual_seed
from .interpret import interpret
from .ir import (Graph, GraphError, InputError, LoweringError, Node, Op, Param, ParamTable,
                 ShapeError, TensorType)
from .loop import Loop
from .losses import ClassNLLCriterion, CrossEntropyCriterion, MSECriterion
from .nn import Input
from .serialize import ModelFileError, load, save
from .render import render_error
from .compile import compile  # noqa: E402  (after the API it compiles)
from . import optim, train  # noqa: E402
from .gradcheck import gradcheck  # noqa: E402
from .profile import profile  # noqa: E402
from .runtime.lru import cache_limits, set_cache_limits  # noqa: E402

__all__ = ["__version__", "nn", "cells", "ops", "gModule", "Loop", "Input", "interpret",
           "manual_seed", "MSECriterion", "ClassNLLCriterion", "CrossEntropyCriterion",
           "Graph", "Node", "Op", "Param", "ParamTable", "TensorType",
           "GraphError", "ShapeError", "InputError", "LoweringError", "compile", "save", "load",
           "render_error", "optim", "train", "gradcheck", "ModelFileError", "profile",
           "cache_limits", "set_cache_limits"]
