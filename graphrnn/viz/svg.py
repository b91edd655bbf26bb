"""A laid-out scene as SVG text: plain shapes and monospace text, no scripts, no fonts to load.

Every drawn thing is a `<g>` with a class and `data-*` attributes, so a picture can be read
back: `g.node` (also `input`, `output`, `param`, `body-input`, `header`, `results`,
`highlight`) with `data-path`, `data-op` and, for parameters, `data-key`, `data-offset`,
`data-size`, `data-storage`; `g.cluster` (`loop`, `fused`, `step`; the group of a loop inside
a loop body sits inside its loop's group); `g.edge` (`carry`) with `data-src` and `data-dst`.
The `<title>` of each group is what a browser shows on hover.
"""
from __future__ import annotations

import math
from xml.sax.saxutils import escape, quoteattr

from .layout import BOX_PAD_Y, CHAR_W, LINE_H, SMALL_W
from .scene import Box, Cluster, Edge, Point, Scene, rounded_rect

STYLE = """
text { font-family: "DejaVu Sans Mono", Menlo, Consolas, "Liberation Mono", monospace;
       font-size: 12px; fill: #1a1a1a; }
text.small { font-size: 10px; fill: #555555; }
text.bold { font-weight: bold; }
text.caption { font-size: 12px; }
"""
DASHES = {"dashed": "6,4", "dotted": "2,3"}


def scene_svg(scene: Scene) -> str:
    """The SVG document of a scene that `layout` has placed."""
    w, h = math.ceil(scene.width), math.ceil(scene.height)
    out = ['<?xml version="1.0" encoding="UTF-8"?>',
           f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
           f'viewBox="0 0 {w} {h}" class="graphrnn">',
           f"<title>{escape(scene.title)}</title>",
           f"<style>{STYLE}</style>",
           f'<rect x="0" y="0" width="{w}" height="{h}" fill="#ffffff"/>']
    for i, line in enumerate(scene.caption):
        out.append(f'<text class="caption" x="{_n(scene.root.x)}" '
                   f'y="{_n(scene.root.y - 8 - (len(scene.caption) - 1 - i) * LINE_H)}" '
                   f'fill="{scene.caption_color}">{escape(line)}</text>')
    for c in scene.root.clusters:
        out += _cluster(c)
    for e in scene.edges:
        out += _edge(e)
    for b in scene.boxes.values():
        out += _box(b)
    for e in scene.edges:
        if e.label and e.points:
            out += _edge_label(e)
    out.append("</svg>")
    return "\n".join(out) + "\n"


def _n(v: float) -> str:
    return f"{v:.1f}".rstrip("0").rstrip(".")


def _points(points: list[Point]) -> str:
    return " ".join(f"{_n(x)},{_n(y)}" for x, y in points)


def _data(data: dict[str, str]) -> str:
    return "".join(f" data-{k}={quoteattr(v)}" for k, v in data.items() if v)


def _cluster(c: Cluster) -> list[str]:
    dash = f' stroke-dasharray="{DASHES[c.dash]}"' if c.dash else ""
    out = [f'<g class="{c.classes}" id={quoteattr(c.id)}{_data(c.data)}>',
           f"<title>{escape(' '.join(c.label))}</title>",
           f'<polygon points="{_points(rounded_rect(c.x, c.y, c.w, c.h, 10))}" fill="{c.fill}" '
           f'stroke="{c.stroke}" stroke-width="1.2"{dash}/>']
    for i, line in enumerate(c.label):
        cls = "bold" if i == 0 else "small"
        out.append(f'<text class="{cls}" x="{_n(c.x + 10)}" y="{_n(c.y + 16 + i * LINE_H)}">'
                   f"{escape(line)}</text>")
    for inner in c.clusters:            # a loop inside a loop body: a group inside the group
        out += _cluster(inner)
    return out + ["</g>"]


def _edge(e: Edge) -> list[str]:
    if len(e.points) < 2:
        return []
    d = f"M{_n(e.points[0][0])},{_n(e.points[0][1])}" + "".join(
        f" C{_points([c1, c2, q])}" for _, c1, c2, q in e.curves())
    dash = f' stroke-dasharray="{DASHES[e.dash]}"' if e.dash else ""
    width = "1.6" if "carry" in e.classes.split() else "1.1"
    return [f'<g class="{e.classes}"{_data({"src": e.src, "dst": e.dst})}>',
            f"<title>{escape(e.src)} -> {escape(e.dst)}</title>",
            f'<path d="{d}" fill="none" stroke="{e.color}" stroke-width="{width}"{dash}/>',
            f'<polygon points="{_points(e.arrowhead())}" fill="{e.color}" '
            f'stroke="{e.color}"/>', "</g>"]


def _edge_label(e: Edge) -> list[str]:
    x, y = e.label_at
    return [f'<rect x="{_n(x)}" y="{_n(y - 10)}" width="{_n(len(e.label) * SMALL_W + 4)}" '
            'height="13" fill="#ffffff" fill-opacity="0.85"/>',
            f'<text class="small" x="{_n(x + 2)}" y="{_n(y)}" style="fill: {e.color}">'
            f"{escape(e.label)}</text>"]


def _box(b: Box) -> list[str]:
    out = [f'<g class="{b.classes}" id={quoteattr(b.id)}{_data(b.data)}>',
           f"<title>{escape(b.id)}</title>"]
    if b.double:
        out.append(f'<polygon points="{_points(b.outline(3))}" fill="none" '
                   f'stroke="{b.stroke}" stroke-width="{_n(b.stroke_width)}"/>')
    out.append(f'<polygon points="{_points(b.outline())}" fill="{b.fill}" stroke="{b.stroke}" '
               f'stroke-width="{_n(b.stroke_width)}"/>')
    cx = b.x + b.w / 2
    for i, line in enumerate(b.lines):
        cls = ' class="bold"' if i == 0 else ""
        out.append(f'<text{cls} x="{_n(cx)}" y="{_n(text_baseline(b, i))}" '
                   f'text-anchor="middle" textLength="{_n(len(line) * CHAR_W)}" '
                   f'lengthAdjust="spacingAndGlyphs">{escape(line)}</text>')
    if b.note:
        out.append(f'<text class="small" x="{_n(b.note_at[0])}" y="{_n(b.note_at[1])}">'
                   f"{escape(b.note)}</text>")
    return out + ["</g>"]


def text_baseline(b: Box, i: int) -> float:
    """The baseline of line i of a box (shared with the PNG writer)."""
    return b.y + BOX_PAD_Y + (i + 1) * LINE_H - 4


__all__ = ["scene_svg", "text_baseline"]
