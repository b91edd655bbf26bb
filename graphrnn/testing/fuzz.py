"""Differential fuzzing: random models (graphrnn.testing.randgraph) through the cross-checks
(graphrnn.testing.crosscheck), shrunk and saved when they fail.

    found = check_case(model, inputs)         # [] when everything agrees
    graphrnn fuzz --seconds 60 --seed 1       # random cases until the time is up

A `Case` is (seed, generator knobs, checks): everything needed to rebuild the model and rerun
the checks. `shrink` regenerates a failing case from the same seed with smaller knobs while it
still fails the same way; `save_case` writes it as JSON, with the model file and its inputs
next to it, so tests/test_fuzz_regressions.py replays exactly that model even after the
generator changes.

The command runs the cases in a `Worker`, one child process for the whole run: native code
that kills it (SIGSEGV, SIGILL, SIGFPE, abort) is a finding of check "crash" for the case it
was running, shrunk and saved like the others, and the next case starts a new worker.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import hashlib
import itertools
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from .crosscheck import ALL, DEFAULT_DISABLE, Checks, Discrepancy, check_case, compare, error_text
from .worker import Worker
from ..ir import type_str
from ..runtime.cache import KernelCache
from ..serialize import load, save
from .randgraph import GenParams, Generated, generate_seeded


# ----------------------------------------------------------------------------- cases

@dataclass(frozen=True)
class Case:
    """Everything needed to rebuild one random model and rerun its checks."""
    seed: int
    params: GenParams = field(default_factory=GenParams)
    checks: Checks = field(default_factory=Checks)

    def generate(self) -> Generated:
        return generate_seeded(self.seed, self.params)

    def to_json(self) -> dict:
        """The seed, the knobs, every on/off switch of the checks, and their other settings
        where they differ from the defaults."""
        default = asdict(Checks())
        checks = {k: v for k, v in asdict(self.checks).items()
                  if isinstance(v, bool) or v != default[k]}
        return {"seed": self.seed, "params": asdict(self.params), "checks": _jsonable(checks)}

    @staticmethod
    def from_json(data: dict) -> "Case":
        """The case `to_json` wrote; a switch it does not name is off (a check added later
        does not run on a saved case)."""
        ch = dict(data.get("checks", {}))
        for k, v in asdict(Checks()).items():
            if isinstance(v, bool):
                ch.setdefault(k, False)
            elif k in ch:
                ch[k] = _tuples(ch[k])
        return Case(int(data["seed"]), GenParams(**data.get("params", {})), Checks(**ch))


def _jsonable(v: Any) -> Any:
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    return v


def _tuples(v: Any) -> Any:
    return tuple(_tuples(x) for x in v) if isinstance(v, list) else v


def fingerprint(model: Any) -> str:
    """A short hash of the model's structure (ops and types): tells whether a seed still
    builds the same model after the generator changed."""
    text = "\n".join(f"{n.op.value} {type_str(n.type)}" for n, _ in model.graph.walk())
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_case(case: Case, cache: Any = None) -> tuple[Generated | None, list[Discrepancy]]:
    """Build the case's model and run its checks."""
    try:
        g = case.generate()
    except Exception as e:                       # noqa: BLE001
        return None, [Discrepancy("generate", error_text(e))]

    def redraw(k: int) -> list[np.ndarray]:
        return g.draw(np.random.default_rng([case.seed, k]), g.batch, g.steps)
    more = g.other_sizes(np.random.default_rng([case.seed, 0]))
    return g, check_case(g.model, g.inputs, checks=case.checks, redraw=redraw, more=more,
                         cache=cache)


def run_checks(case: Case, cache: Any = None) -> list[Discrepancy]:
    """The discrepancies of one case: the job a fuzzing `Worker` runs."""
    return run_case(case, cache)[1]


def shrink(case: Case, found: Discrepancy, *, cache: Any = None, seconds: float = 60.0,
           run: Callable[[Case], list[Discrepancy]] | None = None) -> tuple[Case, Discrepancy]:
    """The smallest knobs (same seed) that still give a discrepancy of the same check and
    configuration, greedily, one knob step at a time. `run` runs one case (default:
    `run_checks` here, with `cache`); a fuzzing `Worker` runs them in a child process."""
    case = dataclasses.replace(case, checks=case.checks.only(found))
    run = run or (lambda c: run_checks(c, cache))
    deadline = time.monotonic() + seconds
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for params in case.params.smaller():
            smaller = dataclasses.replace(case, params=params)
            again = run(smaller)
            same = [d for d in again if (d.check, d.config) == (found.check, found.config)]
            if same:
                case, found, progress = smaller, same[0], True
                break
    return case, found


