"""The structural key of a compilation: what the program depends on, without running a pass.

The kernel cache keys object code on its LLVM IR, which costs the whole pipeline to produce.
A second level keys the finished program on what went *into* the pipeline, so a hit in a
fresh process skips the passes and the lowering entirely:

    structure_text(graph, types, options) = canonical JSON of
        the graph: ops, attrs, types, names, scopes and edges (codec.encode_graph), loop
                   bodies included; not parameter values, not `where`/`doc` (where a node was
                   written does not change its code)
        the parameters: keys and shapes, in layout order (the ParamTable)
        the input signature, the compile options (passes, unrolling, training, profiling)
        graphrnn's version, the lowering's version, and the source digest

The cache adds the host signature (CPU, features, LLVM) when it hashes this text. The source
digest (graphrnn/version.py) makes an edited pass a different key, so a stale program is never
loaded during development.
"""
from __future__ import annotations

import json
from typing import Any, Sequence

from .codec import encode_graph
from .flat import layout_params
from .ir import Graph, GraphError, TensorType
from .version import __version__, source_digest


def structure_text(graph: Graph, types: Sequence[TensorType], options: dict[str, Any],
                   lowering_version: str) -> str | None:
    """Canonical text of a compilation's inputs; None when the graph cannot be encoded."""
    params = graph.params()
    table, keys = layout_params(params)
    try:
        encoded = encode_graph(graph, {id(p): i for i, p in enumerate(params)})
    except (TypeError, ValueError, KeyError, GraphError):
        return None
    doc = {
        "graph": _strip(encoded),
        "params": [[keys[p], table.slots[keys[p]].offset, list(p.shape)] for p in params],
        "flat": table.size,
        "types": [[list(t.shape), t.dtype] for t in types],
        "options": {k: _plain(v) for k, v in sorted(options.items())},
        "versions": [__version__, lowering_version, source_digest()],
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _strip(encoded: dict) -> dict:
    """An encoded graph without where/doc, in its nodes and in every nested body."""
    nodes = []
    for record in encoded["nodes"]:
        record = {k: v for k, v in record.items() if k not in ("where", "doc")}
        record["attrs"] = {k: _strip_value(v) for k, v in record["attrs"].items()}
        nodes.append(record)
    return {**encoded, "nodes": nodes}


def _strip_value(v: Any) -> Any:
    if isinstance(v, dict) and set(v) == {"graph"}:
        return {"graph": _strip(v["graph"])}
    if isinstance(v, dict):
        return {k: _strip_value(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_strip_value(x) for x in v]
    return v


def _plain(v: Any) -> Any:
    if isinstance(v, (tuple, list, set, frozenset)):
        items = [_plain(x) for x in v]
        return sorted(items, key=repr) if isinstance(v, (set, frozenset)) else items
    return v if v is None or isinstance(v, (bool, int, float, str)) else repr(v)


__all__ = ["structure_text"]
