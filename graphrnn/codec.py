"""graph.json's `graph` field: a Graph as plain JSON values, and back, trusting nothing.

    {"inputs": [0, 1], "outputs": [7], "nodes": [
        {"op": "matmul", "inputs": [2, 3], "name": "matmul_0", "type": {"shape": ["B", 16],
         "dtype": "float32"}, "scope": "lstm", "where": "model.py:12", "doc": "",
         "attrs": {"transpose_b": true}, "param": null}, ...]}

- Node `inputs`, graph `inputs`/`outputs` are indices into that graph's `nodes`. A PARAM node's
  `param` indexes the top-level `params` list, from loop bodies too (parameters are global).
- Types: null, {"shape", "dtype"}, or a list of types (a loop's tuple value).
- Attribute values are JSON scalars and lists, or an object with exactly one tag: {"tuple": [..]},
  {"dict": {..}}, {"float": "nan" | "inf" | "-inf"}, {"array": {"dtype", "shape", "data"}} and
  {"scalar": {"dtype", "data"}} (data: base64 of the little-endian bytes), {"type": ..},
  {"op": "add"} and {"graph": {..}} (a LOOP or FUSED body, recursively).

Decoding checks every field, accepts only known op names and tags (anything else, such as
"py/object", is refused as data), re-derives each node's type with its SHAPE_RULE and reports a
cycle by node names. Damage raises `ModelFileError`; a well-formed but invalid graph `GraphError`.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Callable

import numpy as np

from .ir import Graph, GraphError, Node, NodeType, Op, Param, TensorType, toposort, type_str
from .ops import SHAPE_RULES, apply_rule
from .shape_rules import ARITY

MAX_DEPTH = 64                     # loop bodies nested deeper than this are refused

_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                     "uint64", "float16", "float32", "float64"})
_NODE_FIELDS = {"op", "inputs", "name", "type", "scope", "where", "doc", "attrs", "param"}


class ModelFileError(ValueError):
    """A file is not a graphrnn model file, or is damaged, or needs a newer graphrnn."""


# ----------------------------------------------------------------------------- encode

def encode_graph(g: Graph, params: dict[int, int]) -> dict:
    listed = {id(n) for n in g.nodes}
    nodes = [x for x in g.inputs if id(x) not in listed] + list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}

    def ref(n: Node, user: Node) -> int:
        if id(n) not in index:
            raise GraphError(f"cannot save: {user.name} uses {n.name or n.op.value}, which is "
                             "not in its graph")
        return index[id(n)]

    records = []
    for n in nodes:
        records.append({
            "op": n.op.value, "inputs": [ref(x, n) for x in n.inputs], "name": n.name,
            "type": _encode_type(n.type), "scope": n.scope, "where": n.where, "doc": n.doc,
            "attrs": {k: _encode_value(v, n, k, params) for k, v in n.attrs.items()},
            "param": params[id(n.param.root())] if n.op == Op.PARAM else None})
    return {"inputs": [ref(x, x) for x in g.inputs], "outputs": [ref(y, y) for y in g.outputs],
            "nodes": records}


def _encode_type(t: NodeType) -> Any:
    if t is None:
        return None
    if isinstance(t, tuple):
        return [_encode_type(x) for x in t]
    return {"shape": list(t.shape), "dtype": t.dtype}


def _encode_value(v: Any, node: Node, key: str, params: dict[int, int]) -> Any:
    if isinstance(v, Op):
        return {"op": v.value}
    if v is None or isinstance(v, (bool, str)):
        return v
    if isinstance(v, int):
        return v
    if isinstance(v, float):
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(v, (tuple, list)):
        items = [_encode_value(x, node, key, params) for x in v]
        return {"tuple": items} if isinstance(v, tuple) else items
    if isinstance(v, dict) and all(isinstance(k, str) for k in v):
        return {"dict": {k: _encode_value(x, node, key, params) for k, x in v.items()}}
    if isinstance(v, (np.ndarray, np.generic)) and v.dtype.name in _DTYPES:
        data = base64.b64encode(np.ascontiguousarray(v, v.dtype.newbyteorder("<")).tobytes())
        if isinstance(v, np.generic):
            return {"scalar": {"dtype": v.dtype.name, "data": data.decode()}}
        return {"array": {"dtype": v.dtype.name, "shape": list(v.shape), "data": data.decode()}}
    if isinstance(v, TensorType):
        return {"type": _encode_type(v)}
    if isinstance(v, Graph):
        return {"graph": encode_graph(v, params)}
    raise TypeError(f"cannot save attribute {key!r} of node {node.name}: a "
                    f"{type(v).__name__} is not one of the value kinds a model file holds")


# ----------------------------------------------------------------------------- decode

def decode_graph(obj: Any, params: list[Param], uses: list[int], where: str,
                  depth: int) -> tuple[list[Node], list[Node]]:
    """Fresh nodes for one graph of the file: its (inputs, outputs)."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where}: graphs nested deeper than {MAX_DEPTH}")
    check_fields(expect(obj, dict, where), {"inputs", "outputs", "nodes"}, where)
    records = expect(obj["nodes"], list, f"{where}.nodes")
    n = len(records)
    parsed = [_decode_node(r, n, params, uses, f"{where}.nodes[{i}]", depth)
              for i, r in enumerate(records)]
    ins = [_index(i, n, f"{where}.inputs") for i in expect(obj["inputs"], list, where)]
    outs = [_index(i, n, f"{where}.outputs") for i in expect(obj["outputs"], list, where)]
    names = [p["name"] for p in parsed]
    if len(set(names)) != len(names) or len(set(ins)) != len(ins):
        raise ModelFileError(f"{where}: node names or graph inputs are not unique")
    order = _topological(parsed, names, where)
    new: dict[int, Node] = {}
    for i in order:
        p = parsed[i]
        node = Node(p["op"], tuple(new[j] for j in p["inputs"]), p["attrs"], p["type"],
                    p["param"], p["name"], p["scope"], p["where"], p["doc"])
        _check_node(node, f"{where}.nodes[{i}] ({node.name})")
        new[i] = node
    inputs, outputs = [new[i] for i in ins], [new[i] for i in outs]
    for x in inputs:
        if x.op != Op.INPUT:
            raise ModelFileError(f"{where}: graph input {x.name} is a {x.op.value} node")
    return inputs, outputs


