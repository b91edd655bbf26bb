"""What a bench run records besides its rows: the machine and versions the numbers belong
to, and how long compiling and loading a model takes."""
from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

import graphrnn as gr
from ..runtime.cache import KernelCache
from ..version import __version__
from .peers import build_layer, versions


def compile_times(cell: str = "lstm", d: int = 32, h: int = 64) -> dict[str, float]:
    """Seconds: cold compile (forward at T=10, and the training step), disk-cache load, and
    compile at T = 10 and T = 10000 (T is a runtime argument: the two should match)."""
    import tempfile
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, steps in (("compile_T10_s", 10), ("compile_T10000_s", 10000)):
            model = build_layer(cell, d, h)
            x = np.zeros((1, steps, d), np.float32)
            cold = KernelCache(os.path.join(tmp, f"cold{steps}"))     # empty: a real compile
            t0 = time.perf_counter()
            gr.compile(model, cache=cold).program_for([x])
            out[label] = time.perf_counter() - t0
        out["cold_compile_s"] = out["compile_T10_s"]
        model = build_layer(cell, d, h)
        x = np.zeros((1, 10, d), np.float32)
        gr.compile(model, cache=KernelCache(os.path.join(tmp, "disk"))).program_for([x])
        fresh = KernelCache(os.path.join(tmp, "disk"))     # a new process's view: disk only
        t0 = time.perf_counter()
        gr.compile(model, cache=fresh).program_for([x])
        out["disk_cache_load_s"] = time.perf_counter() - t0
        step = gr.compile(model, loss=gr.MSECriterion(), train=True,
                          cache=KernelCache(os.path.join(tmp, "train")))
        t0 = time.perf_counter()
        step.program_for([x, np.zeros((1, 10, h), np.float32)])
        out["train_cold_compile_s"] = time.perf_counter() - t0
    return out


def host() -> dict[str, Any]:
    """The machine and the versions the numbers belong to."""
    import platform
    import llvmlite
    import llvmlite.binding as llvm
    model = platform.processor()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        model = names[0] if names else model
    features = llvm.get_host_cpu_features()
    return {"cpu": model, "llvm_cpu": llvm.get_host_cpu_name(), "logical_cpus": os.cpu_count(),
            "avx512f": bool(features.get("avx512f")), "fma": bool(features.get("fma")),
            "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
            "versions": {"graphrnn": __version__, "python": platform.python_version(),
                         "numpy": np.__version__, "llvmlite": llvmlite.__version__,
                         "llvm": ".".join(map(str, llvm.llvm_version_info)), **versions()}}
