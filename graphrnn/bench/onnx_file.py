"""`graphrnn bench --onnx model.onnx`: one ONNX file, imported and compiled by graphrnn, timed
against ONNX Runtime running the same file.

Both run on one thread in one child process pinned to one CPU (ONNX Runtime with one intra-
and one inter-op thread), on the same random inputs, checked against each other first; the
samples are interleaved rounds in a shuffled order (`run.interleaved`), each sample calls
back to back until it lasts 10 ms, and the report gives medians of the wall time and of the
process CPU time (the steadier figure on a loaded machine, where waiting for the CPU counts
in the wall time); the ratio is the median over the rounds of ONNX Runtime's sample over
graphrnn's in the same round. Symbolic dims are bound
to `--batch` (the dims graphrnn reads as batch: axis 0 of its inputs) and `--steps` (the
others); integer inputs of rank 1 are lengths (all `--steps`), other integer inputs zeros.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort

import graphrnn as gr
from .. import onnx as gr_onnx
from ..onnx.proto import read_model
from .child import pin_to_cpus, write_result
from .run import MIN_SAMPLE_S, interleaved
from .timing import paired_ratio


def make_inputs(model: Any, proto: onnx.ModelProto, batch: int, steps: int,
                seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the ONNX graph, by input name, in ONNX's layouts."""
    rng = np.random.default_rng(seed)
    batch_dims = {x.type.shape[0] for x in model.inputs if x.type.rank
                  and isinstance(x.type.shape[0], str)}
    declared = {x.name for x in model.inputs}
    feed = {}
    for vi in proto.graph.input:
        if vi.name not in declared:
            continue
        t = vi.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else
                (batch if d.dim_param in batch_dims else steps) for d in t.shape.dim]
        if t.elem_type in (onnx.TensorProto.INT64, onnx.TensorProto.INT32):
            dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
            fill = steps if len(dims) == 1 else 0
            feed[vi.name] = np.full(dims, fill, dtype)
        else:
            feed[vi.name] = rng.standard_normal(dims).astype(np.float32)
    return feed


def bench_file(path: str, batch: int, steps: int, repeats: int = 7,
               budget_s: float = 30.0) -> dict[str, Any]:
    """Times (ms, medians) of graphrnn and ONNX Runtime on one file, and their difference."""
    proto = read_model(path)
    model = gr_onnx.load(proto)
    fast = gr.compile(model)
    feed = make_inputs(model, proto, batch, steps)
    layouts = model.onnx_layouts
    args = [np.ascontiguousarray(np.transpose(feed[x.name], layouts["inputs"][x.name]))
            if x.name in layouts["inputs"] else feed[x.name] for x in model.inputs]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads, opts.inter_op_num_threads = 1, 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
    ours = fast(*args)
    ours = list(ours) if isinstance(ours, tuple) else [ours]
    ours = [np.transpose(o, layouts["outputs"][vi.name]) if vi.name in layouts["outputs"]
            else o for vi, o in zip(proto.graph.output, ours)]
    theirs = session.run(None, feed)
    diff = max(float(np.max(np.abs(np.asarray(a, np.float64) - b))) for a, b in zip(ours, theirs))
    samples = interleaved({"graphrnn": lambda: fast(*args),
                           "onnxruntime": lambda: session.run(None, feed)},
                          repeats, budget_s, min_sample_s=MIN_SAMPLE_S)
    ms = {k: 1e3 * statistics.median(w for w, _ in v) for k, v in samples.items()}
    cpu_ms = {k: 1e3 * statistics.median(c for _, c in v) for k, v in samples.items()}
    return {"file": path, "batch": batch, "steps": steps, "ms": ms, "cpu_ms": cpu_ms,
            "ratio": paired_ratio(samples["onnxruntime"], samples["graphrnn"]),
            "cpu_ratio": cpu_ms["onnxruntime"] / cpu_ms["graphrnn"], "max_abs_diff": diff,
            "rounds": {k: len(v) for k, v in samples.items()}}


def main(argv: list[str] | None = None) -> int:
    """The child: `python -m graphrnn.bench.onnx_file --onnx F ... --child-out OUT`."""
    p = argparse.ArgumentParser(prog="graphrnn bench --onnx")
    p.add_argument("--onnx", required=True)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--steps", type=int, default=100)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--budget", type=float, default=30.0)
    p.add_argument("--child-out")
    a = p.parse_args(argv)
    pin_to_cpus(1)
    try:
        result = bench_file(a.onnx, a.batch, a.steps, a.repeats, a.budget)
    except gr_onnx.OnnxImportError as e:
        print(f"graphrnn bench --onnx: error: {e}", file=sys.stderr)
        return 2
    write_result(result, a.child_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
