"""ONNX interop: `export(model, path)` writes a graphrnn model as an ONNX file (export.py).

onnx is imported only when a function here runs (`pip install -e '.[onnx]'`).
"""
from __future__ import annotations

from .export import export, to_onnx

__all__ = ["export", "to_onnx"]
