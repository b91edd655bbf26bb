"""The `graphrnn` command: inspect a model from the shell.

    graphrnn --version
    graphrnn summary MODEL              the parameter table of a model
    graphrnn show MODEL [-o out.dot]    the graph as Graphviz DOT text

MODEL is a file written by `graphrnn.save`, or `module:function` / `path/to/file.py:function`
naming a function that returns a gModule (or a gModule itself). A missing or broken model is
reported as one line on stderr, with exit status 2.

Each subcommand is one entry of SUBCOMMANDS: (help, add_arguments(parser), run(args) -> int).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys
from typing import Any, Callable, NamedTuple

from . import __version__


class CLIError(Exception):
    """A problem with what the user asked for: reported as one line, exit status 2."""


class Subcommand(NamedTuple):
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


# ----------------------------------------------------------------------------- models

def load_model(spec: str) -> Any:
    """A gModule from a saved file, or from `module:function` / `file.py:function`."""
    from .serialize import load
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
    print(load_model(args.model).summary())
    return 0


def _add_show(parser: argparse.ArgumentParser) -> None:
    _add_model(parser)
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write to FILE (.dot or .gv) instead of standard output")
    parser.add_argument("--unroll", type=int, metavar="K",
                        help="draw the first K steps of every loop")


def _run_show(args: argparse.Namespace) -> int:
    if args.output and os.path.splitext(args.output)[1].lower() not in (".dot", ".gv"):
        raise CLIError(f"{args.output}: can only write DOT text (.dot or .gv)")
    if args.unroll is not None and args.unroll < 1:
        raise CLIError("--unroll needs a positive number of steps")
    text = load_model(args.model).to_dot(unroll=args.unroll)
    if args.output:
        with open(args.output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return 0


# name -> (help, add_arguments, run). Adding a subcommand (bench, demo, ir, profile, fuzz)
# is adding one entry here; its run() returns the exit status.
SUBCOMMANDS: dict[str, Subcommand] = {
    "summary": Subcommand("print the node and parameter table of a model", _add_model,
                          _run_summary),
    "show": Subcommand("print the graph of a model as Graphviz DOT text", _add_show, _run_show),
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
    from .ir import GraphError
    args = build_parser().parse_args(argv)
    try:
        return SUBCOMMANDS[args.command].run(args)
    except (CLIError, GraphError, ValueError, OSError) as e:
        message = " ".join(str(e).split()) or type(e).__name__
        print(f"graphrnn {args.command}: error: {message}", file=sys.stderr)
        return 2


__all__ = ["main", "build_parser", "load_model", "SUBCOMMANDS", "Subcommand", "CLIError"]