def _decode_node(r: Any, n: int, params: list[Param], uses: list[int], where: str,
                 depth: int) -> dict:
    check_fields(expect(r, dict, where), _NODE_FIELDS, where)
    op_name = expect(r["op"], str, f"{where}.op")
    try:
        op = Op(op_name)
    except ValueError:
        raise ModelFileError(f"{where}: unknown op {op_name!r} (a damaged file, or one written "
                             "by a newer graphrnn)") from None
    out = {"op": op, "inputs": [_index(i, n, f"{where}.inputs")
                                for i in expect(r["inputs"], list, f"{where}.inputs")]}
    for k in ("name", "scope", "where", "doc"):
        out[k] = expect(r[k], str, f"{where}.{k}")
    out["type"] = _decode_type(r["type"], f"{where}.type")
    attrs = expect(r["attrs"], dict, f"{where}.attrs")
    out["attrs"] = {k: _decode_value(v, params, uses, f"{where}.attrs.{k}", depth)
                    for k, v in attrs.items()}
    out["param"] = None
    if op == Op.PARAM:
        i = _index(r["param"], len(params), f"{where}.param")
        out["param"] = params[i]
        uses[i] += 1
    elif r["param"] is not None:
        raise ModelFileError(f"{where}: a {op.value} node holds no parameter")
    return out


def _decode_type(v: Any, where: str) -> NodeType:
    if v is None:
        return None
    if isinstance(v, list):
        return tuple(_decode_type(x, where) for x in v)
    check_fields(expect(v, dict, where), {"shape", "dtype"}, where)
    if v["dtype"] not in ("float32", "int64"):
        raise ModelFileError(f"{where}: unknown dtype {v['dtype']!r}")
    return TensorType(parse_shape(v["shape"], where, symbols=True), v["dtype"])


