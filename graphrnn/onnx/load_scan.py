"""Import rules for ONNX's control flow: Scan and Loop."""
from __future__ import annotations

from typing import Any

from .importer import Importer, rule


@rule("Loop")
def _loop(imp: Importer, n: Any) -> list:
    raise imp.error("Loop is not supported yet: its trip count and condition make a while-loop, "
                    "which graphrnn's scan cannot express")


__all__: list[str] = []
