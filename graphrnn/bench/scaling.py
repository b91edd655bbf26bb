"""`graphrnn bench --distributed`: how throughput scales from one core to two, out of process.

Training: the adding problem (an LSTM, Adam) at one global batch size, `fit` run under
`mpiexec -n 1` and `mpiexec -n 2` (ranks bound to cores unless --no-bind, every thread pool
held to one thread); sequences per second from the median epoch after a warm-up that
compiles. The control is two independent `mpiexec -n 1` trainings at once: what two cores
give the same step right now, without any collective (the machine's two-process capacity,
which load from other tenants lowers). Inference: the model's forward pass over sequences
made on the workers as a dask array, `graphrnn.distributed.predict` on a LocalCluster of 1
and of 2 single-threaded worker processes (both up and warm throughout, their housekeeping
slowed: `dask_predict.local_cluster`). Each round measures every case once, in a shuffled
order; the report gives medians over the rounds, the two scaling ratios (2 / 1) and the
control ratio, the ISA and the load average, each rank's milliseconds per step (CPU: the
native step, the waits in collectives, the rest; wall) and each predict call's CPU seconds
(workers; client and scheduler).
Needs the `distributed` extra (mpi4py, mpich, dask[distributed]); mpiexec is the one next to
the running Python.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any, Callable

import numpy as np

import graphrnn as gr
from .. import nn
from ..datasets import adding_problem
from ..distributed import predict
from ..distributed.dask_predict import local_cluster
from ..isa import current_isa
from ..optim import Adam
from ..train import fit
from .child import ONE_THREAD, write_result
from .scaling_rank import PhaseClock


_CPU_PHASES = ("native", "waits", "rest", "other threads")     # as PhaseClock reports them


@dataclass(frozen=True)
class ScalingConfig:
    """What `graphrnn bench --distributed` runs (the defaults are the issue's setting)."""
    steps: int = 50                 # T of the adding problem
    hidden: int = 100               # LSTM units
    batch: int = 256                # global batch of a training step
    train_rows: int = 8192          # sequences per training epoch
    epochs: int = 3                 # timed epochs per training run (after the warm-up)
    infer_rows: int = 65536         # sequences per predict call
    chunk: int = 4096               # rows per dask chunk (one task each)
    rounds: int = 3                 # interleaved rounds; medians over them
    bind: bool = True               # mpiexec -bind-to core


QUICK = ScalingConfig(train_rows=2048, epochs=2, infer_rows=16384, chunk=2048)


def build_model(cfg: ScalingConfig, seed: int = 0) -> gr.gModule:
    """The benchmark's model: an LSTM over [B, T, 2] whose last state a Linear reads."""
    gr.manual_seed(seed)
    x = gr.Input("B", "T", 2, name="x")
    last = nn.Recurrent(gr.cells.LSTM(2, cfg.hidden), return_sequences=False)(x)
    model = gr.gModule([x], [nn.Linear(cfg.hidden, 1)(last)], name="lstm")
    model.reset_parameters(seed, scheme="xavier_uniform")
    return model


# ----------------------------------------------------------------------------- in a rank

def train_rank(cfg: ScalingConfig) -> dict[str, Any] | None:
    """Run inside mpiexec: a warm-up fit, then the timed one. Rank 0 returns the figures."""
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    x, y = adding_problem(cfg.train_rows, cfg.steps, np.random.default_rng(0))
    model = build_model(cfg)
    crit, opt = gr.MSECriterion(), Adam(model.parameters(), lr=1e-3)
    warm = min(cfg.train_rows, 2 * cfg.batch)
    fit(model, crit, x[:warm], y[:warm], epochs=1, batch_size=cfg.batch, optimizer=opt,
        progress=False, comm=comm)                                   # compiles
    comm.Barrier()
    with PhaseClock() as clock:
        history = fit(model, crit, x, y, epochs=cfg.epochs, batch_size=cfg.batch,
                      optimizer=opt, progress=False, comm=comm)
    steps = cfg.epochs * -(-cfg.train_rows // cfg.batch)
    phases = comm.gather(clock.per_step_ms(steps), root=0)
    if comm.Get_rank() != 0:
        return None
    return {"ranks": comm.Get_size(), "loss": history.loss[-1],
            "seq_per_s": cfg.train_rows / statistics.median(history.seconds),
            "cpu_ms_per_step": phases}


# ----------------------------------------------------------------------------- launching

def _mpiexec() -> Path:
    path = Path(sys.executable).parent / "mpiexec"
    if not path.exists():
        raise RuntimeError(f"no mpiexec next to {sys.executable}: install the distributed "
                           f"extra (pip install -e '.[distributed]')")
    return path


def launch_training(cfg: ScalingConfig, ranks: int, copies: int = 1) -> list[dict[str, Any]]:
    """The figures of `copies` independent `mpiexec -n ranks` trainings run at the same time."""
    bind = ["-bind-to", "core"] if cfg.bind and copies == 1 else []
    cmd = [str(_mpiexec()), *bind, "-n", str(ranks), sys.executable, "-m",
           "graphrnn.bench.scaling", "--train-rank", json.dumps(asdict(cfg))]
    env = dict(os.environ, **ONE_THREAD)
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, env=env, text=True)
             for _ in range(copies)]
    outs = [p.communicate(timeout=1800)[0] for p in procs]
    if any(p.returncode for p in procs):
        raise RuntimeError(f"the training job failed: {' '.join(cmd)}")
    return [json.loads(o.strip().splitlines()[-1]) for o in outs]


