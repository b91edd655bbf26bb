"""Row blocks (`micro_batch`): a training step's batch run as blocks of rows, one after another.

What the tests hold the feature to:
- a blocked step's loss and every gradient entry equal the unblocked step's and the
  interpreter's (float32 rounding: rtol 1e-5, atol 1e-6) for LSTM, GRU, rows of their own
  lengths, a sum-reduced loss, batches that are not a multiple of the block;
- blocks are of equal size (differing by at most one row), all served by one program;
- a step whose rows mix (a batch-wide op, dropout while training) is never blocked, and a
  dropout step draws the interpreter's masks;
- `micro_batch=0` never blocks, an int forces blocks, a bad value is refused; the automatic
  rule (`block_rows`) blocks only when the batch's arena outgrows the cache's share of a core,
  never below MIN_ROWS rows a block, never a model whose rows are large (H=512, T=100);
- the cache's share is read from sysfs, with a fallback;
- `fit` takes the option, also data-parallel over MPI ranks (`comm=`).
No test depends on timing: the automatic rule is checked with a given cache share.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import graphrnn as gr
import row_models
from row_models import grads
from graphrnn import micro_batch as mb
from graphrnn import nn, ops
from graphrnn.losses import Criterion
from graphrnn.threads import split_rows
from graphrnn.train import InterpretedStep, fit

RNG = np.random.default_rng(5)
D, H = 3, 6
MIB = 1 << 20


def layer(cell: str = "LSTM", h: int = H, seed: int = 2) -> gr.gModule:
    gr.manual_seed(seed)
    x = gr.Input("B", "T", D, name="x")
    return gr.gModule([x], [nn.Linear(h, 2)(nn.Recurrent(getattr(gr.cells, cell)(D, h))(x))])


def tagger() -> gr.gModule:
    return row_models.tagger(D, H)


def data(b: int, t: int, d: int = D) -> np.ndarray:
    return row_models.sequences(RNG, b, t, d)


def three_ways(model: gr.gModule, crit: object, inputs: tuple, target: np.ndarray,
               micro_batch: int, **options: object) -> tuple:
    """(blocked step, its loss and gradient, the unblocked ones, the interpreter's)."""
    blocked = gr.compile(model, loss=crit, train=True, micro_batch=micro_batch, **options)
    whole = gr.compile(model, loss=crit, train=True, micro_batch=0, **options)
    model.parameters()[1][...] = np.nan                 # every entry must be written
    loss_b = blocked(*inputs, target=target)
    grad_b = grads(model)
    loss_w, grad_w = whole(*inputs, target=target), grads(model)
    ref = InterpretedStep(model, crit, bptt_max=options.get("bptt_max"))
    loss_i, grad_i = ref(*inputs, target=target), grads(model)
    return blocked, (loss_b, grad_b), (loss_w, grad_w), (loss_i, grad_i)


def assert_same(got: tuple, want: tuple) -> None:
    assert got[0] == pytest.approx(want[0], rel=1e-5, abs=1e-6)
    assert np.isfinite(got[1]).all()
    np.testing.assert_allclose(got[1], want[1], rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- exactness

@pytest.mark.parametrize("cell,batch,rows", [("LSTM", 27, 8), ("GRU", 30, 7), ("RNN", 9, 4)])
def test_blocked_step_equals_the_whole_batch_and_the_interpreter(cell: str, batch: int,
                                                                  rows: int) -> None:
    model = layer(cell)
    x, y = data(batch, 7), data(batch, 7, d=2)
    step, blocked, whole, interp = three_ways(model, gr.MSECriterion(), (x,), y, rows)
    parts = step.blocks.parts(x, target=y)
    assert parts == split_rows(batch, -(-batch // rows)) and len(parts) > 1
    assert max(hi - lo for lo, hi in parts) <= rows
    assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1
    assert_same(blocked, whole)
    assert blocked[0] == pytest.approx(interp[0], rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(blocked[1], interp[1], rtol=1e-4, atol=1e-6)
    assert len(step.programs) == 1                      # the blocks reuse the batch's program


def test_rows_of_their_own_lengths_and_truncated_bptt_block_exactly() -> None:
    model = tagger()
    x, n = data(21, 9), RNG.integers(0, 10, 21)
    n[3] = 0                                            # a row with no steps at all
    target = RNG.integers(0, 3, (21, 9))
    step, blocked, whole, interp = three_ways(model, gr.CrossEntropyCriterion(), (x, n),
                                              target, 5, bptt_max=4)
    assert len(step.blocks.parts(x, n, target=target)) == 5
    assert_same(blocked, whole)
    assert blocked[0] == pytest.approx(interp[0], rel=1e-5, abs=1e-6)
    np.testing.assert_allclose(blocked[1], interp[1], rtol=1e-4, atol=1e-6)
    assert len(step.programs) == 1


class SumSquares(Criterion):
    """sum((pred - target)^2): a sum over the batch, so the blocks' losses add up."""

    def loss(self, pred: gr.Node, target: gr.Node) -> gr.Node:
        d = ops.sub(pred, target)
        return ops.sum_(ops.mul(d, d))


def test_a_sum_reduced_loss_adds_the_blocks() -> None:
    model = layer("GRU")
    x, y = data(19, 5), data(19, 5, d=2)
    step, blocked, whole, interp = three_ways(model, SumSquares(), (x,), y, 6)
    assert len(step.blocks.parts(x, target=y)) == 4
    assert_same(blocked, whole)
    assert blocked[0] == pytest.approx(interp[0], rel=1e-5)


def test_every_batch_size_and_length_runs_on_one_program() -> None:
    model = layer()
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=4)
    whole = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=0)
    for batch, t in ((3, 4), (4, 4), (5, 6), (17, 3), (1, 2)):
        x, y = data(batch, t), data(batch, t, d=2)
        assert_same((step(x, target=y), grads(model)), (whole(x, target=y), grads(model)))
    assert len(step.programs) == 1


# ----------------------------------------------------------------------------- never blocked

def test_dropout_steps_are_never_blocked_and_draw_the_interpreters_masks() -> None:
    gr.manual_seed(0)
    x = gr.Input("B", "T", D, name="x")
    model = gr.gModule([x], [nn.Linear(H, 2)(nn.Dropout(0.4)(
        nn.Recurrent(gr.cells.LSTM(D, H))(x)))])
    xs, y = data(24, 5), data(24, 5, d=2)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=4)
    assert "mixes the rows" in step.split.separable
    assert step.blocks.parts(xs, target=y) == ((0, 24),)
    loss = step(xs, target=y, seed=7)
    grad = grads(model)
    ref = InterpretedStep(model, gr.MSECriterion())
    assert ref(xs, target=y, seed=7) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad, grads(model), rtol=1e-4, atol=1e-6)


def test_a_step_whose_rows_mix_is_never_blocked() -> None:
    gr.manual_seed(1)
    x = gr.Input("B", "T", D, name="x")
    h = nn.Recurrent(gr.cells.GRU(D, H))(x)
    centred = ops.sub(h, ops.mean(h, axes=(0,), keepdims=True))     # a batch-wide mean
    model = gr.gModule([x], [nn.Linear(H, 2)(centred)])
    xs, y = data(20, 4), data(20, 4, d=2)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=3)
    assert "mixes the rows" in step.split.separable
    assert step.blocks.parts(xs, target=y) == ((0, 20),)
    loss, grad = step(xs, target=y), grads(model)
    ref = InterpretedStep(model, gr.MSECriterion())
    assert ref(xs, target=y) == pytest.approx(loss, rel=1e-5)
    np.testing.assert_allclose(grad, grads(model), rtol=1e-4, atol=1e-6)