_TAGS = ("tuple", "dict", "float", "array", "scalar", "type", "op", "graph")


def _decode_value(v: Any, params: list[Param], uses: list[int], where: str, depth: int) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if isinstance(v, list):
        return [_decode_value(x, params, uses, where, depth) for x in v]
    tag = next(iter(v)) if isinstance(v, dict) and len(v) == 1 else None
    if tag not in _TAGS:
        raise ModelFileError(f"{where}: unknown value encoding {sorted(v)[:4]} (expected one "
                             f"of the tags {', '.join(_TAGS)})")
    body = v[tag]
    if tag == "tuple":
        return tuple(_decode_value(x, params, uses, where, depth)
                     for x in expect(body, list, where))
    if tag == "dict":
        return {k: _decode_value(x, params, uses, where, depth)
                for k, x in expect(body, dict, where).items()}
    if tag == "float":
        if body not in ("nan", "inf", "-inf"):
            raise ModelFileError(f"{where}: bad float {body!r}")
        return float(body)
    if tag in ("array", "scalar"):
        return _decode_array(body, tag, where)
    if tag == "type":
        return _decode_type(body, where)
    if tag == "op":
        try:
            return Op(expect(body, str, where))
        except ValueError:
            raise ModelFileError(f"{where}: unknown op {body!r}") from None
    inputs, outputs = decode_graph(body, params, uses, where, depth + 1)
    graph = Graph(tuple(inputs), tuple(outputs), tuple(toposort(outputs)))
    declared = {id(x) for x in graph.inputs}
    for n in graph.nodes:
        if n.op == Op.INPUT and id(n) not in declared:
            raise ModelFileError(f"{where}: the body uses {n.name}, which is not among its "
                                 "inputs")
    return graph


def _decode_array(body: Any, tag: str, where: str) -> Any:
    keys = {"dtype", "shape", "data"} if tag == "array" else {"dtype", "data"}
    check_fields(expect(body, dict, where), keys, where)
    if body["dtype"] not in _DTYPES:
        raise ModelFileError(f"{where}: dtype {body['dtype']!r} is not allowed")
    dtype = np.dtype(body["dtype"])
    shape = parse_shape(body["shape"], where, symbols=False) if tag == "array" else ()
    try:
        data = base64.b64decode(expect(body["data"], str, where), validate=True)
    except binascii.Error as e:
        raise ModelFileError(f"{where}: bad base64 data ({e})") from None
    if len(data) != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
        raise ModelFileError(f"{where}: {len(data)} bytes do not make a {dtype}{list(shape)}")
    value = np.frombuffer(data, dtype.newbyteorder("<")).astype(dtype).reshape(shape)
    return value[()] if tag == "scalar" else value


def _topological(parsed: list[dict], names: list[str], where: str) -> list[int]:
    """Node indices, inputs first, ties broken by file order; a cycle is a GraphError."""
    import networkx as nx
    g = nx.DiGraph()
    g.add_nodes_from(range(len(parsed)))
    g.add_edges_from((j, i) for i, p in enumerate(parsed) for j in p["inputs"])
    try:
        cycle = nx.find_cycle(g)
    except nx.NetworkXNoCycle:
        return list(nx.lexicographical_topological_sort(g))
    path = " -> ".join([names[a] for a, _ in cycle] + [names[cycle[0][0]]])
    raise GraphError(f"{where} has a cycle: {path}")


# ----------------------------------------------------------------------------- field checks

def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def expect(v: Any, kind: type, where: str) -> Any:
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ModelFileError(f"{where}: expected {kind.__name__}, got {type(v).__name__}")
    return v


def check_fields(obj: dict, allowed: set[str], where: str) -> None:
    missing, extra = allowed - obj.keys(), obj.keys() - allowed
    if missing or extra:
        raise ModelFileError(f"{where}: " + "; ".join(
            m for m in (f"missing fields {sorted(missing)}" if missing else "",
                        f"unexpected fields {sorted(extra)[:4]}" if extra else "") if m))


def _index(i: Any, n: int, where: str) -> int:
    if not is_int(i) or not 0 <= i < n:
        raise ModelFileError(f"{where}: {i!r} is not a node index below {n}")
    return i


