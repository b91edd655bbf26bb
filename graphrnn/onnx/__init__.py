"""ONNX interop: `graphrnn.onnx.load(path)` imports an ONNX model as a gModule.

Needs the `onnx` package (`pip install graphrnn[onnx]`); the core never imports it.
"""
from __future__ import annotations

from .errors import OnnxImportError
from .load import load

__all__ = ["load", "OnnxImportError"]
