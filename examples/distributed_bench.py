"""Scaling out on one machine: training over 1 and 2 MPI ranks, inference on 1 and 2 Dask workers.

    python examples/distributed_bench.py             # both, then the two scaling ratios
    python examples/distributed_bench.py --quick     # fewer sequences

The same measurement as `graphrnn bench --distributed` (graphrnn/bench/scaling.py, whose
docstring says what is run and how): the adding problem (T = 50, LSTM 100, Adam) at global
batch 256 under `mpiexec -n 1` and `-n 2`, a control of two independent one-rank trainings,
and `graphrnn.distributed.predict` on LocalClusters of 1 and 2 single-threaded workers,
interleaved over rounds, medians. Needs the `distributed` extra (mpi4py, mpich,
dask[distributed]).
"""
from __future__ import annotations

import argparse
import sys

from graphrnn.bench import scaling


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer sequences")
    parser.add_argument("--json", action="store_true", help="print everything as JSON")
    parser.add_argument("--repeats", type=int, help="interleaved rounds (default 3)")
    parser.add_argument("--no-bind", action="store_true", help="leave the ranks unbound")
    return scaling.run_command(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
