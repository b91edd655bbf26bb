"""Cross-checks: one model through every path that must agree with the interpreter.

    found = check_case(model, inputs)         # [] when everything agrees

`check_case` makes five comparisons:
  (a) the interpreter's outputs are finite, in float32 and float64;
  (b) after the front passes and each subset of the optimisations (`prepare(disable=...,
      unroll=...)`), the interpreter gives the prepared graph's outputs (float64) equal to the
      model's; in training mode (dropout on), not for configurations that unroll a loop
      holding a dropout (see `_unrolls_dropout`);
  (c) `gradcheck` (float64 central differences) passes; a failure counts only if it fails
      again on freshly drawn inputs, so a rare kink (ReLU at 0) is not reported;
  (d) `gr.compile(model, unroll=, disable=)(*inputs)` equals the interpreter (float32,
      rtol 1e-4, atol 1e-5), whenever `graphrnn.compile` is importable;
  (e) the model saved and loaded again (`gr.save`/`gr.load`) gives the same outputs;
  (f) the compiled training step (`gr.compile(m, loss=..., train=True, bptt_max=,
      checkpoint=)`) gives the interpreted step's loss and gradients (dropout on, same
      seed), for m = the sum of all the model's float outputs, under an MSE loss.
Each disagreement is a `Discrepancy` naming the check and the pass configuration.
"""
from __future__ import annotations

import dataclasses
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from .. import ops
from ..compile import compile as compile_model
from ..compiler.pipeline import OPTIMISATIONS, prepare
from ..gmodule import gModule
from ..gradcheck import gradcheck
from ..interpret import array_type, interpret
from ..ir import GraphError, InputError, Node, Op
from ..losses import MSECriterion
from ..serialize import load, save
from ..train import InterpretedStep

# every optimisation of the pipeline, by name (a name may run twice: disabling skips both)
ALL: tuple[str, ...] = tuple(dict.fromkeys(name for name, _ in OPTIMISATIONS))
# no optimisation, all of them, and each one alone
DEFAULT_DISABLE: tuple[tuple[str, ...], ...] = ((), ALL) + tuple(
    tuple(n for n in ALL if n != keep) for keep in ALL)
DEFAULT_UNROLL = (None, False, True)
DEFAULT_COMPILE: tuple[tuple[Any, tuple[str, ...]], ...] = ((None, ()), (False, ALL))
# (bptt_max, checkpoint) of the compiled training steps; checkpointed gradients are exact
DEFAULT_TRAIN: tuple[tuple[int | None, int | None], ...] = ((None, None), (2, None), (None, 2))
TRAIN_RTOL, TRAIN_ATOL = 1e-3, 1e-4
PASS_RTOL, PASS_ATOL = 1e-5, 1e-6          # float64: only constant folding rounds to float32
COMPILE_RTOL, COMPILE_ATOL = 1e-4, 1e-5
TRAINING_SEED = 11                        # the dropout seed of training-mode checks


@dataclass(frozen=True)
class Discrepancy:
    """One disagreement: which check, under which pass configuration, and what was seen."""
    check: str                  # "generate", "interpret", "pass", "grad", "compile", "save",
                                # "train", or "crash" (the process running the case died)
    detail: str
    unroll: Any = None
    disable: tuple[str, ...] = ()
    symbolic: bool = False      # prepared for the declared (symbolic) input types
    train: tuple = ()           # (bptt_max, checkpoint) of a training step

    @property
    def config(self) -> str:
        if self.check in ("pass", "compile"):
            off = ",".join(self.disable) if self.disable else "-"
            sym = " symbolic" if self.symbolic else ""
            return f"unroll={self.unroll} disable={off}{sym}"
        if self.check == "train":
            return f"bptt_max={self.train[0]} checkpoint={self.train[1]}"
        return ""

    def key(self) -> tuple:
        """What makes two discrepancies the same bug, for de-duplication: the check, the
        configuration and the message with its numbers and names left out."""
        words = re.sub(r"[\d.e+-]+|%?\w+_\d+", "#", self.detail)[:80]
        return self.check, self.config, words

    def __str__(self) -> str:
        return f"{f'{self.check} {self.config}'.strip()}: {self.detail}".replace("  ", " ")


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
    training: bool = False      # dropout on: only the pass checks (same masks) and train run
    train: bool = True
    train_configs: tuple = DEFAULT_TRAIN

    def only(self, d: Discrepancy) -> "Checks":
        """These checks narrowed to the one configuration that produced `d` (all of them for
        a crash: which check was running is not known)."""
        if d.check == "crash":
            return self
        none = dict(passes=False, grads=False, compiled=False, symbolic=False, roundtrip=False,
                    train=False)
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
        if d.check == "train":
            return dataclasses.replace(self, **{**none, "train": True,
                                                "train_configs": (tuple(d.train),)})
        return dataclasses.replace(self, **none)


# ----------------------------------------------------------------------------- the checks

