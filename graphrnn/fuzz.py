"""Differential fuzzing: random models (graphrnn.randgraph) through the cross-checks
(graphrnn.crosscheck), shrunk and saved when they fail.

    found = check_case(model, inputs)         # [] when everything agrees
    graphrnn fuzz --seconds 60 --seed 1       # random cases until the time is up

A `Case` is (seed, generator knobs, checks): everything needed to rebuild the model and rerun
the checks. `shrink` regenerates a failing case from the same seed with smaller knobs while it
still fails the same way; `save_case` writes it as JSON, with the model file and its inputs
next to it, so tests/test_fuzz_regressions.py replays exactly that model even after the
generator changes.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from .crosscheck import (ALL, DEFAULT_DISABLE, Checks, Discrepancy, check_case, compare,
                         error_text)
from .ir import type_str
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


def shrink(case: Case, found: Discrepancy, *, cache: Any = None, seconds: float = 60.0
           ) -> tuple[Case, Discrepancy]:
    """The smallest knobs (same seed) that still give a discrepancy of the same check and
    configuration, greedily, one knob step at a time."""
    case = dataclasses.replace(case, checks=case.checks.only(found))
    deadline = time.monotonic() + seconds
    progress = True
    while progress and time.monotonic() < deadline:
        progress = False
        for params in case.params.smaller():
            smaller = dataclasses.replace(case, params=params)
            _, again = run_case(smaller, cache)
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
    from .serialize import save
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
    from .serialize import load
    path = Path(path)
    data = json.loads(path.read_text())
    exact = None
    if path.with_suffix(".grnn").exists():
        with np.load(path.with_suffix(".npz")) as arrays:
            inputs = [arrays[f"arr_{i}"] for i in range(len(arrays.files))]
        exact = (load(path.with_suffix(".grnn")), inputs)
    return Case.from_json(data), data, exact


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


def fuzz(seconds: float, seed: int = 0, *, compiled: bool = True, grads: bool = True,
         training: bool = False, out: str | os.PathLike = "fuzz_failures",
         log: Callable[[str], None] = print) -> tuple[int, list[Path]]:
    """Run random cases for `seconds`; shrink and save each failing case that shows a new
    kind of failure. Returns (cases tried, paths written).

    While a case runs, `<out>/running.json` names it: if native code crashes the process,
    that file is the case to replay (`Case.from_json`)."""
    from .runtime.cache import KernelCache
    rng = np.random.default_rng(seed)
    checks = Checks(compiled=compiled, train=compiled, grads=grads, training=training)
    seen: set[tuple] = set()
    written: list[Path] = []
    tried, failed = 0, 0
    start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="graphrnn-fuzz-") as tmp:
        cache = KernelCache(tmp)
        while time.monotonic() - start < seconds:
            case = Case(int(rng.integers(0, 2**31 - 1)), random_params(rng), checks)
            running = Path(out) / "running.json"
            running.parent.mkdir(parents=True, exist_ok=True)
            running.write_text(json.dumps(case.to_json(), indent=2) + "\n")
            _, found = run_case(case, cache)
            tried += 1
            failed += bool(found)
            new = [d for d in found if d.key() not in seen]
            seen.update(d.key() for d in found)
            if new:         # one shrunk case per failing case: its first new finding
                d = new[0]
                more = f" (and {len(found) - 1} more findings)" if len(found) > 1 else ""
                log(f"case {tried} (seed {case.seed}, {case.params}): {d}{more}")
                small, d2 = shrink(case, d, cache=cache, seconds=min(60.0, seconds))
                generated = small.generate() if d2.check != "generate" else None
                path = save_case(small, d2, out, generated)
                written.append(path)
                log(f"  shrunk to {small.params}: {d2}\n  -> {path}")
            running.unlink()
    if not written and Path(out).is_dir() and not any(Path(out).iterdir()):
        Path(out).rmdir()
    log(f"fuzz: {tried} cases in {time.monotonic() - start:.1f} s, {failed} failing "
        f"({len(written)} distinct, written to {out})" if written else
        f"fuzz: {tried} cases in {time.monotonic() - start:.1f} s, no failures")
    return tried, written


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--seconds", type=float, default=60.0, metavar="N",
                        help="run cases for N seconds (default 60)")
    parser.add_argument("--seed", type=int, default=0, metavar="S",
                        help="seed of the case sequence (default 0)")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip the compiled-code comparisons (forward and training step)")
    parser.add_argument("--no-grad", action="store_true", help="skip gradcheck")
    parser.add_argument("--training", action="store_true",
                        help="run the pass checks with dropout on (and nothing else)")
    parser.add_argument("--out", default="fuzz_failures", metavar="DIR",
                        help="where shrunk failing cases go (default ./fuzz_failures)")


def run(args: argparse.Namespace) -> int:
    """`graphrnn fuzz`: exit status 1 when any case failed."""
    _, written = fuzz(args.seconds, args.seed, compiled=not args.no_compile,
                      grads=not args.no_grad, training=args.training, out=args.out)
    return 1 if written else 0


__all__ = ["check_case", "compare", "Checks", "Discrepancy", "Case", "run_case", "shrink",
           "save_case", "load_case", "fingerprint", "fuzz", "random_params", "ALL",
           "DEFAULT_DISABLE", "add_arguments", "run"]
