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

- `group` numbers the module that owns a parameter, so keys (`linear_1.weight`) come back equal.
- `graph` is encoded by `graphrnn.codec`, whose docstring describes nodes, types and values.

Loading reads with `allow_pickle=False` and trusts nothing: graph.json is read through a
bounded stream, every field is checked (the graph by the codec), the parameter table is checked
against the file's size and a cap before any parameter data is read (model_limits.py), each .npy
header is read before its data, and the rebuilt model must lay its parameters out at the saved
keys and offsets. Any damage raises `ModelFileError` (a ValueError); a graph that is well formed
but invalid raises `GraphError`. A save killed midway leaves a temporary file that the next save
into the same directory removes.
"""
from __future__ import annotations

import contextlib
import io
import json
import os
import struct
import tempfile
import zipfile
import zlib
from typing import Any, BinaryIO

import numpy as np

from .version import __version__
from .codec import (ModelFileError, check_fields, decode_graph, encode_graph, expect, is_int,
                    parse_shape)
from .gmodule import gModule
from .flat import layout_params
from .ir import Graph, GraphError, Param
from .model_limits import (GRAPH_MEMBER, MAX_PARAM_BYTES, SAVE_TMP_SUFFIX, check_param_table,
                           file_size, read_graph_member)
from .runtime.secure_files import remove_orphans
from .store import adopt, value

FORMAT = "graphrnn-model"
VERSION = 1

_TOP_FIELDS = {"format", "version", "graphrnn", "model", "params", "flat_size", "graph"}
_PARAM_FIELDS = {"key", "owner", "name", "group", "shape", "init", "offset"}
# what the archive layer can throw on damaged bytes (zip, npy header, inflate, UTF-8, JSON)
_READ_ERRORS = (OSError, ValueError, EOFError, LookupError, TypeError, ArithmeticError,
                RuntimeError, MemoryError, struct.error, zipfile.BadZipFile, zlib.error)


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
           "params": records, "flat_size": table.size, "graph": encode_graph(graph, index)}
    members = [(GRAPH_MEMBER, json.dumps(doc, separators=(",", ":"), allow_nan=False).encode())]
    for p in params:
        buf = io.BytesIO()
        np.lib.format.write_array(buf, np.ascontiguousarray(value(p), "<f4"), allow_pickle=False)
        members.append((f"params/{keys[p]}.npy", buf.getvalue()))
    _write_atomic(os.fspath(path), members)


def _write_atomic(path: str, members: list[tuple[str, bytes]]) -> None:
    """Write a temporary file next to `path`, fsync it, then rename it over `path`."""
    directory = os.path.dirname(os.path.abspath(path))
    with contextlib.suppress(OSError):      # what killed saves left behind
        remove_orphans(directory, ".", SAVE_TMP_SUFFIX)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=SAVE_TMP_SUFFIX,
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

def load(source: str | os.PathLike | BinaryIO, *, max_bytes: int = MAX_PARAM_BYTES) -> Any:
    """Read a model written by `save` from a path (or a seekable binary file object): a gModule
    whose results are bit-identical to the saved one's. `max_bytes` caps the parameter bytes
    the file may declare (beyond that, they must fit in the file itself).

    Raises FileNotFoundError for a missing file, ModelFileError for a file that is not a model
    or is damaged, GraphError for a graph that is invalid (a cycle, a bad arity or type).
    """
    if hasattr(source, "read"):
        return _load(source, str(getattr(source, "name", "<stream>")), max_bytes)
    with open(source, "rb") as f:
        return _load(f, os.fspath(source), max_bytes)


def _load(f: BinaryIO, path: str, max_bytes: int) -> Any:
    start = f.tell()
    head = f.read(4)
    f.seek(start)
    try:
        if head != b"PK\x03\x04":
            raise ModelFileError("not a graphrnn model file (not a zip/.npz archive)")
        try:
            size = file_size(f) - start
            with np.load(f, allow_pickle=False) as npz:
                doc = _read_document(npz)
                check_param_table(npz.zip, doc["params"], size, max_bytes)
                tokens: dict[int, object] = {}      # one owner token per module group
                params = [Param(r["name"], r["shape"], r["init"], owner=r["owner"],
                                token=tokens.setdefault(r["group"], object()))
                          for r in doc["params"]]
                uses = [0] * len(params)
                inputs, outputs = decode_graph(doc["graph"], params, uses, "graph", 0)
                unused = [doc["params"][i]["key"] for i, k in enumerate(uses) if k == 0]
                if unused:
                    raise ModelFileError(f"parameters {unused} are stored but used by no node")
                for p, a in zip(params, _read_params(npz, doc["params"])):
                    adopt(p, a)
        except (ModelFileError, GraphError):
            raise
        except _READ_ERRORS + (AttributeError,) as e:
            raise ModelFileError(f"damaged model file ({type(e).__name__}: {e})") from None
        try:
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
    raw = read_graph_member(npz.zip)
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ModelFileError(f"not a graphrnn model file ({GRAPH_MEMBER} is not JSON: {e})") \
            from None
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ModelFileError("not a graphrnn model file (no \"format\": \"graphrnn-model\")")
    version = doc.get("version")
    if not is_int(version) or version < 1:
        raise ModelFileError(f"bad format version {version!r}")
    if version > VERSION:
        raise ModelFileError(f"the file has format version {version}, newer than this "
                             f"graphrnn ({__version__}) reads (up to {VERSION}): upgrade graphrnn")
    check_fields(doc, _TOP_FIELDS, "the file")
    model = expect(doc["model"], dict, "model")
    check_fields(model, {"class", "name"}, "model")
    expect(model["class"], str, "model.class")
    if model.get("name") is not None:
        expect(model["name"], str, "model.name")
    expect(doc["graphrnn"], str, "graphrnn")
    for i, r in enumerate(expect(doc["params"], list, "params")):
        where = f"params[{i}]"
        check_fields(expect(r, dict, where), _PARAM_FIELDS, where)
        for k in ("key", "owner", "name", "init"):
            expect(r[k], str, f"{where}.{k}")
        for k in ("group", "offset"):
            if not is_int(r[k]) or r[k] < 0:
                raise ModelFileError(f"{where}.{k} must be a non-negative integer")
        r["shape"] = parse_shape(r["shape"], f"{where}.shape", symbols=False)
    if not is_int(doc["flat_size"]) or doc["flat_size"] < 0:
        raise ModelFileError("flat_size must be a non-negative integer")
    return doc


def _read_params(npz: Any, records: list[dict]) -> list[np.ndarray]:
    """Each parameter's array, its .npy header checked before any data is read."""
    arrays = []
    for r in records:
        member = f"params/{r['key']}"
        if member not in npz.files:
            raise ModelFileError(f"parameter {r['key']} is missing from the archive")
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


def _check_layout(model: Any, params: list[Param], doc: dict) -> None:
    """The rebuilt model must know its parameters by the saved keys.

    Values are stored by key, so where the running version lays them out in the flat vector
    (the saved offsets are informative) does not matter."""
    _, keys = layout_params(model.graph.params())
    for p, r in zip(params, doc["params"]):
        if keys.get(p) != r["key"] or r["key"] not in model.table.slots:
            raise ModelFileError(f"parameter {r['key']} does not come back at its saved key")
    if len(model.table.slots) != len(params):
        raise ModelFileError("the parameter layout does not match the saved one")


__all__ = ["save", "load", "ModelFileError", "FORMAT", "VERSION"]
