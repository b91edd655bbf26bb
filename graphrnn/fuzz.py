"""Differential fuzzing: random models through every path that must agree with the interpreter.

    found = check_case(model, inputs)         # [] when everything agrees

`check_case` makes four comparisons:
  (a) the interpreter's outputs are finite, in float32 and float64;
  (b) after the front passes and each subset of the optimisations (`prepare(disable=...,
      unroll=...)`), the interpreter gives the prepared graph's outputs (float64) equal to the
      model's;
  (c) `gradcheck` (float64 central differences) passes; a failure counts only if it fails
      again on freshly drawn inputs, so a rare kink (ReLU at 0) is not reported;
  (d) `gr.compile(model, unroll=, disable=)(*inputs)` equals the interpreter (float32,
      rtol 1e-4, atol 1e-5), whenever `graphrnn.compile` is importable;
  (e) the model saved and loaded again (`gr.save`/`gr.load`) gives the same outputs.

A `Case` is (seed, generator knobs, checks): everything needed to rebuild the model and rerun
the checks. `shrink` regenerates a failing case from the same seed with smaller knobs while it
still fails the same way; `save_case` writes it as JSON, with the model file and its inputs
next to it, so tests/test_fuzz_regressions.py replays exactly that model even after the
generator changes.
`graphrnn fuzz --seconds N --seed S` runs cases until the time is up.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import json
import os
import re
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .gradcheck import gradcheck
from .interpret import array_type, interpret
from .ir import type_str
from .randgraph import GenParams, Generated, generate_seeded

OPTIMISATION_NAMES = ("fold", "cse", "dce", "merge", "hoist", "fuse")
ALL = OPTIMISATION_NAMES
# no optimisation, all of them, and each one alone
DEFAULT_DISABLE: tuple[tuple[str, ...], ...] = ((), ALL) + tuple(
    tuple(n for n in ALL if n != keep) for keep in ALL)
DEFAULT_UNROLL = (None, False, True)
DEFAULT_COMPILE: tuple[tuple[Any, tuple[str, ...]], ...] = ((None, ()), (False, ALL))
PASS_RTOL, PASS_ATOL = 1e-5, 1e-6          # float64: only constant folding rounds to float32
COMPILE_RTOL, COMPILE_ATOL = 1e-4, 1e-5
TRAINING_SEED = 11                        # the dropout seed of training-mode checks


@dataclass(frozen=True)
class Discrepancy:
    """One disagreement: which check, under which pass configuration, and what was seen."""
    check: str                  # "generate", "interpret", "pass", "grad", "compile", "save"
    detail: str
    unroll: Any = None
    disable: tuple[str, ...] = ()
    symbolic: bool = False      # prepared for the declared (symbolic) input types

    @property
    def config(self) -> str:
        if self.check in ("pass", "compile"):
            off = ",".join(self.disable) if self.disable else "-"
            sym = " symbolic" if self.symbolic else ""
            return f"unroll={self.unroll} disable={off}{sym}"
        return ""

    def key(self) -> tuple:
        """What makes two discrepancies the same bug, for de-duplication: the check, the
        configuration and the message with its numbers and names left out."""
        words = re.sub(r"[\d.e+-]+|%?\w+_\d+", "#", self.detail)[:80]
        return self.check, self.config, words

    def __str__(self) -> str:
        return f"{self.check} {self.config}: {self.detail}".replace("  ", " ")


@dataclass(frozen=True)
class Checks:
    """Which comparisons `check_case` makes (see its docstring)."""
    passes: bool = True
    unroll: tuple = DEFAULT_UNROLL
    disable: tuple[tuple[str, ...], ...] = DEFAULT_DISABLE
    symbolic: bool = True
    grads: bool = True
    compiled: bool = True
    compile_configs: tuple = DEFAULT_COMPILE
    grad_samples: int = 4
    roundtrip: bool = True
    training: bool = False      # dropout on: only the pass checks run, with the same masks

    def only(self, d: Discrepancy) -> "Checks":
        """These checks narrowed to the one configuration that produced `d`."""
        none = dict(passes=False, grads=False, compiled=False, symbolic=False, roundtrip=False)
        if d.check == "pass":
            return dataclasses.replace(self, **{**none, "passes": True, "unroll": (d.unroll,),
                                                "disable": (d.disable,), "symbolic": d.symbolic})
        if d.check == "grad":
            return dataclasses.replace(self, **{**none, "grads": True})
        if d.check == "compile":
            return dataclasses.replace(self, **{**none, "compiled": True,
                                                "compile_configs": ((d.unroll, d.disable),)})
        if d.check == "save":
            return dataclasses.replace(self, **{**none, "roundtrip": True})
        return dataclasses.replace(self, **none)


# ----------------------------------------------------------------------------- the checks

def check_case(model: Any, inputs: Sequence[np.ndarray], *, checks: Checks | None = None,
               redraw: Callable[[int], list[np.ndarray]] | None = None,
               more: Sequence[Sequence[np.ndarray]] = (), cache: Any = None,
               **options: Any) -> list[Discrepancy]:
    """Every disagreement between the interpreter and the other paths, for one model.

    `options` override fields of `checks` (compiled=False, grads=False, unroll=(False,),
    disable=((), ALL), ...). `redraw(k)` gives the k-th fresh set of inputs for the gradcheck
    retry. `more` are input sets of other sizes (sequence length, batch), run through the
    same compiled model and the same symbolically prepared graph. `cache` is the kernel cache for
    compiled programs.
    """
    c = dataclasses.replace(checks or Checks(), **options)
    if c.training:      # gradcheck and the compiled code run without dropout
        c = dataclasses.replace(c, grads=False, compiled=False, roundtrip=False)
    sets = [list(inputs)] + [list(m) for m in more]
    mode = dict(training=c.training, seed=TRAINING_SEED)
    try:
        ref32 = [_outputs(interpret(model, *args, **mode)) for args in sets]
        ref64 = [_outputs(interpret(model, *args, dtype=np.float64, **mode)) for args in sets]
    except Exception as e:                       # noqa: BLE001 (any failure is a finding)
        return [Discrepancy("interpret", _error(e))]
    found = [Discrepancy("interpret", f"output {i} is not finite ({dt})")
             for refs, dt in ((ref32, "float32"), (ref64, "float64")) for ref in refs
             for i, v in enumerate(ref) if v.dtype.kind == "f" and not np.isfinite(v).all()]
    if found:
        return found[:1]
    if c.passes:
        found += _check_passes(model, sets, ref64, c)
    if c.grads:
        found += _check_grads(model, inputs, redraw, c.grad_samples)
    if c.compiled:
        found += _check_compiled(model, sets, ref32, c.compile_configs, cache)
    if c.roundtrip:
        found += _check_roundtrip(model, inputs, ref32[0])
    return found


def _outputs(value: Any) -> list[np.ndarray]:
    return [np.asarray(v) for v in (value if isinstance(value, tuple) else (value,))]


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"[:600]


def compare(got: Sequence[np.ndarray], want: Sequence[np.ndarray], rtol: float,
            atol: float) -> str | None:
    """Where `got` and `want` differ (count, shape, dtype kind or values), or None."""
    if len(got) != len(want):
        return f"{len(got)} outputs, expected {len(want)}"
    for i, (g, w) in enumerate(zip(got, want)):
        g = np.asarray(g)
        if g.shape != w.shape or g.dtype.kind != w.dtype.kind:
            return f"output {i}: {g.dtype}{list(g.shape)}, expected {w.dtype}{list(w.shape)}"
        if g.dtype.kind != "f":
            if not np.array_equal(g, w):
                return f"output {i}: integer values differ"
            continue
        bad = ~np.isclose(g, w, rtol=rtol, atol=atol)
        if bad.any():
            err = np.where(bad, np.abs(g.astype(np.float64) - w), 0.0)
            at = np.unravel_index(int(np.argmax(err)), err.shape)
            return (f"output {i}: {int(bad.sum())} of {g.size} values differ, worst at "
                    f"{tuple(int(k) for k in at)}: got {g[at]:.6g}, expected {w[at]:.6g}")
    return None


def _check_passes(model: Any, sets: list[list[np.ndarray]], refs: list[list[np.ndarray]],
                  c: Checks) -> list[Discrepancy]:
    """Prepared for the first set's concrete types (first set only), or for the declared
    types (every set)."""
    from .compiler.pipeline import prepare
    flat = model.parameters()[0]
    types = [array_type(np.asarray(a)) for a in sets[0]]
    runs = [(u, d, False) for u in c.unroll for d in c.disable]
    if c.symbolic:
        runs += [(False, (), True), (False, ALL, True)]
    found = []
    for unroll, disable, symbolic in runs:
        where = dict(unroll=unroll, disable=tuple(disable), symbolic=symbolic)
        try:
            g, _ = prepare(model.graph, None if symbolic else types, unroll=unroll,
                           disable=disable, dump=0)
            for k, (args, ref) in enumerate(zip(sets if symbolic else sets[:1], refs)):
                got = _outputs(interpret(g, *args, flat, dtype=np.float64,
                                         training=c.training, seed=TRAINING_SEED))
                diff = compare(got, ref, PASS_RTOL, PASS_ATOL)
                if diff:
                    found.append(Discrepancy("pass", _which(k, sets) + diff, **where))
                    break
        except Exception as e:                   # noqa: BLE001
            found.append(Discrepancy("pass", _error(e), **where))
    return found


def _which(k: int, sets: list[list[np.ndarray]]) -> str:
    """Which input set a message is about, when it is not the first."""
    if k == 0:
        return ""
    return f"inputs #{k} (shapes {[list(a.shape) for a in sets[k]]}): "


def _check_grads(model: Any, inputs: Sequence[np.ndarray],
                 redraw: Callable[[int], list[np.ndarray]] | None,
                 samples: int) -> list[Discrepancy]:
    tries = [list(inputs)] + ([redraw(1)] if redraw else [list(inputs)])
    reports = []
    for k, args in enumerate(tries):
        try:
            result = gradcheck(model, *args, samples=samples, seed=k)
        except Exception as e:                   # noqa: BLE001
            return [Discrepancy("grad", _error(e))]
        if result.ok:
            return []
        worst = max(result.errors.items(), key=lambda kv: kv[1])
        reports.append(f"{worst[0]} rel err {worst[1]:.2e}")
    return [Discrepancy("grad", "gradcheck failed twice: " + "; ".join(reports))]


def _compiler() -> Callable | None:
    """`graphrnn.compile` when it can be imported (the compiled check turns on by itself)."""
    try:
        module = importlib.import_module(f"{__package__}.compile")
    except ImportError:
        return None
    return getattr(module, "compile", None)


def _check_compiled(model: Any, sets: list[list[np.ndarray]], refs: list[list[np.ndarray]],
                    configs: Sequence[tuple], cache: Any) -> list[Discrepancy]:
    """One compiled model per configuration, called on every input set."""
    compile_fn = _compiler()
    if compile_fn is None:
        return []
    kw = {"cache": cache} if cache is not None else {}
    found = []
    for unroll, disable in configs:
        where = dict(unroll=unroll, disable=tuple(disable))
        try:
            fast = compile_fn(model, unroll=unroll, disable=disable, **kw)
            for k, (args, ref) in enumerate(zip(sets, refs)):
                diff = compare(_outputs(fast(*args)), ref, COMPILE_RTOL, COMPILE_ATOL)
                if diff:
                    found.append(Discrepancy("compile", _which(k, sets) + diff, **where))
                    break
        except Exception as e:                   # noqa: BLE001
            found.append(Discrepancy("compile", _error(e), **where))
    return found


def _check_roundtrip(model: Any, inputs: Sequence[np.ndarray],
                     ref: list[np.ndarray]) -> list[Discrepancy]:
    from .serialize import load, save
    with tempfile.TemporaryDirectory(prefix="graphrnn-fuzz-") as tmp:
        try:
            save(model, Path(tmp) / "model.grnn")
            got = _outputs(interpret(load(Path(tmp) / "model.grnn"), *inputs))
        except Exception as e:                   # noqa: BLE001
            return [Discrepancy("save", _error(e))]
    diff = compare(got, ref, 0.0, 0.0)
    return [Discrepancy("save", diff)] if diff else []


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
        """The seed, the knobs, and the checks that differ from the defaults."""
        default = asdict(Checks())
        checks = {k: v for k, v in asdict(self.checks).items() if v != default[k]}
        return {"seed": self.seed, "params": asdict(self.params), "checks": _jsonable(checks)}

    @staticmethod
    def from_json(data: dict) -> "Case":
        ch = data.get("checks", {})
        ch = {**ch, **{k: _tuples(ch[k]) for k in ("unroll", "disable", "compile_configs")
                       if k in ch}}
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
        return None, [Discrepancy("generate", _error(e))]
    redraw = lambda k: g.draw(np.random.default_rng([case.seed, k]), g.batch, g.steps)  # noqa
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
              generated: Generated | None = None) -> Path:
    """Write the case as `<check>_<seed>.json`, and (given the generated model) the model as
    `.grnn` and its inputs as `.npz` next to it. Returns the JSON path."""
    from .serialize import save
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    stem = path / f"{found.check}_{case.seed}"
    data = {**case.to_json(), "found": {**asdict(found), "disable": list(found.disable)}}
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
    """Run random cases for `seconds`; shrink and save each new kind of failure.
    Returns (cases tried, paths written).

    While a case runs, `<out>/running.json` names it: if native code crashes the process,
    that file is the case to replay (`Case.from_json`)."""
    from .runtime.cache import KernelCache
    rng = np.random.default_rng(seed)
    checks = Checks(compiled=compiled, grads=grads, training=training)
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
            running.unlink()
            tried += 1
            failed += bool(found)
            for d in found:
                if d.key() in seen:
                    continue
                seen.add(d.key())
                small, d2 = shrink(case, d, cache=cache, seconds=min(60.0, seconds))
                generated = small.generate() if d2.check != "generate" else None
                path = save_case(small, d2, out, generated)
                written.append(path)
                log(f"case {tried} (seed {case.seed}): {d2}\n  -> {path}")
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
                        help="skip the compiled-code comparison")
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