def test_micro_batch_zero_never_blocks_and_an_int_forces_blocks() -> None:
    model = layer()
    x, y = data(64, 3), data(64, 3, d=2)
    off = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=0)
    assert off.blocks.parts(x, target=y) == ((0, 64),)
    off.blocks.share = 1                                # even with no cache at all
    assert off.blocks.parts(x[:63], target=y[:63]) == ((0, 63),)
    on = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=16)
    assert on.blocks.parts(x, target=y) == split_rows(64, 4)
    assert on.blocks.parts(x[:16], target=y[:16]) == ((0, 16),)


def test_threads_that_split_a_call_run_their_parts_whole() -> None:
    model = layer(h=32)
    x, y = data(64, 40), data(64, 40, d=2)
    two = gr.compile(model, loss=gr.MSECriterion(), train=True, threads=2, micro_batch=8)
    assert len(two.parts_for(64, 40)) == 2
    assert two.blocks.parts(x, target=y) == ((0, 64),)
    small = x[:12], y[:12]                  # too little work for two threads: blocks instead
    assert two.parts_for(12, 40) == ((0, 12),)
    assert two.blocks.parts(small[0], target=small[1]) == split_rows(12, 2)
    whole = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=0)
    for xs, ys in ((x, y), small):
        assert_same((two(xs, target=ys), grads(model)), (whole(xs, target=ys), grads(model)))


