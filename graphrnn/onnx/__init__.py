"""ONNX interop: `export(model, path)` writes a graphrnn model as an ONNX file (export.py);
`load(path)` imports an ONNX model as a gModule (load.py).

Needs the `onnx` package (`pip install graphrnn[onnx]`); the core never imports it.
"""
from __future__ import annotations

from .errors import OnnxImportError
from .export import export, to_onnx
from .load import load

__all__ = ["export", "to_onnx", "load", "OnnxImportError"]
