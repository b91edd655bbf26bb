"""The `graphrnn` command: inspect a model from the shell.

    graphrnn --version
    graphrnn summary MODEL                  the parameter table of a model
    graphrnn show MODEL [-o out.svg]        the graph: DOT text, or a picture (.svg, .png)
    graphrnn ir MODEL [--after PASS]        the graph after each compiler pass (--llvm, --asm)
    graphrnn profile MODEL [--batch B ...]  time each kernel of the compiled model
    graphrnn export-c MODEL -o OUT          the model as a C library (export/command.py)
    graphrnn export MODEL -o model.onnx     the model as an ONNX file (onnx/export.py)
    graphrnn convert MODEL -o OUT.grnn      a model (an ONNX file) as a graphrnn model file

MODEL is a file written by `graphrnn.save`, an ONNX file (`.onnx`, needs the onnx package),
or `module:function` / `path/to/file.py:function` naming a function that returns a gModule
(or a gModule itself). A missing or broken model is reported as one line on stderr, with
exit status 2.

Each subcommand is one entry of SUBCOMMANDS: (help, add_arguments(parser), run(args) -> int).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, NamedTuple

import numpy as np

from . import demo
from .axes import batch_symbols, time_symbols
from .bench import run as bench
from .compile import compile as compile_model
from .compiler.pipeline import OPTIMISATIONS, STEPS, Trace, expose, prepare, prepare_training
from .export import command as export_c
from .ir import GraphError, LoweringError, TensorType
from .module import graph_of
from .profile import profile
from .serialize import load, save
from .signature import more_times
from .testing import fuzz
from .version import __version__
from .viz import render, summary, to_dot
from .viz.draw import FORMATS, RenderError


class CLIError(Exception):
    """A problem with what the user asked for: reported as one line, exit status 2."""


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------- models

def load_model(spec: str) -> Any:
    """A gModule from a saved file, an ONNX file (`.onnx`), or `module:function` /
    `file.py:function`."""
    if os.path.isfile(spec) and spec.lower().endswith(".onnx"):
        return _onnx().load(spec)
    if os.path.isfile(spec):
        return load(spec)
    if ":" not in spec:
        if os.path.exists(spec):
            raise CLIError(f"{spec}: not a file")
        raise CLIError(f"{spec}: no such file (give a saved model file, or module:function)")
    source, _, attr = spec.rpartition(":")
    if not source or not attr:
        raise CLIError(f"{spec}: expected module:function or path/to/file.py:function")
    module = _import_file(source) if source.endswith(".py") or os.sep in source \
        or "/" in source else _import_module(source)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise CLIError(f"{spec}: {source} has no attribute {attr!r}")
        obj = getattr(obj, part)
    model = obj if hasattr(obj, "graph") or not callable(obj) else obj()
    if not hasattr(model, "graph") or not hasattr(model, "table"):
        raise CLIError(f"{spec}: returned an object of type {type(model).__name__}, "
                       "expected a gModule")
    return model


def _onnx() -> Any:
    """graphrnn.onnx, imported when an ONNX file is read or written (the onnx package is
    optional)."""
    try:
        return importlib.import_module("graphrnn.onnx")
    except ModuleNotFoundError as e:
        raise CLIError(f"ONNX files need the onnx package ({e.name!r} is missing): "
                       "pip install 'graphrnn[onnx]'") from None


def _onnx_command() -> Any:
    _onnx()
    return importlib.import_module("graphrnn.onnx.export_command")


def _add_export(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a saved model file, or module:function / file.py:function "
                             "returning a gModule")
    parser.add_argument("-o", "--output", required=True, metavar="FILE",
                        help="the ONNX file to write (e.g. model.onnx)")


def _import_module(name: str) -> Any:
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())     # as `python -m` does, so ./models.py is found
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name and name.startswith(e.name):
            raise CLIError(f"cannot import {name!r}: no module named {e.name!r}") from None
        raise


def _import_file(path: str) -> Any:
    if not os.path.isfile(path):
        raise CLIError(f"{path}: no such file")
    name = "_graphrnn_model_" + os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise CLIError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _add_model(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a saved model file, or module:function / file.py:function "
                             "returning a gModule")


# ----------------------------------------------------------------------------- subcommands

def _run_summary(args: argparse.Namespace) -> int:
    print(summary(load_model(args.model)))
    return 0


def _add_show(parser: argparse.ArgumentParser) -> None:
    _add_model(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE instead of printing DOT text: .svg or .png for a "
                             "picture, .dot or .gv for DOT text")
    parser.add_argument("--unroll", type=int, metavar="K",
                        help="draw the first K steps of every loop, parameters shared")
    parser.add_argument("--engine", choices=("auto", "dot", "builtin"), default="auto",
                        help="auto: Graphviz dot when it is installed, else the built-in "
                             "layout (default: %(default)s)")


def _run_show(args: argparse.Namespace) -> int:
    if args.output and os.path.splitext(args.output)[1].lower() not in FORMATS:
        raise CLIError(f"{args.output}: can write .svg, .png, .dot or .gv files")
    if args.unroll is not None and args.unroll < 1:
        raise CLIError("--unroll needs a positive number of steps")
    model = load_model(args.model)
    if not args.output:
        sys.stdout.write(to_dot(model, unroll=args.unroll))
        return 0
    try:
        render(model, args.output, args.unroll, engine=args.engine)
    except RenderError as e:
        raise CLIError(str(e)) from None
    return 0


def _add_ir(parser: argparse.ArgumentParser) -> None:
    _add_model(parser)
    parser.add_argument("--after", metavar="PASS",
                        help="print only the graph after PASS (state, shapes, reroll, unroll, "
                             "tie, flatten, grad, or an optimisation such as fold, cse, dce, "
                             "hoist, fuse)")
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="batch size bound in the declared input types (default 1)")
    parser.add_argument("--steps", type=int, metavar="T",
                        help="bind the time dim too (default: it stays symbolic)")
    parser.add_argument("--input-shape", action="append", metavar="DIMS", default=[],
                        help="the shape of one input, e.g. 1,T,3; once per input, in order "
                             "(for inputs without a declared type)")
    parser.add_argument("--grad", action="store_true",
                        help="the training pipeline: differentiate (pass grad) before the "
                             "optimisations")
    parser.add_argument("--stateful", action="store_true",
                        help="expose the top-level loops' state first (step state), as "
                             "gr.compile(model, stateful=True) does")
    parser.add_argument("--llvm", action="store_true",
                        help="print the LLVM IR of the compiled forward program instead")
    parser.add_argument("--asm", action="store_true",
                        help="print the host assembly of the compiled forward program instead")


def _run_ir(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    graph = expose(model.graph).graph if args.stateful else model.graph
    types = input_types(graph, args.batch, args.steps, args.input_shape)
    if args.llvm or args.asm:
        fast = compile_model(model, stateful=args.stateful)
        concrete = all(t.is_concrete() for t in types)
        arrays = [np.zeros(t.shape, t.dtype) for t in types] if concrete else []
        try:
            text = (fast.asm if args.asm else fast.llvm_ir)(*arrays, B=args.batch)
        except (LoweringError, RuntimeError) as e:
            raise CLIError(f"cannot lower the model: {e}") from None
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        return 0
    shown_steps = [s for s in STEPS if s not in ("state", "checkpoint", "unit", "lower")]
    known = shown_steps + [n for n, _ in OPTIMISATIONS] + (["state"] if args.stateful else [])
    if args.after is not None and args.after not in known:
        raise CLIError(f"--after {args.after}: no such pass; the passes are "
                       f"{', '.join(dict.fromkeys(known))}")
    trace = Trace(level=0)
    (prepare_training if args.grad else prepare)(model.graph, types, stateful=args.stateful,
                                                 trace=trace)
    name = getattr(model, "name", None) or type(model).__name__
    print(f"# {name}: " + ", ".join(f"%{x.name} : {t}" for x, t in zip(graph.inputs, types)))
    print("# " + ", ".join(f"{r.name} {r.seconds * 1e3:.2f} ms"
                           + ("" if r.changed else " (unchanged)") for r in trace.records))
    shown = 0
    for r in trace.records:
        if args.after is not None and r.name != args.after:
            continue
        shown += 1
        head = f"\n== after {r.name} ({r.seconds * 1e3:.2f} ms)"
        if r.changed or args.after is not None:
            print(f"{head} ==\n{r.text()}")
        else:
            print(f"{head}: unchanged ==")
    if shown == 0:
        raise CLIError(f"pass {args.after} did not run (disabled for this model)")
    return 0


def input_types(model: Any, batch: int, steps: int | None, shapes: list[str]) -> list[Any]:
    """The input types `ir` compiles for `model` (or a graph): the declared ones with the batch
    symbol (a symbol on axis 0) bound to `batch` and every time symbol (the others) to `steps`
    if given; or the `--input-shape` dims, one string per input."""
    xs = graph_of(model).inputs
    if batch < 1 or (steps is not None and steps < 0):
        raise CLIError("--batch must be positive and --steps not negative")
    if shapes:
        if len(shapes) != len(xs):
            raise CLIError(f"--input-shape given {len(shapes)} times; the model has "
                           f"{len(xs)} inputs ({', '.join(x.name for x in xs)})")
        out = []
        for x, text in zip(xs, shapes):
            dims = [d.strip() for d in text.split(",") if d.strip()]
            out.append(TensorType(tuple(int(d) if d.isdigit() else d for d in dims),
                                  x.type.dtype if x.type is not None else "float32"))
        return out
    missing = [x.name for x in xs if x.type is None]
    if missing:
        raise CLIError(f"inputs {', '.join(missing)} have no declared type: give "
                       "--input-shape for every input")
    declared = [x.type for x in xs]
    sizes: dict[str, int] = {b: batch for b in batch_symbols(declared)}
    if steps is not None:
        sizes.update({t: steps for t in time_symbols(declared, sizes)})
    # further time dims keep a name the lowering knows as a run-time size
    rename = more_times(declared, sizes)
    return [TensorType(tuple(rename.get(d, d) if isinstance(d, str) else d
                             for d in x.type.bind(sizes).shape), x.type.dtype) for x in xs]


def _add_profile(parser: argparse.ArgumentParser) -> None:
    """`graphrnn profile MODEL [--batch B --steps T --repeats N]`."""
    _add_model(parser)
    parser.add_argument("--batch", type=int, default=1, metavar="B",
                        help="batch size (default %(default)s)")
    parser.add_argument("--steps", type=int, default=100, metavar="T",
                        help="sequence length (default %(default)s)")
    parser.add_argument("--repeats", type=int, default=10, metavar="N",
                        help="timed calls (default %(default)s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random inputs")


def _run_profile(args: argparse.Namespace) -> int:
    """Profile MODEL on random inputs of its declared types and print the table."""
    if args.repeats < 1 or args.steps < 1:
        raise CLIError("--repeats and --steps must be positive")
    model = load_model(args.model)
    types = input_types(model, args.batch, args.steps, [])
    rng = np.random.default_rng(args.seed)
    inputs = []
    for t in types:
        if not t.is_concrete():
            raise CLIError(f"cannot make an input of type {t}: give every dim a size")
        if t.dtype == "int64":      # a [B] integer input reads as lengths: run every step
            inputs.append(np.full(t.shape, args.steps if t.rank == 1 else 0, np.int64))
        else:
            inputs.append(rng.standard_normal(t.shape).astype(np.float32))
    print(profile(model, *inputs, repeats=args.repeats))
    return 0


def _add_convert(parser: argparse.ArgumentParser) -> None:
    _add_model(parser)
    parser.add_argument("-o", "--output", required=True, metavar="OUT.grnn",
                        help="the model file to write (graphrnn.save)")


def _run_convert(args: argparse.Namespace) -> int:
    model = load_model(args.model)
    save(model, args.output)
    print(f"{args.output}: {len(model.inputs)} inputs, {len(model.outputs)} outputs, "
          f"{model.param_count()} parameters")
    layouts = getattr(model, "onnx_layouts", {})
    for name, perm in layouts.get("inputs", {}).items():
        print(f"note: input {name!r} is np.transpose(onnx_input, {list(perm)}) (batch-first)")
    for name, perm in layouts.get("outputs", {}).items():
        print(f"note: the ONNX output {name!r} is np.transpose(output, {list(perm)})")
    return 0


def _pass_through(parser: argparse.ArgumentParser) -> None:
    """Hand every argument after the subcommand (--help too) to the module's own main(argv)."""
    parser.prefix_chars = "\0"      # no option is this parser's: they all reach main(argv)
    parser.add_argument("argv", nargs=argparse.REMAINDER)


