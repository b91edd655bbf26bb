"""`graphrnn export-c MODEL -o OUT`: the command-line door to `export_library`."""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from graphrnn.ir import InputError, LoweringError
from graphrnn.losses import ClassNLLCriterion, CrossEntropyCriterion, MSECriterion

from .build import BuildError
from .library import export_library

LOSSES = {"mse": MSECriterion, "nll": ClassNLLCriterion, "xent": CrossEntropyCriterion}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL",
                        help="a saved model file, or module:function / file.py:function "
                             "returning a gModule")
    parser.add_argument("-o", "--output", required=True, metavar="DIR",
                        help="the directory to write lib<name>.so, lib<name>.a, <name>.h, ...")
    parser.add_argument("--name", help="the library's name and C prefix (default: the "
                                       "model's name, else the model file's name)")
    parser.add_argument("--loss", choices=sorted(LOSSES),
                        help="add the training step with this loss (<name>_train_step)")
    parser.add_argument("--bptt-max", type=int, metavar="K",
                        help="truncate the training step's BPTT every K steps")
    parser.add_argument("--stateful", choices=("auto", "yes", "no"), default="auto",
                        help="the streaming step <name>_step/<name>_reset (auto: when the "
                             "model has top-level loops)")
    parser.add_argument("--target", metavar="CPU",
                        help="host (default), x86-64-v2, x86-64-v3, x86-64-v4, or an LLVM "
                             "CPU name")
    parser.add_argument("--features", metavar="+F,...",
                        help="LLVM features for --target, e.g. +avx2,+fma")
    parser.add_argument("--weights", choices=("embedded", "external"), default="embedded",
                        help="parameters in the library, or in <name>.weights read at create")
    parser.add_argument("--cc", help="the C compiler (default: $CC, else cc)")


def run(args: argparse.Namespace, model: Any) -> int:
    """Export `model` as `args` ask; prints what was written."""
    stateful = {"auto": None, "yes": True, "no": False}[args.stateful]
    loss = LOSSES[args.loss]() if args.loss else None
    try:
        name = args.name or _default_name(model, args.model)
        lib = export_library(model, args.output, name=name, stateful=stateful,
                             loss=loss, bptt_max=args.bptt_max, target=args.target,
                             features=args.features,
                             weights=args.weights, cc=args.cc)
    except (BuildError, LoweringError, InputError) as e:
        print(f"graphrnn export-c: error: {e}", file=sys.stderr)
        return 2
    kinds = sorted({p.kind for p in lib.programs.programs} - {"init"})
    print(f"{lib.shared} ({lib.shared.stat().st_size} bytes), {lib.static}, {lib.header}: "
          f"{', '.join(kinds)} for every batch size on {lib.target.cpu}")
    return 0


def _default_name(model: Any, source: str) -> str | None:
    """The model's own name, else the stem of a saved model file (`reader.grnn` -> reader)."""
    if getattr(model, "name", None):
        return None
    stem = re.sub(r"\W", "_", Path(source.split(":")[0]).stem)
    return stem if stem and not stem[0].isdigit() else None


__all__ = ["add_arguments", "run"]
