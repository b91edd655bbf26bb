"""The child processes `graphrnn bench` measures in: their thread limits, their CPUs, and the
JSON they hand back to the parent."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

_XLA_ONE = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
_XLA_TWO = "--xla_cpu_multi_thread_eigen=true intra_op_parallelism_threads=2"
ONE_THREAD = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
              "XLA_FLAGS": _XLA_ONE}
TWO_THREADS = {"OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2", "MKL_NUM_THREADS": "2",
               "XLA_FLAGS": _XLA_TWO}


def peer_isa_env(isa_name: str, env: dict[str, str]) -> dict[str, str]:
    """`env` with the peers held to graphrnn's ISA where their libraries allow it: with an
    AVX2 target, MKL and oneDNN (PyTorch) and XLA (JAX) use AVX2 code too; ONNX Runtime's
    MLAS has no such switch and keeps the host's."""
    if isa_name != "avx2":
        return env
    return dict(env, MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2",
                XLA_FLAGS=f"{env.get('XLA_FLAGS', '')} --xla_cpu_max_isa=AVX2".strip())


def peers_off_isa(isa_name: str, host_avx512: bool) -> dict[str, str]:
    """The peers whose code cannot be held to graphrnn's ISA on this host, each with why: with
    AVX2 kernels on an AVX-512 host, ONNX Runtime (MLAS reads CPUID, no switch) and JAX (its
    matrix products go to libraries that pick AVX-512 at run time whatever --xla_cpu_max_isa
    says: a one-thread 64 x 512 x 2048 product ran at 200 GFLOP/s, above the AVX2 peak)."""
    if isa_name != "avx2" or not host_avx512:
        return {}
    return {"onnxruntime": "MLAS picks the host's AVX-512 (no switch)",
            "jax": "its matrix products pick the host's AVX-512 (no switch)"}


def peers_isa_text(isa_name: str, off: dict[str, str]) -> str:
    """What the report says about the ISA the peers ran (`off`: peers_off_isa's)."""
    if isa_name != "avx2":
        return "the host's"
    if not off:
        return "AVX2 (the host has nothing wider)"
    return ("AVX2 for torch (MKL, oneDNN); AVX-512 for " + " and ".join(off) + " (no switch "
            "holds them to AVX2), so the fastest peer is taken among the AVX2 ones")


def in_child(argv: list[str], env: dict[str, str],
             module: str = "graphrnn.bench.run") -> dict | None:
    """Run `module` (`graphrnn.bench.run`, or `graphrnn.bench.memory` for the memory section) in a
    child process with `env` and read the JSON it writes to a file (None when it failed: its
    error is already on stderr). Whatever the child prints, libraries included, goes to
    stderr, so stdout carries only the report."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "result.json")
        done = subprocess.run([sys.executable, "-m", module, *argv, "--child-out", out],
                              env=dict(os.environ, **env), stdout=sys.stderr)
        if done.returncode != 0 or not os.path.exists(out):
            print(f"graphrnn bench: the measuring process failed (exit status "
                  f"{done.returncode})", file=sys.stderr)
            return None
        with open(out) as f:
            return json.load(f)


def pin_to_cpus(threads: int) -> list[int] | None:
    """Bind this process to `threads` CPUs: the only limit every peer obeys (XLA starts
    worker threads whatever its flags say). Returns the CPUs, or None where unsupported."""
    if not hasattr(os, "sched_setaffinity"):
        return None
    cpus = sorted(os.sched_getaffinity(0))[:threads]
    os.sched_setaffinity(0, cpus)
    return cpus


def write_result(result: Any, path: str | None) -> None:
    """A child's result as JSON: into the file its parent named, else to stdout."""
    if path:
        with open(path, "w") as f:
            json.dump(result, f)
    else:
        print(json.dumps(result))
