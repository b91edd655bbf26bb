"""CONTRACT on the packed micro-kernel against numpy, on every ISA the kernels are built for:
blocks of the reduction (with a remainder), blocks of the columns (a wide output), row
counts that leave every kind of last row tile, columns that leave a partial last vector,
strided rows, a left operand with strided columns, small M and the transposed output. Each
graph is checked to run the packed kernel, not the plain reduction; the k-loops, with the
next tile's copy and the prefetches in them, keep their tile in registers."""
from __future__ import annotations

import re

import numpy as np
import pytest
from asm_loops import k_loops

from graphrnn import ops
from graphrnn.close import close_graph
from graphrnn.compile import CompiledModel
from graphrnn.compiler.codegen.emit_contract import (MAX_KC, MIN_KC, PANEL_BYTES,
                                                     contract_blocking, contract_plan)
from graphrnn.compiler.codegen.schedule import schedule
from graphrnn.compiler.codegen.strides import Layout
from graphrnn.compiler.pipeline import prepare
from graphrnn.ir import Node, Op, TensorType
from graphrnn.isa import host_isa, using_isa
from graphrnn.runtime.cache import KernelCache

RNG = np.random.default_rng(11)
ISAS = ["host", "generic"] + (["avx2"] if {"avx2", "fma"} <= host_isa().enabled else [])


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape).astype(np.float32)


def run(inputs: list[Node], out: Node, values: list[np.ndarray], want: np.ndarray,
        isa: str, cache: KernelCache) -> None:
    """Compile inputs -> out for `isa`, check it runs a packed contract and gives `want`."""
    graph = close_graph(inputs, [out])
    with using_isa(isa):
        g = prepare(graph, [TensorType(v.shape) for v in values])[0]
        kinds = [k.kind for top in schedule(g, g.inputs[-1]).kernels for k in top.walk()
                 if k.node.op == Op.CONTRACT]
        got = CompiledModel(graph, cache=cache)(*values)
    assert kinds == ["gemm"]
    rows = int(np.prod(values[0].shape[:-1]))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4 * np.sqrt(rows))


