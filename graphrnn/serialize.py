"""save / load: a model as one file holding its graph as JSON and its parameters as .npy arrays.

The file (any name; `model.grnn` by convention) is the zip archive that `np.savez` writes:

    graph.json              UTF-8 JSON: the graph, the parameter table, the model's class/name
    params/<key>.npy        one float32 array per parameter storage (tied parameters once)

so `np.load(path)` opens it and `unzip -p model.grnn graph.json` shows the graph. Graph and
parameters live in one file replaced by one `os.replace`, so a save is atomic as a whole and a
graph can never be paired with another model's parameters; the zip CRCs catch damaged bytes.

graph.json (version 1):

    {"format": "graphrnn-model", "version": 1, "graphrnn": "0.1.0",
     "model": {"class": "LSTM", "name": "lstm"},
     "params": [{"key": "lstm.weight_ih", "owner": "lstm", "name": "weight_ih", "group": 0,
                 "shape": [16, 3], "init": "uniform(-0.5,0.5)", "offset": 0}, ...],
     "flat_size": 736,
     "graph": {"inputs": [0, 1], "outputs": [7], "nodes": [
         {"op": "matmul", "inputs": [2, 3], "name": "matmul_0", "type": {"shape": ["B", 16],
          "dtype": "float32"}, "scope": "lstm", "where": "model.py:12", "doc": "",
          "attrs": {"transpose_b": true}, "param": null}, ...]}}

- Node `inputs`, graph `inputs`/`outputs` are indices into that graph's `nodes`. A PARAM node's
  `param` indexes the top-level `params` list, from loop bodies too (parameters are global).
- `group` numbers the module that owns a parameter, so keys (`linear_1.weight`) come back equal.
- Types: null, {"shape", "dtype"}, or a list of types (a loop's tuple value).
- Attribute values are JSON scalars and lists, or an object with exactly one tag: {"tuple": [..]},
  {"dict": {..}}, {"float": "nan" | "inf" | "-inf"}, {"array": {"dtype", "shape", "data"}} and
  {"scalar": {"dtype", "data"}} (data: base64 of the little-endian bytes), {"type": ..},
  {"op": "add"} and {"graph": {..}} (a LOOP or FUSED body, recursively).

Loading reads with `allow_pickle=False` and trusts nothing: every field is checked, only known op
names and tags are accepted (anything else, such as "py/object", is refused as data), types are
re-derived with SHAPE_RULES, and a cycle is reported by node names. Any damage raises
`ModelFileError` (a ValueError); a graph that is well formed but invalid raises `GraphError`.
"""
from __future__ import annotations

import base64
import binascii
import contextlib
import io
import json
import math
import os
import struct
import tempfile
import zipfile
import zlib
from typing import Any, BinaryIO, Callable

import numpy as np

from . import __version__
from .ir import (Graph, GraphError, Node, NodeType, Op, Param, TensorType, layout_params,
                 toposort, type_str)

FORMAT = "graphrnn-model"
VERSION = 1
GRAPH_MEMBER = "graph.json"
MAX_GRAPH_BYTES = 1 << 30          # refuse a graph.json member claiming more than 1 GiB
MAX_DEPTH = 64                     # loop bodies nested deeper than this are refused

_DTYPES = frozenset({"bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32",
                     "uint64", "float16", "float32", "float64"})
_TOP_FIELDS = {"format", "version", "graphrnn", "model", "params", "flat_size", "graph"}
_NODE_FIELDS = {"op", "inputs", "name", "type", "scope", "where", "doc", "attrs", "param"}
_PARAM_FIELDS = {"key", "owner", "name", "group", "shape", "init", "offset"}
# what the archive layer can throw on damaged bytes (zip, npy header, inflate, UTF-8, JSON)
_READ_ERRORS = (OSError, ValueError, EOFError, LookupError, TypeError, ArithmeticError,
                RuntimeError, MemoryError, struct.error, zipfile.BadZipFile, zlib.error)


class ModelFileError(ValueError):
    """A file is not a graphrnn model file, or is damaged, or needs a newer graphrnn."""


# ----------------------------------------------------------------------------- save