def save_case(case: Case, found: Discrepancy, directory: str | os.PathLike,
              generated: Generated | None = None, note: str = "") -> Path:
    """Write the case as `<check>_<seed>.json` (with `note`, a word on the bug), and (given
    the generated model) the model as `.grnn` and its inputs as `.npz` next to it. Returns
    the JSON path."""
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    stem = path / f"{found.check}_{case.seed}"
    k = 1
    while stem.with_suffix(".json").exists():      # another finding of the same case
        stem, k = path / f"{found.check}_{case.seed}_{k}", k + 1
    data = {"note": note or str(found), **case.to_json(),
            "found": {**asdict(found), "disable": list(found.disable),
                      "train": list(found.train)}}
    if generated is not None:
        data["fingerprint"] = fingerprint(generated.model)
        save(generated.model, stem.with_suffix(".grnn"))
        np.savez(stem.with_suffix(".npz"), *generated.inputs)
    stem.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    return stem.with_suffix(".json")


def load_case(path: str | os.PathLike) -> tuple[Case, dict, tuple[Any, list] | None]:
    """(case, its JSON, (model, inputs) from the files saved next to it, or None)."""
    path = Path(path)
    data = json.loads(path.read_text())
    exact = None
    if path.with_suffix(".grnn").exists():
        with np.load(path.with_suffix(".npz")) as arrays:
            inputs = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        exact = (load(path.with_suffix(".grnn")), inputs)
    return Case.from_json(data), data, exact


def replay(path: str | os.PathLike, *, exact: bool = True) -> list[Discrepancy]:
    """The discrepancies of a saved case now, under its checks: of the model and inputs saved
    next to it (`exact`), or of the model its seed builds today. A case saved for a crash
    runs in a `Worker`, so that crashing again cannot take the caller down with it."""
    if json.loads(Path(path).read_text())["found"]["check"] != "crash":
        return _replay_job((str(path), exact))
    with Worker(_replay_job) as worker:
        return worker((str(path), exact))


def _replay_job(job: tuple[str, bool], cache: Any = None) -> list[Discrepancy]:
    path, exact = job
    case, _, saved = load_case(path)
    if not exact or saved is None:
        return run_checks(case, cache)
    model, inputs = saved
    return check_case(model, inputs, checks=case.checks, cache=cache)


# ----------------------------------------------------------------------------- the command

