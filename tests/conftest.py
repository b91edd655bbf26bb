"""Fixtures shared by the test modules."""
from __future__ import annotations

import os

import pytest

from graphrnn.compile import CompiledModel
from graphrnn.compiler.codegen import kernel_twins
from graphrnn.runtime.cache import KernelCache

# every kernel found by its key is emitted too and checked to have the known kernel's code
# (here and in the processes tests start)
os.environ["GRAPHRNN_CHECK_KERNEL_KEYS"] = "1"
kernel_twins.CHECK_KEYS = True


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> KernelCache:
    """A kernel cache of the test module's own (in place of pytest's `cache` fixture, which
    this suite does not use), so no test reads kernels another module compiled."""
    return KernelCache(tmp_path_factory.mktemp("kernels"))


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list:
    """Every program a compiled model builds (from the passes or from the kernel cache)."""
    built: list = []
    original = CompiledModel._build

    def counted(self, types):
        built.append(types)
        return original(self, types)
    monkeypatch.setattr(CompiledModel, "_build", counted)
    return built
