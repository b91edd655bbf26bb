"""ONNX interop: `export(model, path)` writes a graphrnn model as an ONNX file (export.py);
`load(path)` imports an ONNX model as a gModule (reader.py).

Both need the `onnx` package (`pip install 'graphrnn[onnx]'`), imported only when they run:
`import graphrnn` and `gr.onnx` work without it.
"""
from __future__ import annotations

import importlib
from typing import Any

from .errors import OnnxImportError
from .export import export, to_onnx


def load(source: Any, **options: Any) -> Any:
    """An ONNX model (a path, the file's bytes or a `ModelProto`) as a gModule; options and
    errors as in `graphrnn.onnx.reader.load`."""
    try:
        reader = importlib.import_module("graphrnn.onnx.reader")
    except ModuleNotFoundError as e:
        if e.name != "onnx":
            raise
        raise ImportError("reading ONNX files needs the onnx package: "
                          "pip install 'graphrnn[onnx]'") from None
    return reader.load(source, **options)


__all__ = ["export", "to_onnx", "load", "OnnxImportError"]
