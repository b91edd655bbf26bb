"""Pictures of a model, by Graphviz when it is installed and by our own layout when it is not.

    gr.viz.render(model, "lstm.svg")                  # SVG; .png for an image; .dot for DOT
    gr.viz.render(model, "rnn.png", unroll=3)         # each loop as 3 steps, weights shared
    gr.viz.render_error(model, error, "bad.svg")      # the node an error names, red, its line

`engine="auto"` runs the Graphviz `dot` program when it is on PATH (`apt-get install
graphviz`) on the DOT text of dot.py, and otherwise draws the same picture itself:
scene.py decides the boxes, edges and clusters, layout.py places them, svg.py and png.py write
them. `"dot"` and `"builtin"` force one or the other.

nngraph's debug mode: with GRAPHRNN_DEBUG >= 1, a gModule whose graph is rejected writes
graphrnn_error.svg in the current directory, the failing node in red with the line of code
that made it, and says so on stderr; the error itself is raised as usual.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import textwrap
import warnings
from typing import Any, Iterable, Sequence

from .. import settings
from ..close import renamed_graph
from .dot import to_dot
from ..ir import Graph, Node, toposort
from .layout import layout
from .png import scene_png
from .scene import build_scene
from .svg import scene_svg
from .inspect import graph_of, walk_paths

FORMATS = {".svg": "svg", ".png": "png", ".dot": "dot", ".gv": "dot"}
ENGINES = ("auto", "dot", "builtin")
DOT_TIMEOUT = 60.0                    # seconds; a larger graph falls back to the built-in layout
ERROR_PICTURE = "graphrnn_error.svg"


class RenderError(RuntimeError):
    """Graphviz was asked for and could not draw the picture."""


def graphviz_available() -> bool:
    """Whether the Graphviz `dot` program is on PATH."""
    return shutil.which("dot") is not None


def picture(model_or_graph: Any, fmt: str = "svg", unroll: int | None = None, *,
            engine: str = "auto", highlight: Iterable[str] = (),
            caption: Sequence[str] = ()) -> bytes:
    """The picture as bytes: fmt "svg", "png" or "dot" (the DOT text, whatever the engine)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if fmt not in ("svg", "png", "dot"):
        raise ValueError(f"format must be svg, png or dot, got {fmt!r}")
    highlight, caption = list(highlight), list(caption)
    if fmt == "dot" or engine == "dot" or (engine == "auto" and graphviz_available()):
        text = to_dot(model_or_graph, unroll=unroll, highlight=highlight, caption=caption)
        if fmt == "dot":
            return text.encode()
        try:
            return _graphviz(text, fmt)
        except RenderError as e:
            if engine == "dot":
                raise
            warnings.warn(f"{e}; drawing with the built-in layout instead", RuntimeWarning,
                          stacklevel=2)
    scene = layout(build_scene(model_or_graph, unroll=unroll, highlight=highlight,
                               caption=caption))
    return scene_svg(scene).encode() if fmt == "svg" else scene_png(scene)


def render(model_or_graph: Any, path: str | os.PathLike, unroll: int | None = None, *,
           engine: str = "auto", highlight: Iterable[str] = (),
           caption: Sequence[str] = ()) -> str:
    """Write the picture of a gModule or Graph to `path`: SVG, PNG or DOT by its suffix.

    unroll: draw each loop as that many steps. highlight: paths of nodes to draw in red
    (`loop_0/h_next`; a top-level node's path is its name). caption: lines of text above
    the graph. Returns the path.
    """
    path = os.fspath(path)
    fmt = FORMATS.get(os.path.splitext(path)[1].lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot tell the format; use a name ending in .svg, .png or "
                         ".dot")
    data = picture(model_or_graph, fmt, unroll, engine=engine, highlight=highlight,
                   caption=caption)
    with open(path, "wb") as f:
        f.write(data)
    return path


def render_svg(model_or_graph: Any, unroll: int | None = None, **options: Any) -> str:
    """The SVG text of the picture (what Jupyter shows for a gModule)."""
    return picture(model_or_graph, "svg", unroll, **options).decode()


