"""Seeing a model: the summary table, Graphviz DOT text, a networkx view, and pictures (SVG,
PNG) drawn by Graphviz or by the built-in layout.

    gr.viz.summary(model)                      # one row per node, Keras style
    gr.viz.render(model, "lstm.svg", unroll=3) # .svg, .png or .dot
    gr.viz.render_error(model, error, "bad.svg")
"""
from __future__ import annotations

from ..gmodule import BUILD_ERROR_HOOKS
from .draw import debug_picture, picture, render, render_error, render_svg
from .dot import to_dot
from .inspect import to_networkx
from .table import summary

if debug_picture not in BUILD_ERROR_HOOKS:
    BUILD_ERROR_HOOKS.append(debug_picture)

__all__ = ["summary", "to_dot", "to_networkx", "render", "render_svg", "render_error", "picture"]