def save(model: Any, path: str | os.PathLike) -> None:
    """Write `model` (a gModule) to `path` atomically: the old file stays intact on failure."""
    graph = getattr(model, "graph", None)
    if not isinstance(graph, Graph):
        raise TypeError(f"save() needs a gModule (a model with a graph), got "
                        f"{type(model).__name__}")
    params = graph.params()
    table, keys = layout_params(params)
    index = {id(p): i for i, p in enumerate(params)}
    groups: dict[int, int] = {}
    records = []
    for p in params:
        records.append({"key": keys[p], "owner": p.owner, "name": p.name,
                        "group": groups.setdefault(id(p.token), len(groups)),
                        "shape": list(p.shape), "init": p.init,
                        "offset": table.slots[keys[p]].offset})
    doc = {"format": FORMAT, "version": VERSION, "graphrnn": __version__,
           "model": {"class": type(model).__name__, "name": getattr(model, "name", None)},
           "params": records, "flat_size": table.size, "graph": _encode_graph(graph, index)}
    members = [(GRAPH_MEMBER, json.dumps(doc, separators=(",", ":"), allow_nan=False).encode())]
    for p in params:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(p.data, "<f4"), allow_pickle=False)
        members.append((f"params/{keys[p]}.npy", buf.getvalue()))
    _write_atomic(os.fspath(path), members)


def _encode_graph(g: Graph, params: dict[int, int]) -> dict:
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
        return {"graph": _encode_graph(v, params)}
    raise TypeError(f"cannot save attribute {key!r} of node {node.name}: a "
                    f"{type(v).__name__} is not one of the value kinds a model file holds")


def _write_atomic(path: str, members: list[tuple[str, bytes]]) -> None:
    """Write a temporary file next to `path`, fsync it, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                               dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            with zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as z:
                for name, data in members:
                    # a fixed timestamp: the same model always gives the same bytes
                    z.writestr(zipfile.ZipInfo(name, (1980, 1, 1, 0, 0, 0)), data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):      # make the rename itself durable (POSIX)
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)


def _new_file_mode(path: str) -> int:
    """The mode of the file being replaced, or what a plain `open(path, "w")` would give."""
    with contextlib.suppress(OSError):
        return os.stat(path).st_mode & 0o777
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


# ----------------------------------------------------------------------------- load

def load(source: str | os.PathLike | BinaryIO) -> Any:
    """Read a model written by `save` from a path (or a seekable binary file object): a gModule
    whose results are bit-identical to the saved one's.

    Raises FileNotFoundError for a missing file, ModelFileError for a file that is not a model
    or is damaged, GraphError for a graph that is invalid (a cycle, a bad arity or type).
    """
    if hasattr(source, "read"):
        return _load(source, str(getattr(source, "name", "<stream>")))
    with open(source, "rb") as f:
        return _load(f, os.fspath(source))


def _load(f: BinaryIO, path: str) -> Any:
    from .gmodule import gModule
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    try:
        if head != b"PK\x03\x04":
            raise ModelFileError("not a graphrnn model file (not a zip/.npz archive)")
        try:
            with np.load(f, allow_pickle=False) as npz:
                doc = _read_document(npz)
                arrays = _read_params(npz, doc["params"])
        except ModelFileError:
            raise
        except _READ_ERRORS as e:
            raise ModelFileError(f"damaged model file ({type(e).__name__}: {e})") from None
        try:
            tokens: dict[int, object] = {}      # one owner token per module group
            params = [Param(r["name"], r["shape"], r["init"], owner=r["owner"], data=a,
                            token=tokens.setdefault(r["group"], object()))
                      for r, a in zip(doc["params"], arrays)]
            uses = [0] * len(params)
            inputs, outputs = _decode_graph(doc["graph"], params, uses, "graph", 0)
            unused = [doc["params"][i]["key"] for i, k in enumerate(uses) if k == 0]
            if unused:
                raise ModelFileError(f"parameters {unused} are stored but used by no node")
            model = gModule(inputs, outputs, name=doc["model"]["name"])
            _check_layout(model, params, doc)
        except (ModelFileError, GraphError):
            raise
        except (LookupError, TypeError, AttributeError, ArithmeticError, RecursionError,
                ValueError) as e:
            raise ModelFileError(f"damaged model file ({type(e).__name__}: {e})") from None
    except (ModelFileError, GraphError) as e:
        raise type(e)(f"{path}: {e}") from None
    return model


def _read_document(npz: Any) -> dict:
    if GRAPH_MEMBER not in npz.files:
        raise ModelFileError(f"not a graphrnn model file (no {GRAPH_MEMBER} in the archive)")
    if npz.zip.getinfo(GRAPH_MEMBER).file_size > MAX_GRAPH_BYTES:
        raise ModelFileError(f"{GRAPH_MEMBER} is larger than {MAX_GRAPH_BYTES} bytes")
    raw = npz[GRAPH_MEMBER]
    if not isinstance(raw, bytes):
        raise ModelFileError(f"not a graphrnn model file ({GRAPH_MEMBER} is not text)")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"not a graphrnn model file ({GRAPH_MEMBER} is not JSON: {e})") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError("not a graphrnn model file (no \"format\": \"graphrnn-model\")")
    version = doc.get("version")
    if not _is_int(version) or version < 1:
        raise ModelFileError(f"bad format version {version!r}")
    if version > VERSION:
        raise ModelFileError(f"the file has format version {version}, newer than this "
                             f"graphrnn ({__version__}) reads (up to {VERSION}): upgrade graphrnn")
    _fields(doc, _TOP_FIELDS, "the file")
    model = _expect(doc["model"], dict, "model")
    _fields(model, {"class", "name"}, "model")
    _expect(model["class"], str, "model.class")
    if model.get("name") is not None:
        _expect(model["name"], str, "model.name")
    _expect(doc["graphrnn"], str, "graphrnn")
    for i, r in enumerate(_expect(doc["params"], list, "params")):
        where = f"params[{i}]"
        _fields(_expect(r, dict, where), _PARAM_FIELDS, where)
        for k in ("key", "owner", "name", "init"):
            _expect(r[k], str, f"{where}.{k}")
        for k in ("group", "offset"):
            if not _is_int(r[k]) or r[k] < 0:
                raise ModelFileError(f"{where}.{k} must be a non-negative integer")
        r["shape"] = _shape(r["shape"], f"{where}.shape", symbols=False)
    if not _is_int(doc["flat_size"]) or doc["flat_size"] < 0:
        raise ModelFileError("flat_size must be a non-negative integer")
    return doc


def _read_params(npz: Any, records: list[dict]) -> list[np.ndarray]:
    """Each parameter's array, its .npy header checked before any data is read."""
    arrays = []
    for r in records:
        member = f"params/{r['key']}"
        if member not in npz.files:
            raise ModelFileError(f"parameter {r['key']} is missing from the archive")
        if npz.zip.getinfo(member + ".npy").file_size < 4 * int(np.prod(r["shape"])):
            raise ModelFileError(f"parameter {r['key']}: the archive holds too few bytes")
        with npz.zip.open(member + ".npy") as fp:
            version = np.lib.format.read_magic(fp)
            if version not in ((1, 0), (2, 0)):
                raise ModelFileError(f"parameter {r['key']}: unsupported .npy version {version}")
            read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                           else np.lib.format.read_array_header_2_0)
            shape, _, dtype = read_header(fp)
        if dtype.kind != "f" or dtype.itemsize != 4 or tuple(shape) != r["shape"]:
            raise ModelFileError(f"parameter {r['key']}: expected float32{list(r['shape'])}, "
                                 f"the archive holds {dtype}{list(shape)}")
        arrays.append(np.asarray(npz[member], np.float32))
    return arrays