def infer_data(cfg: ScalingConfig) -> Any:
    """n random [T, 2] sequences as a dask array whose chunks the workers make (0.3 ms each),
    so that what is timed is the model, and no worker starts out holding most chunks."""
    import dask.array as da
    return da.random.default_rng(1).random((cfg.infer_rows, cfg.steps, 2),
                                           chunks=(cfg.chunk, cfg.steps, 2), dtype=np.float32)


# ----------------------------------------------------------------------------- measuring

def measure(cfg: ScalingConfig, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    """Every case `cfg.rounds` times, interleaved; the medians, ratios and phases."""
    rng = random.Random(0)
    samples: dict[str, list[float]] = {k: [] for k in ("train1", "train2", "control",
                                                       "infer1", "infer2")}
    phases: dict[str, Any] = {}         # training: per run, per rank, ms per step by phase
    calls: dict[str, Any] = {}          # inference: per call, CPU seconds by process
    cases: dict[str, Callable[[], float]] = {
        "train1": lambda: _train(cfg, 1, phases),
        "train2": lambda: _train(cfg, 2, phases),
        "control": lambda: sum(r["seq_per_s"] for r in launch_training(cfg, 1, copies=2))}
    for r in range(cfg.rounds):
        for name in rng.sample(sorted(cases), len(cases)):
            samples[name].append(cases[name]())
            log(f"round {r + 1}: {name} {samples[name][-1]:.0f} sequences/s")
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "lstm.grnn")
        gr.save(build_model(cfg), path)
        data = infer_data(cfg)
        with local_cluster(1) as c1, local_cluster(2) as c2:
            clients = {"infer1": c1, "infer2": c2}
            for c in clients.values():
                predict(path, data, client=c)                       # loads and compiles
            for r in range(cfg.rounds):
                for name in rng.sample(sorted(clients), 2):
                    seconds, cpu = _timed_predict(path, data, clients[name])
                    samples[name].append(cfg.infer_rows / seconds)
                    calls.setdefault(name, []).append(cpu)
                    log(f"round {r + 1}: {name} {samples[name][-1]:.0f} sequences/s")
    med = {k: statistics.median(v) for k, v in samples.items()}
    isa = current_isa()
    return {"config": asdict(cfg), "samples": samples, "median": med,
            "training_scaling": med["train2"] / med["train1"],
            "inference_scaling": med["infer2"] / med["infer1"],
            "control_capacity": med["control"] / med["train1"],
            "cpu_ms_per_step": phases, "cpu_s_per_predict": calls,
            "isa": {"name": isa.name, "cpu": isa.cpu},
            "cores": os.cpu_count(), "loadavg": list(os.getloadavg())}