def _graphviz(text: str, fmt: str) -> bytes:
    """Run `dot -T<fmt>` on DOT text: no shell, a time limit, errors as one line."""
    exe = shutil.which("dot")
    if exe is None:
        raise RenderError("the Graphviz dot program is not on PATH (apt-get install graphviz)")
    try:
        done = subprocess.run([exe, f"-T{fmt}"], input=text.encode(), capture_output=True,
                              timeout=DOT_TIMEOUT, check=False)
    except subprocess.TimeoutExpired:
        raise RenderError(f"Graphviz dot took longer than {DOT_TIMEOUT:g} s") from None
    except OSError as e:
        raise RenderError(f"cannot run Graphviz dot: {e}") from None
    if done.returncode != 0 or not done.stdout:
        detail = done.stderr.decode(errors="replace").strip().splitlines()
        raise RenderError(f"Graphviz dot failed (status {done.returncode})"
                          + (f": {detail[0]}" if detail else ""))
    return done.stdout


# ----------------------------------------------------------------------------- errors

def failing_node(model_or_graph: Any, error: BaseException) -> str | None:
    """The path of the node an error is about, or None.

    The node is the error's `node` attribute (set by `ir.node_error`, also on the errors it
    caused), matched by identity, else by name and line; failing that, the longest node name
    that the message gives in the `<name> (<file:line>): ...` template.
    """
    nodes = list(walk_paths(graph_of(model_or_graph)))
    seen: set[int] = set()
    e: BaseException | None = error
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        node = getattr(e, "node", None)
        if isinstance(node, Node):
            for pn in nodes:
                if pn.node is node:
                    return pn.path
            for pn in nodes:
                if node.name and pn.node.name == node.name and pn.node.where == node.where:
                    return pn.path
        e = e.__cause__ or e.__context__
    message, best = str(error), None
    for pn in nodes:
        name = pn.node.name
        if name and re.search(rf"(^|[\s:'\"%]){re.escape(name)}( \(|:)", message) \
                and (best is None or len(name) > len(best.node.name)):
            best = pn
    return best.path if best else None


def error_caption(error: BaseException, width: int = 100) -> list[str]:
    """The error as lines of at most `width` characters, its type first."""
    text = f"{type(error).__name__}: {' '.join(str(error).split())}"
    return textwrap.wrap(text, width) or [type(error).__name__]


def render_error(model_or_graph: Any, error: BaseException, path: str | os.PathLike,
                 unroll: int | None = None, *, engine: str = "auto") -> str:
    """Draw the graph with the node `error` names in red (with the line that made it), and the
    message above the graph. Returns the path."""
    node = failing_node(model_or_graph, error)
    caption = error_caption(error)
    if node is None:
        caption.append("(the message names no node of this graph)")
    return render(model_or_graph, path, unroll, engine=engine, caption=caption,
                  highlight=[node] if node else [])


def sketch(inputs: Sequence[Any], outputs: Sequence[Any], extra: Any = None
           ) -> tuple[Graph, str | None]:
    """A drawable Graph of the nodes a gModule was given (which could not become a graph):
    what the outputs and `extra` depend on, named as close_graph names them; and the name
    `extra` gets."""
    ins = [x for x in inputs if isinstance(x, Node)]
    outs = [y for y in outputs if isinstance(y, Node)]
    order = toposort(ins + outs + ([extra] if isinstance(extra, Node) else []))
    graph = renamed_graph(tuple(ins), tuple(outs), order)
    at = next((k for k, n in enumerate(order) if n is extra), None)
    return graph, (graph.nodes[at].name if at is not None else None)


def debug_picture(error: BaseException, built: Graph | None, inputs: Sequence[Any],
                  outputs: Sequence[Any]) -> str | None:
    """With GRAPHRNN_DEBUG >= 1, draw a gModule's rejected graph to ERROR_PICTURE (the graph
    if it was built, else a sketch of its nodes). Never raises: the error itself matters."""
    if settings.debug_level() < 1:
        return None
    path = os.path.abspath(ERROR_PICTURE)
    try:
        if built is not None:
            render_error(built, error, path)
        else:
            graph, name = sketch(inputs, outputs, getattr(error, "node", None))
            name = name or failing_node(graph, error)
            render(graph, path, caption=error_caption(error), highlight=[name] if name else [])
    except Exception as e:          # a broken picture must not hide the error itself
        print(f"[graphrnn] could not draw {ERROR_PICTURE}: {type(e).__name__}: {e}",
              file=sys.stderr)
        return None
    print(f"[graphrnn] wrote {path}: the graph, the failing node in red", file=sys.stderr)
    return path


__all__ = ["render", "render_svg", "render_error", "picture", "failing_node", "error_caption",
           "graphviz_available", "debug_picture", "sketch", "RenderError", "FORMATS"]