def parse_shape(v: Any, where: str, *, symbols: bool) -> tuple:
    dims = expect(v, list, where)
    for d in dims:
        if not ((is_int(d) and d >= 0) or (symbols and isinstance(d, str))):
            raise ModelFileError(f"{where}: bad dimension {d!r}")
    return tuple(dims)


# ----------------------------------------------------------------------------- node checks

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_shape(v: Any) -> bool:
    return isinstance(v, tuple) and all(is_int(d) or isinstance(d, str) for d in v)


# attributes a node must have, and their kind, before any rule or the interpreter reads them
_REQUIRED: dict[Op, dict[str, Callable[[Any], bool]]] = {
    Op.CONST: {"value": lambda v: isinstance(v, np.ndarray)},
    Op.FILL: {"shape": _is_shape, "value": _is_number},
    Op.CONCAT: {"axis": is_int}, Op.SLICE: {"axis": is_int, "start": is_int, "length": is_int},
    Op.INDEX: {"axis": is_int, "index": is_int}, Op.RESHAPE: {"shape": _is_shape},
    Op.BMM: {"transpose_a": lambda v: isinstance(v, bool),
             "transpose_b": lambda v: isinstance(v, bool)},
    Op.TRANSPOSE: {"dim0": is_int, "dim1": is_int}, Op.SHIFT: {"axis": is_int, "by": is_int},
    Op.DROPOUT: {"p": _is_number, "seed": is_int}, Op.GET: {"index": is_int},
    Op.POW: {"p": lambda v: _is_number(v) and math.isfinite(v)},
    Op.VIEW: {"offset": is_int, "shape": _is_shape},
    Op.FUSED: {"body": lambda v: isinstance(v, Graph)},
    Op.LOOP: {"body": lambda v: isinstance(v, Graph), "n_consts": is_int, "n_carry": is_int},
}


def _check_node(node: Node, where: str) -> None:
    """Arity and required attributes, then the node's type re-derived by its SHAPE_RULE."""
    lo, hi = ARITY.get(node.op, (0, None))
    if not lo <= len(node.inputs) <= (len(node.inputs) if hi is None else hi):
        raise ModelFileError(f"{where}: a {node.op.value} node cannot take "
                             f"{len(node.inputs)} inputs")
    for k, valid in _REQUIRED.get(node.op, {}).items():
        if not valid(node.attrs.get(k)):
            raise ModelFileError(f"{where}: attribute {k!r} is missing or malformed")
    a = node.attrs
    n_in = len(node.inputs) - (1 if a.get("has_lengths") else 0)
    if node.op == Op.LOOP and (a["n_consts"] < 0 or a["n_carry"] < 0
                               or a["n_consts"] + a["n_carry"] > n_in
                               or len(a["body"].inputs) != n_in
                               or len(a["body"].outputs) < a["n_carry"]):
        raise ModelFileError(f"{where}: {len(node.inputs)} operands and a body of "
                             f"{len(a['body'].inputs)} inputs / {len(a['body'].outputs)} "
                             f"outputs do not fit n_consts={a['n_consts']}, "
                             f"n_carry={a['n_carry']}")
    if node.op == Op.FUSED and len(node.attrs["body"].inputs) != len(node.inputs):
        raise ModelFileError(f"{where}: the fused body takes {len(node.attrs['body'].inputs)} "
                             f"inputs, the node has {len(node.inputs)}")
    in_types = [x.type for x in node.inputs]
    if node.op == Op.INPUT or node.type is None or node.op not in SHAPE_RULES \
            or any(t is None for t in in_types):
        return
    probe = Node(node.op, (), node.attrs, None, node.param, node.name, node.scope, node.where)
    derived = apply_rule(probe, in_types).type
    if derived != node.type:
        raise ModelFileError(f"{where}: the file says its type is {type_str(node.type)}, "
                             f"its inputs give {type_str(derived)}")


__all__ = ["ModelFileError", "encode_graph", "decode_graph", "expect", "check_fields",
           "is_int", "parse_shape"]
