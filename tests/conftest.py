"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest

from graphrnn.compile import CompiledModel
from graphrnn.runtime.cache import KernelCache


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