def check_case(model: Any, inputs: Sequence[np.ndarray], *, checks: Checks | None = None,
               redraw: Callable[[int], list[np.ndarray]] | None = None,
               more: Sequence[Sequence[np.ndarray]] = (), cache: Any = None,
               **options: Any) -> list[Discrepancy]:
    """Every disagreement between the interpreter and the other paths, for one model.

    `options` override fields of `checks` (compiled=False, grads=False, unroll=(False,),
    disable=((), ALL), ...); one unroll mode or one disable set may be given alone
    (unroll=True, disable=("fold",)). `redraw(k)` gives the k-th fresh set of inputs for the
    gradcheck retry. `more` are input sets of other sizes (sequence length, batch), run
    through the same compiled model and the same symbolically prepared graph. `cache` is the
    kernel cache for compiled programs: give a private one when a pass may be broken, since
    whole programs are cached by graph structure, not by the code that compiled them.
    """
    if "unroll" in options and not isinstance(options["unroll"], (tuple, list)):
        options["unroll"] = (options["unroll"],)
    if "disable" in options and all(isinstance(d, str) for d in options["disable"]):
        options["disable"] = (tuple(options["disable"]),)
    c = dataclasses.replace(checks or Checks(), **options)
    if c.training:      # gradcheck, the compiled forward and the roundtrip run without dropout
        c = dataclasses.replace(c, grads=False, compiled=False, roundtrip=False)
    sets = [list(inputs)] + [list(m) for m in more]
    mode = dict(training=c.training, seed=TRAINING_SEED)
    try:
        ref32 = [_outputs(interpret(model, *args, **mode)) for args in sets]
        ref64 = [_outputs(interpret(model, *args, dtype=np.float64, **mode)) for args in sets]
    except Exception as e:                       # noqa: BLE001 (any failure is a finding)
        return [Discrepancy("interpret", error_text(e))]
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
    if c.train:
        found += _check_training(model, inputs, c.train_configs, cache)
    return found


def _outputs(value: Any) -> list[np.ndarray]:
    return [np.asarray(v) for v in (value if isinstance(value, tuple) else (value,))]


def error_text(e: BaseException) -> str:
    """An exception as one line: its type and message."""
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
    flat = model.parameters()[0]
    types = [array_type(np.asarray(a)) for a in sets[0]]
    runs = [(u, d, False) for u in c.unroll for d in c.disable
            if not (c.training and _unrolls_dropout(model.graph, u))]
    if c.symbolic:
        runs += [(False, (), True), (False, ALL, True)]
    found = []
    for unroll, disable, symbolic in runs:
        where = dict(unroll=unroll, disable=tuple(disable), symbolic=symbolic)

        def prepared() -> Callable[[list[np.ndarray]], list[np.ndarray]]:
            g, _ = prepare(model.graph, None if symbolic else types, unroll=unroll,
                           disable=disable, dump=0)
            return lambda args: _outputs(interpret(g, *args, flat, dtype=np.float64,
                                                   training=c.training, seed=TRAINING_SEED))
        finding = _first_finding("pass", where, prepared, sets if symbolic else sets[:1], refs,
                                 PASS_RTOL, PASS_ATOL)
        found += [finding] if finding else []
    return found


def _first_finding(check: str, where: dict[str, Any],
                   build: Callable[[], Callable[[list[np.ndarray]], list[np.ndarray]]],
                   sets: list[list[np.ndarray]], refs: list[list[np.ndarray]], rtol: float,
                   atol: float) -> Discrepancy | None:
    """Build one configuration and run it on each input set: the first set whose outputs
    differ from the reference, or the error building or running it raised; else None."""
    try:
        run = build()
        for k, (args, ref) in enumerate(zip(sets, refs)):
            diff = compare(run(args), ref, rtol, atol)
            if diff:
                return Discrepancy(check, _which(k, sets) + diff, **where)
    except Exception as e:                   # noqa: BLE001 (any failure is a finding)
        return Discrepancy(check, error_text(e), **where)
    return None


def _unrolls_dropout(graph: Any, unroll: Any) -> bool:
    """Whether `unroll` (prepare's option) unrolls a loop holding an active dropout. Such a
    graph draws other masks in training mode: a mask is salted by its loop step, and the
    unrolled copies are outside any loop. Nothing runs it (the compiled training step refuses
    dropout in unrolled loops), so the pass check in training mode leaves it out."""
    def unrolled(loop: Any) -> bool:
        asked = loop.attrs.get("unroll") if unroll is None else unroll
        return asked is True or (asked is not None and asked is not False and int(asked) > 1)
    return any(n.op == Op.LOOP and unrolled(n) and
               any(m.op == Op.DROPOUT and m.attrs["p"] > 0 for m, _ in n.attrs["body"].walk())
               for n, _ in graph.walk())


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
            return [Discrepancy("grad", error_text(e))]
        if result.ok:
            return []
        worst = max(result.errors.items(), key=lambda kv: kv[1])
        reports.append(f"{worst[0]} rel err {worst[1]:.2e}")
    return [Discrepancy("grad", "gradcheck failed twice: " + "; ".join(reports))]