def contract(b: int, t: int, k: int, n: int, isa: str, cache: KernelCache,
             transpose_out: bool = False) -> None:
    a_in, g_in = ops.input_((b, t, k), "float32", name="a"), ops.input_((b, t, n), name="g")
    a, g = randn(b, t, k), randn(b, t, n)
    want = np.einsum("btk,btn->kn", a.astype(np.float64), g.astype(np.float64))
    run([a_in, g_in], ops.contract(a_in, g_in, transpose_out), [a, g],
        want.T if transpose_out else want, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("b,t,k,n", [(2, 3, 8, 7), (3, 7, 13, 20), (1, 9, 40, 33),
                                     (4, 70, 8, 17), (5, 60, 19, 64), (2, 150, 9, 3),
                                     (1, 1, 11, 5)])
def test_small_contracts(b: int, t: int, k: int, n: int, isa: str, cache: KernelCache) -> None:
    """Output rows 8 to 40 (last row tiles of every size), one row of M up to 300 rows,
    narrow and wide columns."""
    contract(b, t, k, n, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
def test_transposed_output(isa: str, cache: KernelCache) -> None:
    contract(3, 100, 21, 10, isa, cache, transpose_out=True)


@pytest.mark.parametrize("isa", ISAS)
def test_blocks_of_rows_and_columns(isa: str, cache: KernelCache) -> None:
    """M of two full blocks and a rest; N wider than a block of columns (two blocks, the
    second narrower, ending in a partial vector); output rows ending in a partial tile."""
    k, n = 35, 1100
    with using_isa(isa):
        lhs, rhs = Layout.contiguous((k, 1)), Layout.contiguous((1, n))
        blocking, p = contract_blocking(lhs, rhs), contract_plan(lhs, rhs)
    assert blocking.nc < n and MIN_KC <= blocking.kc <= MAX_KC
    assert 4 * blocking.kc * p.panels * p.seg_width <= PANEL_BYTES and (p.mr == 1 or k % p.mr)
    contract(1, 2 * blocking.kc + 37, k, n, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
def test_a_wide_output_in_one_block_of_columns(isa: str, cache: KernelCache) -> None:
    """A GRU's weight gradient shape, scaled down in M: 513 columns (a bias column after
    512: a last panel of one vector with one valid lane) in one block of columns."""
    with using_isa(isa):
        blocking = contract_blocking(Layout.contiguous((96, 1)), Layout.contiguous((1, 513)))
    assert blocking.nc == 513
    contract(2, 300, 96, 513, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("extra", [1, 3, 4, 5])
def test_last_columns_after_full_panels(extra: int, isa: str, cache: KernelCache) -> None:
    """One to five columns after full panels (up to TAIL_COLUMNS of them take the k-loop
    with vectors along the tile's rows), below a partial last row tile."""
    with using_isa(isa):
        p = contract_plan(Layout.contiguous((13, 1)), Layout.contiguous((1, 64)))
    n = p.nv * p.vw + extra
    contract(3, 100, 13, n, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
def test_strided_rows(isa: str, cache: KernelCache) -> None:
    """Both operands are column slices of wider inputs (row strides larger than their
    widths)."""
    b, t, k, n = 3, 120, 14, 23
    a_in, g_in = ops.input_((b, t, k + 5), name="a"), ops.input_((b, t, n + 9), name="g")
    a, g = randn(b, t, k + 5), randn(b, t, n + 9)
    want = np.einsum("btk,btn->kn", a[..., 2:2 + k].astype(np.float64),
                     g[..., 4:4 + n].astype(np.float64))
    out = ops.contract(ops.slice_(a_in, 2, 2, k), ops.slice_(g_in, 2, 4, n))
    run([a_in, g_in], out, [a, g], want, isa, cache)


@pytest.mark.parametrize("isa", ISAS)
def test_a_left_operand_with_strided_columns(isa: str, cache: KernelCache) -> None:
    """a an index of an interleaved input ([M, K] of a [M, K, 2]): a tile's rows are two
    floats apart."""
    m, k, n = 300, 17, 40
    a_in, g_in = ops.input_((m, k, 2), name="a"), ops.input_((m, n), name="g")
    a, g = randn(m, k, 2), randn(m, n)
    want = a[..., 1].T.astype(np.float64) @ g.astype(np.float64)
    run([a_in, g_in], ops.contract(ops.index(a_in, 2, 1), g_in), [a, g], want, isa, cache)


@pytest.mark.parametrize("isa", [i for i in ISAS if i != "generic"])
def test_the_k_loops_keep_their_tile_in_registers(isa: str) -> None:
    """With the next tile's copy and the prefetches folded in, the k-loops still hold the
    whole tile in registers (no stack access) and run MR x NV FMAs a k-step."""
    a_in, g_in = ops.input_((2, 300, 96), name="a"), ops.input_((2, 300, 513), name="g")
    graph = close_graph([a_in, g_in], [ops.contract(a_in, g_in)])
    with using_isa(isa):
        p = contract_plan(Layout.contiguous((96, 1)), Layout.contiguous((1, 513)))
        asm = CompiledModel(graph).asm(np.zeros((2, 300, 96), np.float32),
                                       np.zeros((2, 300, 513), np.float32))
    loops = k_loops(asm)
    reg = "zmm" if p.vw == 16 else "ymm"
    fmas = sorted(sum(bool(re.search(rf"vfmadd\w+\s.*%{reg}", x)) for x in body)
                  for body in loops)
    assert fmas[-2:] == [p.mr * p.nv] * 2          # the first panel's and the others'
    assert sum(any("prefetch" in x for x in body) for body in loops) >= 2
    for body in loops:
        assert not [x for x in body if "(%rsp)" in x], "\n".join(body)
