"""The one error an ONNX import raises: what was wrong, and which node or tensor said so."""
from __future__ import annotations

from ..ir import GraphError


class OnnxImportError(GraphError):
    """An ONNX file that graphrnn cannot (or will not) import: unreadable, hostile, or using an
    operator or attribute the language does not have.

    `needs_constant` names a graph input whose value the import needs (a shape, axes), so
    that a caller holding the value can bind it with `load(..., constants=...)`;
    `needs_layout` (input name, axis order) a graph input that must be declared transposed.
    """
    needs_constant: str | None = None
    needs_layout: tuple[str, tuple[int, ...]] | None = None


def node_label(node: object) -> str:
    """`Op 'name'` for an onnx NodeProto, the way errors name it."""
    name = getattr(node, "name", "") or (list(getattr(node, "output", [])) or ["?"])[0]
    return f"{getattr(node, 'op_type', '?')} node {name!r}"


__all__ = ["OnnxImportError", "node_label"]