def random_params(rng: np.random.Generator, *, max_depth: int = 2, max_width: int = 5,
                  max_ops: int = 12, max_steps: int = 5) -> GenParams:
    """Knobs for one case up to the given limits: nesting mostly at least 1, at least a third
    of the ops, loops in 90% of cases, cells in 70%."""
    return GenParams(max_depth=int(rng.choice([0] + list(range(1, max_depth + 1)) * 3)),
                     max_width=int(rng.integers(1, max_width + 1)),
                     max_ops=int(rng.integers(max(1, max_ops // 3), max_ops + 1)),
                     allow_loops=bool(rng.random() < 0.9), allow_cells=bool(rng.random() < 0.7),
                     max_batch=int(rng.integers(1, 4)),
                     max_steps=int(rng.integers(0, max_steps + 1)))


def random_cases(seed: int, checks: Checks) -> Iterator[Case]:
    """The endless sequence of cases `fuzz` runs for `seed`."""
    rng = np.random.default_rng(seed)
    while True:
        yield Case(int(rng.integers(0, 2**31 - 1)), random_params(rng), checks)


@dataclass(frozen=True)
class Summary:
    """What a fuzzing run did: cases tried, failing and crashing, and the cases it saved."""
    tried: int
    failed: int                 # cases with any finding (crashes included)
    crashed: int
    written: tuple[Path, ...]
    seconds: float

    def __str__(self) -> str:
        failing = f"{self.failed} failing" if self.failed else "no failures"
        saved = f" ({len(self.written)} distinct, written to {self.written[0].parent})" \
            if self.written else ""
        return (f"fuzz: {self.tried} cases in {self.seconds:.1f} s, {failing}, "
                f"{self.crashed} crashed{saved}")


def fuzz(seconds: float, seed: int = 0, *, compiled: bool = True, grads: bool = True,
         training: bool = False, out: str | os.PathLike = "fuzz_failures",
         log: Callable[[str], None] = partial(print, flush=True), in_process: bool = False,
         check: Callable[[Case, Any], list[Discrepancy]] = run_checks,
         timeout: float | None = 300.0, cases: int | None = None) -> Summary:
    """Run random cases for `seconds` (or `cases` of them, if that comes first); shrink and
    save each failing case that shows a new kind of failure (its first new finding).

    The cases, and the smaller ones `shrink` tries, run in one `Worker` process, restarted
    after a case that kills it (or that runs longer than `timeout` seconds): that case is a
    finding of check "crash" (also when it is met while shrinking another finding).
    `check(case, cache)` runs one case (`run_checks`; a test gives one that crashes on
    purpose). `in_process=True` runs them in this process instead, for debugging; a crash
    then ends the run, and `<out>/running.json`, which names the case while it runs, is the
    case to replay (`Case.from_json`).
    """
    out = Path(out)
    checks = Checks(compiled=compiled, train=compiled, grads=grads, training=training)
    seen: set[tuple] = set()
    written: list[Path] = []
    tried = failed = crashed = 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="graphrnn-fuzz-") as tmp, \
            _runner(check, tmp, in_process, timeout) as run_one:
        def run(case: Case) -> list[Discrepancy]:
            running = out / "running.json"
            running.parent.mkdir(parents=True, exist_ok=True)
            running.write_text(json.dumps(case.to_json(), indent=2) + "\n")
            found = run_one(case)
            running.unlink()
            return found

        def keep(case: Case, d: Discrepancy) -> None:
            """Shrink and save one new finding, and a crash met while shrinking it."""
            seen.add(d.key())
            stray: list[tuple[Case, Discrepancy]] = []

            def run_smaller(smaller: Case) -> list[Discrepancy]:
                again = run(smaller)
                stray.extend((smaller, x) for x in again if x.check == "crash" != d.check)
                return again
            small, d2 = shrink(case, d, run=run_smaller, seconds=min(60.0, seconds))
            path = save_case(small, d2, out, small.generate() if d2.check != "generate" else None)
            written.append(path)
            log(f"  shrunk to {small.params}: {d2}\n  -> {path}")
            for smaller, x in stray[:1]:
                if x.key() not in seen:
                    log(f"while shrinking (seed {smaller.seed}, {smaller.params}): {x}")
                    keep(smaller, x)

        for case in itertools.islice(random_cases(seed, checks), cases):
            if time.monotonic() - start >= seconds:
                break
            found = run(case)
            tried += 1
            failed += bool(found)
            crashed += any(d.check == "crash" for d in found)
            new = [d for d in found if d.key() not in seen]
            seen.update(d.key() for d in found)
            if new:
                more = f" (and {len(found) - 1} more findings)" if len(found) > 1 else ""
                log(f"case {tried} (seed {case.seed}, {case.params}): {new[0]}{more}")
                keep(case, new[0])
    if not written and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
    summary = Summary(tried, failed, crashed, tuple(written), time.monotonic() - start)
    log(str(summary))
    return summary


@contextlib.contextmanager
def _runner(check: Callable[[Case, Any], list[Discrepancy]], cache_dir: str, in_process: bool,
            timeout: float | None) -> Iterator[Callable[[Case], list[Discrepancy]]]:
    """A function running one case: in a Worker, or here."""
    if in_process:
        cache = KernelCache(cache_dir)
        yield lambda case: check(case, cache)
        return
    with Worker(check, cache_dir, timeout=timeout) as worker:
        yield worker


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, metavar="N",
                        help="run cases for N seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the case sequence (default 0)")
    parser.add_argument("--cases", type=int, default=None, metavar="K",
                        help="stop after K cases (default: when the time is up)")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compiled-code comparisons (forward and training step)")
    parser.add_argument("--no-grad", action="store_true", help="skip gradcheck")
    parser.add_argument("--training", action="store_true",
                        help="training mode (dropout on): the pass checks and the compiled "
                             "training steps only")
    parser.add_argument("--in-process", action="store_true",
                        help="run the cases in this process, not in a worker process (for "
                             "debugging: a crash ends the run; DIR/running.json names the case)")
    parser.add_argument("--out", default="fuzz_failures", metavar="DIR",
                        help="where shrunk failing cases go (default ./fuzz_failures)")


def run(args: argparse.Namespace) -> int:
    """`graphrnn fuzz`: exit status 1 when any case failed."""
    summary = fuzz(args.seconds, args.seed, compiled=not args.no_compile,
                   grads=not args.no_grad, training=args.training, out=args.out,
                   in_process=args.in_process, cases=args.cases)
    return 1 if summary.failed else 0


__all__ = ["check_case", "compare", "Checks", "Discrepancy", "Case", "run_case", "run_checks",
           "shrink", "save_case", "load_case", "replay", "Worker", "fingerprint", "fuzz",
           "Summary", "random_params", "random_cases", "ALL", "DEFAULT_DISABLE",
           "add_arguments", "run"]
