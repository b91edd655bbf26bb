"""A model that reads an entry or a range of the symbolic time axis needs enough steps: a call
with fewer is an error naming the need, in Python and in the C library, never a read past the
end of the input."""
from __future__ import annotations

import numpy as np
import pytest

import graphrnn as gr
from graphrnn import nn, ops
from graphrnn.export import LibraryInputError, export_library, load_library


def models() -> list[tuple[gr.gModule, int]]:
    x = gr.Input("B", "T", 3, name="x")
    narrow = gr.gModule([x], [nn.Narrow(1, 1, 2)(x)])            # steps 1..2: needs T >= 3
    entry = gr.gModule([x], [nn.Tanh()(ops.index(x, 1, 3))])      # step 3: needs T >= 4
    return [(narrow, 3), (entry, 4)]


@pytest.mark.parametrize("k", [0, 1])
def test_compiled_calls_refuse_too_few_steps(k: int) -> None:
    model, need = models()[k]
    fast = gr.compile(model)
    x = np.random.default_rng(0).standard_normal((2, need + 2, 3)).astype(np.float32)
    np.testing.assert_allclose(fast(x), gr.interpret(model, x), rtol=1e-6)
    np.testing.assert_allclose(fast(x[:, :need]), gr.interpret(model, x[:, :need]), rtol=1e-6)
    for t in (need - 1, 0):
        with pytest.raises(gr.InputError, match=f"needs at least {need} steps, got {t}"):
            fast(x[:, :t])
    assert len(fast.programs) == 1


def test_the_c_library_refuses_too_few_steps(tmp_path) -> None:
    model, need = models()[0]
    lib = load_library(export_library(model, tmp_path, name="narrow").shared)
    x = np.random.default_rng(1).standard_normal((2, 5, 3)).astype(np.float32)
    np.testing.assert_array_equal(lib(x), gr.compile(model)(x))
    with pytest.raises(LibraryInputError, match=f"needs at least {need} steps, got 2"):
        lib(x[:, :2])