# name -> (help, add_arguments, run). Adding a subcommand (bench, demo, ir, profile, fuzz)
# is adding one entry here; its run() returns the exit status.
SUBCOMMANDS: dict[str, Subcommand] = {
    "summary": Subcommand("print the node and parameter table of a model", _add_model,
                          _run_summary),
    "show": Subcommand("draw the graph of a model: DOT text, or an SVG/PNG picture", _add_show,
                       _run_show),
    "ir": Subcommand("print the graph after each pass of the compiler, or its LLVM IR",
                     _add_ir, _run_ir),
    "fuzz": Subcommand("run random models through the passes, gradients and compiled code, "
                       "against the interpreter",
                       fuzz.add_arguments, fuzz.run),
    "bench": Subcommand("time RNN/LSTM/GRU forward and training steps against PyTorch, ONNX "
                        "Runtime and JAX", bench.add_arguments, bench.run_command),
    "demo": Subcommand("train an LSTM on the adding problem (options: graphrnn demo --help)",
                       _pass_through, lambda a: demo.main(a.argv)),
    "profile": Subcommand("time each kernel of a compiled model: where the time goes, by IR "
                          "node", _add_profile, _run_profile),
    "convert": Subcommand("convert a model (an ONNX file) to a graphrnn model file",
                          _add_convert, _run_convert),
    "export-c": Subcommand("write a model as a C library (lib<name>.so/.a and <name>.h): "
                           "forward, streaming step, training step", export_c.add_arguments,
                           lambda a: export_c.run(a, load_model(a.model))),
    "export": Subcommand("write a model as an ONNX file (built-in recurrent layers as ONNX "
                         "RNN/LSTM/GRU, other loops as Scan)", _add_export,
                         lambda a: _onnx_command().run(a, load_model(a.model))),
}


# ----------------------------------------------------------------------------- entry point

def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="graphrnn", description="Inspect, run and benchmark graphrnn models.")
    parser.add_argument("--version", action="version", version=f"graphrnn {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, cmd in SUBCOMMANDS.items():
        cmd.add_arguments(sub.add_parser(name, help=cmd.help, description=cmd.help))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (2 for a bad model or argument)."""
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args)
    except BrokenPipeError:         # the reader went away (`| head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (CLIError, GraphError, ValueError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"graphrnn {args.command}: error: {message}", file=sys.stderr)
        return 2


__all__ = ["main", "build_parser", "load_model", "SUBCOMMANDS", "Subcommand", "CLIError"]
