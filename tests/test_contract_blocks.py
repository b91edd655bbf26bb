"""CONTRACT on the packed micro-kernel against numpy: blocks of the reduction (with a
remainder), outputs larger than L2 (longer blocks), row counts that leave every kind of
last row tile, and the transposed output."""
from __future__ import annotations

import numpy as np
import pytest

from graphrnn import ops
from graphrnn.compile import CompiledModel
from graphrnn.compiler.codegen.emit_contract import (CONTRACT_KC, CONTRACT_KC_LARGE, L2_BYTES,
                                                     contract_kc)
from graphrnn.compiler.codegen.strides import Layout
from graphrnn.runtime.cache import KernelCache
from graphrnn.close import close_graph

RNG = np.random.default_rng(11)


def contract(b: int, t: int, k: int, n: int, transpose_out: bool, cache: KernelCache
             ) -> None:
    a_in = ops.input_((b, t, k), "float32", name="a")
    g_in = ops.input_((b, t, n), "float32", name="g")
    graph = close_graph([a_in, g_in], [ops.contract(a_in, g_in, transpose_out)])
    a = RNG.standard_normal((b, t, k)).astype(np.float32)
    g = RNG.standard_normal((b, t, n)).astype(np.float32)
    got = CompiledModel(graph, cache=cache)(a, g)
    want = np.einsum("btk,btn->kn", a.astype(np.float64), g.astype(np.float64))
    if transpose_out:
        want = want.T
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-3 * np.sqrt(b * t))


@pytest.mark.parametrize("b,t,k,n", [(2, 3, 5, 7), (3, 7, 13, 20), (1, 9, 40, 33),
                                     (4, 70, 8, 17), (5, 60, 19, 64), (2, 150, 6, 3)])
def test_small_contracts(b: int, t: int, k: int, n: int, cache: KernelCache) -> None:
    """Rows of the output from 5 to 40 (last row tiles of 1 to 5 rows), a block of the
    reduction and a remainder (M = 280, 300, 300 rows), narrow and wide columns."""
    contract(b, t, k, n, False, cache)


def test_transposed_output(cache: KernelCache) -> None:
    contract(3, 100, 21, 10, True, cache)


def test_an_output_larger_than_l2_takes_longer_blocks(cache: KernelCache) -> None:
    lhs, rhs = Layout.contiguous((640, 1110)), Layout.contiguous((1110, 420))
    assert 4 * 640 * 420 > L2_BYTES and contract_kc(lhs, rhs) == CONTRACT_KC_LARGE
    assert contract_kc(Layout.contiguous((256, 1110)), rhs) == CONTRACT_KC
    contract(3, 370, 640, 420, False, cache)            # M = 1110: one long block and a rest
