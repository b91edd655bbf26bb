"""Reading an ONNX file defensively: sizes checked before anything is allocated.

A hostile file can be truncated or garbage, declare a tensor of terabytes, point at external
data, or wire its nodes into a cycle. Each is refused here with an OnnxImportError naming the
tensor or node, before numpy allocates anything: a declared size is checked against the
bytes actually present and against MAX_TENSOR_BYTES, and external data is never followed.
protobuf parsing allocates at most the file's size (no pickle anywhere).
"""
from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np
import onnx
from onnx import TensorProto

from .errors import OnnxImportError, node_label

MAX_FILE_BYTES = 2 ** 31 - 1              # protobuf's own limit for one message
MAX_TENSOR_BYTES = 2 ** 30                # one initializer or constant

# ONNX element type -> (numpy dtype, the TensorProto field holding non-raw data)
DTYPES: dict[int, tuple[Any, str]] = {
    TensorProto.FLOAT: (np.float32, "float_data"),
    TensorProto.DOUBLE: (np.float64, "double_data"),
    TensorProto.INT64: (np.int64, "int64_data"),
    TensorProto.INT32: (np.int32, "int32_data"),
    TensorProto.BOOL: (np.bool_, "int32_data"),
}


def read_model(source: Any) -> onnx.ModelProto:
    """A ModelProto from a path, bytes or a ModelProto; external data is never loaded."""
    if isinstance(source, onnx.ModelProto):
        return source
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        where = "the given bytes"
    else:
        path = os.fspath(source)
        try:
            size = os.path.getsize(path)
        except OSError as e:
            raise OnnxImportError(f"cannot read ONNX file {path!r}: {e.strerror}") from None
        if size > MAX_FILE_BYTES:
            raise OnnxImportError(f"{path}: {size} bytes, more than one protobuf message can "
                                  f"hold ({MAX_FILE_BYTES}); external data is not supported")
        with open(path, "rb") as f:
            data = f.read()
        where = path
    if not data:
        raise OnnxImportError(f"{where}: empty, not an ONNX model")
    model = onnx.ModelProto()
    try:
        model.ParseFromString(data)
    except Exception as e:       # protobuf's DecodeError and friends
        raise OnnxImportError(f"{where}: not an ONNX model (truncated or corrupt): "
                              f"{type(e).__name__}: {e}") from None
    if not model.HasField("graph") or not model.graph.node and not model.graph.output:
        raise OnnxImportError(f"{where}: not an ONNX model (it has no graph)")
    return model


def opset_version(model: onnx.ModelProto) -> int:
    """The version of the default ("ai.onnx") operator set."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    return 1


def tensor_to_array(t: TensorProto, what: str) -> np.ndarray:
    """The values of a TensorProto as numpy, after checking its declared size."""
    label = f"{what} {t.name!r}" if t.name else what
    if t.data_location == TensorProto.EXTERNAL or len(t.external_data):
        ref = {e.key: e.value for e in t.external_data}
        raise OnnxImportError(f"{label}: stored as external data ({ref.get('location', '?')}, "
                              f"length {ref.get('length', '?')}); graphrnn imports "
                              "self-contained files only")
    if t.data_type not in DTYPES:
        name = TensorProto.DataType.Name(t.data_type) if t.data_type in \
            TensorProto.DataType.values() else str(t.data_type)
        raise OnnxImportError(f"{label}: element type {name} is not supported (float, double, "
                              "int32, int64, bool)")
    dtype, field = DTYPES[t.data_type]
    dims = [int(d) for d in t.dims]
    if any(d < 0 for d in dims):
        raise OnnxImportError(f"{label}: negative dimension in shape {dims}")
    count = 1
    for d in dims:
        count *= d
    nbytes = count * np.dtype(dtype).itemsize
    if nbytes > MAX_TENSOR_BYTES:
        raise OnnxImportError(f"{label}: shape {dims} declares {nbytes} bytes, more than the "
                              f"{MAX_TENSOR_BYTES} allowed for one tensor")
    if t.HasField("raw_data"):
        present = len(t.raw_data)
        if present != nbytes:
            raise OnnxImportError(f"{label}: shape {dims} needs {nbytes} bytes, the file "
                                  f"holds {present}")
        arr = np.frombuffer(t.raw_data, dtype=np.dtype(dtype).newbyteorder("<")).astype(dtype)
    else:
        values = getattr(t, field)
        if len(values) != count:
            raise OnnxImportError(f"{label}: shape {dims} needs {count} values, the file "
                                  f"holds {len(values)}")
        arr = np.asarray(values, dtype=dtype)
    arr = arr.reshape(dims)
    if arr.dtype == np.int32 or arr.dtype == np.bool_:
        arr = arr.astype(np.int64)
    return arr


def sorted_nodes(graph: onnx.GraphProto, known: Sequence[str]) -> list[Any]:
    """The graph's nodes in an order where every input is made before it is read.

    Refuses a cycle (naming the nodes on it) and an input that nothing defines.
    """
    producer: dict[str, int] = {}
    for i, n in enumerate(graph.node):
        for o in n.output:
            if o:
                if o in producer or o in known:
                    raise OnnxImportError(f"{node_label(n)}: output {o!r} is defined twice")
                producer[o] = i
    state = [0] * len(graph.node)           # 0 new, 1 on the stack, 2 done
    order: list[Any] = []
    for start in range(len(graph.node)):
        stack = [(start, 0)]
        while stack:
            i, k = stack.pop()
            if k == 0:
                if state[i] == 2:
                    continue
                state[i] = 1
            deps = [producer[x] for x in graph.node[i].input if x in producer]
            if k < len(deps):
                stack.append((i, k + 1))
                j = deps[k]
                if state[j] == 1:
                    cycle = [graph.node[s].name or graph.node[s].op_type for s, _ in stack]
                    raise OnnxImportError(f"the graph has a cycle through "
                                          f"{node_label(graph.node[j])} (nodes "
                                          f"{', '.join(cycle)})")
                if state[j] == 0:
                    stack.append((j, 0))
                continue
            state[i] = 2
            order.append(graph.node[i])
    defined = set(known) | set(producer)
    for n in order:
        for x in n.input:
            if x and x not in defined:
                raise OnnxImportError(f"{node_label(n)}: input {x!r} is defined nowhere in the "
                                      "graph")
    return order


__all__ = ["read_model", "opset_version", "tensor_to_array", "sorted_nodes",
           "MAX_FILE_BYTES", "MAX_TENSOR_BYTES"]