def _decode_graph(obj: Any, params: list[Param], uses: list[int], where: str,
                  depth: int) -> tuple[list[Node], list[Node]]:
    """Fresh nodes for one graph of the file: its (inputs, outputs)."""
    if depth > MAX_DEPTH:
        raise ModelFileError(f"{where}: graphs nested deeper than {MAX_DEPTH}")
    _fields(_expect(obj, dict, where), {"inputs", "outputs", "nodes"}, where)
    records = _expect(obj["nodes"], list, f"{where}.nodes")
    n = len(records)
    parsed = [_decode_node(r, n, params, uses, f"{where}.nodes[{i}]", depth)
              for i, r in enumerate(records)]
    ins = [_index(i, n, f"{where}.inputs") for i in _expect(obj["inputs"], list, where)]
    outs = [_index(i, n, f"{where}.outputs") for i in _expect(obj["outputs"], list, where)]
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
    _fields(_expect(r, dict, where), _NODE_FIELDS, where)
    op_name = _expect(r["op"], str, f"{where}.op")
    try:
        op = Op(op_name)
    except ValueError:
        raise ModelFileError(f"{where}: unknown op {op_name!r} (a damaged file, or one written "
                             "by a newer graphrnn)") from None
    out = {"op": op, "inputs": [_index(i, n, f"{where}.inputs")
                                for i in _expect(r["inputs"], list, f"{where}.inputs")]}
    for k in ("name", "scope", "where", "doc"):
        out[k] = _expect(r[k], str, f"{where}.{k}")
    out["type"] = _decode_type(r["type"], f"{where}.type")
    attrs = _expect(r["attrs"], dict, f"{where}.attrs")
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
    _fields(_expect(v, dict, where), {"shape", "dtype"}, where)
    if v["dtype"] not in ("float32", "int64"):
        raise ModelFileError(f"{where}: unknown dtype {v['dtype']!r}")
    return TensorType(_shape(v["shape"], where, symbols=True), v["dtype"])


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
                     for x in _expect(body, list, where))
    if tag == "dict":
        return {k: _decode_value(x, params, uses, where, depth)
                for k, x in _expect(body, dict, where).items()}
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
            return Op(_expect(body, str, where))
        except ValueError:
            raise ModelFileError(f"{where}: unknown op {body!r}") from None
    inputs, outputs = _decode_graph(body, params, uses, where, depth + 1)
    graph = Graph(tuple(inputs), tuple(outputs), tuple(toposort(outputs)))
    declared = {id(x) for x in graph.inputs}
    for n in graph.nodes:
        if n.op == Op.INPUT and id(n) not in declared:
            raise ModelFileError(f"{where}: the body uses {n.name}, which is not among its "
                                 "inputs")
    return graph


