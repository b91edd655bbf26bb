"""Data-parallel training over MPI: real `mpiexec -n 2` jobs against one-process runs."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from graphrnn.distributed import CollectiveTimeout, Collectives, shard

MPIEXEC = Path(sys.executable).parent / "mpiexec"
try:
    import mpi4py  # noqa: F401
    HAVE_MPI = MPIEXEC.exists()
except ImportError:
    HAVE_MPI = False
needs_mpiexec = pytest.mark.skipif(not HAVE_MPI, reason="needs mpi4py and the mpich wheel's "
                                   "mpiexec next to python (the distributed extra)")

# The job script: an LSTM trained by fit, whole sequences (uneven shards, a last global batch
# of one row, validation) then a stateful run with bptt_max; each rank saves what it ended with.
JOB = textwrap.dedent('''
    import os, signal, sys
    import numpy as np
    import graphrnn as gr
    from graphrnn import nn
    from graphrnn.optim import Adam
    from graphrnn.train import fit

    def build(seq):
        gr.manual_seed(0)
        x = gr.Input("B", "T", 2, name="x")
        h = nn.Recurrent(gr.cells.LSTM(2, 8), return_sequences=seq)(x)
        model = gr.gModule([x], [nn.Linear(8, 1)(h)])
        # each rank starts differently: the broadcast from rank 0 must make them agree
        model.reset_parameters(int(os.environ.get("PMI_RANK", "0")), scheme="xavier_uniform")
        return model

    def data(n, t, seq):
        rng = np.random.default_rng(1)
        x = rng.standard_normal((n, t, 2)).astype(np.float32)
        y = x.sum(-1, keepdims=True).cumsum(1) if seq else x.sum((1, 2))[:, None]
        return x, y.astype(np.float32)

    class Saboteur(Adam):
        """Adam that kills or freezes its own rank (1) at its third step."""
        def step(self):
            if self.steps == 2 and os.environ.get("PMI_RANK") == "1" and FAULT:
                os.kill(os.getpid(), getattr(signal, FAULT))
            super().step()

    def run(comm, out):
        m, (x, y) = build(False), data(97, 6, False)
        h = fit(m, gr.MSECriterion(), x, y, epochs=2, batch_size=32, progress=False,
                comm=comm, validation=(x[:50], y[:50]), optimizer=Saboteur(m.parameters()))
        m2, (x2, y2) = build(True), data(20, 12, True)
        h2 = fit(m2, gr.MSECriterion(), x2, y2, epochs=1, batch_size=8, stateful_chunk=4,
                 bptt_max=3, progress=False, comm=comm)
        disagree = ""
        try:        # ranks given different data sizes: a clear error on each, no hang
            if comm is not None:
                n = 10 + int(os.environ["PMI_RANK"])
                fit(m, gr.MSECriterion(), x[:n], y[:n], epochs=1, progress=False, comm=comm)
        except ValueError as e:
            disagree = str(e)
        np.savez(out, p=m.parameters()[0], p2=m2.parameters()[0], loss=h.loss,
                 val=h.val_loss, loss2=h2.loss, disagree=disagree)

    FAULT = sys.argv[3] if len(sys.argv) > 3 else ""
    if sys.argv[2] == "one":
        run(None, sys.argv[1])
    else:
        from mpi4py import MPI
        from graphrnn.distributed import Collectives
        comm = Collectives(MPI.COMM_WORLD, timeout=float(sys.argv[2]))
        run(comm, sys.argv[1] + f".{MPI.COMM_WORLD.rank}.npz")
''')


def _mpiexec(tmp: Path, timeout_arg: str, fault: str = "", limit: float = 120):
    script = tmp / "job.py"
    script.write_text(JOB)
    env = dict(os.environ, GRAPHRNN_VERIFY="0", HYDRA_LAUNCHER="fork")
    cmd = [str(MPIEXEC), "-n", "2", sys.executable, str(script), str(tmp / "out"),
           timeout_arg] + ([fault] if fault else [])
    start = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"mpiexec still running after {limit} s")
    return proc.returncode, out + err, time.monotonic() - start


def test_shards_cover_the_batch_in_order():
    rows = np.arange(10, 17)
    parts = [shard(rows, r, 3) for r in range(3)]
    assert [len(p) for p in parts] == [3, 2, 2]
    np.testing.assert_array_equal(np.concatenate(parts), rows)
    assert [len(shard(rows[:1], r, 2)) for r in range(2)] == [1, 0]


class _Stuck:
    """An MPI request that never completes, and a communicator that hands it out."""

    def Test(self) -> bool:
        return False

    def Get_rank(self) -> int:
        return 0

    def Get_size(self) -> int:
        return 2


def test_a_collective_that_never_completes_times_out_in_process():
    coll = Collectives(_Stuck(), timeout=0.2, abort=False)
    start = time.monotonic()
    with pytest.raises(CollectiveTimeout, match="rank 0 of 2: the test collective did not "
                                                "complete within 0.2 s"):
        coll.wait(_Stuck(), "the test collective")
    assert time.monotonic() - start < 5
    with pytest.raises(ValueError, match="positive"):
        Collectives(_Stuck(), timeout=0)


def test_importing_graphrnn_imports_neither_mpi4py_nor_dask():
    code = ("import sys, graphrnn, graphrnn.train, graphrnn.distributed; "
            "print(sorted(m for m in ('mpi4py', 'dask', 'distributed') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120).stdout
    assert out.strip() == "[]"


@needs_mpiexec
def test_two_ranks_train_as_one_process_on_the_global_batches(tmp_path):
    rc, log, _ = _mpiexec(tmp_path, "60")
    assert rc == 0, log
    ranks = [np.load(tmp_path / f"out.{r}.npz") for r in range(2)]
    subprocess.run([sys.executable, str(tmp_path / "job.py"), str(tmp_path / "one.npz"), "one"],
                   check=True, env=dict(os.environ, GRAPHRNN_VERIFY="0"), timeout=120)
    one = np.load(tmp_path / "one.npz")
    for key in ("p", "p2", "loss", "val", "loss2"):
        # every rank holds the same parameters and history, bit for bit
        np.testing.assert_array_equal(ranks[0][key], ranks[1][key])
        # and the one-process run's, up to float32 summation order
        np.testing.assert_allclose(ranks[0][key], one[key], rtol=1e-6, atol=1e-7)
    assert len(one["loss"]) == 2 and len(one["val"]) == 2
    for r in ranks:         # fit on different data sizes: every rank raised the same error
        assert "the ranks disagree" in str(r["disagree"]) and "from (" in str(r["disagree"])


@needs_mpiexec
def test_a_killed_rank_ends_the_job_with_an_error(tmp_path):
    rc, log, secs = _mpiexec(tmp_path, "10", fault="SIGKILL")
    assert rc != 0
    assert secs < 60
    assert not (tmp_path / "out.0.npz").exists()


@needs_mpiexec
def test_a_hung_rank_times_the_others_out(tmp_path):
    # 10 s: long enough that the ranks' first compiles, one slower than the other on a busy
    # machine, do not trip it; only the frozen rank should
    rc, log, secs = _mpiexec(tmp_path, "10", fault="SIGSTOP")
    assert rc != 0
    assert re.search(r"rank 0 of 2: the [a-z -]+ did not complete within 10 s", log), log
    assert secs < 90
