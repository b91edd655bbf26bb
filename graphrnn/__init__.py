"""graphrnn: declare recurrent nets as nngraph-style graphs, compile them to native code."""
from __future__ import annotations


from .version import __version__

from . import nn, ops
from . import cells
from .gmodule import gModule
from .init import manual_seed
from .interpret import interpret
from .flat import ParamTable
from .ir import (Graph, GraphError, InputError, LoweringError, Node, Op, Param, ShapeError,
                 TensorType)
from .loop import Loop
from .while_loop import is_token
from .losses import ClassNLLCriterion, CrossEntropyCriterion, MSECriterion
from .nn import Input
from .serialize import ModelFileError, load, save
from .store import value
from .gradients import compile, compile_vjp
from . import optim, train
from .gradcheck import gradcheck
from .profile import profile
from . import viz, zoo
from .runtime.lru import cache_limits, set_cache_limits
from .export import export_library, load_library
from .torch_import import from_torch, load_torch_state
from .torch_export import to_torch
from . import onnx


__all__ = ["__version__", "nn", "cells", "ops", "gModule", "Loop", "is_token", "Input",
           "interpret",
           "manual_seed", "MSECriterion", "ClassNLLCriterion", "CrossEntropyCriterion",
           "Graph", "Node", "Op", "Param", "ParamTable", "TensorType",
           "GraphError", "ShapeError", "InputError", "LoweringError", "compile", "compile_vjp",
           "save", "load",
           "viz", "zoo", "optim", "train", "gradcheck", "ModelFileError", "profile", "value",
           "cache_limits", "set_cache_limits", "export_library", "load_library",
           "from_torch", "to_torch", "load_torch_state", "onnx"]
