"""graphrnn beyond one machine, on standard engines (the `distributed` extra).

- MPI (mpi4py over MPICH) for synchronous data-parallel training:
  `gr.train.fit(..., comm=MPI.COMM_WORLD)`, or `AllreduceGradients(comm)` with any
  optimiser; collectives time out (`Collectives(comm, timeout=...)`) instead of hanging.
- Dask distributed for batch inference: `predict(model_file, dask_array_or_bag)`.

Importing this package imports neither mpi4py nor dask: each is imported where it is used,
so the core (which imports this package) runs without them.
"""
from __future__ import annotations

from .dask_predict import predict
from .mpi import (DEFAULT_TIMEOUT, AllreduceGradients, CollectiveTimeout, Collectives,
                  DataParallel, abort_on_error, broadcast_parameters, shard)

__all__ = ["predict", "DEFAULT_TIMEOUT", "AllreduceGradients", "CollectiveTimeout",
           "Collectives", "DataParallel", "abort_on_error", "broadcast_parameters", "shard"]