def _check_compiled(model: Any, sets: list[list[np.ndarray]], refs: list[list[np.ndarray]],
                    configs: Sequence[tuple], cache: Any) -> list[Discrepancy]:
    """One compiled model per configuration, called on every input set."""
    kw = {"cache": cache} if cache is not None else {}
    found = []
    for unroll, disable in configs:
        where = dict(unroll=unroll, disable=tuple(disable))

        def compiled() -> Callable[[list[np.ndarray]], list[np.ndarray]]:
            fast = compile_model(model, unroll=unroll, disable=disable, **kw)
            return lambda args: _outputs(fast(*args))
        finding = _first_finding("compile", where, compiled, sets, refs, COMPILE_RTOL,
                                 COMPILE_ATOL)
        found += [finding] if finding else []
    return found


def _check_roundtrip(model: Any, inputs: Sequence[np.ndarray],
                     ref: list[np.ndarray]) -> list[Discrepancy]:
    with tempfile.TemporaryDirectory(prefix="graphrnn-fuzz-") as tmp:
        try:
            save(model, Path(tmp) / "model.grnn")
            got = _outputs(interpret(load(Path(tmp) / "model.grnn"), *inputs))
        except Exception as e:                   # noqa: BLE001
            return [Discrepancy("save", error_text(e))]
    diff = compare(got, ref, 0.0, 0.0)
    return [Discrepancy("save", diff)] if diff else []


def _scalar_model(model: Any) -> Any:
    """A gModule (sharing the model's parameters) whose one output is the sum of every float
    output of the model, each weighted differently."""
    fresh = [ops.input_(x.type.shape, x.type.dtype, name=x.name) for x in model.graph.inputs]
    outs = model(fresh)
    outs = [outs] if isinstance(outs, Node) else list(outs)
    total = None
    for k, y in enumerate(o for o in outs if o.type.dtype == "float32"):
        part = ops.mul(ops.sum_(y), 1.0 / (k + 1))
        total = part if total is None else ops.add(total, part)
    return gModule(fresh, [total], name="summed")


def _check_training(model: Any, inputs: Sequence[np.ndarray], configs: Sequence[tuple],
                    cache: Any) -> list[Discrepancy]:
    """Compiled training steps against the interpreted step, on the summed model."""
    try:
        summed = _scalar_model(model)
    except GraphError:              # an input reaching only integer outputs: nothing to train
        return []
    crit, target, grad = MSECriterion(), np.float32(0.5), summed.parameters()[1]
    kw = {"cache": cache} if cache is not None else {}
    found = []
    for bptt, ckpt in configs:
        where = dict(train=(bptt, ckpt))
        try:
            want = [np.float32(InterpretedStep(summed, crit, bptt_max=bptt)(
                *inputs, target=target, seed=TRAINING_SEED)), grad.copy()]
            step = compile_model(summed, loss=crit, train=True, bptt_max=bptt, checkpoint=ckpt,
                              **kw)
            got = [np.float32(step(*inputs, target=target, seed=TRAINING_SEED)), grad.copy()]
        except InputError as e:
            if "is not compiled" not in str(e):      # dropout in restructured loops: refused
                found.append(Discrepancy("train", error_text(e), **where))
            continue
        except Exception as e:                   # noqa: BLE001
            found.append(Discrepancy("train", error_text(e), **where))
            continue
        diff = compare(got, want, TRAIN_RTOL, TRAIN_ATOL)
        if diff:
            loss64 = InterpretedStep(summed, crit, bptt_max=bptt, dtype=np.float64)(
                *inputs, target=target, seed=TRAINING_SEED)
            if _rounding_only(got, want, loss64, grad.copy()):
                continue
        if diff:
            found.append(Discrepancy("train", diff.replace("output 0", "loss").replace(
                "output 1", "gradient"), **where))
    return found


def _rounding_only(got: Sequence[Any], want: Sequence[Any], loss64: float,
                   grad64: np.ndarray) -> bool:
    """Whether the compiled step misses the float64 step by no more than twice what the
    float32 interpreter misses it by (or within tolerance): rounding in an ill-conditioned
    value (a layer norm of a constant row scales float32 noise by 1/sqrt(eps)), not a bug."""
    for g, w, e in zip(got, want, (np.float64(loss64), grad64.astype(np.float64))):
        g, w = np.asarray(g, np.float64), np.asarray(w, np.float64)
        bound = 2 * np.abs(w - e) + TRAIN_ATOL + TRAIN_RTOL * np.abs(e)
        if not np.all(np.abs(g - e) <= bound):
            return False
    return True


__all__ = ["check_case", "compare", "Checks", "Discrepancy", "ALL", "DEFAULT_DISABLE",
           "DEFAULT_UNROLL", "DEFAULT_COMPILE", "DEFAULT_TRAIN"]