def _decode_array(body: Any, tag: str, where: str) -> Any:
    keys = {"dtype", "shape", "data"} if tag == "array" else {"dtype", "data"}
    _fields(_expect(body, dict, where), keys, where)
    if body["dtype"] not in _DTYPES:
        raise ModelFileError(f"{where}: dtype {body['dtype']!r} is not allowed")
    dtype = np.dtype(body["dtype"])
    shape = _shape(body["shape"], where, symbols=False) if tag == "array" else ()
    try:
        data = base64.b64decode(_expect(body["data"], str, where), validate=True)
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

def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _expect(v: Any, kind: type, where: str) -> Any:
    if not isinstance(v, kind) or (kind is int and isinstance(v, bool)):
        raise ModelFileError(f"{where}: expected {kind.__name__}, got {type(v).__name__}")
    return v


def _fields(obj: dict, allowed: set[str], where: str) -> None:
    missing, extra = allowed - obj.keys(), obj.keys() - allowed
    if missing or extra:
        raise ModelFileError(f"{where}: " + "; ".join(
            m for m in (f"missing fields {sorted(missing)}" if missing else "",
                        f"unexpected fields {sorted(extra)[:4]}" if extra else "") if m))


def _index(i: Any, n: int, where: str) -> int:
    if not _is_int(i) or not 0 <= i < n:
        raise ModelFileError(f"{where}: {i!r} is not a node index below {n}")
    return i


def _shape(v: Any, where: str, *, symbols: bool) -> tuple:
    dims = _expect(v, list, where)
    for d in dims:
        if not ((_is_int(d) and d >= 0) or (symbols and isinstance(d, str))):
            raise ModelFileError(f"{where}: bad dimension {d!r}")
    return tuple(dims)


# ----------------------------------------------------------------------------- node checks

def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_shape(v: Any) -> bool:
    return isinstance(v, tuple) and all(_is_int(d) or isinstance(d, str) for d in v)


# attributes a node must have, and their kind, before any rule or the interpreter reads them
_REQUIRED: dict[Op, dict[str, Callable[[Any], bool]]] = {
    Op.CONST: {"value": lambda v: isinstance(v, np.ndarray)},
    Op.FILL: {"shape": _is_shape, "value": _is_number},
    Op.CONCAT: {"axis": _is_int}, Op.SLICE: {"axis": _is_int, "start": _is_int, "length": _is_int},
    Op.INDEX: {"axis": _is_int, "index": _is_int}, Op.RESHAPE: {"shape": _is_shape},
    Op.DROPOUT: {"p": _is_number, "seed": _is_int}, Op.GET: {"index": _is_int},
    Op.VIEW: {"offset": _is_int, "shape": _is_shape},
    Op.FUSED: {"body": lambda v: isinstance(v, Graph)},
    Op.LOOP: {"body": lambda v: isinstance(v, Graph), "n_consts": _is_int, "n_carry": _is_int},
}


def _check_node(node: Node, where: str) -> None:
    """Arity and required attributes, then the node's type re-derived by its SHAPE_RULE."""
    from .compiler.validate import ARITY
    from .ops import SHAPE_RULES, apply_rule
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


def _check_layout(model: Any, params: list[Param], doc: dict) -> None:
    """The rebuilt model must lay its parameters out exactly as the saved one did."""
    _, keys = layout_params(model.graph.params())
    for p, r in zip(params, doc["params"]):
        slot = model.table.slots.get(r["key"])
        if keys.get(p) != r["key"] or slot is None or slot.offset != r["offset"]:
            raise ModelFileError(f"parameter {r['key']} does not come back at its saved key "
                                 "and offset")
    if model.table.size != doc["flat_size"] or len(model.table.slots) != len(params):
        raise ModelFileError("the parameter layout does not match the saved one")


__all__ = ["save", "load", "ModelFileError", "FORMAT", "VERSION"]