@pytest.mark.parametrize("bad", [-1, 2.5, True, "16"])
def test_bad_micro_batch_values_are_refused(bad: object) -> None:
    with pytest.raises(ValueError, match="micro_batch"):
        gr.compile(layer(), loss=gr.MSECriterion(), train=True, micro_batch=bad)


def test_micro_batch_is_a_training_option() -> None:
    with pytest.raises(TypeError, match="micro_batch=k applies to training"):
        gr.compile(layer(), micro_batch=8)
    x, y = data(8, 4), data(8, 4, d=2)
    with pytest.raises(ValueError, match="stateful chunks"):
        fit(layer(), gr.MSECriterion(), x, y, epochs=1, stateful_chunk=2, micro_batch=4,
            progress=False)


# ----------------------------------------------------------------------------- the rule

def per_row(mib: float, fixed: float = 0.66) -> object:
    return lambda rows: int((fixed + mib * rows) * MIB)


def test_the_automatic_rule() -> None:
    share = 16 * MIB
    adding = per_row(0.229)                             # the adding-problem LSTM, T=50
    assert mb.block_rows(256, adding, None, share) == split_rows(256, 16)   # 16 x 16
    assert mb.block_rows(128, adding, None, share) == split_rows(128, 8)
    assert mb.block_rows(14, adding, None, share) == ((0, 14),)             # fits
    assert mb.block_rows(30, adding, None, share) == ((0, 30),)             # < 2 x MIN_ROWS
    assert mb.block_rows(40, adding, None, share) == split_rows(40, 2)
    for batch in (64, 100, 256, 1000, 1001):
        parts = mb.block_rows(batch, adding, None, share)
        assert min(hi - lo for lo, hi in parts) >= mb.MIN_ROWS
        assert parts == split_rows(batch, len(parts))
    # rows so large that 16 of them outgrow the cache many times: never blocked
    assert mb.block_rows(64, per_row(3.2), None, share) == ((0, 64),)
    assert mb.block_rows(512, per_row(3.2), None, share) == ((0, 512),)
    # a block may exceed the target where fewer rows would be too few, not LIMIT shares
    assert mb.block_rows(100, per_row(0.3), None, share) == split_rows(100, 6)     # 5.8 MiB
    assert mb.block_rows(100, per_row(0.4), None, share) == ((0, 100),)            # 7.5 MiB
    assert mb.block_rows(100, per_row(0.5), 0, share) == ((0, 100),)
    assert mb.block_rows(100, per_row(0.5), 30, share) == split_rows(100, 4)
    assert mb.block_rows(100, per_row(0.5), 100, share) == ((0, 100),)


def test_a_model_of_large_rows_is_not_blocked_automatically() -> None:
    gr.manual_seed(0)
    x = gr.Input("B", "T", 512, name="x")
    model = gr.gModule([x], [nn.Recurrent(gr.cells.LSTM(512, 512))(x)])
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)
    step.blocks.share = 16 * MIB                        # the benchmark host's
    xs, y = np.zeros((64, 100, 512), np.float32), np.zeros((64, 100, 512), np.float32)
    assert step.blocks.parts(xs, target=y) == ((0, 64),)
    assert len(step.programs) == 1


