"""Fixtures shared by the test modules."""
from __future__ import annotations

import pytest

from graphrnn.runtime.cache import KernelCache


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> KernelCache:
    """A kernel cache of the test module's own (in place of pytest's `cache` fixture, which
    this suite does not use), so no test reads kernels another module compiled."""
    return KernelCache(tmp_path_factory.mktemp("kernels"))