def _train(cfg: ScalingConfig, ranks: int, phases: dict[str, Any]) -> float:
    got = launch_training(cfg, ranks)[0]
    phases.setdefault(f"{ranks} rank(s)", []).append(got["cpu_ms_per_step"])
    return got["seq_per_s"]


def _timed_predict(path: str, data: Any, client: Any) -> tuple[float, dict[str, float]]:
    """Wall seconds of one predict call, and the CPU seconds it took: in the workers, and in
    this process (the client and, for a LocalCluster, the scheduler)."""
    before = client.run(time.process_time)
    here, t0 = time.process_time(), time.perf_counter()
    predict(path, data, client=client)
    seconds, here = time.perf_counter() - t0, time.process_time() - here
    after = client.run(time.process_time)
    return seconds, {"workers": sum(after[w] - before[w] for w in after),
                     "client and scheduler": here}


def format_scaling(result: dict[str, Any]) -> str:
    """The report as text."""
    cfg, med = result["config"], result["median"]
    lines = [f"adding problem: LSTM {cfg['hidden']}, T={cfg['steps']}, global batch "
             f"{cfg['batch']}; {result['cores']} cores, ISA {result['isa']['name']} "
             f"({result['isa']['cpu']}); load average {result['loadavg'][0]:.2f}; medians "
             f"of {cfg['rounds']} interleaved rounds",
             f"  training,  1 MPI rank:        {med['train1']:9.0f} sequences/s",
             f"  training,  2 MPI ranks:       {med['train2']:9.0f} sequences/s",
             f"  control, two 1-rank jobs:     {med['control']:9.0f} sequences/s in all",
             f"  inference, 1 Dask worker:     {med['infer1']:9.0f} sequences/s",
             f"  inference, 2 Dask workers:    {med['infer2']:9.0f} sequences/s"]
    for label, runs in result["cpu_ms_per_step"].items():
        run = sorted(runs, key=lambda r: r[0]["wall"])[len(runs) // 2]      # the median run
        for rank, p in enumerate(run):
            cpu = ", ".join(f"{k} {max(p[k], 0.0) + 0.0:.2f}" for k in _CPU_PHASES)
            lines.append(f"  ms per step, {label}, rank {rank}: CPU {cpu}; wall {p['wall']:.2f} "
                         f"(native {p['native wall']:.2f}, waits {p['waits wall']:.2f})")
    for label, runs in sorted(result["cpu_s_per_predict"].items()):
        cpu = ", ".join(f"{k} {statistics.median(r[k] for r in runs):.3f}" for k in runs[0])
        lines.append(f"  CPU s per predict call, {label[5:]} worker(s): {cpu}")
    lines.append(f"scaling 1 -> 2: training {result['training_scaling']:.2f}x, inference "
                 f"{result['inference_scaling']:.2f}x; control (two-process capacity) "
                 f"{result['control_capacity']:.2f}x")
    return "\n".join(lines)


def run_command(args: argparse.Namespace) -> int:
    """`graphrnn bench --distributed [--quick] [--json] [--no-bind]`."""
    cfg = QUICK if args.quick else ScalingConfig()
    cfg = replace(cfg, bind=not getattr(args, "no_bind", False),
                  rounds=getattr(args, "repeats", None) or cfg.rounds)
    os.environ.update(ONE_THREAD)       # inherited by the Dask workers
    result = measure(cfg, log=lambda s: print(f"[bench] {s}", file=sys.stderr, flush=True))
    print(json.dumps(result, indent=2) if args.json else format_scaling(result))
    return 0


def main(argv: list[str] | None = None) -> int:
    """The rank side: `python -m graphrnn.bench.scaling --train-rank CONFIG_JSON`."""
    parser = argparse.ArgumentParser(prog="graphrnn.bench.scaling")
    parser.add_argument("--train-rank", required=True, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    got = train_rank(ScalingConfig(**json.loads(args.train_rank)))
    if got is not None:
        write_result(got, None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