def test_the_automatic_rule_on_a_compiled_step() -> None:
    model = layer(h=16)
    x, y = data(100, 30), data(100, 30, d=2)
    step = gr.compile(model, loss=gr.MSECriterion(), train=True)    # micro_batch=None
    per_block = step.arena_bytes(x[:34], target=y[:34])
    step.blocks.share = int(per_block / mb.TARGET) + 1  # 34 rows fit, 50 do not
    assert step.blocks.parts(x, target=y) == split_rows(100, 3)
    whole = gr.compile(model, loss=gr.MSECriterion(), train=True, micro_batch=0)
    assert_same((step(x, target=y), grads(model)), (whole(x, target=y), grads(model)))
    assert len(step.programs) == 1


def test_the_cache_share_comes_from_sysfs(tmp_path: Path) -> None:
    def cache(name: str, level: int, kind: str, size: str, cpus: str) -> None:
        d = tmp_path / name
        d.mkdir()
        for field, text in (("level", level), ("type", kind), ("size", size),
                            ("shared_cpu_list", cpus)):
            (d / field).write_text(f"{text}\n")
    cache("index0", 1, "Data", "48K", "0")
    cache("index1", 1, "Instruction", "32K", "0")
    cache("index2", 2, "Unified", "1024K", "0")
    cache("index3", 3, "Unified", "32768K", "0-3,8-11")
    assert mb.cache_share(str(tmp_path)) == 4 * MIB
    assert mb.cache_share(str(tmp_path / "missing")) == mb.FALLBACK_SHARE
    assert mb.cache_share() > 0


# ----------------------------------------------------------------------------- fit

def test_fit_with_blocks_trains_as_without() -> None:
    x = data(40, 5)
    y = x.sum(-1, keepdims=True).cumsum(1).repeat(2, -1)
    runs = []
    for micro_batch in (0, 6):
        model = layer()
        h = fit(model, gr.MSECriterion(), x, y, epochs=2, batch_size=20, progress=False,
                micro_batch=micro_batch)
        runs.append((h.loss, model.parameters()[0].copy()))
    np.testing.assert_allclose(runs[1][0], runs[0][0], rtol=1e-5)
    np.testing.assert_allclose(runs[1][1], runs[0][1], rtol=1e-4, atol=1e-6)


MPIEXEC = Path(sys.executable).parent / "mpiexec"
JOB = textwrap.dedent('''
    import sys
    import numpy as np
    import graphrnn as gr
    from graphrnn import nn
    from graphrnn.train import fit

    gr.manual_seed(0)
    x = gr.Input("B", "T", 2, name="x")
    model = gr.gModule([x], [nn.Linear(8, 1)(nn.Recurrent(gr.cells.LSTM(2, 8))(x))])
    rng = np.random.default_rng(1)
    xs = rng.standard_normal((45, 6, 2)).astype(np.float32)
    ys = xs.sum(-1, keepdims=True).cumsum(1).astype(np.float32)
    comm = None
    if sys.argv[2] == "mpi":
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
    h = fit(model, gr.MSECriterion(), xs, ys, epochs=2, batch_size=30, progress=False,
            comm=comm, micro_batch=int(sys.argv[3]))
    if comm is None or comm.rank == 0:
        np.savez(sys.argv[1], p=model.parameters()[0], loss=h.loss)
''')


@pytest.mark.skipif(not MPIEXEC.exists(), reason="needs the mpich wheel's mpiexec next to "
                    "python (the distributed extra)")
def test_fit_over_two_ranks_with_blocks_equals_one_process(tmp_path: Path) -> None:
    pytest.importorskip("mpi4py")
    script = tmp_path / "job.py"
    script.write_text(JOB)
    env = dict(os.environ, GRAPHRNN_VERIFY="0", HYDRA_LAUNCHER="fork")
    subprocess.run([sys.executable, str(script), str(tmp_path / "one.npz"), "one", "0"],
                   check=True, env=env, timeout=300)
    subprocess.run([str(MPIEXEC), "-n", "2", sys.executable, str(script),
                    str(tmp_path / "two.npz"), "mpi", "4"], check=True, env=env, timeout=300,
                   start_new_session=True)
    one, two = np.load(tmp_path / "one.npz"), np.load(tmp_path / "two.npz")
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-5)
    np.testing.assert_allclose(two["p"], one["p"], rtol=1e-4, atol=1e-6)
